//! Sequential Monte Carlo along the diffusion path (`latdiff sample --sampler smc`).
//!
//! A replica of n particles starts from N(0, C_N) and steps down the σ ladder with the
//! em/matched reverse kernel b_k of [`crate::diffusion::sample::sampler`] (shared code: [`crate::diffusion::sample::kernel`]).
//! Level k has the target π_k ∝ exp(−U_k) ([`levels`]): U_N = −log N(·; 0, C_N) (normalised,
//! the start density itself), U_k for 0 < k < N a surrogate of the noised action at σ_k
//! (S_prior, the physics prior's scalar action, exact at σ → 0 and σ → ∞; the cumulant
//! action; or the model's own learnt S_θ(·, σ_k), evaluated in batches by the model),
//! U_0 = S, the target action. Step k carries the incremental weight
//!   log w_k = −U_{k−1}(φ_{k−1}) + log f_k(φ_k | φ_{k−1}) + U_k(φ_k) − log b_k(φ_{k−1} | φ_k),
//! f_k the forward noising kernel. Their sum over k telescopes to the em sampler's path
//! weight. Each particle carries its path part P (start term and Σ log f − log b, summed
//! exactly as the em sampler sums it) and U of its level; its weight since the last
//! resampling is W = P − U, so with resampling off the final W is the em sampler's
//! log-weight bit for bit.
//!
//! After each step, when the Kish ESS of the weights falls below `resample_ess`·n, the
//! replica resamples (systematic), adds log mean e^W to its log Z, and runs `rejuvenate`
//! preconditioned MALA sweeps on π_{k−1} ([`mala`]) so that the copies separate (weights
//! are unchanged by a π_{k−1}-invariant move). At the end log Z gets the last log mean e^W:
//! log Z estimates log ∫ e^{−S} (π_N is normalised, the intermediate normalisations
//! cancel), unbiased in Z, and the final weights W − log mean e^W are exact importance
//! weights of the particles (all zero after a final resampling).
//!
//! # Reproducibility
//! Particle i of replica r draws from `rng::stream(seed, Domain::Sample, r n + i)` (the em
//! sampler's sample r n + i: identical paths when nothing is resampled) and keeps its stream
//! when its configuration is replaced by a resampled one. Replica r resamples with
//! `rng::stream(seed, Domain::Misc, RESAMPLE_STREAM + r)`. Sums over particles run in
//! particle order and the score is evaluated in chunks whose results do not depend on the
//! chunking, so a replica's output depends on (seed, r, n) only, not on threads, batches
//! or the MPI rank it runs on.

pub mod adapt;
pub mod resample;
pub mod spread;

use rand::RngExt;

use self::adapt::Rejuvenation;
use self::spread::Spread;
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::sample::INTERRUPTED;
use crate::diffusion::ScoreModel;
use crate::rng::{self, Domain, Stream};

/// First `Domain::Misc` stream index of the replicas' resampling uniforms (+ replica).
pub const RESAMPLE_STREAM: u64 = 0x534d_4300_0000_0000;

/// What the SMC sampler needs besides the kernel and the levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmcSettings {
    /// n, particles per replica.
    pub n_particles: usize,
    /// Resample when ESS < resample_ess · n (0: never, 1: whenever a weight differs).
    pub resample_ess: f64,
    /// MALA sweeps after each resampling.
    pub rejuvenate: usize,
    /// Also after the levels that do not resample. Why: with resampling off this is a
    /// predictor-corrector sampler whose corrector is Metropolis-adjusted against π_k, and
    /// its weights stay exact (a π_k-invariant move leaves W = P − U unchanged).
    pub rejuvenate_always: bool,
    /// Configurations per score call (memory; results do not depend on it).
    pub batch: usize,
    /// Steps from σ_k above this are driven by the level surrogate's own score instead of
    /// the network's (∞: the network everywhere). Why: at large σ every ensemble is nearly
    /// the Gaussian N(0, G + σ²), which the surrogate has exactly, while a network error
    /// ε in σ·s costs about V ε² of log-weight variance per step, which no resampling
    /// undoes once it exceeds O(1).
    pub network_below: f64,
    /// Draw each step's magnetisation from its (nearly) exact conditional ([`magnetisation`]).
    pub exact_magnetisation: bool,
}

/// What happened at one level k − 1 (after reverse step k).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelRecord {
    pub sigma: f64,
    /// ESS/n of the weights on arrival, before any resampling.
    pub ess_fraction: f64,
    pub resampled: bool,
    /// Mean MALA acceptance probability (NaN without rejuvenation here).
    pub acceptance: f64,
    /// The MALA step size after adaptation (NaN without rejuvenation here).
    pub step: f64,
    /// Distinct starting particles the replica's particles descend from after this level
    /// (after its resampling, if any).
    pub lineages: usize,
}

/// One finished replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub index: usize,
    /// [n, L_t, L_x] row-major.
    pub configs: Vec<f64>,
    /// W = P − U_0 of each particle: its log-weight since the last resampling (the em
    /// sampler's path weight when there was none).
    pub log_weight: Vec<f64>,
    /// S of each configuration (U_0).
    pub action: Vec<f64>,
    /// Estimate of log ∫ e^{−S}.
    pub log_z: f64,
    /// Each particle's original index (at σ_N) in its lineage.
    pub ancestors: Vec<usize>,
    /// Levels N − 1, …, 0 in the order visited.
    pub levels: Vec<LevelRecord>,
    pub resamplings: usize,
}

impl Replica {
    /// W − log mean e^W: the weights normalised within the replica (mean e^w = 1).
    pub fn normalised_log_weights(&self) -> Vec<f64> {
        resample::normalised(&self.log_weight)
    }

    pub fn distinct_ancestors(&self) -> usize {
        resample::distinct(&self.ancestors)
    }
}

/// One theory's ladder of targets π_k ∝ exp(−U_k), k = N − 1, …, 0, and the moves that
/// leave each invariant: what the replica loop ([`run_replica_spread`]) asks of a theory.
/// φ⁴'s is `phi4::levels::Levels`, U(1)'s `u1::levels::TorusLevels`.
pub trait SmcLevels: Sync {
    /// Where the targets come from (logs and the `smc_surrogate` attribute).
    fn describe(&self) -> String;

    /// What these levels cannot do with `settings` (before any work).
    fn check(&self, _settings: &SmcSettings) -> Result<(), String> {
        Ok(())
    }

    /// out = −∇U_k for every configuration of `phi` when the step from σ_k is driven by the
    /// level's own score rather than the network's (`SmcSettings::network_below`); false,
    /// with `out` untouched, where the network drives it.
    fn own_score(&self, k: usize, settings: &SmcSettings, phi: &[f64], out: &mut [f64]) -> bool;

    /// The reverse step k of every particle here: the kernel's, or one that redraws part of
    /// the field exactly (φ⁴'s magnetisation).
    #[allow(clippy::too_many_arguments)]
    fn reverse_step(
        &self,
        kernel: &ReverseKernel,
        k: usize,
        settings: &SmcSettings,
        phi: &mut [f64],
        score: &[f64],
        rngs: &mut [Stream],
        path: &mut [f64],
    ) {
        let _ = settings;
        kernel.step(k, phi, score, rngs, path);
    }

    /// energy[i] = U_k(φ_i), 0 ≤ k < N (a learnt level asks the model, in batches).
    fn energies(
        &self,
        model: &dyn ScoreModel,
        k: usize,
        phi: &[f64],
        energy: &mut [f64],
        batch: usize,
    ) -> Result<(), String>;

    /// `settings.rejuvenate` sweeps of π_k-invariant moves of every particle here, the step
    /// size `step` adapted over the whole replica; `energy` holds U_k on entry and exit.
    #[allow(clippy::too_many_arguments)]
    fn rejuvenate(
        &self,
        model: &dyn ScoreModel,
        k: usize,
        step: f64,
        settings: &SmcSettings,
        particles: (&mut [f64], &mut [f64], &mut [Stream]),
        spread: &Spread,
    ) -> Result<Rejuvenation, String>;
}

/// Runs replica `index` of `settings.n_particles` particles on this rank (module docs).
pub fn run_replica(
    model: &dyn ScoreModel,
    kernel: &ReverseKernel,
    levels: &dyn SmcLevels,
    settings: &SmcSettings,
    seed: u64,
    index: usize,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<Replica, String> {
    let spread = Spread::local(settings.n_particles);
    run_replica_spread(model, kernel, levels, settings, (seed, index), &spread, stopped)
}

/// Replica `index` with its particles spread as `spread` says: every rank of the group
/// calls it; the leader gets the whole replica, the others its figures and no particles.
/// Written once for every theory: the theory brings its `levels`, the kernel its field.
pub fn run_replica_spread(
    model: &dyn ScoreModel,
    kernel: &ReverseKernel,
    levels: &dyn SmcLevels,
    settings: &SmcSettings,
    (seed, index): (u64, usize),
    spread: &Spread,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<Replica, String> {
    levels.check(settings)?;
    let (lat, sigma, dof) = (kernel.lattice(), kernel.sigma_ladder(), kernel.dof());
    let mut st = State::start(kernel, (seed, index), settings.n_particles, spread);
    let mut resample_rng = rng::stream(seed, Domain::Misc, RESAMPLE_STREAM + index as u64);
    let (mut log_z, mut resamplings) = (0.0, 0usize);
    let mut step = adapt::initial_step(lat.volume());
    let mut lineages = settings.n_particles;
    let mut records = Vec::with_capacity(kernel.n_steps());
    let mut score = vec![0.0; st.phi.len()];
    for k in (1..=kernel.n_steps()).rev() {
        // Levels without the network call nothing that would notice a stop signal.
        if spread.any(stopped()) {
            return Err(INTERRUPTED.into());
        }
        if !levels.own_score(k, settings, &st.phi, &mut score) {
            score_in_chunks(model, lat, &st.phi, sigma[k], &mut score, settings.batch)?;
        }
        levels.reverse_step(kernel, k, settings, &mut st.phi, &score, &mut st.rngs, &mut st.path);
        levels.energies(model, k - 1, &st.phi, &mut st.energy, settings.batch)?;
        let w = spread.all(&st.weights());
        let (mut rec, resampled) =
            arrive(index, sigma[k - 1], &w, settings.resample_ess, &mut resample_rng, &mut log_z)?;
        if let Some(a) = &resampled {
            st.take(a, dof, spread);
            resamplings += 1;
            // Ancestor indices are exact in f64 (below 2^53).
            let all = spread.all(&st.ancestors.iter().map(|&x| x as f64).collect::<Vec<_>>());
            lineages = resample::distinct(&all.iter().map(|&x| x as usize).collect::<Vec<_>>());
        }
        rec.lineages = lineages;
        if settings.rejuvenate > 0 && (resampled.is_some() || settings.rejuvenate_always) {
            let before = st.weights();
            let particles = (&mut st.phi[..], &mut st.energy[..], &mut st.rngs[..]);
            let r = levels.rejuvenate(model, k - 1, step, settings, particles, spread)?;
            // A π_{k−1}-invariant move leaves W = P − U unchanged, so P follows U.
            st.path = before.iter().zip(&st.energy).map(|(w, u)| w + u).collect();
            (rec.acceptance, rec.step, step) = (r.acceptance, r.step, r.step);
        }
        records.push(rec);
    }
    let log_weight = spread.all(&st.weights());
    log_z += resample::log_mean_exp(&log_weight);
    let ancestors: Vec<u64> = st.ancestors.iter().map(|&a| a as u64).collect();
    Ok(Replica {
        index,
        configs: spread.gather(&st.phi, dof),
        log_weight: if spread.is_leader() { log_weight } else { Vec::new() },
        action: spread.gather(&st.energy, 1),
        log_z,
        ancestors: spread.gather(&ancestors, 1).into_iter().map(|a| a as usize).collect(),
        levels: records,
        resamplings,
    })
}

/// The streams of particles [i0, i1) of replica `index`: particle i's is the em sampler's
/// sample `index`·n + i.
pub(crate) fn particle_streams(seed: u64, index: usize, n: usize, (i0, i1): (usize, usize)) -> Vec<Stream> {
    let first = (index * n) as u64;
    (i0..i1).map(|i| rng::stream(seed, Domain::Sample, first + i as u64)).collect()
}

/// Arrival at the level at `sigma` with log-weights `w`: the ESS check and the level's
/// record, and, when the ESS fell below `resample_ess`·n, the ancestors of a systematic
/// resampling (one uniform from `rng`; `log_z` gains log mean e^w). Shared by the φ⁴ and
/// torus replica loops.
pub(crate) fn arrive(
    index: usize,
    sigma: f64,
    w: &[f64],
    resample_ess: f64,
    rng: &mut Stream,
    log_z: &mut f64,
) -> Result<(LevelRecord, Option<Vec<usize>>), String> {
    let ess_fraction = resample::ess_fraction(w);
    if !(ess_fraction > 0.0) {
        let nan = w.iter().filter(|x| x.is_nan()).count();
        let inf = w.iter().filter(|x| x.is_infinite()).count();
        return Err(format!(
            "smc: replica {index}: every weight vanished at sigma = {sigma:.4e} ({nan} NaN, {inf} infinite of {}: the level targets or the kernel overflowed)",
            w.len()
        ));
    }
    let mut rec =
        LevelRecord { sigma, ess_fraction, resampled: false, acceptance: f64::NAN, step: f64::NAN, lineages: w.len() };
    if ess_fraction >= resample_ess {
        return Ok((rec, None));
    }
    let u: f64 = rng.random();
    let a = resample::systematic(w, u).expect("a positive weight exists");
    *log_z += resample::log_mean_exp(w);
    rec.resampled = true;
    Ok((rec, Some(a)))
}

/// The particles of a replica here between steps.
struct State {
    phi: Vec<f64>,
    /// P: the path part of each log-weight (module docs).
    path: Vec<f64>,
    /// U of each particle at its current level.
    energy: Vec<f64>,
    ancestors: Vec<usize>,
    rngs: Vec<Stream>,
}

impl State {
    /// This rank's particles of replica `index` drawn from the start density; U_N(φ_N) is
    /// the start term itself, so every weight starts at zero.
    fn start(kernel: &ReverseKernel, (seed, index): (u64, usize), n: usize, spread: &Spread) -> Self {
        let (i0, i1) = spread.range();
        let mut rngs = particle_streams(seed, index, n, (i0, i1));
        let mut phi = vec![0.0; (i1 - i0) * kernel.dof()];
        let mut path = vec![0.0; i1 - i0];
        kernel.start(&mut phi, &mut rngs, &mut path);
        State { phi, energy: path.clone(), path, ancestors: (i0..i1).collect(), rngs }
    }

    fn weights(&self) -> Vec<f64> {
        self.path.iter().zip(&self.energy).map(|(p, u)| p - u).collect()
    }

    /// Replaces the particles by their ancestors `a` (indices into the whole replica);
    /// every weight becomes zero (P = U).
    fn take(&mut self, a: &[usize], dof: usize, spread: &Spread) {
        let (phi, energy, ancestors) = take_rows(a, (&self.phi, &self.energy, &self.ancestors), dof, spread);
        (self.phi, self.energy, self.ancestors) = (phi, energy, ancestors);
        self.path.clone_from(&self.energy);
    }
}

/// The configurations (`v` values each), energies and ancestors of this rank's particles
/// replaced by those of their ancestors `a` (φ⁴'s and the torus's resampling).
pub(crate) fn take_rows(
    a: &[usize],
    (phi, energy, ancestors): (&[f64], &[f64], &[usize]),
    v: usize,
    spread: &Spread,
) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    // One row per particle: its configuration, U and ancestor (exact in f64 below 2^53).
    let width = v + 2;
    let rows: Vec<f64> = phi
        .chunks(v)
        .zip(energy.iter().zip(ancestors))
        .flat_map(|(p, (&u, &anc))| p.iter().copied().chain([u, anc as f64]))
        .collect();
    let taken = spread.take(a, &rows, width);
    let n = taken.len() / width;
    let mut out = (Vec::with_capacity(n * v), Vec::with_capacity(n), Vec::with_capacity(n));
    for row in taken.chunks(width) {
        out.0.extend_from_slice(&row[..v]);
        out.1.push(row[v]);
        out.2.push(row[v + 1] as usize);
    }
    out
}

/// out = s(φ, σ) in calls of at most `batch` configurations.
pub fn score_in_chunks(
    model: &dyn ScoreModel,
    lat: crate::lattice::Lattice,
    phi: &[f64],
    sigma: f64,
    out: &mut [f64],
    batch: usize,
) -> Result<(), String> {
    // Values per configuration: V, or the torus's angles.
    let v = model.torus_dof(lat).unwrap_or(lat.volume());
    let chunk = batch.max(1) * v;
    for (p, o) in phi.chunks(chunk).zip(out.chunks_mut(chunk)) {
        model.score(lat, p, &vec![sigma; p.len() / v], o)?;
    }
    Ok(())
}

/// The model's action at σ (and its score, when asked) in calls of at most `batch`
/// configurations.
pub fn learnt_in_chunks(
    model: &dyn ScoreModel,
    lat: crate::lattice::Lattice,
    phi: &[f64],
    sigma: f64,
    action: &mut [f64],
    mut score: Option<&mut [f64]>,
    batch: usize,
) -> Result<(), String> {
    let v = lat.volume();
    let b = batch.max(1);
    for (i, (p, a)) in phi.chunks(b * v).zip(action.chunks_mut(b)).enumerate() {
        let s = score.as_deref_mut().map(|s| &mut s[i * b * v..][..p.len()]);
        model.action_values(lat, p, &vec![sigma; a.len()], a, s)?;
    }
    Ok(())
}
