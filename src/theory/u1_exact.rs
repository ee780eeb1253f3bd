//! Exact results of 2-D U(1) lattice gauge theory on the periodic L_t × L_x torus, for the
//! tests and the study tables.
//!
//! On the torus the V plaquette angles are independent apart from Σ_P θ_P ∈ 2πℤ (the two
//! holonomies are free), each with weight e^{β cos θ}. With a θ-term ϑQ the partition
//! function is, by Poisson summation over the constraint,
//!   Z(ϑ) ∝ Σ_{n∈ℤ} h(n + ϑ/2π)^V,  h(k) = ∫_{−π}^{π} e^{β cos a} cos(ka) da,
//! (h(n) = 2π I_n(β) at integer n). Then ⟨cos θ_P⟩ = (1/V) ∂_β ln Z(0) and
//! ⟨Q²⟩ = −Z''(0)/Z(0), so χ_t = ⟨Q²⟩/V needs h and its first two k-derivatives at the
//! integers, one-dimensional integrals of smooth functions done by Simpson's rule.

use std::f64::consts::PI;

/// Windings kept in the sums: (I_n/I_0)^V for |n| > 40 is below 1e−40 for any β ≤ 100
/// and V ≥ 4.
const N_MAX: i64 = 40;
/// Simpson intervals on [0, π]: the integrands are analytic, so the error is far below
/// 1e−12 for β ≤ 50.
const N_QUAD: usize = 20_000;

/// Simpson's weight (1, 4, 2, …, 4, 1) of point i of n intervals (n even).
fn simpson_weight(i: usize, n: usize) -> f64 {
    if i == 0 || i == n {
        1.0
    } else if i % 2 == 1 {
        4.0
    } else {
        2.0
    }
}

/// h(k), h'(k), h''(k) with e^{β cos a} scaled by e^{−β} (a common factor of Z).
fn h_and_derivatives(beta: f64, k: f64) -> [f64; 3] {
    let step = PI / N_QUAD as f64;
    let mut acc = [0.0; 3];
    for i in 0..=N_QUAD {
        let a = i as f64 * step;
        let e = simpson_weight(i, N_QUAD) * (beta * (a.cos() - 1.0)).exp();
        let (s, c) = (k * a).sin_cos();
        acc[0] += e * c;
        acc[1] -= e * a * s;
        acc[2] -= e * a * a * c;
    }
    // The integrands are even in a: twice the half range.
    acc.map(|x| 2.0 * x * step / 3.0)
}

/// (h_n, h'_n, h''_n) / h_0 for n = −N_MAX ..= N_MAX.
fn ratios(beta: f64) -> Vec<[f64; 3]> {
    let h0 = h_and_derivatives(beta, 0.0)[0];
    (-N_MAX..=N_MAX).map(|n| h_and_derivatives(beta, n as f64).map(|x| x / h0)).collect()
}

/// A(β) = I_1(β)/I_0(β), the mean cos of one angle with weight e^{β cos a} (the plaquette
/// at infinite volume), by the continued fraction I_1/I_0 = 1/(2/β + 1/(4/β + …)), evaluated
/// from the back; its terms settle once 2k ≫ β, so 40 + β levels are exact to rounding.
pub fn bessel_ratio(beta: f64) -> f64 {
    if beta <= 0.0 {
        return 0.0;
    }
    let depth = (40.0 + beta).min(2000.0) as usize;
    let mut r = 0.0;
    for k in (1..=depth).rev() {
        r = 1.0 / (2.0 * k as f64 / beta + r);
    }
    r
}

/// The β with A(β) = a, for 0 ≤ a < 1: Newton's method (A' = 1 − A/β − A²) from the
/// usual closed-form approximation of the von Mises concentration.
pub fn inverse_bessel_ratio(a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    let mut k = if a < 0.53 {
        2.0 * a + a.powi(3) + 5.0 * a.powi(5) / 6.0
    } else if a < 0.85 {
        -0.4 + 1.39 * a + 0.43 / (1.0 - a)
    } else {
        1.0 / (a.powi(3) - 4.0 * a * a + 3.0 * a)
    };
    for _ in 0..20 {
        let r = bessel_ratio(k);
        let step = (r - a) / (1.0 - r / k - r * r);
        let next = if k - step > 0.0 { k - step } else { 0.5 * k };
        if (next - k).abs() <= 1e-14 * k {
            return next;
        }
        k = next;
    }
    k
}

/// ⟨cos θ_P⟩ at β on a torus of `volume` plaquettes:
/// Σ_n h_n^{V−1} (h_{n−1} + h_{n+1})/2 / Σ_n h_n^V (∂_β h_n = (h_{n−1} + h_{n+1})/2).
pub fn plaquette(beta: f64, volume: usize) -> f64 {
    let r = ratios(beta);
    let v = volume as i32;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 1..r.len() - 1 {
        num += r[i][0].powi(v - 1) * 0.5 * (r[i - 1][0] + r[i + 1][0]);
        den += r[i][0].powi(v);
    }
    num / den
}

/// χ_t = ⟨Q²⟩/V at β on a torus of `volume` plaquettes.
pub fn topological_susceptibility(beta: f64, volume: usize) -> f64 {
    let r = ratios(beta);
    let v = volume as f64;
    let vi = volume as i32;
    let (mut d2, mut z) = (0.0, 0.0);
    for [h, dh, ddh] in r {
        d2 += v * (v - 1.0) * h.powi(vi - 2) * dh * dh + v * h.powi(vi - 1) * ddh;
        z += h.powi(vi);
    }
    -d2 / (4.0 * PI * PI * z) / v
}

/// P(Q) for |Q| ≤ q_max: the density of the sum of V independent plaquette angles at 2πQ,
/// (1/π) ∫_0^∞ ĥ(k)^V cos(2πQk) dk with ĥ = h/h_0, normalised over the Q kept.
pub fn charge_distribution(beta: f64, volume: usize, q_max: usize) -> Vec<f64> {
    // ĥ(k)^V is below 1e−20 beyond the first integer n where (I_n/I_0)^V is (it decays
    // with k); the grid of 2000 points per unit resolves cos(2πQk) for Q ≤ 30.
    let r = ratios(beta);
    let first_small = (0..=N_MAX).find(|&n| r[(N_MAX + n) as usize][0].powi(volume as i32) < 1e-20);
    let k_max = first_small.unwrap_or(N_MAX).max(3) as f64;
    let n = 2000 * k_max as usize;
    let step = k_max / n as f64;
    let h0 = h_and_derivatives(beta, 0.0)[0];
    let hv: Vec<f64> =
        (0..=n).map(|i| (h_and_derivatives(beta, i as f64 * step)[0] / h0).powi(volume as i32)).collect();
    let mut p: Vec<f64> = (0..=q_max)
        .map(|q| {
            debug_assert!(q <= 30, "grid too coarse for Q = {q}");
            let mut s = 0.0;
            for (i, x) in hv.iter().enumerate() {
                s += simpson_weight(i, n) * x * (2.0 * PI * q as f64 * i as f64 * step).cos();
            }
            s * step / 3.0
        })
        .collect();
    let total = p[0] + 2.0 * p[1..].iter().sum::<f64>();
    p.iter_mut().for_each(|x| *x /= total);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values the issue quotes for orientation, and the β → ∞ limit ⟨a²⟩/4π² ≈ 1/(4π²β).
    /// I_1/I_0 against the integral definition, and the inverse.
    #[test]
    fn bessel_ratio_matches_quadrature_and_inverts() {
        for beta in [1e-6, 0.01, 0.5, 1.0, 3.0, 7.0, 40.0, 500.0] {
            let h = h_and_derivatives(beta, 0.0)[0];
            let h1 = h_and_derivatives(beta, 1.0)[0];
            assert!((bessel_ratio(beta) - h1 / h).abs() < 1e-12, "β = {beta}");
            assert!((inverse_bessel_ratio(bessel_ratio(beta)) / beta - 1.0).abs() < 1e-9, "β = {beta}");
        }
        assert_eq!(bessel_ratio(0.0), 0.0);
        assert_eq!(inverse_bessel_ratio(0.0), 0.0);
    }

    #[test]
    fn reproduces_the_reference_values() {
        for (beta, l, plaq, chi) in
            [(1.0, 8, 0.446390, 0.04064), (3.0, 16, 0.809985, 0.011061), (7.0, 16, 0.925532, 0.0039313)]
        {
            let v = l * l;
            let p = plaquette(beta, v);
            let c = topological_susceptibility(beta, v);
            assert!((p - plaq).abs() < 1e-6, "β = {beta}, L = {l}: plaquette {p} vs {plaq}");
            assert!((c / chi - 1.0).abs() < 1e-4, "β = {beta}, L = {l}: χ_t {c} vs {chi}");
        }
        // Large V: the plaquette is I_1/I_0 (Bessel series at β = 1: 0.4463899658…).
        assert!((plaquette(1.0, 10_000) - 0.446_389_965_8).abs() < 1e-9);
    }

    /// P(Q) is normalised, symmetric by construction, and its second moment is χ_t V.
    #[test]
    fn charge_distribution_matches_the_susceptibility() {
        for (beta, l) in [(1.0, 8usize), (3.0, 16), (7.0, 16)] {
            let v = l * l;
            let p = charge_distribution(beta, v, 12);
            let q2: f64 = p.iter().enumerate().map(|(q, x)| 2.0 * (q * q) as f64 * x).sum();
            let chi = topological_susceptibility(beta, v);
            assert!((q2 / v as f64 / chi - 1.0).abs() < 1e-6, "β = {beta}: ⟨Q²⟩/V {} vs {chi}", q2 / v as f64);
            assert!(p.iter().all(|x| *x > -1e-12));
        }
    }
}
