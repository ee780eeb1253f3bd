//! Exact results of 2-D SU(2) lattice gauge theory (Wilson action) on the periodic
//! L_t × L_x torus of V plaquettes, by the character expansion, for the tests, `analyze`
//! and the study tables.
//!
//! e^{β ½ tr U} = Σ_j d_j c_j(β) χ_j(U), d_j = 2j + 1, c_j = 2 I_{2j+1}(β)/β, so that
//!   Z = Σ_j c_j^V,   ⟨½ tr U_P⟩ = V⁻¹ ∂_β ln Z,
//! and a contractible loop enclosing A plaquettes has
//!   ⟨½ tr W⟩ = Σ_j c_j^{V−A} Σ_{k = j ± ½} (d_k/d_j) c_k^A / (2Z)
//! (A = 1 is the plaquette: ∂_β c_j = Σ_{k=j±½} d_k c_k / (2 d_j)). Two Polyakov loops at
//! distance r cut the torus into annuli of L_t r and L_t (L_x − r) plaquettes:
//!   ⟨½ tr P(0) ½ tr P(r)⟩ = Σ_j Σ_{k = j ± ½} c_j^{L_t r} c_k^{L_t (L_x − r)} / (4Z).
//! Everything is computed with r_j = c_j/c_0 = I_{2j+1}/I_1 (c_0^V cancels), indexed by
//! n = 2j + 1 = 1, 2, 3, ….

/// e^{−x} I_n(x) for integer n ≥ 0 and x ≥ 0, by the power series
/// I_n(x) = Σ_k (x/2)^{2k+n} / (k! (k+n)!): every term is positive, so the sum is exact to
/// rounding (~1e−15 relative) for any x; the leading term is formed in logarithms so that
/// nothing overflows for x up to ~700 and n up to thousands.
pub fn bessel_i_scaled(n: usize, x: f64) -> f64 {
    if x == 0.0 {
        return if n == 0 { 1.0 } else { 0.0 };
    }
    let h = 0.5 * x;
    let ln_fact_n: f64 = (1..=n).map(|i| (i as f64).ln()).sum();
    let mut term = (n as f64 * h.ln() - ln_fact_n - x).exp();
    let mut sum = term;
    let mut k = 1usize;
    // The terms grow until k ≈ h and then fall faster than geometrically.
    loop {
        term *= h * h / (k as f64 * (k + n) as f64);
        sum += term;
        if (k as f64 > h && term < 1e-17 * sum) || k > 100_000 {
            break;
        }
        k += 1;
    }
    sum
}

/// I_n(x) (unscaled; overflows beyond x ≈ 700).
pub fn bessel_i(n: usize, x: f64) -> f64 {
    bessel_i_scaled(n, x) * x.exp()
}

/// r_n = I_n(β)/I_1(β) for n = 1, 2, … (index n − 1) until r_n < 1e−40: every neglected
/// term of the sums below is smaller than the kept ones by at least that factor to a power
/// ≥ 1.
fn ratios(beta: f64) -> Vec<f64> {
    assert!(beta > 0.0, "su2_exact: beta must be positive, got {beta}");
    let i1 = bessel_i_scaled(1, beta);
    let mut r = Vec::new();
    for n in 1.. {
        let x = bessel_i_scaled(n, beta) / i1;
        r.push(x);
        if x < 1e-40 || n > 20_000 {
            break;
        }
    }
    r
}

/// x^p for p ≥ 0, with 0^0 = 1.
fn pow(x: f64, p: usize) -> f64 {
    x.powi(p as i32)
}

/// Z / c_0^V.
fn partition(r: &[f64], v: usize) -> f64 {
    r.iter().map(|&x| pow(x, v)).sum()
}

/// ⟨½ tr W⟩ of a contractible loop of `area` plaquettes at β on a torus of `volume`
/// plaquettes (0 < area < volume; area 1 is the plaquette).
pub fn wilson_loop(beta: f64, volume: usize, area: usize) -> f64 {
    assert!(area < volume, "a contractible loop of area {area} on a torus of {volume} plaquettes");
    let r = ratios(beta);
    let mut num = 0.0;
    for (i, &rj) in r.iter().enumerate() {
        let nj = (i + 1) as f64;
        let outside = pow(rj, volume - area);
        // k = j − ½ (n − 1) and k = j + ½ (n + 1); d = n.
        for (k, nk) in [(i.wrapping_sub(1), nj - 1.0), (i + 1, nj + 1.0)] {
            if let Some(&rk) = r.get(k) {
                num += outside * (nk / nj) * pow(rk, area);
            }
        }
    }
    num / (2.0 * partition(&r, volume))
}

/// ⟨½ tr U_P⟩ at β on a torus of `volume` plaquettes.
pub fn plaquette(beta: f64, volume: usize) -> f64 {
    wilson_loop(beta, volume, 1)
}

/// The infinite-volume plaquette I_2(β)/I_1(β) (W of area A is its A-th power there, so the
/// string tension is −ln of it).
pub fn plaquette_infinite_volume(beta: f64) -> f64 {
    bessel_i_scaled(2, beta) / bessel_i_scaled(1, beta)
}

/// ⟨½ tr P(0) ½ tr P(r)⟩ on an L_t × L_x torus, 0 ≤ r ≤ L_x.
pub fn polyakov_correlator(beta: f64, lt: usize, lx: usize, r: usize) -> f64 {
    let rr = ratios(beta);
    let (a1, a2) = (lt * r, lt * (lx - r));
    let mut num = 0.0;
    for (i, &rj) in rr.iter().enumerate() {
        for k in [i.wrapping_sub(1), i + 1] {
            if let Some(&rk) = rr.get(k) {
                num += pow(rj, a1) * pow(rk, a2);
            }
        }
    }
    num / (4.0 * partition(&rr, lt * lx))
}

/// The Creutz ratio χ(R, R) = −ln[W(R,R) W(R−1,R−1) / (W(R,R−1) W(R−1,R))] of the exact
/// loops on this torus (R ≥ 2; W(R, 0) = 1); in infinite volume −ln(I_2/I_1) for every R.
pub fn creutz_ratio(beta: f64, volume: usize, r: usize) -> f64 {
    let w = |a: usize| if a == 0 { 1.0 } else { wilson_loop(beta, volume, a) };
    -(w(r * r) * w((r - 1) * (r - 1)) / (w(r * (r - 1)) * w((r - 1) * r))).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of I_n(x), computed independently with mpmath.besseli at 40 digits.
    #[test]
    fn bessel_matches_reference_values() {
        for (n, x, want) in [
            (0usize, 1.0, 1.2660658777520083356),
            (1, 1.0, 0.56515910399248502721),
            (2, 8.0, 327.59583152616476062),
            (1, 8.0, 399.87313678256009822),
            (3, 2.5, 0.47437040877803558955),
            (5, 0.1, 2.6052519298936976131e-9),
            (20, 30.0, 1126985104.4483771427),
            (1, 100.0, 1.0683693903381624812e+42),
            (7, 100.0, 8.3947655455875292167e+41),
        ] {
            let got = bessel_i(n, x);
            assert!((got / want - 1.0).abs() < 1e-14, "I_{n}({x}) = {got}, want {want}");
        }
        assert_eq!(bessel_i_scaled(0, 0.0), 1.0);
        assert_eq!(bessel_i_scaled(3, 0.0), 0.0);
    }

    /// The character coefficients by quadrature over the Haar measure of SU(2),
    /// (2/π) sin²θ dθ with ½ tr U = cos θ and χ_j = sin((2j+1)θ)/sin θ:
    /// d_j c_j = ∫ dU e^{β cos θ} χ_j(θ) with c_j = 2 I_{2j+1}(β)/β.
    #[test]
    fn character_coefficients_match_quadrature() {
        let n_quad = 20_000;
        let h = std::f64::consts::PI / n_quad as f64;
        for beta in [0.5, 2.0, 8.0] {
            for n in 1..=6usize {
                let f =
                    |th: f64| 2.0 / std::f64::consts::PI * th.sin() * (n as f64 * th).sin() * (beta * th.cos()).exp();
                let s: f64 = (0..=n_quad)
                    .map(|i| {
                        f(i as f64 * h)
                            * if i == 0 || i == n_quad {
                                1.0
                            } else if i % 2 == 1 {
                                4.0
                            } else {
                                2.0
                            }
                    })
                    .sum::<f64>()
                    * h
                    / 3.0;
                let want = n as f64 * 2.0 * bessel_i(n, beta) / beta;
                // Absolute: the integrand is O(e^β) and cancels to small values at large n.
                assert!((s - want).abs() < 1e-12 * beta.exp(), "β = {beta}, n = {n}: {s} vs {want}");
            }
        }
    }

    /// The plaquette formula is V⁻¹ ∂_β ln Z (central differences of ln Σ_j c_j^V with the
    /// full c_j), and the finite-volume check: on 4 × 4 at β = 8 the plaquette
    /// differs from I_2/I_1 by 1.06e−3 (mpmath: 0.82030682339767415 vs 0.81924941035562054);
    /// on 16 × 16 the difference is below 1e−15. Values at β = 2, 4, 8 from mpmath.
    #[test]
    fn plaquette_is_the_derivative_of_ln_z_and_feels_the_volume() {
        let ln_z = |beta: f64, v: usize| {
            let r = ratios(beta);
            let c0 = 2.0 * bessel_i(1, beta) / beta;
            v as f64 * c0.ln() + partition(&r, v).ln()
        };
        for (beta, v) in [(2.0, 16usize), (8.0, 16), (4.0, 36), (1.3, 9)] {
            let h = 1e-4;
            let fd = (ln_z(beta + h, v) - ln_z(beta - h, v)) / (2.0 * h * v as f64);
            assert!((plaquette(beta, v) - fd).abs() < 1e-8, "β = {beta}, V = {v}: {} vs {fd}", plaquette(beta, v));
        }
        for (beta, plaq4, w4, plaq16, w16) in [
            (2.0, 0.43312800302083671, 0.035204376779488574, 0.43312742672231176, 0.03519352279111485),
            (4.0, 0.65818507456707319, 0.18899406888036446, 0.65804726735935959, 0.18751169515127691),
            (8.0, 0.82030682339767415, 0.46278606789147197, 0.81924941035562054, 0.45046862708882691),
        ] {
            assert!((plaquette(beta, 16) - plaq4).abs() < 1e-14, "β = {beta}: 4x4 plaquette");
            assert!((wilson_loop(beta, 16, 4) - w4).abs() < 1e-14, "β = {beta}: 4x4 W(2x2)");
            assert!((plaquette(beta, 256) - plaq16).abs() < 1e-14, "β = {beta}: 16x16 plaquette");
            assert!((wilson_loop(beta, 256, 4) - w16).abs() < 1e-14, "β = {beta}: 16x16 W(2x2)");
        }
        let d = plaquette(8.0, 16) - plaquette_infinite_volume(8.0);
        assert!((d - 1.0574e-3).abs() < 1e-6, "{d}");
        assert!((plaquette(8.0, 256) - plaquette_infinite_volume(8.0)).abs() < 1e-15);
        // Large volume: W(A) = (I_2/I_1)^A, Creutz ratios −ln(I_2/I_1).
        let p = plaquette_infinite_volume(2.0);
        assert!((wilson_loop(2.0, 400, 9) / p.powi(9) - 1.0).abs() < 1e-12);
        assert!((creutz_ratio(2.0, 400, 3) + p.ln()).abs() < 1e-12);
    }

    /// Polyakov loops: ⟨(½ tr P)²⟩ at r = 0 is 1/4 + ⟨χ_1(P)⟩/4 ≥ 1/4, the correlator is
    /// symmetric under r → L_x − r, and it decays as (I_2/I_1)^{L_t r}/4 in large volume.
    #[test]
    fn polyakov_correlator_limits() {
        let (lt, lx) = (4, 6);
        let c0 = polyakov_correlator(2.0, lt, lx, 0);
        assert!(c0 >= 0.25 && c0 < 0.3, "{c0}");
        for r in 0..=lx {
            let (a, b) = (polyakov_correlator(2.0, lt, lx, r), polyakov_correlator(2.0, lt, lx, lx - r));
            assert!((a - b).abs() < 1e-15, "r = {r}");
        }
        let p = plaquette_infinite_volume(3.0);
        let c = polyakov_correlator(3.0, 4, 64, 2);
        assert!((c / (0.25 * p.powi(8)) - 1.0).abs() < 1e-9, "{c} vs {}", 0.25 * p.powi(8));
    }
}
