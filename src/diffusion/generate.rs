//! The `latdiff sample` driver: batches of samples spread over ranks, streamed to one file.
//!
//! Global sample i always uses `rng::stream(seed, Domain::Sample, i)`. Round r covers the
//! indices [r·R·b, (r+1)·R·b) and rank k draws the k-th block of b of them, so rank 0
//! receives every round's samples in index order: the file is the same for any rank count.

use super::model::{self, LoadedModel};
use super::sampler::{sample_batch, Imh, Kernel, SamplerKind, SamplerSettings};
use super::ScoreModel;
use crate::backend::Device;
use crate::config::{resolve_theory, SampleConfig};
use crate::dist::Comm;
use crate::error::input_err;
use crate::io::{AttrValue, ConfigShape, EnsembleWriter};
use crate::lattice::Lattice;
use crate::rng::{self, Domain};
use crate::theory::{Action, Couplings, Parametrisation, Phi4, Theory, U1};
use crate::util::{Progress, StopFlag};
use anyhow::{anyhow, bail, Result};
use rand::RngExt;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Index of the `Domain::Misc` stream whose uniforms decide the `--metropolis` chain (one
/// per proposal, in index order, the first included): with the proposals' log-weights this
/// reproduces the chain through `sampler::independence_metropolis`.
pub const METROPOLIS_STREAM: u64 = 0x494d48;

/// Times the score evaluations, to report the share of sampling spent in the network.
pub struct Timed<'a> {
    inner: &'a dyn ScoreModel,
    nanos: AtomicU64,
    stop: Option<&'a StopFlag>,
}

/// What a score evaluation refused after a stop signal: the batch it belongs to is dropped.
pub(crate) const INTERRUPTED: &str = "interrupted by a stop signal";

impl<'a> Timed<'a> {
    pub fn new(inner: &'a dyn ScoreModel) -> Self {
        Timed { inner, nanos: AtomicU64::new(0), stop: None }
    }

    /// Every score evaluation fails once `stop` is raised: a batch of a huge lattice takes
    /// minutes, longer than a stop signal's grace period.
    pub fn stopping_on(self, stop: &'a StopFlag) -> Self {
        Timed { stop: Some(stop), ..self }
    }

    /// Seconds spent in `score` so far.
    pub fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

impl ScoreModel for Timed<'_> {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        self.inner.check_lattice(lat)
    }
    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        if self.stop.is_some_and(StopFlag::raised) {
            return Err(INTERRUPTED.into());
        }
        let t = std::time::Instant::now();
        let r = self.inner.score(lat, phi, sigma, out);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn has_action(&self) -> bool {
        self.inner.has_action()
    }
    fn action_values(
        &self,
        lat: Lattice,
        phi: &[f64],
        sigma: &[f64],
        action: &mut [f64],
        score: Option<&mut [f64]>,
    ) -> Result<(), String> {
        if self.stop.is_some_and(StopFlag::raised) {
            return Err(INTERRUPTED.into());
        }
        let t = std::time::Instant::now();
        let r = self.inner.action_values(lat, phi, sigma, action, score);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        self.inner.two_point(lat)
    }
    fn torus_dof(&self, lat: Lattice) -> Option<usize> {
        self.inner.torus_dof(lat)
    }
    fn device(&self) -> String {
        self.inner.device()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[derive(Clone, Debug)]
pub struct SampleSummary {
    pub n: usize,
    pub seconds: f64,
    pub ess_fraction: Option<f64>,
    pub log_w_std: Option<f64>,
    pub acceptance: Option<f64>,
    /// pc with an action model: the MALA corrector's mean acceptance probability.
    pub corrector_acceptance: Option<f64>,
    pub network_share: f64,
    pub network_evals_per_s: f64,
}

/// Everything decided before any work; errors here are bad input.
pub struct Plan {
    pub loaded: LoadedModel,
    pub lattice: Lattice,
    pub target: Couplings,
    pub settings: SamplerSettings,
    pub batch: usize,
}

/// The theory the weights are exact for: the model's training theory, with whatever
/// couplings the flags give instead (φ⁴: kappa/m2/lambda; U(1): beta, which conditions the
/// model on it).
fn target_couplings(cfg: &SampleConfig, trained: Couplings) -> Result<Couplings> {
    let p = match trained {
        Couplings::U1 { beta } => {
            for (k, v) in [("kappa", cfg.kappa), ("m2", cfg.m2), ("lambda", cfg.lambda)] {
                if let Some(v) = v {
                    bail!(input_err(anyhow!(
                        "{k}: {v} given, but the model is a U(1) gauge model (its coupling is beta)"
                    )));
                }
            }
            return Ok(Couplings::U1 { beta: cfg.beta.unwrap_or(beta) });
        }
        Couplings::Phi4(p) => p,
    };
    if let Some(b) = cfg.beta {
        bail!(input_err(anyhow!(
            "beta: {b} given, but the model is a phi4 model (its couplings are kappa or m2, and lambda)"
        )));
    }
    if cfg.kappa.is_none() && cfg.m2.is_none() && cfg.lambda.is_none() {
        return Ok(Couplings::Phi4(p));
    }
    let (kappa, m2) = match (cfg.kappa, cfg.m2, p) {
        (None, None, Parametrisation::Hopping { kappa, .. }) => (Some(kappa), None),
        (None, None, Parametrisation::Mass { m2, .. }) => (None, Some(m2)),
        (k, m, _) => (k, m),
    };
    Ok(Couplings::Phi4(resolve_theory(kappa, m2, cfg.lambda.or(Some(p.lambda()))).map_err(input_err)?))
}

/// What the torus takes: the em sampler and SMC on it (the wrapped em kernel).
fn check_torus_sampler(sampler: SamplerKind) -> Result<()> {
    if !matches!(sampler, SamplerKind::Em | SamplerKind::Smc) {
        bail!(input_err(anyhow!(
            "sampler: '{}' is not available for U(1) gauge models (em, with path weights and --metropolis, or smc)",
            sampler.name()
        )));
    }
    Ok(())
}

pub fn plan(cfg: &SampleConfig, device: Device, comm: &Comm) -> Result<Plan> {
    if let Some(b) = cfg.beta {
        if !(b > 0.0 && b.is_finite()) {
            bail!(input_err(anyhow!("beta: {b} is not a positive coupling")));
        }
    }
    let loaded = model::load_conditioned(&cfg.model, !cfg.no_ema, device, cfg.beta)?;
    let lattice = match (cfg.lattice, loaded.lattice) {
        (Some(l), _) => l.0,
        (None, Some(l)) => l,
        (None, None) => return Err(input_err(anyhow!("lattice: required with an analytic model ({})", cfg.model))),
    };
    loaded.model.check_lattice(lattice).map_err(|e| input_err(anyhow!(e)))?;
    let batch = batch_within_budget(cfg, &loaded, lattice, comm)?;
    let target = target_couplings(cfg, loaded.theory)?;
    let (sampler, mut kernel) = (cfg.sampler, cfg.kernel);
    if loaded.model.torus_dof(lattice).is_some() {
        check_torus_sampler(sampler)?;
        // The matched kernel (the default) is Gaussian on R^V: the torus has the wrapped em.
        kernel = Kernel::Em;
    }
    let v = lattice.volume() as f64;
    let (smin, smax) = match loaded.schedule {
        // The network knows only the noise levels it was trained on: keep them on larger
        // lattices too. The matched start N(0, G + σ_max²) already carries the data's
        // two-point function, so σ_max need not swamp the (√V larger) configurations.
        Some(s) => (s.sigma_min, s.sigma_max),
        None => {
            let g = loaded.model.two_point(lattice);
            let phi2 = g.iter().sum::<f64>() / v;
            (0.01, 2.0 * (v * phi2).sqrt())
        }
    };
    let mut settings =
        SamplerSettings::new(sampler, cfg.steps, cfg.sigma_min.unwrap_or(smin), cfg.sigma_max.unwrap_or(smax));
    settings.kernel = kernel;
    settings.corrector_steps = cfg.corrector_steps;
    settings.snr = cfg.snr;
    settings.validate().map_err(|e| input_err(anyhow!(e)))?;
    Ok(Plan { loaded, lattice, target, settings, batch })
}

/// Without `--max-memory`, batches are sized for at most this much per rank (more buys
/// little speed), or the default budget where that is smaller.
const DEFAULT_BATCH_MIB: u64 = 2048;

/// The batch (`--batch`, or the largest that fits the sizing budget), checked against every
/// rank's memory budget before anything lattice-sized is allocated. Rank 0's sizing budget
/// is used on every rank: the rounds' layout needs one batch size.
fn batch_within_budget(cfg: &SampleConfig, loaded: &LoadedModel, lattice: Lattice, comm: &Comm) -> Result<usize> {
    let shape = super::memory::SampleShape {
        arch: loaded.file.as_ref().map(|f| &f.arch),
        n_params: loaded.file.as_ref().map_or(0, |f| f.params.len()),
        lattice,
        n_configs: cfg.n_configs,
        ranks: comm.size(),
        threads: rayon::current_num_threads(),
        hmc_refine: cfg.hmc_refine > 0,
        root: comm.is_root(),
    };
    let batch = match cfg.batch {
        Some(b) => b,
        None => {
            let limit = crate::limits::budget(cfg.max_memory, comm.node_local_size());
            let sizing = match (cfg.max_memory, limit) {
                (Some(m), _) => (m as u64) << 20,
                (None, Some(b)) => b.bytes.min(DEFAULT_BATCH_MIB << 20),
                (None, None) => DEFAULT_BATCH_MIB << 20,
            };
            let mut bytes = sizing.to_le_bytes().to_vec();
            comm.broadcast_bytes(&mut bytes);
            // Sized as rank 0, which also holds the gathered rows, so that all agree.
            let as_root = super::memory::SampleShape { root: true, ..shape };
            as_root.batch_for(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")))
        }
    };
    let (bytes, what) = shape.bytes(batch.min(cfg.n_configs.div_ceil(comm.size())).max(1));
    crate::limits::check(comm, bytes, &what, cfg.max_memory)?;
    Ok(batch)
}

pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, device: Device) -> Result<SampleSummary> {
    let p = plan(cfg, device, comm)?;
    if p.settings.sampler == SamplerKind::Smc {
        return super::smc::driver::run(cfg, comm, stop, p);
    }
    let root = comm.is_root();
    if root {
        crate::backend::announce();
    }
    let lat = p.lattice;
    let target = Target::new(lat, p.target);
    let v = target.shape().len();
    let weighted = p.settings.has_weights();
    let timed = Timed::new(p.loaded.model.as_ref()).stopping_on(stop);
    let (r, nr) = (comm.rank(), comm.size());
    let b = p.batch.min(cfg.n_configs.div_ceil(nr)).max(1);
    if root {
        eprintln!(
            "latdiff sample: {} on {lat}, target {} {}, {} sampler, {} kernel, {} steps, sigma in [{:.3e}, {:.3e}], {} configs in batches of {b} over {nr} rank(s), model on {}",
            p.loaded.model.describe(),
            p.target.name(),
            p.target.describe(),
            p.settings.sampler.name(),
            p.settings.kernel.name(),
            p.settings.n_steps,
            p.settings.sigma_min,
            p.settings.sigma_max,
            cfg.n_configs,
            p.loaded.model.device()
        );
    }
    let mut cols: Vec<&str> = vec!["action"];
    if weighted && !cfg.metropolis {
        cols.push("log_weight");
    }
    if cfg.metropolis {
        cols.push("proposal_log_weight");
    }
    let icols: Vec<&str> =
        if cfg.metropolis { vec!["chain", "trajectory", "accepted"] } else { vec!["chain", "trajectory"] };
    let mut writer = if root { Some(EnsembleWriter::create(&cfg.out, target.shape(), &cols, &icols)?) } else { None };

    let mut imh_rng = rng::stream(cfg.seed, Domain::Misc, METROPOLIS_STREAM);
    let mut imh = Imh::new();
    // The configuration, action and index of the proposal the chain sits on.
    let mut imh_state: Option<(Vec<f32>, f64, i64)> = None;
    let mut all_log_w: Vec<f64> = Vec::new();
    let per_round = b * nr;
    let n_rounds = cfg.n_configs.div_ceil(per_round);
    let mut progress = Progress::new("sample", cfg.n_configs as u64, "configs", root);
    let t0 = std::time::Instant::now();
    let mut evals = 0usize;
    // Σ over configurations of their batch's corrector acceptance, and their number.
    let mut corrector = [0.0, 0.0];
    let mut n_done = 0usize;
    for round in 0..n_rounds {
        let first = round * per_round + r * b;
        let k = b.min(cfg.n_configs.saturating_sub(first));
        let batch = (k > 0).then(|| {
            let t = weighted.then_some(target.action());
            sample_batch(&timed, t, lat, &p.settings, cfg.seed, first as u64, k)
        });
        // A batch interrupted on any rank drops the whole round on every rank.
        let mut interrupted = [f64::from(u8::from(matches!(&batch, Some(Err(e)) if e == INTERRUPTED)))];
        comm.all_reduce_sum(&mut interrupted);
        if interrupted[0] > 0.0 {
            break;
        }
        let (mut cfgs, mut logw) = if let Some(sb) = batch {
            let sb = sb.map_err(|e| anyhow!(e))?;
            evals += sb.network_evaluations();
            if let Some(a) = sb.corrector_acceptance {
                corrector[0] += a * k as f64;
                corrector[1] += k as f64;
            }
            (sb.configs, sb.log_weight.unwrap_or_else(|| vec![0.0; k]))
        } else {
            (Vec::new(), Vec::new())
        };
        target.refine(&mut cfgs, cfg.seed, first as u64, cfg.hmc_refine);
        let actions: Vec<f64> = cfgs.par_chunks(v).map(|c| target.action().action(c)).collect();
        let c32: Vec<f32> = cfgs.iter().map(|&x| x as f32).collect();
        let counts: Vec<usize> =
            (0..nr).map(|q| b.min(cfg.n_configs.saturating_sub(round * per_round + q * b))).collect();
        let all32 = comm.gather(&c32, &counts.iter().map(|c| c * v).collect::<Vec<_>>());
        let mut pair = Vec::with_capacity(2 * k);
        for i in 0..k {
            pair.push(actions[i]);
            pair.push(logw[i]);
        }
        logw.clear();
        let all64 = comm.gather(&pair, &counts.iter().map(|c| 2 * c).collect::<Vec<_>>());
        if let Some(w) = writer.as_mut() {
            let n = all64.len() / 2;
            let base = round * per_round;
            let act: Vec<f64> = (0..n).map(|i| all64[2 * i]).collect();
            let lw: Vec<f64> = (0..n).map(|i| all64[2 * i + 1]).collect();
            all_log_w.extend(&lw);
            let idx: Vec<i64> = (0..n).map(|i| (base + i) as i64).collect();
            let zeros = vec![0i64; n];
            if cfg.metropolis {
                // Independence Metropolis over the proposals in index order, streamed.
                let (mut out, mut oa, mut olw, mut ot, mut oacc) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for i in 0..n {
                    let moved = imh.step(lw[i], imh_rng.random());
                    if moved {
                        imh_state = Some((all32[i * v..][..v].to_vec(), act[i], idx[i]));
                    }
                    let (c, a, j) = imh_state.as_ref().expect("the first proposal starts the chain");
                    out.extend_from_slice(c);
                    oa.push(*a);
                    olw.push(imh.log_weight().expect("the first proposal starts the chain"));
                    ot.push(*j);
                    oacc.push(i64::from(moved));
                }
                w.append(&out, &[&oa, &olw], &[&zeros, &ot, &oacc])?;
            } else if weighted {
                w.append(&all32, &[&act, &lw], &[&zeros, &idx])?;
            } else {
                w.append(&all32, &[&act], &[&zeros, &idx])?;
            }
        }
        let done = counts.iter().sum::<usize>();
        progress.inc(done as u64);
        n_done += done;
        // Every rank decides together (a rank stopping alone would leave the others in the
        // next round's gather); what is done is kept as a complete, shorter ensemble.
        let mut flag = [f64::from(u8::from(stop.raised()))];
        comm.all_reduce_sum(&mut flag);
        if flag[0] > 0.0 && round + 1 < n_rounds {
            break;
        }
    }
    progress.finish();
    if n_done == 0 {
        bail!("stopped by signal before the first round of configurations was complete: nothing was written");
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mut ev = [evals as f64, timed.seconds()];
    comm.all_reduce_sum(&mut ev);
    let network_share = ev[1] / (seconds * nr as f64);
    comm.all_reduce_sum(&mut corrector);
    let mut s = SampleSummary {
        n: n_done,
        seconds,
        ess_fraction: None,
        log_w_std: None,
        acceptance: None,
        corrector_acceptance: (corrector[1] > 0.0).then(|| corrector[0] / corrector[1]),
        network_share,
        network_evals_per_s: ev[0] / seconds,
    };
    if let Some(w) = writer {
        if weighted {
            let ess = crate::analysis::stats::ess(&all_log_w);
            let n = all_log_w.len() as f64;
            let m = all_log_w.iter().sum::<f64>() / n;
            s.ess_fraction = Some(ess / n);
            s.log_w_std = Some((all_log_w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt());
        }
        if cfg.metropolis {
            s.acceptance = Some(imh.acceptance());
        }
        write_attrs(&w, cfg, &p, comm, &s)?;
        w.finish()?;
        if n_done < cfg.n_configs {
            eprintln!(
                "stopped by signal after {n_done} of {} configurations: those are kept as a complete, shorter ensemble (attribute stopped_by_signal = 1, n_requested)",
                cfg.n_configs
            );
        }
        eprintln!(
            "wrote {} configurations to {}: {:.2} configs/s, {:.1} network evaluations/s ({:.0}% of the time in the network){}{}{}{}",
            n_done,
            cfg.out.display(),
            n_done as f64 / seconds,
            s.network_evals_per_s,
            100.0 * network_share,
            s.ess_fraction.map(|e| format!(", ESS/N = {e:.4}")).unwrap_or_default(),
            s.log_w_std.map(|e| format!(", std(log w) = {e:.3}")).unwrap_or_default(),
            s.acceptance.map(|a| format!(", Metropolis acceptance {a:.4}")).unwrap_or_default(),
            s.corrector_acceptance.map(|a| format!(", MALA corrector acceptance {a:.4}")).unwrap_or_default(),
        );
    }
    Ok(s)
}

/// The theory the samples are exact for, on the sampling lattice.
pub(crate) enum Target {
    Phi4(Phi4),
    U1(U1),
}

impl Target {
    pub(crate) fn new(lat: Lattice, c: Couplings) -> Self {
        match c {
            Couplings::Phi4(p) => Target::Phi4(Phi4::new(lat, p)),
            Couplings::U1 { beta } => Target::U1(U1::new(lat, beta)),
        }
    }

    pub(crate) fn action(&self) -> &dyn Action {
        match self {
            Target::Phi4(t) => t,
            Target::U1(t) => t,
        }
    }

    /// One configuration's shape in /configs (the theory's `dof_shape`).
    pub(crate) fn shape(&self) -> ConfigShape {
        let lat = self.action().lattice();
        let dims = match self {
            Target::Phi4(t) => t.dof_shape(lat),
            Target::U1(t) => t.dof_shape(lat),
        };
        ConfigShape::new(dims).expect("a theory's configuration shape")
    }

    pub(crate) fn refine(&self, configs: &mut [f64], seed: u64, first: u64, trajectories: usize) {
        match self {
            Target::Phi4(t) => super::refine::hmc_refine(t, configs, seed, first, trajectories),
            Target::U1(t) => super::refine::hmc_refine(t, configs, seed, first, trajectories),
        }
    }

    fn write_attrs(&self, w: &EnsembleWriter) -> Result<()> {
        let lat = self.action().lattice();
        match self {
            Target::Phi4(t) => crate::mc::ensemble::theory_attrs(w, t, lat),
            Target::U1(t) => crate::mc::ensemble::theory_attrs(w, t, lat),
        }
    }
}

pub(crate) fn write_attrs(
    w: &EnsembleWriter,
    cfg: &SampleConfig,
    p: &Plan,
    comm: &Comm,
    s: &SampleSummary,
) -> Result<()> {
    Target::new(p.lattice, p.target).write_attrs(w)?;
    w.set_attr("generator", AttrValue::Str("diffusion".into()))?;
    w.set_attr("model", AttrValue::Str(cfg.model.clone()))?;
    w.set_attr("model_description", AttrValue::Str(p.loaded.model.describe()))?;
    w.set_attr("model_theory", AttrValue::Str(p.loaded.theory.describe()))?;
    if let (Couplings::U1 { beta: b }, Couplings::U1 { beta: b0 }) = (p.target, p.loaded.theory) {
        // β-conditioning: the network's correction scaled by β/β_train.
        w.set_attr("beta_conditioning", AttrValue::F64(b / b0))?;
    }
    w.set_attr("device", AttrValue::Str(p.loaded.model.device()))?;
    if let Some(f) = &p.loaded.file {
        for (k, v) in &f.attrs {
            if k != "config" {
                w.set_attr(&format!("model_{k}"), v.clone())?;
            }
        }
        w.set_attr("model_train_lattice", AttrValue::I64s(vec![f.train_lattice.lt as i64, f.train_lattice.lx as i64]))?;
    }
    w.set_attr("sampler", AttrValue::Str(p.settings.sampler.name().into()))?;
    w.set_attr("kernel", AttrValue::Str(p.settings.kernel.name().into()))?;
    w.set_attr("steps", AttrValue::I64(p.settings.n_steps as i64))?;
    w.set_attr("sigma_min", AttrValue::F64(p.settings.sigma_min))?;
    w.set_attr("sigma_max", AttrValue::F64(p.settings.sigma_max))?;
    w.set_attr("sigma_ladder", AttrValue::F64s(p.settings.sigma_ladder()))?;
    w.set_attr("hmc_refine", AttrValue::I64(cfg.hmc_refine as i64))?;
    w.set_attr("metropolis", AttrValue::I64(i64::from(cfg.metropolis)))?;
    w.set_attr("seed", AttrValue::I64(cfg.seed as i64))?;
    w.set_attr("n_ranks", AttrValue::I64(comm.size() as i64))?;
    w.set_attr("n_chains", AttrValue::I64(1))?;
    // A run stopped by SIGTERM/SIGUSR1 keeps what it made: say so, and how much was asked.
    w.set_attr("n_requested", AttrValue::I64(cfg.n_configs as i64))?;
    w.set_attr("stopped_by_signal", AttrValue::I64(i64::from(s.n < cfg.n_configs)))?;
    if let Some(e) = s.ess_fraction {
        w.set_attr("ess_fraction", AttrValue::F64(e))?;
        w.set_attr("ess", AttrValue::F64(e * s.n as f64))?;
    }
    if let Some(x) = s.log_w_std {
        w.set_attr("log_weight_std", AttrValue::F64(x))?;
    }
    if let Some(a) = s.acceptance {
        w.set_attr("acceptance", AttrValue::F64(a))?;
    }
    if let Some(a) = s.corrector_acceptance {
        w.set_attr("corrector_acceptance", AttrValue::F64(a))?;
    }
    w.set_attr("config", AttrValue::Str(crate::config::to_toml(cfg)))?;
    Ok(())
}
