//! Weights of a particle population: effective sample size, log of the mean weight, and
//! systematic resampling.

use crate::analysis::stats::{ess, log_sum_exp, normalized_weights};

/// Kish ESS of the weights over the number of particles (NaN and −∞ weigh nothing).
pub fn ess_fraction(log_w: &[f64]) -> f64 {
    ess(log_w) / log_w.len().max(1) as f64
}

/// log((1/n) Σ e^{log w}): one stage's factor of the normalising constant.
pub fn log_mean_exp(log_w: &[f64]) -> f64 {
    log_sum_exp(log_w) - (log_w.len() as f64).ln()
}

/// log w − log mean e^{log w}: the weights normalised to mean e^w = 1.
pub fn normalised(log_w: &[f64]) -> Vec<f64> {
    let m = log_mean_exp(log_w);
    log_w.iter().map(|w| w - m).collect()
}

/// Systematic resampling: n ancestors, particle i taking the one whose cumulative
/// normalised weight first exceeds (i + u)/n, with one uniform `u` ∈ [0, 1) for all.
/// Every particle with weight w is copied ⌊n w⌋ or ⌈n w⌉ times (the lowest-variance of the
/// standard schemes). Ancestors come out in increasing order. `None` when no weight is
/// positive (there is nothing to resample from).
pub fn systematic(log_w: &[f64], u: f64) -> Option<Vec<usize>> {
    let w = normalized_weights(log_w);
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let n = w.len();
    let mut ancestors = Vec::with_capacity(n);
    let (mut j, mut cumulative) = (0usize, w[0] / total);
    for i in 0..n {
        let point = (i as f64 + u) / n as f64;
        // The last particle with positive weight closes the sum, whatever the rounding.
        while point >= cumulative && j + 1 < n {
            j += 1;
            cumulative += w[j] / total;
        }
        ancestors.push(j);
    }
    // Rounding can leave the last points past a trailing zero weight: never pick one.
    for a in ancestors.iter_mut().rev() {
        if w[*a] > 0.0 {
            break;
        }
        *a = (0..=*a).rev().find(|&k| w[k] > 0.0).expect("a positive weight exists");
    }
    Some(ancestors)
}

/// Number of distinct values (ancestor indices) in `a`.
pub fn distinct(a: &[usize]) -> usize {
    let mut s = a.to_vec();
    s.sort_unstable();
    s.dedup();
    s.len()
}

/// (log mean_r e^{x_r}, its jackknife error over the replicas); the error is NaN for fewer
/// than two replicas.
pub fn combined_log_z(log_z: &[f64]) -> (f64, f64) {
    let r = log_z.len();
    let value = log_mean_exp(log_z);
    if r < 2 {
        return (value, f64::NAN);
    }
    let leave_out: Vec<f64> = (0..r)
        .map(|i| log_mean_exp(&log_z.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect::<Vec<_>>()))
        .collect();
    let mean = leave_out.iter().sum::<f64>() / r as f64;
    let var = leave_out.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() * (r - 1) as f64 / r as f64;
    (value, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systematic_copies_each_particle_floor_or_ceil_of_n_w_times() {
        let lw: Vec<f64> = [0.1f64, 0.2, 0.3, 0.4].iter().map(|w| w.ln()).collect();
        for u in [0.0, 0.25, 0.5, 0.999] {
            let a = systematic(&lw, u).unwrap();
            assert_eq!(a.len(), 4);
            assert!(a.windows(2).all(|p| p[0] <= p[1]), "{a:?}");
            for (k, w) in [0.1f64, 0.2, 0.3, 0.4].iter().enumerate() {
                let copies = a.iter().filter(|&&x| x == k).count() as f64;
                assert!(copies == (4.0 * *w).floor() || copies == (4.0 * *w).ceil(), "u {u}: {a:?}");
            }
        }
        // Equal weights: every particle is its own ancestor.
        assert_eq!(systematic(&[0.0; 5], 0.3).unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn zero_and_nan_weights_are_never_picked() {
        let lw = [f64::NEG_INFINITY, 0.0, f64::NAN, 0.0, f64::NEG_INFINITY];
        for u in [0.0, 0.5, 0.9999999] {
            let a = systematic(&lw, u).unwrap();
            assert!(a.iter().all(|&k| k == 1 || k == 3), "u {u}: {a:?}");
        }
        assert!(systematic(&[f64::NEG_INFINITY, f64::NAN], 0.5).is_none());
        assert_eq!(distinct(&[3, 1, 3, 0]), 3);
    }

    #[test]
    fn log_mean_exp_and_ess() {
        assert!((log_mean_exp(&[0.0, 2f64.ln()]) - 1.5f64.ln()).abs() < 1e-15);
        assert_eq!(ess_fraction(&[1.0; 4]), 1.0);
        assert!((ess_fraction(&[0.0, f64::NEG_INFINITY]) - 0.5).abs() < 1e-15);
    }
}
