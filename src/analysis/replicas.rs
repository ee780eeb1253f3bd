//! Errors of ensembles made of independent replicas (the SMC sampler's `/replica` column).
//!
//! Within a replica, resampling copies particles, so its configurations are correlated in
//! a way no autocorrelation analysis sees (they are not a time series). Replicas are
//! independent: each is one jackknife bin, and the error comes from the spread between the
//! replicas' (weighted) means. The weights are normalised within each replica, so every
//! replica counts equally. With fewer than two replicas there is no spread to measure: the
//! errors are NaN ("unavailable"), never a confident bar.

use super::observables::{self, dense_chain_ids, Analysis, Estimate, Observables, Primaries};

/// Replica ids of an ensemble, dense (0, 1, …) in order of first appearance.
#[derive(Clone, Debug, PartialEq)]
pub struct Replicas {
    pub ids: Vec<usize>,
    pub count: usize,
    /// Configurations of the largest replica (one jackknife bin holds a whole replica).
    pub largest: usize,
    /// The fewest distinct ancestors (starting particles) of any replica, from `/ancestor`.
    pub lineages: Option<usize>,
}

impl Replicas {
    pub fn from_labels(labels: &[i64]) -> Self {
        let ids = dense_chain_ids(labels);
        let count = ids.iter().max().map_or(0, |m| m + 1);
        let mut sizes = vec![0usize; count];
        ids.iter().for_each(|&i| sizes[i] += 1);
        Replicas { ids, count, largest: sizes.into_iter().max().unwrap_or(0), lineages: None }
    }

    /// Records the fewest distinct ancestors of a replica (`ancestors` per row).
    pub fn with_ancestors(mut self, ancestors: &[i64]) -> Self {
        let mut per_replica = vec![std::collections::BTreeSet::new(); self.count];
        self.ids.iter().zip(ancestors).for_each(|(&r, &a)| {
            per_replica[r].insert(a);
        });
        self.lineages = per_replica.iter().map(|s| s.len()).min();
        self
    }

    /// The header's statement of how the errors were obtained.
    pub fn error_method(&self) -> String {
        if self.count < 2 {
            format!(
                "errors unavailable: {} replica (the error is the spread between independent replicas; sample with --replicas 2 or more)",
                self.count
            )
        } else {
            format!("errors: jackknife over the {} independent replicas (one bin each)", self.count)
        }
    }
}

/// [`observables::analyze`] with one bin per replica. τ_int is not reported (rows within a
/// replica are particles, not a Markov chain); with fewer than two replicas every error is NaN.
pub fn analyze(obs: &dyn Observables, prim: &Primaries, replicas: &Replicas, log_weights: Option<&[f64]>) -> Analysis {
    let mut a = observables::analyze(obs, prim, Some(&replicas.ids), log_weights, Some(replicas.largest.max(1)));
    a.binning = (String::new(), f64::NAN);
    a.lineages = replicas.lineages;
    // The ESS of replicas that count equally: each replica's own Kish ESS (its weights
    // normalised within it), summed. Pooling the raw weights would let one replica's
    // normalisation (its log Z) weigh against another's, and disagree with the sampler's
    // stored `ess_fraction` (the mean of the replicas' final ESS/n).
    if let Some(lw) = log_weights {
        let mut per = vec![Vec::new(); replicas.count];
        replicas.ids.iter().zip(lw).for_each(|(&r, &w)| per[r].push(w));
        a.ess = Some(per.iter().filter(|w| !w.is_empty()).map(|w| super::stats::ess(w)).sum());
    }
    let unavailable = replicas.count < 2;
    for (_, est) in a.quantities.iter_mut() {
        match est {
            Estimate::Scalar(s) => {
                s.tau_int = f64::NAN;
                if unavailable {
                    s.err = f64::NAN;
                }
            }
            Estimate::Array(x) if unavailable => x.err.iter_mut().for_each(|e| *e = f64::NAN),
            Estimate::Array(_) => {}
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_count_and_largest() {
        let r = Replicas::from_labels(&[4, 4, 7, 7, 7, 4]);
        assert_eq!(r.ids, vec![0, 0, 1, 1, 1, 0]);
        assert_eq!((r.count, r.largest), (2, 3));
        assert!(Replicas::from_labels(&[0, 0]).error_method().contains("unavailable"));
    }

    #[test]
    fn lineages_are_the_fewest_distinct_ancestors_of_a_replica() {
        let r = Replicas::from_labels(&[0, 0, 0, 1, 1, 1]).with_ancestors(&[5, 5, 2, 0, 1, 2]);
        assert_eq!(r.lineages, Some(2));
    }
}
