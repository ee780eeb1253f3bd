//! One φ⁴ site's exact conditional given the sum z of its nearest neighbours:
//! p(φ | z) = e^{g(φ)}/Z(z), g(φ) = −qφ² − λφ⁴ + 2hzφ (S = Σ_x [−2h φ_x Σ_μ φ_{x+μ} + qφ_x²
//! + λφ_x⁴]); the multilevel sampler draws its edge sites from it.
//!
//! Z(z) and ⟨φ⟩_z by the trapezoid rule in u = (φ − φ*)/s about the mode φ* of g, with s
//! the well's width (below): g is concave (g'' ≤ −2q) and entire, so the rule with spacing
//! 1/2 on [−10, 10] is exact to round-off for λ = 0 (its error for a Gaussian is about
//! 2e^{−2π²/h²} = e^{−78}) and below 1e−9 relative otherwise (tested against a brute-force
//! integral). Draws are exact: rejection from the Gaussian envelope
//! e^{−qφ² + 2hzφ} with acceptance e^{−λφ⁴} ≤ 1 (efficient for λ ≪ q, as near the
//! critical line; large λ/q makes it slow, not wrong).

use crate::rng::Stream;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

const U_MAX: f64 = 10.0;
const N_NODES: usize = 41;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SiteConditional {
    pub h: f64,
    pub q: f64,
    pub lambda: f64,
}

impl SiteConditional {
    /// (h, q, λ) of the common polynomial form; q > 0.
    pub fn new((h, q, lambda): (f64, f64, f64)) -> Self {
        debug_assert!(q > 0.0 && lambda >= 0.0);
        SiteConditional { h, q, lambda }
    }

    fn envelope(&self, z: f64) -> (f64, f64) {
        (self.h * z / self.q, (0.5 / self.q).sqrt())
    }

    /// g(φ) = −qφ² − λφ⁴ + 2hzφ.
    pub fn exponent(&self, phi: f64, z: f64) -> f64 {
        let p2 = phi * phi;
        -self.q * p2 - self.lambda * p2 * p2 + 2.0 * self.h * z * phi
    }

    /// The mode of g: the root of g'(φ) = 2hz − 2qφ − 4λφ³, decreasing in φ (Newton from
    /// the envelope's mean, safeguarded by bisection).
    fn mode(&self, z: f64) -> f64 {
        let d = |p: f64| 2.0 * self.h * z - 2.0 * self.q * p - 4.0 * self.lambda * p * p * p;
        let mut phi = self.h * z / self.q;
        // g' at the envelope mean is −4λμ³: the root lies between 0 and μ.
        let (mut lo, mut hi) = if phi > 0.0 { (0.0, phi) } else { (phi, 0.0) };
        for _ in 0..100 {
            let g1 = d(phi);
            if g1 > 0.0 {
                lo = phi;
            } else {
                hi = phi;
            }
            let next = phi + g1 / (2.0 * self.q + 12.0 * self.lambda * phi * phi);
            phi = if next > lo && next < hi { next } else { 0.5 * (lo + hi) };
            if (hi - lo).abs() < 1e-15 * (1.0 + phi.abs()) || g1 == 0.0 {
                break;
            }
        }
        phi
    }

    /// (log Z(z), ⟨φ⟩_z).
    pub fn log_z_and_mean(&self, z: f64) -> (f64, f64) {
        let m = self.mode(z);
        // The width s where the curvature grown over s matches 1/s²: 12λs⁴ + c s² = 1 with
        // c = −g''(φ*); 1/√c for λ → 0, the quartic well's λ^{−1/4} scale where c is small.
        let c = 2.0 * self.q + 12.0 * self.lambda * m * m;
        let s = if self.lambda > 0.0 {
            ((-c + (c * c + 48.0 * self.lambda).sqrt()) / (24.0 * self.lambda)).sqrt()
        } else {
            1.0 / c.sqrt()
        };
        let g0 = self.exponent(m, z);
        let du = 2.0 * U_MAX / (N_NODES - 1) as f64;
        let (mut sum, mut first) = (0.0, 0.0);
        for i in 0..N_NODES {
            let phi = m + s * (-U_MAX + du * i as f64);
            let w = (self.exponent(phi, z) - g0).exp();
            sum += w;
            first += w * phi;
        }
        (g0 + (s * du * sum).ln(), first / sum)
    }

    /// log p(φ | z).
    pub fn log_density(&self, phi: f64, z: f64) -> f64 {
        self.exponent(phi, z) - self.log_z_and_mean(z).0
    }

    /// An exact draw from p(· | z).
    pub fn sample(&self, z: f64, rng: &mut Stream) -> f64 {
        let (mu, s) = self.envelope(z);
        loop {
            let u: f64 = StandardNormal.sample(rng);
            let phi = mu + s * u;
            let p2 = phi * phi;
            let accept: f64 = rng.random();
            if accept < (-self.lambda * p2 * p2).exp() {
                return phi;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Z and ⟨φ⟩ by a brute-force Riemann sum over a wide, fine grid.
    fn brute(c: &SiteConditional, z: f64) -> (f64, f64) {
        let (mut sum, mut first, dphi) = (0.0, 0.0, 1e-4);
        let mut phi = -12.0;
        while phi < 12.0 {
            let w = c.exponent(phi, z).exp();
            sum += w * dphi;
            first += w * phi * dphi;
            phi += dphi;
        }
        (sum.ln(), first / sum)
    }

    #[test]
    fn normalisation_and_mean_match_a_brute_force_integral() {
        for (h, q, lambda) in [(0.27, 1.0 - 2.0 * 0.022, 0.022), (0.3, 0.2, 0.8), (0.2, 1.0, 0.0)] {
            let c = SiteConditional::new((h, q, lambda));
            for z in [-6.0, -1.3, 0.0, 0.7, 4.0] {
                let (lz, m) = c.log_z_and_mean(z);
                let (lz_b, m_b) = brute(&c, z);
                assert!((lz - lz_b).abs() < 1e-7, "log Z({z}) {lz} vs {lz_b} at {:?}", (h, q, lambda));
                assert!((m - m_b).abs() < 1e-7, "<phi>({z}) {m} vs {m_b}");
            }
        }
    }

    #[test]
    fn draws_have_the_conditional_mean_and_second_moment() {
        let c = SiteConditional::new((0.3, 0.2, 0.8));
        let z = 1.1;
        let mut rng = crate::rng::stream(4, crate::rng::Domain::Misc, 0);
        let n = 200_000;
        let x: Vec<f64> = (0..n).map(|_| c.sample(z, &mut rng)).collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        let m2 = x.iter().map(|v| v * v).sum::<f64>() / n as f64;
        let (_, exact_mean) = c.log_z_and_mean(z);
        // ⟨φ²⟩ by the same brute-force sum.
        let (mut s0, mut s2, mut phi) = (0.0, 0.0, -12.0);
        while phi < 12.0 {
            let w = c.exponent(phi, z).exp();
            (s0, s2, phi) = (s0 + w, s2 + w * phi * phi, phi + 1e-4);
        }
        let exact_m2 = s2 / s0;
        let sd = ((exact_m2 - exact_mean * exact_mean) / n as f64).sqrt();
        assert!((mean - exact_mean).abs() < 4.0 * sd, "mean {mean} vs {exact_mean} (sd {sd})");
        assert!((m2 - exact_m2).abs() < 4.0 * 2.0 * sd * exact_m2.sqrt(), "m2 {m2} vs {exact_m2}");
    }
}
