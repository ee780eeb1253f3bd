//! The physics prior of the physics-informed score: the score of a known scalar surrogate
//! action that is exact in both noise limits, so that the network only learns what the
//! action and the two-point function do not already say.
//!
//! With S the theory's action, G(p) the data's two-point function and w(σ) a weight that
//! is 1 at σ = 0 and vanishes at large σ,
//!
//!   S_prior(φ, σ) = ½ φᵀ (G + σ²)⁻¹ φ + w(σ) [S(φ) − ½ φᵀ G⁻¹ φ],
//!   s_prior(φ, σ) = −∇S_prior = −(G + σ²)⁻¹ φ − w(σ) [∂S/∂φ − G⁻¹ φ].
//!
//! * σ → 0: S_prior → S, so s_prior → −∂S/∂φ, the exact score of the un-noised ensemble.
//! * σ → ∞: the interacting part is switched off and s_prior → −(G + σ²)⁻¹ φ, the exact
//!   score of a Gaussian with the data's propagator, which every noised ensemble becomes.
//! * Free theory (λ = 0) with G = K⁻¹ its exact propagator: S = ½ φᵀ G⁻¹ φ, the bracket
//!   vanishes and s_prior = −(G + σ²)⁻¹ φ is the exact score at every σ.
//!
//! w(σ) = (c / (c + σ²))² with c = 1/(2q) = 1/(∂²S/∂φ_x²) at φ = 0 and λ = 0: the variance
//! of one site with its neighbours held fixed, i.e. the scale of the local structure that
//! the noise washes out. The square (rather than the first power) suppresses the quartic
//! force faster, as a convolution does to the quartic term of an effective action; measured
//! in the README's study (`w_power`).
//!
//! S_prior is a known scalar, so it can also serve as an intermediate target of a
//! sequential Monte Carlo sampler; `action` evaluates it.
//!
//! With the data's magnetisations (on the training lattice), the Gaussian's zero mode is
//! replaced by the exact noised marginal K_σ(m) of the magnetisation m = Σφ/V
//! ([`crate::diffusion::phi4::zero_mode`]): writing ½ φᵀ(G + σ²)⁻¹φ = ½ V m²/(G(0) + σ²) + ⊥ (the p ≠ 0 part),
//!
//!   S_prior = K_σ(m) + ⊥_σ + w(σ) [S − K_0(m) − ⊥_0],
//!
//! still S at σ = 0, and at large σ the exact double-peaked law of m times the Gaussian of
//! the other modes. In between, S's own dependence on m enters with weight w only after
//! K_0 (≈ −log p(m)) is subtracted, so the m-marginal stays close to K_σ: the Gaussian form
//! instead let w·S carry the un-noised double well into every σ.

use std::sync::Arc;

use rayon::prelude::*;

use crate::diffusion::phi4::zero_mode::ZeroModeMarginal;
use crate::lattice::fft::{self, Fft2, Fft2Work};
use crate::lattice::Lattice;
use crate::theory::{Action, Phi4};

/// The physics prior of one theory on one lattice.
pub struct PhysicsPrior {
    theory: Phi4,
    fft: Arc<Fft2>,
    /// G(p) on this lattice, indexed n_t L_x + n_x.
    g: Vec<f64>,
    /// c = 1/(2q), the local variance scale of w(σ).
    c_local: f64,
    /// The magnetisation's exact marginal, replacing the Gaussian zero mode when present.
    zero_mode: Option<ZeroModeMarginal>,
}

/// Per-thread scratch of the prior.
pub struct PriorWork {
    pub(super) fft: Fft2Work,
    pub(super) d: Vec<f64>,
    pub(super) power: Vec<f64>,
    /// A third field-sized buffer (the cumulant surrogate's Wiener-filtered field).
    pub(super) mu: Vec<f64>,
}

impl PhysicsPrior {
    /// The prior of `theory` with the data's two-point function `g` on `theory.lattice`.
    pub fn new(theory: Phi4, g: Vec<f64>) -> Result<Self, String> {
        let lat = theory.lattice;
        if g.len() != lat.volume() || !g.iter().all(|x| x.is_finite() && *x > 0.0) {
            return Err(format!("physics prior: no positive two-point function on {lat}"));
        }
        let (_, q, _) = theory.param.coefficients();
        if !(q > 0.0) {
            return Err(format!("physics prior: the site term q = {q} of {} is not positive", theory.param.describe()));
        }
        Ok(PhysicsPrior { theory, fft: fft::plan(lat), g, c_local: 0.5 / q, zero_mode: None })
    }

    /// The prior with the exact noised marginal of the magnetisation in place of the
    /// Gaussian zero mode (module docs). The marginal must be one of this lattice's volume.
    pub fn with_zero_mode(mut self, zero_mode: ZeroModeMarginal) -> Result<Self, String> {
        let lat = self.lattice();
        if zero_mode.volume() != lat.volume() {
            return Err(format!(
                "physics prior: magnetisations of volume {} do not describe {lat} (volume {})",
                zero_mode.volume(),
                lat.volume()
            ));
        }
        self.zero_mode = Some(zero_mode);
        Ok(self)
    }

    pub fn zero_mode(&self) -> Option<&ZeroModeMarginal> {
        self.zero_mode.as_ref()
    }

    pub fn lattice(&self) -> Lattice {
        self.theory.lattice
    }

    pub fn theory(&self) -> &Phi4 {
        &self.theory
    }

    pub fn two_point(&self) -> &[f64] {
        &self.g
    }

    pub fn fft(&self) -> &Fft2 {
        &self.fft
    }

    pub fn work(&self) -> PriorWork {
        let v = self.lattice().volume();
        PriorWork { fft: self.fft.work(), d: vec![0.0; v], power: vec![0.0; v], mu: vec![0.0; v] }
    }

    /// w(σ): the share of the interacting part of the action at noise σ (module docs).
    pub fn weight(&self, sigma: f64) -> f64 {
        let c = self.c_local;
        (c / (c + sigma * sigma)).powi(2)
    }

    /// The momentum-space operator (G + σ²)⁻¹ − w G⁻¹ of the Gaussian part, into `d`.
    fn gaussian_part(&self, sigma: f64, d: &mut [f64]) {
        let (w, s2) = (self.weight(sigma), sigma * sigma);
        for (d, g) in d.iter_mut().zip(&self.g) {
            *d = 1.0 / (g + s2) - w / g;
        }
        if self.zero_mode.is_some() {
            // p = 0 is index 0; K_σ − w K_0 takes its place.
            d[0] = 0.0;
        }
    }

    /// (K_σ(m) − w K_0(m), its derivative in m) for m = mean(φ); zero without a zero mode.
    fn zero_mode_part(&self, phi: &[f64], sigma: f64) -> (f64, f64) {
        let Some(zm) = &self.zero_mode else { return (0.0, 0.0) };
        let m = phi.iter().sum::<f64>() / phi.len() as f64;
        let w = self.weight(sigma);
        let (k_s, dk_s) = zm.potential(m, sigma);
        let (k_0, dk_0) = zm.potential(m, 0.0);
        (k_s - w * k_0, dk_s - w * dk_0)
    }

    /// out = s_prior(φ, σ) for one configuration.
    pub fn score(&self, phi: &[f64], sigma: f64, out: &mut [f64], ws: &mut PriorWork) {
        self.gaussian_part(sigma, &mut ws.d);
        ws.d.iter_mut().for_each(|d| *d = -*d);
        self.fft.apply_diag(&ws.d, phi, out, &mut ws.fft);
        let w = self.weight(sigma);
        if w > 0.0 {
            // ws.d is free again: reuse it for ∂S/∂φ.
            self.theory.deriv(phi, &mut ws.d);
            out.iter_mut().zip(&ws.d).for_each(|(o, f)| *o -= w * f);
        }
        // ∂m/∂φ_x = 1/V: the zero mode's force is uniform.
        let (_, dk) = self.zero_mode_part(phi, sigma);
        if dk != 0.0 {
            let shift = dk / phi.len() as f64;
            out.iter_mut().for_each(|o| *o -= shift);
        }
    }

    /// S_prior(φ, σ) for one configuration.
    pub fn action(&self, phi: &[f64], sigma: f64, ws: &mut PriorWork) -> f64 {
        self.gaussian_part(sigma, &mut ws.d);
        self.fft.power_spectrum(phi, &mut ws.power, &mut ws.fft);
        // φᵀ D φ = (1/V) Σ_p D(p) |φ̃_p|² and power_spectrum gives |φ̃_p|²/V.
        let quad: f64 = ws.d.iter().zip(&ws.power).map(|(d, p)| d * p).sum();
        let w = self.weight(sigma);
        0.5 * quad + if w > 0.0 { w * self.theory.action(phi) } else { 0.0 } + self.zero_mode_part(phi, sigma).0
    }

    /// out[b] = s_prior(φ_b, σ_b) for a batch [B, L_t, L_x].
    pub fn score_batch(&self, phi: &[f64], sigma: &[f64], out: &mut [f64]) {
        let v = self.lattice().volume();
        assert_eq!(phi.len(), sigma.len() * v, "physics prior: phi is not [B, {}]", self.lattice());
        out.par_chunks_mut(v)
            .zip(phi.par_chunks(v))
            .zip(sigma.par_iter())
            .for_each_init(|| self.work(), |ws, ((o, p), &s)| self.score(p, s, o, ws));
    }

    /// The denoising target of the training objective, in the form the network's loss uses.
    ///
    /// By Tweedie's identity for φ_σ = φ_0 + σ z, both −z/σ and −∂S/∂φ(φ_0) have the true
    /// score s_σ(φ_σ) as their conditional mean given φ_σ, and so has any combination
    /// t = −[A z/σ + (1 − A) ∂S/∂φ(φ_0)] with A a fixed linear operator. A(p) = σ²/(G + σ²)
    /// makes t exactly the score for Gaussian data (zero variance); for φ⁴ only the
    /// non-Gaussian part remains noisy. Plain DSM (A = 1) has per-site variance 1/σ² against
    /// a learnable part that is O(1): at σ_min = 0.01 the network cannot see its error.
    ///
    /// Writes e = σ (s_prior(φ_σ, σ) − t) into `e`: the loss is Σ_x (a F + e)² with a F the
    /// network's share of σ·s, and e = 0 means the prior alone is the target.
    pub fn denoising_offset(
        &self,
        phi_sigma: &[f64],
        phi0: &[f64],
        z: &[f64],
        sigma: f64,
        e: &mut [f64],
        ws: &mut PriorWork,
    ) {
        // e = σ s_prior(φ_σ) + z + σ (1 − A)(∂S/∂φ(φ_0) − z/σ), with 1 − A = G/(G + σ²).
        let mut tmp = std::mem::take(&mut ws.power);
        self.theory.deriv(phi0, &mut tmp);
        tmp.iter_mut().zip(z).for_each(|(t, z)| *t -= z / sigma);
        let s2 = sigma * sigma;
        ws.d.iter_mut().zip(&self.g).for_each(|(d, g)| *d = g / (g + s2));
        self.fft.apply_diag_in_place(&ws.d, &mut tmp, &mut ws.fft);
        self.score(phi_sigma, sigma, e, ws);
        for ((e, t), z) in e.iter_mut().zip(&tmp).zip(z) {
            *e = sigma * *e + z + sigma * t;
        }
        ws.power = tmp;
    }
}

/// Shared with the tests of the other priors' actions (`cumulant`, `smc::magnetisation`).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diffusion::phi4::free::FreeScoreModel;
    use crate::diffusion::ScoreModel;
    use crate::theory::Parametrisation;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    pub(crate) fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n).map(|_| StandardNormal.sample(&mut r)).collect()
    }

    pub(crate) fn interacting(lat: Lattice) -> PhysicsPrior {
        let th = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 });
        // Any positive even G will do for the identities below; a free propagator is one.
        let free = FreeScoreModel::parse("free:kappa=0.2").unwrap();
        PhysicsPrior::new(th, free.two_point(lat)).unwrap()
    }

    /// λ = 0 with the exact propagator: the prior is the exact score at every σ.
    #[test]
    fn free_theory_prior_is_the_exact_score_at_every_sigma() {
        for (lat, spec) in [(Lattice::new(6, 8), "free:kappa=0.2"), (Lattice::new(4, 4), "free:m2=0.3")] {
            let free = FreeScoreModel::parse(spec).unwrap();
            let prior = PhysicsPrior::new(Phi4::new(lat, free.param()), free.two_point(lat)).unwrap();
            let v = lat.volume();
            let phi = normals(v, 1);
            for sigma in [0.0, 0.01, 0.3, 1.0, 7.0, 100.0] {
                let (mut a, mut b) = (vec![0.0; v], vec![0.0; v]);
                prior.score(&phi, sigma, &mut a, &mut prior.work());
                free.score(lat, &phi, &[sigma], &mut b).unwrap();
                for x in 0..v {
                    assert!(
                        (a[x] - b[x]).abs() < 1e-10 * (1.0 + b[x].abs()),
                        "{spec} σ {sigma} site {x}: {} vs {}",
                        a[x],
                        b[x]
                    );
                }
            }
        }
    }

    /// σ = 0: −∂S/∂φ of the interacting action; large σ: the Gaussian score.
    #[test]
    fn interacting_prior_limits() {
        let lat = Lattice::new(4, 6);
        let prior = interacting(lat);
        let v = lat.volume();
        let phi = normals(v, 2);
        let (mut s, mut d) = (vec![0.0; v], vec![0.0; v]);
        prior.score(&phi, 0.0, &mut s, &mut prior.work());
        prior.theory().deriv(&phi, &mut d);
        for x in 0..v {
            assert!((s[x] + d[x]).abs() < 1e-10 * (1.0 + d[x].abs()), "site {x}");
        }
        // The interacting part is switched off at the rate w(σ) ∝ σ⁻⁴: ~1e-16 here.
        let sigma = 1e4;
        prior.score(&phi, sigma, &mut s, &mut prior.work());
        let gauss: Vec<f64> = prior.two_point().iter().map(|g| -1.0 / (g + sigma * sigma)).collect();
        let mut e = vec![0.0; v];
        fft::plan(lat).apply_diag(&gauss, &phi, &mut e, &mut fft::plan(lat).work());
        // Relative to the largest entry: single sites may cancel down to FFT round-off.
        let scale = e.iter().map(|e| e.abs()).fold(0.0, f64::max);
        for x in 0..v {
            assert!((s[x] - e[x]).abs() < 1e-8 * scale, "site {x}: {} vs {}", s[x], e[x]);
        }
    }

    /// A prior with the zero-mode marginal of some double-peaked magnetisations.
    fn with_zero_mode(lat: Lattice) -> PhysicsPrior {
        let m: Vec<f64> = normals(64, 9).iter().map(|z| 0.4 + 0.1 * z).collect();
        interacting(lat).with_zero_mode(ZeroModeMarginal::new(&m, lat.volume()).unwrap()).unwrap()
    }

    /// The prior is the gradient of its action (what lets SMC use it as a target), with
    /// and without the zero-mode marginal; at σ = 0 its action is S either way.
    #[test]
    fn prior_score_is_minus_gradient_of_prior_action() {
        let lat = Lattice::new(4, 6);
        let v = lat.volume();
        // A shifted field: the magnetisation sits between the peaks, where K' is large.
        let phi: Vec<f64> = normals(v, 3).iter().map(|x| 0.2 + 1.2 * x).collect();
        for prior in [interacting(lat), with_zero_mode(lat)] {
            let mut ws = prior.work();
            for sigma in [0.05, 0.6, 3.0] {
                let mut s = vec![0.0; v];
                prior.score(&phi, sigma, &mut s, &mut ws);
                let h = 1e-5;
                for x in 0..v {
                    let mut p = phi.clone();
                    p[x] += h;
                    let sp = prior.action(&p, sigma, &mut ws);
                    p[x] -= 2.0 * h;
                    let sm = prior.action(&p, sigma, &mut ws);
                    let fd = -(sp - sm) / (2.0 * h);
                    assert!((fd - s[x]).abs() < 1e-6 * (1.0 + fd.abs()), "σ {sigma} site {x}: fd {fd} vs {}", s[x]);
                }
            }
            let s0 = prior.action(&phi, 0.0, &mut ws);
            assert!((s0 - prior.theory().action(&phi)).abs() < 1e-9 * s0.abs());
        }
    }

    /// At large σ the zero mode's force is the exact marginal's, −K_σ'(m)/V per site (the
    /// Gaussian's p = 0 force would be −V m/(G(0) + σ²) per V: a single peak).
    #[test]
    fn zero_mode_force_is_the_marginal_at_large_sigma() {
        let lat = Lattice::new(4, 6);
        let v = lat.volume();
        let prior = with_zero_mode(lat);
        let phi: Vec<f64> = normals(v, 6).iter().map(|x| 0.3 + x).collect();
        let m = phi.iter().sum::<f64>() / v as f64;
        for sigma in [60.0, 200.0] {
            let mut s = vec![0.0; v];
            prior.score(&phi, sigma, &mut s, &mut prior.work());
            let mean = s.iter().sum::<f64>() / v as f64;
            let want = -prior.zero_mode().unwrap().potential(m, sigma).1 / v as f64;
            // w(σ) ≤ 1e-5 here: the interacting part's share of the mean.
            assert!((mean - want).abs() < 1e-3 * want.abs(), "σ {sigma}: {mean} vs {want}");
        }
        // A zero mode of another volume is refused.
        let zm = ZeroModeMarginal::new(&[0.1, 0.2, 0.3, 0.4].repeat(5), 16).unwrap();
        let e = interacting(lat).with_zero_mode(zm).err().expect("volume mismatch accepted");
        assert!(e.contains("volume 16"), "{e}");
    }

    /// For Gaussian data the combined target is the exact score: the offset e vanishes
    /// identically, for every noise draw (this is what removes the 1/σ² noise).
    #[test]
    fn gaussian_data_gives_zero_denoising_offset() {
        let lat = Lattice::new(6, 4);
        let free = FreeScoreModel::parse("free:kappa=0.22").unwrap();
        let prior = PhysicsPrior::new(Phi4::new(lat, free.param()), free.two_point(lat)).unwrap();
        let v = lat.volume();
        let (phi0, z) = (normals(v, 4), normals(v, 5));
        for sigma in [0.01, 0.5, 20.0] {
            let x: Vec<f64> = phi0.iter().zip(&z).map(|(p, z)| p + sigma * z).collect();
            let mut e = vec![1.0; v];
            prior.denoising_offset(&x, &phi0, &z, sigma, &mut e, &mut prior.work());
            let m = e.iter().map(|e| e.abs()).fold(0.0, f64::max);
            assert!(m < 1e-9, "σ {sigma}: max |e| = {m}");
        }
        // And it is not identically zero for an interacting theory.
        let prior = interacting(lat);
        let x: Vec<f64> = phi0.iter().zip(&z).map(|(p, z)| p + 0.5 * z).collect();
        let mut e = vec![0.0; v];
        prior.denoising_offset(&x, &phi0, &z, 0.5, &mut e, &mut prior.work());
        assert!(e.iter().map(|e| e.abs()).fold(0.0, f64::max) > 1e-3);
    }

    #[test]
    fn weight_limits() {
        let prior = interacting(Lattice::new(4, 4));
        assert_eq!(prior.weight(0.0), 1.0);
        assert!(prior.weight(10.0) < 1e-4);
        assert!(prior.weight(0.1) > prior.weight(0.5));
    }
}
