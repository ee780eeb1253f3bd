//! The physics prior of U(1) diffusion: the noised plaquettes taken as independent von
//! Mises angles, S_σ = −β_σ Σ_P cos θ_P.
//!
//! Each plaquette angle carries e^{β cos θ_P} (independent on the torus up to one global
//! constraint); the link noise adds N(0, 4σ²) to it (four links), which multiplies its
//! first circular moment A(β) = I_1(β)/I_0(β) by e^{−2σ²}. β_σ is the von Mises
//! concentration with that moment: A(β_σ) = A(β) e^{−2σ²}. So β_σ = β at σ = 0 (the score
//! is the exact force −∂S/∂θ) and β_σ → 0 as σ → ∞ (the uniform measure, whose score is
//! zero): exact at both ends, like φ⁴'s prior; the network learns what lies between.

use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::u1::projection::{GaugeProjector, ProjectorWork};
use crate::lattice::Lattice;
use crate::theory::manifold::{wrap_angle, wrapped_gaussian_score};
use crate::theory::u1_exact::{bessel_ratio, inverse_bessel_ratio};
use crate::theory::{Action, U1};
use std::sync::Arc;

#[derive(Clone)]
pub struct GaugePrior {
    pub lattice: Lattice,
    /// The coupling the prior is exact for at σ = 0.
    pub beta: f64,
    /// Onto the directions a gauge-invariant score can take (the denoising target is
    /// projected, and the network's share of the score).
    pub projector: Arc<GaugeProjector>,
}

impl GaugePrior {
    pub fn new(lattice: Lattice, beta: f64) -> Self {
        GaugePrior { lattice, beta, projector: Arc::new(GaugeProjector::new(lattice)) }
    }

    /// β_σ: A(β_σ) = A(β) e^{−2σ²}.
    pub fn beta_at(&self, sigma: f64) -> f64 {
        noised_beta(self.beta, sigma)
    }

    /// The surrogate action S_σ(θ) = −β_σ Σ_P cos θ_P.
    pub fn action(&self, theta: &[f64], sigma: f64) -> f64 {
        U1::new(self.lattice, self.beta_at(sigma)).action(theta)
    }

    /// out = −∂S_σ/∂θ, the prior's score.
    pub fn score(&self, theta: &[f64], sigma: f64, out: &mut [f64]) {
        prior_score(self.lattice, self.beta, theta, sigma, out);
    }

    /// For clean links θ_0, unit noise z and level σ: the noised links θ_σ = wrap(θ_0 + σz)
    /// and the loss offset e = σ (s_prior(θ_σ) − P t) against the projected denoising
    /// target P t, t = ∂/∂θ_σ log K_σ(θ_σ | θ_0) the wrapped Gaussian's score (`objective`
    /// and `projection` docs; s_prior is in the range of P already).
    pub fn denoising_inputs(
        &self,
        (theta0, z): (&[f64], &[f64]),
        sigma: f64,
        theta: &mut [f64],
        e: &mut [f64],
        ws: &mut ProjectorWork,
    ) {
        for ((t, t0), z) in theta.iter_mut().zip(theta0).zip(z) {
            *t = wrap_angle(t0 + sigma * z);
        }
        self.score(theta, sigma, e);
        for ((e, t), t0) in e.iter_mut().zip(theta.iter()).zip(theta0) {
            *e = sigma * (*e - wrapped_gaussian_score(wrap_angle(t - t0), sigma));
        }
        self.projector.project(e, ws);
    }
}

/// β_σ of the module docs: A(β_σ) = A(β) e^{−2σ²}.
pub fn noised_beta(beta: f64, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return beta;
    }
    inverse_bessel_ratio(bessel_ratio(beta) * (-2.0 * sigma * sigma).exp())
}

/// out = −∂S_σ/∂θ of the prior exact for `beta` at σ = 0 (`GaugePrior::score` without
/// building its projector).
pub fn prior_score(lattice: Lattice, beta: f64, theta: &[f64], sigma: f64, out: &mut [f64]) {
    U1::new(lattice, noised_beta(beta, sigma)).deriv(theta, out);
    out.iter_mut().for_each(|o| *o = -*o);
}

/// The default noise range of U(1) training: from `sigma_min` to σ = 3, where every
/// plaquette's first circular moment is down by e^{−18} (the noised ensemble is uniform
/// to 10⁻⁸, which the sampler's uniform start then matches).
pub fn default_schedule(sigma_min: f64, sigma_max: f64) -> SigmaSchedule {
    let sigma_max = if sigma_max > 0.0 { sigma_max } else { 3.0 };
    SigmaSchedule { sigma_min, sigma_max, t_eps: 1e-5 }
}

/// The per-link width below which the prior is nearly exact: half the RMS plaquette angle
/// of the data (four links share a plaquette's fluctuation), the network's σ_data.
pub fn link_scale(lat: Lattice, configs: &[f32]) -> f64 {
    let n = 2 * lat.volume();
    let u = U1::new(lat, 1.0);
    let (mut s2, mut count) = (0.0, 0usize);
    for c in configs.chunks(n) {
        let t: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        for a in u.plaquette_angles(&t) {
            s2 += wrap_angle(a).powi(2);
            count += 1;
        }
    }
    if count == 0 || s2 == 0.0 {
        return 1.0;
    }
    0.5 * (s2 / count as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn beta_sigma_is_exact_at_both_ends_and_decreasing() {
        let p = GaugePrior::new(Lattice::new(4, 4), 3.0);
        assert!((p.beta_at(1e-9) - 3.0).abs() < 1e-7);
        assert!(p.beta_at(3.0) < 1e-7);
        let b: Vec<f64> = [0.01, 0.1, 0.3, 1.0].iter().map(|&s| p.beta_at(s)).collect();
        assert!(b.windows(2).all(|w| w[1] < w[0]), "{b:?}");
        // A(β_σ) = A(β) e^{−2σ²}.
        assert!((bessel_ratio(b[2]) - bessel_ratio(3.0) * (-0.18f64).exp()).abs() < 1e-10);
    }

    /// The prior's score is minus the gradient of its action (central differences).
    #[test]
    fn score_is_minus_the_action_gradient() {
        let lat = Lattice::new(4, 4);
        let p = GaugePrior::new(lat, 2.0);
        let mut rng = crate::rng::stream(5, crate::rng::Domain::Misc, 1);
        let theta: Vec<f64> = (0..32).map(|_| rng.random_range(-3.0..3.0)).collect();
        let mut s = vec![0.0; 32];
        p.score(&theta, 0.4, &mut s);
        for i in [0, 7, 16, 31] {
            let (mut a, mut b) = (theta.clone(), theta.clone());
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let fd = -(p.action(&a, 0.4) - p.action(&b, 0.4)) / 2e-6;
            assert!((s[i] - fd).abs() < 1e-6, "{i}: {} vs {fd}", s[i]);
        }
    }

    /// With σ small, the offset is P z plus the prior's σ-scaled force: plain DSM's residual
    /// at zero network output, projected, the wrap ignored.
    #[test]
    fn denoising_offset_is_plain_dsm_at_small_sigma() {
        let lat = Lattice::new(4, 4);
        let p = GaugePrior::new(lat, 1.0);
        let mut rng = crate::rng::stream(9, crate::rng::Domain::Misc, 2);
        let t0: Vec<f64> = (0..32).map(|_| rng.random_range(-3.0..3.0)).collect();
        let z: Vec<f64> = (0..32).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (mut t, mut e) = (vec![0.0; 32], vec![0.0; 32]);
        let sigma = 1e-3;
        let mut ws = p.projector.work();
        p.denoising_inputs((&t0, &z), sigma, &mut t, &mut e, &mut ws);
        let mut pz = z.clone();
        p.projector.project(&mut pz, &mut ws);
        for i in 0..32 {
            assert!((e[i] - pz[i]).abs() < 1e-2, "{i}: {} vs {}", e[i], pz[i]);
        }
    }
}
