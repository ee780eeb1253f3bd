//! Score forms: how the network's raw output F_θ becomes a score, and the denoising target
//! each form trains against.
//!
//! * `plain`: s = F_θ/σ, trained by plain DSM (target −z/σ). No knowledge of the action.
//! * `physics` (default): s = s_prior(φ, σ) + (a(σ)/σ) F_θ, with the physics prior of
//!   [`crate::diffusion::phi4::prior`] (exact at σ → 0 and σ → ∞) and the network's share
//!   a(σ) = (σ²/(σ_data² + σ²))^{3/2}. The prior's error and the exact score's correction
//!   are both O(σ²) at small σ, and a(σ)/σ = O(σ²) there, so the network can only correct
//!   the prior at the rate at which it needs correcting: the score at σ_min is −∂S/∂φ up to
//!   O(σ_min²), whatever the network learnt. At large σ, a → 1 as in the plain form. The
//!   target is the reduced-variance combination of [`PhysicsPrior::denoising_offset`].
//! * `action`: the network is a scalar action S_θ(c_in φ, σ) (`nn::action`) and F_θ =
//!   −∂S_θ/∂x its input gradient, so s = −∂S_θ/∂φ = c_in F_θ, i.e. a(σ) = σ c_in(σ), trained
//!   by plain DSM. No prior is added: S_θ alone is then the learnt action, so that
//!   `fit-action` reads couplings from it without the training theory's own couplings
//!   entering through the prior (which would make recovering them circular).
//! * `physics` on U(1) link angles (`Gauge`): s = s_prior(θ, σ) + r (a(σ)/σ) F_θ with the
//!   gauge prior of [`crate::diffusion::u1::prior`], the network fed the plaquettes' cos/sin
//!   ([`ScoreParts::network_input`]) and r = β/β_train (β-conditioning: 1 at the training
//!   coupling). The target is the wrapped Gaussian kernel's score.

use crate::diffusion::phi4::prior::PhysicsPrior;
use crate::diffusion::u1::GaugePrior;
use crate::lattice::Lattice;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Named in the options, so config's (plain data).
pub use crate::config::ScoreForm;

/// A score form with what it needs on one lattice.
pub enum ScoreParts {
    Plain,
    Physics {
        prior: std::sync::Arc<PhysicsPrior>,
        sigma_data: f64,
    },
    Action {
        sigma_data: f64,
    },
    /// The physics form on U(1) links; `net_scale` multiplies the network's share
    /// (β-conditioning, module docs).
    Gauge {
        prior: GaugePrior,
        sigma_data: f64,
        net_scale: f64,
    },
}

impl ScoreParts {
    /// a(σ): the network's share of σ·s.
    pub fn output_scale(&self, sigma: f64) -> f64 {
        match self {
            ScoreParts::Plain => 1.0,
            ScoreParts::Action { sigma_data } => sigma * crate::diffusion::objective::c_in(*sigma_data, sigma),
            ScoreParts::Physics { sigma_data, .. } | ScoreParts::Gauge { sigma_data, .. } => {
                let s2 = sigma * sigma;
                (s2 / (sigma_data * sigma_data + s2)).powf(1.5)
            }
        }
    }

    /// The loss inputs for clean configurations φ_0, unit noise z and levels σ (f32, as the
    /// network engine takes them): network inputs φ_σ = φ_0 + σ z, output scales a_b and
    /// offsets e_b (see `objective`).
    pub fn training_inputs(&self, phi0: &[f32], z: &[f32], sigma: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let prior = match self {
            ScoreParts::Plain => return crate::diffusion::objective::plain_dsm_inputs(phi0, z, sigma),
            ScoreParts::Action { .. } => {
                let (x, _, e) = crate::diffusion::objective::plain_dsm_inputs(phi0, z, sigma);
                let a = sigma.iter().map(|&s| self.output_scale(s as f64) as f32).collect();
                return (x, a, e);
            }
            ScoreParts::Physics { prior, .. } => prior,
            ScoreParts::Gauge { prior, .. } => return self.gauge_training_inputs(prior, phi0, z, sigma),
        };
        let v = prior.lattice().volume();
        assert_eq!(phi0.len(), sigma.len() * v, "training inputs: phi0 is not [B, {}]", prior.lattice());
        let mut x = vec![0.0f32; phi0.len()];
        let mut e = vec![0.0f32; phi0.len()];
        x.par_chunks_mut(v)
            .zip(e.par_chunks_mut(v))
            .zip(phi0.par_chunks(v).zip(z.par_chunks(v)))
            .zip(sigma.par_iter())
            .for_each_init(
                || (prior.work(), vec![0.0f64; 4 * v]),
                |(ws, buf), (((x, e), (p0, zz)), &s)| {
                    let s = s as f64;
                    let (p64, rest) = buf.split_at_mut(v);
                    let (z64, rest) = rest.split_at_mut(v);
                    let (x64, e64) = rest.split_at_mut(v);
                    for i in 0..v {
                        p64[i] = p0[i] as f64;
                        z64[i] = zz[i] as f64;
                        x64[i] = p64[i] + s * z64[i];
                    }
                    prior.denoising_offset(x64, p64, z64, s, e64, ws);
                    x.iter_mut().zip(x64.iter()).for_each(|(d, s)| *d = *s as f32);
                    e.iter_mut().zip(e64.iter()).for_each(|(d, s)| *d = *s as f32);
                },
            );
        let a = sigma.iter().map(|&s| self.output_scale(s as f64) as f32).collect();
        (x, a, e)
    }

    /// The U(1) loss inputs: the network sees the plaquettes of θ_σ = wrap(θ_0 + σz).
    fn gauge_training_inputs(
        &self,
        prior: &GaugePrior,
        theta0: &[f32],
        z: &[f32],
        sigma: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = 2 * prior.lattice.volume();
        assert_eq!(theta0.len(), sigma.len() * n, "training inputs: links are not [B, 2, {}]", prior.lattice);
        let mut x = vec![0.0f32; theta0.len()];
        let mut e = vec![0.0f32; theta0.len()];
        x.par_chunks_mut(n)
            .zip(e.par_chunks_mut(n))
            .zip(theta0.par_chunks(n).zip(z.par_chunks(n)))
            .zip(sigma.par_iter())
            .for_each_init(
                || (vec![0.0f64; 4 * n], prior.projector.work()),
                |(buf, ws), (((x, e), (t0, zz)), &s)| {
                    let (t064, rest) = buf.split_at_mut(n);
                    let (z64, rest) = rest.split_at_mut(n);
                    let (t64, e64) = rest.split_at_mut(n);
                    t064.iter_mut().zip(t0).for_each(|(d, s)| *d = *s as f64);
                    z64.iter_mut().zip(zz).for_each(|(d, s)| *d = *s as f64);
                    prior.denoising_inputs((t064, z64), s as f64, t64, e64, ws);
                    crate::diffusion::u1::features::plaquette_features(prior.lattice, t64, x);
                    e.iter_mut().zip(e64.iter()).for_each(|(d, s)| *d = *s as f32);
                },
            );
        let a = sigma.iter().map(|&s| self.output_scale(s as f64) as f32).collect();
        (x, a, e)
    }

    /// What the network is fed for fields `phi` (f32): the field itself (scaled by the
    /// objective), or for U(1) links the plaquettes' cos/sin.
    pub fn network_input(&self, phi: &[f64]) -> Vec<f32> {
        match self {
            ScoreParts::Gauge { prior, .. } => crate::diffusion::u1::features::batch_features(prior.lattice, phi),
            _ => phi.iter().map(|&x| x as f32).collect(),
        }
    }

    /// out = s(φ, σ) from the network's raw output F (batch [B, L_t, L_x], or [B, 2, L_t, L_x]
    /// for links).
    pub fn compose(&self, phi: &[f64], sigma: &[f64], f: &[f32], out: &mut [f64]) {
        let v = phi.len() / sigma.len().max(1);
        let mut net_scale = 1.0;
        match self {
            ScoreParts::Physics { prior, .. } => prior.score_batch(phi, sigma, out),
            ScoreParts::Gauge { prior, net_scale: r, .. } => {
                net_scale = *r;
                out.par_chunks_mut(v).zip(phi.par_chunks(v)).zip(sigma.par_iter()).for_each(|((o, p), &s)| {
                    prior.score(p, s, o);
                });
            }
            ScoreParts::Plain | ScoreParts::Action { .. } => out.iter_mut().for_each(|o| *o = 0.0),
        }
        if let ScoreParts::Gauge { prior, .. } = self {
            // The network's share, projected (`gauge::projection`).
            out.par_chunks_mut(v).zip(f.par_chunks(v)).zip(sigma.par_iter()).for_each_init(
                || (prior.projector.work(), vec![0.0; v]),
                |(ws, share), ((o, f), &s)| {
                    let c = net_scale * self.output_scale(s) / s;
                    share.iter_mut().zip(f).for_each(|(d, f)| *d = c * *f as f64);
                    prior.projector.project(share, ws);
                    o.iter_mut().zip(share.iter()).for_each(|(o, d)| *o += d);
                },
            );
            return;
        }
        out.par_chunks_mut(v).zip(f.par_chunks(v)).zip(sigma.par_iter()).for_each(|((o, f), &s)| {
            let c = self.output_scale(s) / s;
            o.iter_mut().zip(f).for_each(|(o, f)| *o += c * *f as f64);
        });
    }
}

/// A score form's parts per lattice, built at first use (sampling on several lattices, or
/// from several threads, shares them).
#[derive(Default)]
pub struct PartsCache(Mutex<HashMap<Lattice, Arc<ScoreParts>>>);

impl PartsCache {
    pub fn get(
        &self,
        lat: Lattice,
        build: impl FnOnce() -> Result<ScoreParts, String>,
    ) -> Result<Arc<ScoreParts>, String> {
        let mut cache = self.0.lock().map_err(|_| "a previous score evaluation panicked".to_string())?;
        if let Some(p) = cache.get(&lat) {
            return Ok(p.clone());
        }
        let p = Arc::new(build()?);
        cache.insert(lat, p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_names_and_file_attribute() {
        assert_eq!(ScoreForm::parse("physics").unwrap(), ScoreForm::Physics);
        assert_eq!(ScoreForm::parse(" plain").unwrap(), ScoreForm::Plain);
        assert_eq!(ScoreForm::parse("action").unwrap(), ScoreForm::Action);
        assert_eq!(ScoreForm::Action.name(), "action");
        assert!(ScoreForm::parse("energy").unwrap_err().contains("'energy'"));
        assert_eq!(ScoreForm::from_attr(None).unwrap(), ScoreForm::Plain);
        let e = ScoreForm::from_attr(Some("flow")).unwrap_err();
        assert!(e.contains("'flow'") && e.contains("unknown"), "{e}");
        assert_eq!(ScoreForm::default(), ScoreForm::Physics);
    }

    #[test]
    fn physics_output_scale_vanishes_like_sigma_cubed() {
        let lat = crate::lattice::Lattice::new(4, 4);
        let th = crate::theory::Phi4::new(lat, crate::theory::Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
        let prior = PhysicsPrior::new(th, vec![1.0; 16]).unwrap();
        let p = ScoreParts::Physics { prior: std::sync::Arc::new(prior), sigma_data: 1.0 };
        let r = p.output_scale(0.01) / p.output_scale(0.02);
        assert!((r - 0.125).abs() < 1e-3, "{r}");
        assert!((p.output_scale(1e4) - 1.0).abs() < 1e-6);
        assert_eq!(ScoreParts::Plain.output_scale(0.01), 1.0);
    }

    /// The action form's score is c_in(σ) F = −∂S/∂φ for F = −∂S/∂x, x = c_in φ; its
    /// residual a F + e is σ s + z, plain DSM's.
    #[test]
    fn action_score_is_input_gradient_times_c_in() {
        let p = ScoreParts::Action { sigma_data: 0.8 };
        let f: Vec<f32> = (0..8).map(|i| 0.3 * i as f32 - 1.0).collect();
        let (phi, sigma) = (vec![0.7; 8], [0.5, 1.5]);
        let mut s = vec![f64::NAN; 8];
        p.compose(&phi, &sigma, &f, &mut s);
        for i in 0..8 {
            let c = 1.0 / (0.64 + sigma[i / 4] * sigma[i / 4]).sqrt();
            let want = c * f[i] as f64;
            assert!((s[i] - want).abs() < 1e-7 * (1.0 + want.abs()), "{i}: {} vs {want}", s[i]);
        }
        let (x, a, e) = p.training_inputs(&[0.5; 8], &[0.25; 8], &[0.5f32, 1.5]);
        assert!((x[0] - 0.625).abs() < 1e-7 && (x[7] - 0.875).abs() < 1e-7 && e == vec![0.25; 8]);
        assert!((a[1] as f64 - 1.5 / (0.64f64 + 2.25).sqrt()).abs() < 1e-6);
    }

    /// The plain form's score is the network output over σ, per configuration.
    #[test]
    fn plain_score_is_output_over_sigma() {
        let f: Vec<f32> = (0..8).map(|i| 0.3 * i as f32 - 1.0).collect();
        let (phi, sigma) = (vec![0.7; 8], [0.5, 1.5]);
        let mut s = vec![f64::NAN; 8];
        ScoreParts::Plain.compose(&phi, &sigma, &f, &mut s);
        for i in 0..8 {
            let want = f[i] as f64 / sigma[i / 4];
            assert!((s[i] - want).abs() < 1e-12 * (1.0 + want.abs()), "{i}: {} vs {want}", s[i]);
        }
    }
}
