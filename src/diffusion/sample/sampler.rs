//! Samplers for the reverse of the variance-exploding diffusion, with exact importance
//! weights for the stochastic (Euler–Maruyama) sampler.
//!
//! # σ ladder
//! N steps on the geometric ladder
//!   σ_k = σ_min (σ_max/σ_min)^{(k−1)/(N−1)},  k = 1..N   (σ_N = σ_max, σ_1 = σ_min),
//!   σ_0 = 0,
//! returned by [`SamplerSettings::sigma_ladder`] as `[σ_0, σ_1, …, σ_N]` (N = 1: σ_1 = σ_max).
//! The forward (noising) chain is φ_k = φ_{k−1} + √Δ_k ξ_k with Δ_k = σ_k² − σ_{k−1}², so
//! φ_k ~ p_{σ_k}, the target convolved with N(0, σ_k² I).
//!
//! # Reverse kernels ([`Kernel`])
//! Step k (from σ_k to σ_{k−1}): φ_{k−1} = μ_k + η_k, μ_k = φ_k + Δ_k s(φ_k, σ_k), η_k ~ N(0, Σ_k).
//! * `Kernel::Em`: Σ_k = Δ_k I, start φ_N ~ N(0, C_N = σ_N² I): plain Euler–Maruyama.
//! * `Kernel::Matched` (default): Σ_k(p) = Δ_k (G(p) + σ_{k−1}²)/(G(p) + σ_k²), start
//!   C_N(p) = G(p) + σ_N², G = `model.two_point(lat)`; diagonal in momentum space.
//!
//! The mean needs no correction: by Tweedie's formula for the one-step convolution
//! φ_k = φ_{k−1} + √Δ_k ξ, E[φ_{k−1} | φ_k] = φ_k + Δ_k ∇ log p_{σ_k}(φ_k) exactly, for any
//! target. For Gaussian data N(0, G) it reads μ_k = (G + σ_{k−1}²)/(G + σ_k²) φ_k and the
//! posterior covariance is the matched Σ_k, so with the exact score the matched kernel is
//! the exact reverse transition and the reverse chain reproduces the forward joint
//! distribution: for the free model on the free target every path weight equals log Z.
//!
//! # Path weights (`SamplerKind::Em` only)
//! With target action S (which may differ from the model's theory), accumulated in f64:
//!   log w = −S(φ_0) + Σ_k log N(φ_k; φ_{k−1}, Δ_k I) − Σ_k log N(φ_{k−1}; μ_k, Σ_k) − log N(φ_N; 0, C_N).
//! All normalisations are kept (nothing is dropped: the 2π's cancel between the N forward
//! and N + 1 proposal densities up to one (V/2) log 2π, which is kept, and the log det Σ_k,
//! log det C_N terms are included), so E_q[w] = Z = ∫ dφ e^{−S(φ)} and
//! log_sum_exp(log w) − log n estimates log Z. The forward chain started from the target
//! is the extended target, so self-normalised reweighting (and independence Metropolis) is
//! exact whatever the errors of the score; the score's quality only shows in the ESS.
//!
//! The start draw and the reverse step live in [`crate::diffusion::sample::kernel`], shared with SMC.
//!
//! # Other samplers (raw samples, no weights)
//! * `SamplerKind::Pc`: the EM/matched predictor step followed, at every σ_{k−1} > 0, by M
//!   Langevin corrector steps φ ← φ + ε s(φ, σ_{k−1}) + √(2ε) z with Song et al.'s (2021)
//!   signal-to-noise rule ε = 2 (r ‖z‖/‖s‖)², norms per configuration. The corrector's
//!   backward kernel is not derived, so `log_weight` is `None`. With a model that has an
//!   action (`ScoreModel::has_action`) each corrector step is instead Metropolis-adjusted
//!   against U = S_θ(·, σ_{k−1}) ([`crate::diffusion::sample::corrector`]: ε(φ) = 2 r² V/‖s(φ)‖², the rule
//!   with ‖z‖² at its mean), which leaves exp(−U) exactly invariant. Exact weights would
//!   then need U before and after each level's corrector (SMC's incremental weights with
//!   resampling off); they are not built, so `log_weight` stays `None` for pc.
//! * `SamplerKind::Ode`: probability-flow ODE dφ/dσ = −σ s(φ, σ), Heun's method on the ladder
//!   from σ_N to σ_1, then the Tweedie denoising step φ_0 = φ_1 + σ_1² s(φ_1, σ_1) (which is
//!   also an Euler step in σ from σ_1 to 0). Started from N(0, C_N) as above. No weights.
//!
//! # Reproducibility
//! Sample b of a call uses only `rng::stream(seed, Domain::Sample, first_index + b)`, and the
//! score of a configuration does not depend on the others in its batch, so the samples do
//! not depend on how they are split into batches, threads or MPI ranks.

use rand::{Rng, RngExt};
use rayon::prelude::*;

use crate::diffusion::sample::kernel::{normals, ReverseKernel};
use crate::diffusion::ScoreModel;
use crate::lattice::Lattice;
use crate::rng::{self, Domain, Stream};
use crate::theory::Action;

pub use crate::diffusion::sample::settings::{Kernel, SamplerKind, SamplerSettings};

/// Output of [`sample_batch`].
#[derive(Clone, Debug, PartialEq)]
pub struct SampleBatch {
    pub lattice: Lattice,
    /// [batch, L_t, L_x] row-major.
    pub configs: Vec<f64>,
    /// log w per configuration (module docs); `Some` for em with a target, else `None`.
    pub log_weight: Option<Vec<f64>>,
    /// Batched `ScoreModel::score` calls made (= network evaluations per configuration).
    pub score_calls: usize,
    /// pc with an action model: the MALA corrector's mean acceptance probability.
    pub corrector_acceptance: Option<f64>,
}

impl SampleBatch {
    pub fn len(&self) -> usize {
        self.configs.len() / self.lattice.volume()
    }
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }
    pub fn config(&self, b: usize) -> &[f64] {
        let v = self.lattice.volume();
        &self.configs[b * v..][..v]
    }
    /// Score evaluations summed over configurations.
    pub fn network_evaluations(&self) -> usize {
        self.score_calls * self.len()
    }
}

fn norm2(x: &[f64]) -> f64 {
    x.iter().map(|a| a * a).sum()
}

/// Draws `batch` configurations on `lat`; sample b uses the stream
/// `rng::stream(seed, Domain::Sample, first_index + b)`. With a `target` and the em sampler
/// the path log-weights are returned (module docs). `model.score` is called once per
/// network evaluation for the whole batch.
pub fn sample_batch(
    model: &dyn ScoreModel,
    target: Option<&dyn Action>,
    lat: Lattice,
    settings: &SamplerSettings,
    seed: u64,
    first_index: u64,
    batch: usize,
) -> Result<SampleBatch, String> {
    settings.validate()?;
    lat.validate()?;
    model.check_lattice(lat)?;
    if let Some(t) = target {
        if t.lattice() != lat {
            return Err(format!("sampler: target action is on {}, sampling on {lat}", t.lattice()));
        }
    }
    if matches!(settings.sampler, SamplerKind::Smc | SamplerKind::Multilevel) {
        return Err(format!(
            "sampler: {} runs replicas of particles (smc::run_replica, multilevel::run_replica), not sample_batch",
            settings.sampler.name()
        ));
    }
    let weights = target.is_some() && settings.has_weights();
    if batch == 0 {
        return Ok(SampleBatch {
            lattice: lat,
            configs: Vec::new(),
            log_weight: weights.then(Vec::new),
            score_calls: 0,
            corrector_acceptance: None,
        });
    }
    let kernel = match model.torus_dof(lat) {
        Some(n) if settings.sampler == SamplerKind::Em => ReverseKernel::torus(lat, settings, n)?,
        Some(_) => return Err(format!("sampler: {} is not available on the torus (em only)", settings.sampler.name())),
        None => ReverseKernel::new(model, lat, settings)?,
    };
    let mut run = Run {
        model,
        lat,
        batch,
        kernel: &kernel,
        settings,
        rngs: (0..batch).map(|b| rng::stream(seed, Domain::Sample, first_index + b as u64)).collect(),
        lw: vec![0.0; batch],
        phi: vec![0.0; batch * kernel.dof()],
        calls: 0,
        corrector_calls: 0,
        corrector: Vec::new(),
    };
    kernel.start(&mut run.phi, &mut run.rngs, &mut run.lw);
    match settings.sampler {
        SamplerKind::Smc | SamplerKind::Multilevel => unreachable!("refused above"),
        SamplerKind::Em | SamplerKind::Pc => run.reverse_steps()?,
        SamplerKind::Ode => run.probability_flow()?,
    }
    let log_weight = match target {
        Some(t) if weights => {
            let v = kernel.dof();
            run.lw.par_iter_mut().zip(run.phi.par_chunks(v)).for_each(|(l, p)| *l -= t.action(p));
            check_weights(&run.lw)?;
            Some(run.lw)
        }
        _ => None,
    };
    let c = &run.corrector;
    let corrector_acceptance = (!c.is_empty()).then(|| c.iter().sum::<f64>() / c.len() as f64);
    Ok(SampleBatch {
        lattice: lat,
        configs: run.phi,
        log_weight,
        score_calls: run.calls + run.corrector_calls,
        corrector_acceptance,
    })
}

/// One batch in flight.
struct Run<'a> {
    model: &'a dyn ScoreModel,
    lat: Lattice,
    batch: usize,
    kernel: &'a ReverseKernel,
    settings: &'a SamplerSettings,
    rngs: Vec<Stream>,
    /// The path part of the log-weights.
    lw: Vec<f64>,
    phi: Vec<f64>,
    /// Score calls, and the MALA corrector's evaluations (action models).
    calls: usize,
    corrector_calls: usize,
    /// Each level's mean MALA acceptance.
    corrector: Vec<f64>,
}

impl Run<'_> {
    /// out = s(φ, σ) for the batch.
    fn score(&mut self, phi: &[f64], sigma: f64, out: &mut [f64]) -> Result<(), String> {
        self.calls += 1;
        self.model.score(self.lat, phi, &vec![sigma; self.batch], out)
    }

    /// em and pc: the reverse steps, with pc's corrector at every σ_{k−1} > 0.
    fn reverse_steps(&mut self) -> Result<(), String> {
        let sig = self.kernel.sigma_ladder();
        let mut s = vec![0.0; self.phi.len()];
        for k in (1..=self.settings.n_steps).rev() {
            let phi = std::mem::take(&mut self.phi);
            self.score(&phi, sig[k], &mut s)?;
            self.phi = phi;
            self.kernel.step(k, &mut self.phi, &s, &mut self.rngs, &mut self.lw);
            if self.settings.sampler == SamplerKind::Pc && k > 1 {
                self.correct(sig[k - 1], &mut s)?;
            }
            self.check_finite(k, sig[k])?;
        }
        Ok(())
    }

    /// pc's corrector at σ: Metropolis-adjusted against S_θ(·, σ) with an action model
    /// (the score from the same pass), Langevin steps with the snr rule otherwise.
    fn correct(&mut self, sigma: f64, s: &mut [f64]) -> Result<(), String> {
        let (model, lat, batch) = (self.model, self.lat, self.batch);
        let steps = self.settings.corrector_steps;
        if model.has_action() {
            let mut eval =
                |p: &[f64], u: &mut [f64], s: &mut [f64]| model.action_values(lat, p, &vec![sigma; batch], u, Some(s));
            let snr = self.settings.snr;
            self.corrector.push(crate::diffusion::sample::corrector::mala(
                &mut eval,
                snr,
                steps,
                &mut self.phi,
                &mut self.rngs,
            )?);
            self.corrector_calls += if steps > 0 { steps + 1 } else { 0 };
            return Ok(());
        }
        let (snr, v) = (self.settings.snr, self.kernel.dof());
        for _ in 0..steps {
            let phi = std::mem::take(&mut self.phi);
            self.score(&phi, sigma, s)?;
            self.phi = phi;
            self.phi.par_chunks_mut(v).zip(s.par_chunks(v)).zip(self.rngs.par_iter_mut()).for_each_init(
                || vec![0.0; v],
                |z, ((p, sc), r)| {
                    let zz = normals(r, z);
                    let ss = norm2(sc);
                    if ss > 0.0 {
                        let eps = 2.0 * snr * snr * zz / ss;
                        let a = (2.0 * eps).sqrt();
                        for ((p, sc), z) in p.iter_mut().zip(sc).zip(z.iter()) {
                            *p += eps * sc + a * z;
                        }
                    }
                },
            );
        }
        Ok(())
    }

    /// ode: Heun steps of the probability-flow ODE, then the Tweedie denoising step.
    fn probability_flow(&mut self) -> Result<(), String> {
        let sig = self.kernel.sigma_ladder();
        let mut s = vec![0.0; self.phi.len()];
        let mut phi_e = vec![0.0; self.phi.len()];
        let mut s2 = vec![0.0; self.phi.len()];
        for k in (2..=self.settings.n_steps).rev() {
            let (sk, skm) = (sig[k], sig[k - 1]);
            let h = skm - sk;
            // f(φ, σ) = dφ/dσ = −σ s(φ, σ); Heun: Euler predictor, trapezoidal corrector.
            let phi = std::mem::take(&mut self.phi);
            self.score(&phi, sk, &mut s)?;
            phi_e.par_iter_mut().zip(phi.par_iter()).zip(s.par_iter()).for_each(|((e, p), a)| *e = p - h * sk * a);
            self.phi = phi;
            self.score(&phi_e, skm, &mut s2)?;
            self.phi
                .par_iter_mut()
                .zip(s.par_iter())
                .zip(s2.par_iter())
                .for_each(|((p, a), b)| *p -= 0.5 * h * (sk * a + skm * b));
            self.check_finite(k, sk)?;
        }
        // Tweedie denoise from σ_1 to 0.
        let s1 = sig[1];
        let phi = std::mem::take(&mut self.phi);
        self.score(&phi, s1, &mut s)?;
        self.phi = phi;
        self.phi.par_iter_mut().zip(s.par_iter()).for_each(|(p, a)| *p += s1 * s1 * a);
        self.check_finite(1, s1)
    }

    /// Why the batch is lost, if a configuration stopped being finite at step k: an
    /// overflow would otherwise be written as an ensemble of NaN.
    fn check_finite(&self, k: usize, sigma: f64) -> Result<(), String> {
        let v = self.kernel.dof();
        let bad = self.phi.par_chunks(v).filter(|c| c.iter().any(|x| !x.is_finite())).count();
        if bad == 0 {
            return Ok(());
        }
        Err(format!(
            "sampler: {bad} of {} configurations are not finite after reverse step {k} of {} (from sigma = {sigma:.3e}): the score or the noise overflowed; nothing is written",
            self.batch, self.settings.n_steps
        ))
    }
}

/// Path log-weights that are NaN or +∞ are no weights: refused rather than written.
fn check_weights(lw: &[f64]) -> Result<(), String> {
    let bad = lw.iter().filter(|w| w.is_nan() || **w == f64::INFINITY).count();
    if bad == 0 {
        return Ok(());
    }
    Err(format!("sampler: {bad} of {} path log-weights are not finite (NaN or +inf): the target action or the kernel overflowed; nothing is written", lw.len()))
}

/// Independence Metropolis fed one proposal at a time: what `latdiff sample --metropolis`
/// streams over its batches and what [`independence_metropolis`] runs over a slice, so the
/// production chain is the tested one.
///
/// The chain starts on the first proposal whatever its weight (it has to sit somewhere);
/// that start is not an acceptance. Afterwards proposal log w replaces the current log w₀
/// with probability min(1, e^{log w − log w₀}), except:
/// * NaN log w is never accepted (a broken weight says nothing about the target);
/// * a chain sitting on NaN or −∞ (no weight at all) moves to the first proposal with
///   log w > −∞, so a bad start cannot trap it;
/// * +∞ is always accepted, also from +∞: an overflowed weight dominates everything finite,
///   and the chain stays there until another +∞ comes, which the acceptance rate shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imh {
    /// log w of the proposal the chain sits on; `None` before the first proposal.
    current: Option<f64>,
    proposals: usize,
    accepted: usize,
}

impl Imh {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers the next proposal with log-weight `log_w`, deciding with the uniform `u` in
    /// [0, 1) (unused for the first proposal and outside the Metropolis ratio). Returns
    /// whether the chain now sits on this proposal: true for the start, which is not
    /// counted as an acceptance.
    pub fn step(&mut self, log_w: f64, u: f64) -> bool {
        let Some(current) = self.current else {
            self.current = Some(log_w);
            return true;
        };
        self.proposals += 1;
        let accept = if log_w.is_nan() {
            false
        } else if log_w == f64::INFINITY {
            true
        } else if current.is_nan() || current == f64::NEG_INFINITY {
            log_w > f64::NEG_INFINITY
        } else {
            u < (log_w - current).exp()
        };
        if accept {
            self.current = Some(log_w);
            self.accepted += 1;
        }
        accept
    }

    /// log w of the proposal the chain sits on (`None` before the first).
    pub fn log_weight(&self) -> Option<f64> {
        self.current
    }

    /// Accepted over offered proposals after the start; 1 when none were offered yet.
    pub fn acceptance(&self) -> f64 {
        if self.proposals == 0 {
            1.0
        } else {
            self.accepted as f64 / self.proposals as f64
        }
    }
}

/// Result of [`independence_metropolis`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImhChain {
    /// indices[i]: the proposal the chain sits on after step i (indices[0] = 0).
    pub indices: Vec<usize>,
    /// accepted[i]: whether the chain moved to proposal i (accepted[0] = true: the start).
    pub accepted: Vec<bool>,
    /// Fraction of proposals 1..n accepted (the start is not an acceptance; 1 when n ≤ 1).
    pub acceptance: f64,
}

/// [`Imh`] over the proposals in their order. One uniform is drawn per proposal, the start
/// included, whatever the outcome, as the streamed `latdiff sample --metropolis` does: the
/// chain is a deterministic function of the weights and the stream.
pub fn independence_metropolis<R: Rng + ?Sized>(log_w: &[f64], rng: &mut R) -> ImhChain {
    let mut imh = Imh::new();
    let mut cur = 0;
    let mut indices = Vec::with_capacity(log_w.len());
    let mut accepted = Vec::with_capacity(log_w.len());
    for (i, &lw) in log_w.iter().enumerate() {
        let moved = imh.step(lw, rng.random());
        if moved {
            cur = i;
        }
        indices.push(cur);
        accepted.push(moved);
    }
    ImhChain { indices, accepted, acceptance: imh.acceptance() }
}
