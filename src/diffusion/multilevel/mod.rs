//! Coarse-to-fine (multilevel) sequential Monte Carlo: `latdiff sample --sampler multilevel`.
//!
//! Why: a single-level ladder bridges the whole volume's soft modes from noise, and its
//! log-weight variance grows with V (docs/studies/large-lattice.md). Here the long-wavelength
//! modes are equilibrated where they are cheap, on a small lattice, and each level only
//! adds the short-wavelength ones.
//!
//! Level 0 is the coarsest lattice, level K − 1 the target lattice, each the factor-2
//! refinement of the one before ([`crate::lattice::blocking`]). Level k's target is
//! π_k ∝ e^{−S_k}, the theory's action on its lattice. A replica of n particles:
//! 1. **proposes** level k's start: level 0 from a normalised density q_0, level k > 0 by
//!    keeping each particle's level k − 1 field on the coarse sites and drawing the rest
//!    from a conditional density q_k(rest | coarse). A particle of weight w under π_{k−1}
//!    is then a particle of weight w under the extended target
//!    π̃_k(φ) = e^{−S_{k−1}(coarse φ)} q_k(rest φ | coarse φ), which is all the ladder's
//!    `start_log_density` returns;
//! 2. **tempers** from π̃_k to π_k along log γ_β = (1 − β) log π̃_k − β S_k: each step picks
//!    the next β by bisection so that the conditional ESS of the increment
//!    (β' − β)(−S_k − log π̃_k) is `cess` (Zhou, Johansen and Aston 2016), multiplies the
//!    weights by it, resamples (systematic) when the ESS falls below `resample_ess`, and
//!    runs `rejuvenate` MALA sweeps on γ_β' (step size adapted over the replica, as SMC's);
//! 3. at β = 1 runs the ladder's **exact moves** of π_k (HMC trajectories and cluster
//!    flips), which move the long-wavelength modes MALA cannot;
//! 4. lets the ladder fit the next refinement's proposal to the population (adaptive SMC:
//!    the proposal depends on the past only, so every weight stays exact).
//!
//! Each stage leaves the weighted population exact for its target: π-invariant moves keep
//! the weights, and the increments telescope to e^{−S_K}/(q_0 Π q_k) along the path. log Z
//! (the sum of log mean e^W at each resampling and at the end) estimates log ∫ e^{−S_K},
//! unbiased in Z, since q_0 is normalised.
//!
//! # Reproducibility
//! Particle i of replica r draws from `rng::stream(seed, Domain::Sample, r n + i)` and keeps
//! its stream through resampling; replica r resamples with `rng::stream(seed, Domain::Misc,
//! MULTILEVEL_RESAMPLE_STREAM + r)`. Sums over particles run in particle order, so a
//! replica depends on (seed, r, n) only, not on threads or ranks.

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::diffusion::sample::INTERRUPTED;
use crate::diffusion::smc::adapt;
use crate::diffusion::smc::resample;
use crate::lattice::Lattice;
use crate::rng::{self, Domain, Stream};

/// First `Domain::Misc` stream of the replicas' resampling uniforms (+ replica).
pub const MULTILEVEL_RESAMPLE_STREAM: u64 = 0x4d4c_5600_0000_0000;

/// What a theory brings to the multilevel sampler: its lattices, proposals, targets and
/// exact moves. φ⁴'s is `phi4::multilevel::Phi4Ladder`.
pub trait Ladder: Sync {
    /// The lattices, coarsest first; the last is the target lattice.
    fn lattices(&self) -> &[Lattice];

    /// Where the proposals and moves come from (logs, the `multilevel_ladder` attribute).
    fn describe(&self) -> String;

    /// The parameters of level k's proposal before any fit (opaque to the driver).
    fn proposal_guess(&self, k: usize) -> Vec<f64>;

    /// The parameters of level k + 1's proposal fitted to level k's population (equal
    /// weights assumed; any choice keeps the weights exact, as it depends on the past
    /// only); None when the population cannot fit them.
    fn fit_proposal(&self, k: usize, configs: &[f64]) -> Option<Vec<f64>>;

    /// Draws level k's start for one particle into `fine` (level 0: `coarse` is empty).
    fn propose(&self, k: usize, proposal: &[f64], coarse: &[f64], rng: &mut Stream, fine: &mut [f64]);

    /// log π̃_k(φ) (module docs), its gradient added to `grad` when given.
    fn start_log_density(&self, k: usize, proposal: &[f64], phi: &[f64], grad: Option<&mut [f64]>) -> f64;

    /// S_k(φ), its gradient ∂S_k/∂φ written to `grad` when given.
    fn action(&self, k: usize, phi: &[f64], grad: Option<&mut [f64]>) -> f64;

    /// π_k-invariant moves of one particle (global index `index`) at β = 1; the fraction of
    /// its proposals accepted (NaN when it has none).
    fn exact_moves(&self, k: usize, index: u64, phi: &mut [f64], rng: &mut Stream) -> f64;
}

/// What the sampler needs besides the ladder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultilevelSettings {
    pub n_particles: usize,
    /// Conditional ESS each tempering step aims at (0 < cess < 1; larger: more steps).
    pub cess: f64,
    /// Resample when the ESS falls below this fraction of n.
    pub resample_ess: f64,
    /// MALA sweeps on each tempered target.
    pub rejuvenate: usize,
    /// Most tempering steps per level (a guard: the run fails rather than crawl).
    pub max_steps: usize,
}

/// What happened at one level of one replica.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelRecord {
    pub lattice: Lattice,
    pub tempering_steps: usize,
    /// Smallest ESS/n of the weights during the level (before each resampling).
    pub min_ess_fraction: f64,
    /// ESS/n at the end of the level.
    pub ess_fraction: f64,
    pub resamplings: usize,
    /// Mean MALA acceptance probability over the level's sweeps.
    pub mala_acceptance: f64,
    /// Mean acceptance of the exact moves at β = 1.
    pub exact_acceptance: f64,
    /// Distinct particles at the level's start that the population descends from.
    pub lineages: usize,
    pub seconds: f64,
}

/// Per-level fields in files, in `LevelRecord` order after the lattice.
pub const LEVEL_FIELD_NAMES: [&str; 8] = [
    "tempering_steps",
    "min_ess_fraction",
    "ess_fraction",
    "resamplings",
    "mala_acceptance",
    "exact_acceptance",
    "lineages",
    "seconds",
];

impl LevelRecord {
    pub fn fields(&self) -> [f64; 8] {
        [
            self.tempering_steps as f64,
            self.min_ess_fraction,
            self.ess_fraction,
            self.resamplings as f64,
            self.mala_acceptance,
            self.exact_acceptance,
            self.lineages as f64,
            self.seconds,
        ]
    }
}

/// One finished replica on the target lattice.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub index: usize,
    /// [n, L_t, L_x] row-major.
    pub configs: Vec<f64>,
    /// Log-weights since the last resampling.
    pub log_weight: Vec<f64>,
    /// S of each configuration.
    pub action: Vec<f64>,
    pub log_z: f64,
    /// Each particle's index at level 0 in its lineage.
    pub ancestors: Vec<usize>,
    pub levels: Vec<LevelRecord>,
}

impl Replica {
    /// W − log mean e^W (mean e^w = 1).
    pub fn normalised_log_weights(&self) -> Vec<f64> {
        resample::normalised(&self.log_weight)
    }
}

/// The population of a replica between stages.
struct Population {
    phi: Vec<f64>,
    /// log π̃_k of each particle.
    start: Vec<f64>,
    /// S_k of each particle.
    action: Vec<f64>,
    log_w: Vec<f64>,
    ancestors: Vec<usize>,
    /// Index at the level's start, for its lineage count.
    level_ancestors: Vec<usize>,
    rngs: Vec<Stream>,
    /// The current level's proposal parameters (the ladder's, opaque here).
    proposal: Vec<f64>,
}

impl Population {
    fn resample(&mut self, a: &[usize], v: usize) {
        let mut phi = Vec::with_capacity(self.phi.len());
        for &i in a {
            phi.extend_from_slice(&self.phi[i * v..][..v]);
        }
        self.phi = phi;
        let pick = |x: &[f64]| a.iter().map(|&i| x[i]).collect::<Vec<f64>>();
        (self.start, self.action) = (pick(&self.start), pick(&self.action));
        self.ancestors = a.iter().map(|&i| self.ancestors[i]).collect();
        self.level_ancestors = a.iter().map(|&i| self.level_ancestors[i]).collect();
        self.log_w = vec![0.0; a.len()];
    }

    /// Δ = log π_k − log π̃_k of each particle: the direction of the tempering weights.
    fn increments(&self) -> Vec<f64> {
        self.action.iter().zip(&self.start).map(|(s, l)| -s - l).collect()
    }
}

/// Runs replica `index` (module docs).
pub fn run_replica(
    ladder: &dyn Ladder,
    settings: &MultilevelSettings,
    seed: u64,
    index: usize,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<Replica, String> {
    let n = settings.n_particles;
    let lattices = ladder.lattices().to_vec();
    let first = (index * n) as u64;
    let mut pop = Population {
        phi: Vec::new(),
        start: vec![0.0; n],
        action: vec![0.0; n],
        log_w: vec![0.0; n],
        ancestors: (0..n).collect(),
        level_ancestors: (0..n).collect(),
        rngs: (0..n).map(|i| rng::stream(seed, Domain::Sample, first + i as u64)).collect(),
        proposal: ladder.proposal_guess(0),
    };
    let mut resample_rng = rng::stream(seed, Domain::Misc, MULTILEVEL_RESAMPLE_STREAM + index as u64);
    let mut log_z = 0.0;
    let mut records = Vec::with_capacity(lattices.len());
    let mut step = adapt::initial_step(lattices[0].volume());
    for (k, lat) in lattices.iter().enumerate() {
        let t0 = std::time::Instant::now();
        propose_level(ladder, k, *lat, &mut pop);
        let mut rec = temper(ladder, settings, k, *lat, &mut pop, (&mut resample_rng, &mut log_z, &mut step), stopped)?;
        if stopped() {
            return Err(INTERRUPTED.into());
        }
        rec.exact_acceptance = exact_moves(ladder, k, *lat, first, &mut pop);
        if k + 1 < lattices.len() {
            pop.proposal = ladder.fit_proposal(k, &pop.phi).unwrap_or_else(|| ladder.proposal_guess(k + 1));
        }
        rec.lineages = resample::distinct(&pop.level_ancestors);
        rec.ess_fraction = resample::ess_fraction(&pop.log_w);
        rec.seconds = t0.elapsed().as_secs_f64();
        records.push(rec);
    }
    log_z += resample::log_mean_exp(&pop.log_w);
    Ok(Replica {
        index,
        configs: pop.phi,
        log_weight: pop.log_w,
        action: pop.action,
        log_z,
        ancestors: pop.ancestors,
        levels: records,
    })
}

/// Level k's start for every particle, with log π̃_k and S_k.
fn propose_level(ladder: &dyn Ladder, k: usize, lat: Lattice, pop: &mut Population) {
    let v = lat.volume();
    let n = pop.rngs.len();
    let vc = if k == 0 { 0 } else { pop.phi.len() / n };
    let coarse = std::mem::take(&mut pop.phi);
    let mut phi = vec![0.0; n * v];
    let proposal = &pop.proposal;
    phi.par_chunks_mut(v).zip(pop.rngs.par_iter_mut()).enumerate().for_each(|(i, (f, r))| {
        ladder.propose(k, proposal, &coarse[i * vc..][..vc], r, f);
    });
    let (start, action): (Vec<f64>, Vec<f64>) =
        phi.par_chunks(v).map(|f| (ladder.start_log_density(k, proposal, f, None), ladder.action(k, f, None))).unzip();
    (pop.phi, pop.start, pop.action) = (phi, start, action);
    pop.level_ancestors = (0..n).collect();
}

/// Tempering from π̃_k to π_k (module docs, step 2): the level's record so far.
fn temper(
    ladder: &dyn Ladder,
    settings: &MultilevelSettings,
    k: usize,
    lat: Lattice,
    pop: &mut Population,
    (resample_rng, log_z, step): (&mut Stream, &mut f64, &mut f64),
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<LevelRecord, String> {
    let v = lat.volume();
    let mut rec = LevelRecord {
        lattice: lat,
        tempering_steps: 0,
        min_ess_fraction: 1.0,
        ess_fraction: f64::NAN,
        resamplings: 0,
        mala_acceptance: f64::NAN,
        exact_acceptance: f64::NAN,
        lineages: 0,
        seconds: 0.0,
    };
    let (mut beta, mut acc_sum, mut sweeps) = (0.0, 0.0, 0usize);
    while beta < 1.0 {
        if rec.tempering_steps >= settings.max_steps || stopped() {
            if stopped() {
                return Err(INTERRUPTED.into());
            }
            return Err(format!(
                "multilevel: level {k} ({}x{}) needed more than {} tempering steps (beta = {beta:.3e}): the proposal is too far from the target",
                lat.lt, lat.lx, settings.max_steps
            ));
        }
        let delta = pop.increments();
        check_finite(k, lat, &delta)?;
        let next = next_beta(&pop.log_w, &delta, beta, settings.cess);
        for (w, d) in pop.log_w.iter_mut().zip(&delta) {
            *w += (next - beta) * d;
        }
        beta = next;
        rec.tempering_steps += 1;
        let ess = resample::ess_fraction(&pop.log_w);
        rec.min_ess_fraction = rec.min_ess_fraction.min(ess);
        if ess < settings.resample_ess {
            let a = resample::systematic(&pop.log_w, resample_rng.random())
                .ok_or_else(|| format!("multilevel: level {k}: every weight vanished at beta = {beta:.3e}"))?;
            *log_z += resample::log_mean_exp(&pop.log_w);
            pop.resample(&a, v);
            rec.resamplings += 1;
        }
        let r = adapt::adapted(
            *step,
            settings.rejuvenate,
            &crate::diffusion::smc::spread::Spread::local(pop.rngs.len()),
            |eps| Ok::<_, String>(mala_sweep(ladder, k, v, beta, eps, pop)),
        )?;
        if settings.rejuvenate > 0 {
            *step = r.step;
            acc_sum += r.acceptance * settings.rejuvenate as f64;
            sweeps += settings.rejuvenate;
        }
    }
    rec.mala_acceptance = if sweeps > 0 { acc_sum / sweeps as f64 } else { f64::NAN };
    Ok(rec)
}

fn check_finite(k: usize, lat: Lattice, delta: &[f64]) -> Result<(), String> {
    let bad = delta.iter().filter(|d| !d.is_finite()).count();
    if bad > 0 {
        return Err(format!(
            "multilevel: level {k} ({}x{}): {bad} of {} particles have a non-finite action or proposal density",
            lat.lt,
            lat.lx,
            delta.len()
        ));
    }
    Ok(())
}

/// The next inverse temperature after `beta`: the largest β' ≤ 1 whose increment
/// (β' − β)·Δ keeps the conditional ESS ≥ `cess` (bisection; 1 when the whole rest does).
pub fn next_beta(log_w: &[f64], delta: &[f64], beta: f64, cess: f64) -> f64 {
    let c = |d: f64| conditional_ess(log_w, delta, d);
    if c(1.0 - beta) >= cess {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0, 1.0 - beta);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if c(mid) >= cess {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Always move: a step of zero would loop forever on a degenerate population.
    beta + lo.max(1e-12 * (1.0 - beta)).max(f64::MIN_POSITIVE)
}

/// (Σ ŵ u)² / Σ ŵ u² for normalised weights ŵ and increments u = e^{dβ Δ}: the fraction of
/// the current population's ESS that the increment keeps.
pub fn conditional_ess(log_w: &[f64], delta: &[f64], d_beta: f64) -> f64 {
    // In logs: (Σ e^{w + dβΔ})² / (Σ e^w · Σ e^{w + 2dβΔ}).
    let lse = |f: &dyn Fn(f64, f64) -> f64| {
        let x: Vec<f64> = log_w.iter().zip(delta).map(|(&w, &d)| f(w, d)).collect();
        crate::analysis::stats::log_sum_exp(&x)
    };
    let one = lse(&|w, d| w + d_beta * d);
    let two = lse(&|w, d| w + 2.0 * d_beta * d);
    let r = (2.0 * one - lse(&|w, _| w) - two).exp();
    if r.is_nan() {
        0.0
    } else {
        r.min(1.0)
    }
}

/// One MALA sweep of every particle on γ_β = (1 − β) log π̃_k − β S_k; the acceptance
/// probabilities in particle order.
fn mala_sweep(ladder: &dyn Ladder, k: usize, v: usize, beta: f64, eps: f64, pop: &mut Population) -> Vec<f64> {
    let n = pop.rngs.len();
    let mut out = vec![0.0; n];
    let proposal = &pop.proposal;
    pop.phi
        .par_chunks_mut(v)
        .zip(pop.rngs.par_iter_mut())
        .zip(pop.start.par_iter_mut().zip(pop.action.par_iter_mut()))
        .zip(out.par_iter_mut())
        .for_each(|(((phi, rng), (start, action)), prob)| {
            *prob = mala_move((ladder, proposal), k, beta, eps, phi, rng, (start, action));
        });
    out
}

/// log γ_β(φ) and its gradient, with (log π̃_k, S_k).
fn tempered(
    (ladder, proposal): (&dyn Ladder, &[f64]),
    k: usize,
    beta: f64,
    phi: &[f64],
    grad: &mut [f64],
) -> (f64, f64, f64) {
    let mut ds = vec![0.0; phi.len()];
    let s = ladder.action(k, phi, Some(&mut ds));
    grad.iter_mut().for_each(|g| *g = 0.0);
    let l = ladder.start_log_density(k, proposal, phi, Some(grad));
    for (g, d) in grad.iter_mut().zip(&ds) {
        *g = (1.0 - beta) * *g - beta * d;
    }
    ((1.0 - beta) * l - beta * s, l, s)
}

fn mala_move(
    ladder: (&dyn Ladder, &[f64]),
    k: usize,
    beta: f64,
    eps: f64,
    phi: &mut [f64],
    rng: &mut Stream,
    (start, action): (&mut f64, &mut f64),
) -> f64 {
    let v = phi.len();
    let mut g0 = vec![0.0; v];
    let (lp0, _, _) = tempered(ladder, k, beta, phi, &mut g0);
    let h = 0.5 * eps * eps;
    let prop: Vec<f64> = phi
        .iter()
        .zip(&g0)
        .map(|(x, g)| {
            let z: f64 = StandardNormal.sample(rng);
            x + h * g + eps * z
        })
        .collect();
    let mut g1 = vec![0.0; v];
    let (lp1, l1, s1) = tempered(ladder, k, beta, &prop, &mut g1);
    // log q(φ | φ') − log q(φ' | φ) of the Langevin proposal.
    let back: f64 = phi.iter().zip(&prop).zip(&g1).map(|((x, y), g)| (x - y - h * g).powi(2)).sum();
    let fwd: f64 = phi.iter().zip(&prop).zip(&g0).map(|((x, y), g)| (y - x - h * g).powi(2)).sum();
    let log_a = lp1 - lp0 - (back - fwd) / (2.0 * eps * eps);
    let prob = if log_a.is_nan() { 0.0 } else { log_a.min(0.0).exp() };
    let u: f64 = rng.random();
    if u < prob {
        phi.copy_from_slice(&prop);
        (*start, *action) = (l1, s1);
    }
    prob
}

/// The ladder's exact moves of every particle; their mean acceptance.
fn exact_moves(ladder: &dyn Ladder, k: usize, lat: Lattice, first: u64, pop: &mut Population) -> f64 {
    let v = lat.volume();
    let acc: Vec<f64> = pop
        .phi
        .par_chunks_mut(v)
        .zip(pop.rngs.par_iter_mut())
        .enumerate()
        .map(|(i, (phi, rng))| ladder.exact_moves(k, first + i as u64, phi, rng))
        .collect();
    pop.action = pop.phi.par_chunks(v).map(|f| ladder.action(k, f, None)).collect();
    let finite: Vec<f64> = acc.into_iter().filter(|a| a.is_finite()).collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}

// The tests run φ⁴'s ladder: they live with it (`phi4/multilevel_tests.rs`), so that this
// module does not import the theory that implements its interface.
