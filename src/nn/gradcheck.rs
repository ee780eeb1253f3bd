//! Central finite-difference gradient checks in f64 (test-only helper).

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Up to `max` distinct indices of 0..n (all of them when n ≤ max).
pub fn pick_indices(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut v: Vec<usize> = (0..max).map(|_| rng.random_range(0..n)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Checks `analytic` against central differences of `f` at up to 50 entries of `x`.
///
/// Error per entry is |a − n| / max(|a|, |n|, floor) with floor = 1e-3 · max|n| over
/// the checked entries: entries whose gradient is ~0 are dominated by rounding error of
/// the difference quotient and would otherwise fail spuriously.
pub fn check_grad(name: &str, x: &mut [f64], analytic: &[f64], mut f: impl FnMut(&[f64]) -> f64) {
    let idx = pick_indices(x.len(), 50, x.len() as u64);
    check_grad_at(name, x, analytic, &idx, &mut f);
}

pub fn check_grad_at(name: &str, x: &mut [f64], analytic: &[f64], idx: &[usize], f: &mut impl FnMut(&[f64]) -> f64) {
    // Fourth-order central stencil: truncation O(h⁴) ≈ 1e-12 and rounding ≈ 1e-13·|f|,
    // so gradients far below the largest one are still resolved to 1e-6.
    let h = 1e-3;
    let mut num = Vec::with_capacity(idx.len());
    for &i in idx {
        let x0 = x[i];
        let mut at = |d: f64| {
            x[i] = x0 + d;
            f(x)
        };
        let (p1, m1, p2, m2) = (at(h), at(-h), at(2.0 * h), at(-2.0 * h));
        x[i] = x0;
        num.push((8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h));
    }
    let scale = num.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{name}: gradient is identically zero");
    let floor = 1e-3 * scale;
    let mut worst = (0.0, 0usize);
    for (j, &i) in idx.iter().enumerate() {
        let (a, n) = (analytic[i], num[j]);
        let e = (a - n).abs() / a.abs().max(n.abs()).max(floor);
        if e > worst.0 {
            worst = (e, i);
        }
    }
    assert!(
        worst.0 < 1e-6,
        "{name}: rel err {:.3e} at {} (analytic {}, numeric {})",
        worst.0,
        worst.1,
        analytic[worst.1],
        num[idx.iter().position(|&i| i == worst.1).unwrap()]
    );
}
