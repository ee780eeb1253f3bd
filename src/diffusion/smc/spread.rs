//! A replica's particles over several ranks (`--ranks-per-replica`), or all on one.
//!
//! Rank q of a group of P holds particles [i0, i1) = `block_of(n, P, q)`, each with its own
//! stream, so everything per particle (reverse steps, level energies, MALA proposals)
//! runs where the particle lives, unchanged. What a replica decides as a whole is made
//! from every particle's value, in particle order, on every rank alike: the ESS and the
//! systematic resampling (all-gather of the log-weights; the replica's resampling stream
//! is drawn identically on each rank), log Z, MALA's mean acceptance (all-gather, summed in
//! particle order). Resampling moves configurations between ranks (one all-to-all). So a
//! replica's output does not depend on P: the same bits as on one rank.

use crate::dist::{block_of, Comm, Element};

pub struct Spread<'a> {
    /// The group's communicator; `None`: every particle on this rank.
    comm: Option<&'a Comm>,
    /// Particles of the replica.
    n: usize,
}

impl<'a> Spread<'a> {
    /// All `n` particles here.
    pub fn local(n: usize) -> Self {
        Spread { comm: None, n }
    }

    /// The `n` particles over the ranks of `comm`.
    pub fn over(comm: &'a Comm, n: usize) -> Self {
        Spread { comm: (comm.size() > 1).then_some(comm), n }
    }

    fn ranks(&self) -> usize {
        self.comm.map_or(1, Comm::size)
    }

    /// This rank's particles [i0, i1) of the replica.
    pub fn range(&self) -> (usize, usize) {
        self.comm.map_or((0, self.n), |c| block_of(self.n, c.size(), c.rank()))
    }

    /// Whether this rank holds the replica's result at the end (the group's first).
    pub fn is_leader(&self) -> bool {
        self.comm.is_none_or(Comm::is_root)
    }

    /// `per` values per particle: each rank's count.
    fn counts(&self, per: usize) -> Vec<usize> {
        (0..self.ranks())
            .map(|r| {
                let (a, b) = block_of(self.n, self.ranks(), r);
                (b - a) * per
            })
            .collect()
    }

    /// Every particle's value, in particle order, from this rank's.
    pub fn all(&self, local: &[f64]) -> Vec<f64> {
        match self.comm {
            None => local.to_vec(),
            Some(c) => c.all_gather(local, &self.counts(1)),
        }
    }

    /// The mean over every particle, summed in particle order: the same bits for any P
    /// and any number of threads.
    pub fn mean(&self, local: &[f64]) -> f64 {
        let all = self.all(local);
        all.iter().sum::<f64>() / all.len().max(1) as f64
    }

    /// Whether any rank of the group says yes: a stop seen by one rank only must end the
    /// replica on all of them (the others would wait in the next collective).
    pub fn any(&self, mine: bool) -> bool {
        match self.comm {
            None => mine,
            Some(c) => {
                let mut x = [u64::from(mine)];
                c.all_reduce_sum(&mut x);
                x[0] > 0
            }
        }
    }

    /// This rank's rows (`width` values per particle) replaced by those of their ancestors
    /// `a` (indices into the whole replica, the same list on every rank).
    pub fn take(&self, a: &[usize], rows: &[f64], width: usize) -> Vec<f64> {
        let Some(c) = self.comm else {
            return a.iter().flat_map(|&j| rows[j * width..][..width].iter().copied()).collect();
        };
        let (p, q) = (c.size(), c.rank());
        let ranges: Vec<(usize, usize)> = (0..p).map(|r| block_of(self.n, p, r)).collect();
        let owner = |j: usize| ranges.iter().position(|&(_, end)| j < end).expect("an ancestor of the replica");
        let (i0, i1) = ranges[q];
        // To each rank, in its particle order, the rows of its particles whose ancestor is here.
        let (mut send, mut send_counts) = (Vec::new(), vec![0; p]);
        for (d, &(a0, a1)) in ranges.iter().enumerate() {
            for &j in &a[a0..a1] {
                if owner(j) == q {
                    send.extend_from_slice(&rows[(j - i0) * width..][..width]);
                    send_counts[d] += width;
                }
            }
        }
        let mine = &a[i0..i1];
        let recv_counts: Vec<usize> = (0..p).map(|s| width * mine.iter().filter(|&&j| owner(j) == s).count()).collect();
        let recv = c.all_to_all(&send, &send_counts, &recv_counts);
        // The received rows come grouped by source rank, each group in particle order.
        let mut next: Vec<usize> = recv_counts
            .iter()
            .scan(0, |acc, &n| {
                let here = *acc;
                *acc += n;
                Some(here)
            })
            .collect();
        let mut out = Vec::with_capacity(mine.len() * width);
        for &j in mine {
            let s = owner(j);
            out.extend_from_slice(&recv[next[s]..][..width]);
            next[s] += width;
        }
        out
    }

    /// This rank's values (`per` per particle) gathered in particle order on the leader
    /// (empty elsewhere).
    pub fn gather<T: Element>(&self, local: &[T], per: usize) -> Vec<T> {
        match self.comm {
            None => local.to_vec(),
            Some(c) => c.gather(local, &self.counts(per)),
        }
    }
}
