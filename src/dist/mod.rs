//! Process-level parallelism: MPI through rsmpi when built with the `mpi` feature,
//! otherwise a single process with the same interface.
//!
//! Only the main thread talks to MPI (rayon threads never do), so MPI is initialised
//! with `Threading::Funneled`.

pub mod launcher;

#[cfg(feature = "mpi")]
use mpi::traits::*;

pub struct Comm {
    rank: usize,
    size: usize,
    #[cfg(feature = "mpi")]
    world: Option<mpi::topology::SimpleCommunicator>,
    // Dropping the universe finalises MPI, so it lives as long as the communicator.
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// A type that can travel through the collectives.
#[cfg(feature = "mpi")]
pub trait Element: Equivalence + Copy + Default + std::ops::AddAssign {}
#[cfg(feature = "mpi")]
impl<T: Equivalence + Copy + Default + std::ops::AddAssign> Element for T {}
#[cfg(not(feature = "mpi"))]
pub trait Element: Copy + Default + std::ops::AddAssign {}
#[cfg(not(feature = "mpi"))]
impl<T: Copy + Default + std::ops::AddAssign> Element for T {}

impl Comm {
    /// Initialises MPI when built with it (also works for a program not started by mpirun:
    /// a singleton of one rank), else a single process.
    pub fn init() -> Comm {
        #[cfg(feature = "mpi")]
        {
            if let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) {
                let world = universe.world();
                let (rank, size) = (world.rank() as usize, world.size() as usize);
                return Comm { rank, size, world: Some(world), _universe: Some(universe) };
            }
        }
        Comm::single()
    }

    pub fn single() -> Comm {
        Comm {
            rank: 0,
            size: 1,
            #[cfg(feature = "mpi")]
            world: None,
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn size(&self) -> usize {
        self.size
    }
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise sum over ranks, result on every rank.
    pub fn all_reduce_sum<T: Element>(&self, buf: &mut [T]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            if self.size > 1 {
                let send = buf.to_vec();
                w.all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
            }
        }
        let _ = buf;
    }

    /// Concatenates each rank's `send` on rank 0 in rank order. `counts[r]` is rank r's
    /// length (known to all ranks). Returns the full buffer on rank 0, empty elsewhere.
    pub fn gather<T: Element>(&self, send: &[T], counts: &[usize]) -> Vec<T> {
        assert_eq!(counts.len(), self.size);
        debug_assert_eq!(counts[self.rank], send.len());
        if self.size == 1 {
            return send.to_vec();
        }
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            let root = w.process_at_rank(0);
            if self.rank == 0 {
                let total: usize = counts.iter().sum();
                let mut out = vec![T::default(); total];
                let (c, d) = counts_displacements(counts);
                let mut part = mpi::datatype::PartitionMut::new(&mut out[..], &c[..], &d[..]);
                root.gather_varcount_into_root(send, &mut part);
                return out;
            } else {
                root.gather_varcount_into(send);
                return Vec::new();
            }
        }
        unreachable!("several ranks without MPI")
    }

    /// Concatenates each rank's `send` in rank order on every rank. `counts[r]` is rank r's
    /// length (known to all ranks).
    pub fn all_gather<T: Element>(&self, send: &[T], counts: &[usize]) -> Vec<T> {
        assert_eq!(counts.len(), self.size);
        debug_assert_eq!(counts[self.rank], send.len());
        if self.size == 1 {
            return send.to_vec();
        }
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            let total: usize = counts.iter().sum();
            // MPI refuses the dangling pointer of an empty Vec: real buffers, zero counts.
            let mut out = vec![T::default(); total.max(1)];
            let padded = [T::default()];
            let send = if send.is_empty() { &padded[..0] } else { send };
            let (c, d) = counts_displacements(counts);
            let mut part = mpi::datatype::PartitionMut::new(&mut out[..], &c[..], &d[..]);
            w.all_gather_varcount_into(send, &mut part);
            out.truncate(total);
            return out;
        }
        unreachable!("several ranks without MPI")
    }

    /// Personalised exchange: rank q sends `send[..]` in blocks of `send_counts[r]` values to
    /// each rank r in rank order and receives `recv_counts[r]` values from each rank r,
    /// concatenated in rank order. Every rank must know both count lists.
    pub fn all_to_all<T: Element>(&self, send: &[T], send_counts: &[usize], recv_counts: &[usize]) -> Vec<T> {
        assert_eq!(send_counts.len(), self.size);
        assert_eq!(recv_counts.len(), self.size);
        debug_assert_eq!(send_counts.iter().sum::<usize>(), send.len());
        if self.size == 1 {
            return send.to_vec();
        }
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            let total: usize = recv_counts.iter().sum();
            let mut out = vec![T::default(); total.max(1)];
            let padded = [T::default()];
            let send = if send.is_empty() { &padded[..0] } else { send };
            let (sc, sd) = counts_displacements(send_counts);
            let (rc, rd) = counts_displacements(recv_counts);
            let part = mpi::datatype::Partition::new(send, &sc[..], &sd[..]);
            let mut rpart = mpi::datatype::PartitionMut::new(&mut out[..], &rc[..], &rd[..]);
            w.all_to_all_varcount_into(&part, &mut rpart);
            out.truncate(total);
            return out;
        }
        unreachable!("several ranks without MPI")
    }

    /// The ranks of the same `color` as a communicator of their own, ordered as here
    /// (collective over this communicator). It must be dropped before this one.
    pub fn split(&self, color: usize) -> Comm {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            use mpi::topology::Color;
            let sub = w
                .split_by_color_with_key(Color::with_value(color as i32), self.rank as i32)
                .expect("every rank has a colour");
            let (rank, size) = (sub.rank() as usize, sub.size() as usize);
            return Comm { rank, size, world: Some(sub), _universe: None };
        }
        let _ = color;
        Comm::single()
    }

    /// The first failure among the ranks (collective): each rank passes its own error text
    /// or None; every rank learns whether any failed, and rank 0 gets the lowest failing
    /// rank's text (other ranks get an empty text). So a refusal found on some ranks only
    /// (a path that exists on one node only, an MPMD launch) is reported once, by rank 0.
    pub fn first_failure(&self, mine: Option<&str>) -> Option<(usize, String)> {
        // Each rank's text plus a terminator, so that no rank sends an empty buffer.
        let send: Vec<u8> = mine.map(|m| format!("{m}\n")).unwrap_or_default().into_bytes();
        let mut lengths = vec![0u64; self.size];
        lengths[self.rank] = send.len() as u64;
        self.all_reduce_sum(&mut lengths);
        let first = lengths.iter().position(|&l| l > 0)?;
        if self.size == 1 {
            return Some((0, mine.unwrap_or_default().to_string()));
        }
        // Every rank sends at least the terminator: an empty send is an invalid buffer to MPI.
        let padded = if send.is_empty() { vec![b'\n'] } else { send };
        let counts: Vec<usize> = lengths.iter().map(|&l| (l as usize).max(1)).collect();
        let all = self.gather(&padded, &counts);
        let start: usize = counts[..first].iter().sum();
        let text = all.get(start..start + counts[first]).map(|b| String::from_utf8_lossy(b).trim_end().to_string());
        Some((first, text.unwrap_or_default()))
    }

    /// Rank 0's bytes on every rank.
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            if self.size > 1 {
                let root = w.process_at_rank(0);
                let mut len = [bytes.len() as u64];
                root.broadcast_into(&mut len[..]);
                bytes.resize(len[0] as usize, 0);
                // MPI refuses the dangling pointer of an empty Vec (MPI_ERR_ARG).
                if !bytes.is_empty() {
                    root.broadcast_into(&mut bytes[..]);
                }
            }
        }
        let _ = bytes;
    }

    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.barrier();
        }
    }

    /// Ends every rank of the job: a failure on one rank must never leave the others hanging
    /// in a collective.
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            if self.size > 1 {
                w.abort(code);
            }
        }
        std::process::exit(code)
    }

    /// Rank among the ranks on this node (which GPU a rank takes).
    pub fn node_local_rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return w.split_shared(self.rank as i32).rank() as usize;
        }
        0
    }

    /// Number of ranks on this node.
    pub fn node_local_size(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return w.split_shared(self.rank as i32).size() as usize;
        }
        1
    }

    /// Gives each rank its share of the node's cores for rayon, unless the user chose
    /// (`--threads` or RAYON_NUM_THREADS): ranks that each start a thread per core would
    /// oversubscribe the node, and the slowest rank holds up every all-reduce.
    pub fn configure_threads(&self, requested: Option<usize>) {
        if requested.is_some() || std::env::var_os("RAYON_NUM_THREADS").is_some() || self.size == 1 {
            return;
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let n = (cores / self.node_local_size().max(1)).max(1);
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }

    /// Contiguous block [start, end) of `n` items owned by this rank; earlier ranks take
    /// the remainder, so blocks differ in size by at most one.
    pub fn block(&self, n: usize) -> (usize, usize) {
        block_of(n, self.size, self.rank)
    }

    pub fn block_counts(&self, n: usize) -> Vec<usize> {
        (0..self.size)
            .map(|r| {
                let (a, b) = block_of(n, self.size, r);
                b - a
            })
            .collect()
    }
}

/// MPI's counts and displacements of consecutive blocks.
#[cfg(feature = "mpi")]
fn counts_displacements(counts: &[usize]) -> (Vec<i32>, Vec<i32>) {
    let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
    let d: Vec<i32> = counts
        .iter()
        .scan(0i32, |acc, &c| {
            let here = *acc;
            *acc += c as i32;
            Some(here)
        })
        .collect();
    (c, d)
}

pub fn block_of(n: usize, size: usize, rank: usize) -> (usize, usize) {
    let base = n / size;
    let rem = n % size;
    let start = rank * base + rank.min(rem);
    let len = base + usize::from(rank < rem);
    (start, start + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn blocks_tile_the_range() {
        for n in [0, 1, 7, 64] {
            for size in 1..5 {
                let mut next = 0;
                for r in 0..size {
                    let (a, b) = block_of(n, size, r);
                    assert_eq!(a, next);
                    next = b;
                }
                assert_eq!(next, n);
            }
        }
    }
}
