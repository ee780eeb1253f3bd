//! The `latdiff hmc` driver: thermalise (checked), then produce and stream an ensemble.
//!
//! Chains are split over ranks in contiguous blocks and over threads with rayon. Every
//! chain's evolution depends only on (seed, chain index), and rank 0 writes rows in
//! (round, chain) order, so the file is bit-identical for any rank or thread count.

use super::checkpoint::{checkpoint_path, HmcCheckpoint, Phase};
use super::device;
use super::engine::{ChainState, HmcEngine, HmcSetup};
use super::hmc::{HmcParams, TrajectoryResult};
use super::therm::{ChainHistory, ThermReport};
use crate::backend::Device;
use crate::config::{HmcConfig, NTherm};
use crate::dist::Comm;
use crate::io::{AttrValue, ConfigShape, EnsembleWriter};
use crate::theory::{Couplings, Phi4, Su2, Theory, U1};
use crate::util::{Progress, StopFlag};
use anyhow::Result;

/// Per-chain sums over production trajectories; summed in chain order on rank 0.
#[derive(Clone, Copy, Debug, Default)]
struct TrajStats {
    n: f64,
    accepted: f64,
    exp_mdh: f64,
    exp_mdh2: f64,
    dh: f64,
    dh2: f64,
}

impl TrajStats {
    fn add(&mut self, r: &TrajectoryResult) {
        let e = (-r.delta_h).exp();
        self.n += 1.0;
        self.accepted += f64::from(u8::from(r.accepted));
        self.exp_mdh += e;
        self.exp_mdh2 += e * e;
        self.dh += r.delta_h;
        self.dh2 += r.delta_h * r.delta_h;
    }
    fn to_vec(self) -> [f64; 6] {
        [self.n, self.accepted, self.exp_mdh, self.exp_mdh2, self.dh, self.dh2]
    }
    fn from_array(a: [f64; 6]) -> Self {
        TrajStats { n: a[0], accepted: a[1], exp_mdh: a[2], exp_mdh2: a[3], dh: a[4], dh2: a[5] }
    }
}

/// Whether any rank was asked to stop: every rank takes the same decision at the same point,
/// so that the checkpoint's collectives line up.
fn stop_everywhere(comm: &Comm, stop: &StopFlag) -> bool {
    let mut f = [f64::from(u8::from(stop.raised()))];
    comm.all_reduce_sum(&mut f);
    f[0] > 0.0
}

/// What a checkpoint records besides the chains (collective: every rank calls it).
struct Progressed<'a> {
    phase: Phase,
    rows_written: usize,
    report: Option<&'a ThermReport>,
    hist: &'a [ChainHistory],
    stats: &'a [TrajStats],
    seconds: f64,
}

/// Gathers every chain's state to rank 0, which flushes the partial output and writes the
/// checkpoint atomically.
fn write_checkpoint(
    cfg: &HmcConfig,
    comm: &Comm,
    engine: &mut dyn HmcEngine,
    writer: Option<&EnsembleWriter>,
    p: Progressed,
) -> Result<()> {
    let states = engine.save()?;
    let v = states.first().map_or(0, |c| c.phi.len());
    let counts = comm.block_counts(cfg.n_chains);
    let by = |k: usize| counts.iter().map(|c| c * k).collect::<Vec<_>>();
    let phi: Vec<f64> = states.iter().flat_map(|c| c.phi.iter().copied()).collect();
    let rng: Vec<u64> = states.iter().flat_map(|c| c.rng).collect();
    let ints: Vec<i64> =
        states.iter().flat_map(|c| [c.n_traj as i64, c.n_accept as i64, i64::from(c.hot_start)]).collect();
    let cached: Vec<f64> = states.iter().flat_map(|c| [c.action, c.monitor]).collect();
    let stats: Vec<f64> = p.stats.iter().flat_map(|s| s.to_vec()).collect();
    let done = p.hist.first().map_or(0, |h| h.action_density.len());
    let hist: Vec<f64> = p.hist.iter().flat_map(|h| h.action_density.iter().chain(&h.monitor).copied()).collect();
    let (phi, rng, ints) = (comm.gather(&phi, &by(v)), comm.gather(&rng, &by(4)), comm.gather(&ints, &by(3)));
    let cached = comm.gather(&cached, &by(2));
    let stats = if p.stats.is_empty() { vec![] } else { comm.gather(&stats, &by(6)) };
    let hist = if done == 0 { vec![] } else { comm.gather(&hist, &by(2 * done)) };
    let Some(w) = writer else { return Ok(()) };
    w.flush()?;
    let chains = (0..cfg.n_chains)
        .map(|c| ChainState {
            phi: phi[c * v..(c + 1) * v].to_vec(),
            rng: std::array::from_fn(|k| rng[4 * c + k]),
            n_traj: ints[3 * c] as u64,
            n_accept: ints[3 * c + 1] as u64,
            hot_start: ints[3 * c + 2] != 0,
            action: cached[2 * c],
            monitor: cached[2 * c + 1],
        })
        .collect::<Vec<_>>();
    let ck = HmcCheckpoint {
        config: crate::config::to_toml(cfg),
        phase: p.phase,
        rows_written: p.rows_written,
        report: p.report.cloned(),
        hist: (0..if done > 0 { cfg.n_chains } else { 0 })
            .map(|c| {
                let h = &hist[2 * done * c..2 * done * (c + 1)];
                ChainHistory {
                    hot_start: chains[c].hot_start,
                    action_density: h[..done].to_vec(),
                    monitor: h[done..].to_vec(),
                }
            })
            .collect(),
        stats: stats.chunks(6).map(|x| std::array::from_fn(|k| x[k])).collect(),
        chains,
        seconds: p.seconds,
        n_ranks: comm.size(),
    };
    ck.write(&checkpoint_path(&cfg.out))
}

#[derive(Clone, Debug)]
pub struct HmcSummary {
    pub n_configs: usize,
    pub acceptance: f64,
    pub exp_mdh: f64,
    pub exp_mdh_err: f64,
    pub delta_h_rms: f64,
    pub therm: ThermReport,
    pub seconds: f64,
    pub trajectories: u64,
    /// Stopped by a signal: a checkpoint was written instead of the output.
    pub stopped: bool,
}

/// Acceptance over every chain's last quarter of `n_therm` thermalisation trajectories
/// (collective); None when this process ran none of them (resumed at the end).
fn last_quarter_acceptance(accepted: &[Vec<bool>], n_therm: usize, comm: &Comm) -> Option<f64> {
    let q = n_therm.div_ceil(4);
    let mut sums = [0.0; 2];
    for a in accepted {
        let tail = &a[a.len().saturating_sub(q)..];
        sums[0] += tail.iter().filter(|&&x| x).count() as f64;
        sums[1] += tail.len() as f64;
    }
    comm.all_reduce_sum(&mut sums);
    (sums[1] > 0.0).then(|| sums[0] / sums[1])
}

/// `k` updates of every chain, or None on every rank when a stop signal interrupted them
/// on any rank: the chains are then rolled back to where the batch began, so a checkpoint
/// written now continues bit for bit. Without this a signal waits for the whole batch, which
/// for long trajectories or huge lattices outlasts Slurm's grace period.
fn advance_or_stop(
    engine: &mut dyn HmcEngine,
    k: usize,
    comm: &Comm,
    stop: &StopFlag,
    first_chain: usize,
) -> Result<Option<Vec<Vec<TrajectoryResult>>>> {
    let saved = if engine.interruptible() { Some(engine.save()?) } else { None };
    let res = engine.advance_until(k, stop)?;
    if let Some(r) = &res {
        all_finite(r, first_chain)?;
    }
    let mut gave_up = [f64::from(u8::from(res.is_none()))];
    comm.all_reduce_sum(&mut gave_up);
    if gave_up[0] == 0.0 {
        return Ok(res);
    }
    if let Some(s) = saved {
        engine.restore(&s)?;
    }
    Ok(None)
}

/// A chain whose action became non-finite, or whose ΔH is NaN, holds NaN or inf in its
/// field (a damaged checkpoint, an overflowing integrator): it stops the run, naming the
/// chain (`first_chain` is this rank's first global chain), before any of it is saved,
/// averaged or judged thermalised. (ΔH = +inf alone is a rejected proposal, not a broken
/// chain.)
fn all_finite(res: &[Vec<TrajectoryResult>], first_chain: usize) -> Result<()> {
    for (c, rs) in res.iter().enumerate() {
        if let Some(r) = rs.iter().find(|r| !r.action.is_finite() || r.delta_h.is_nan()) {
            anyhow::bail!(
                "chain {}: action {} and dH {} are not finite numbers: its field holds NaN or inf (a damaged checkpoint, or --tau/--n-md far from stable)",
                first_chain + c,
                r.action,
                r.delta_h
            );
        }
    }
    Ok(())
}

pub fn run(cfg: &HmcConfig, comm: &Comm, stop: &StopFlag) -> Result<HmcSummary> {
    run_on(cfg, comm, stop, Device::Cpu)
}

/// The chains of this rank for `theory`, as the configuration asks.
fn setup_for<T: Theory>(cfg: &HmcConfig, comm: &Comm, theory: T) -> HmcSetup<T> {
    let (c0, c1) = comm.block(cfg.n_chains);
    HmcSetup {
        theory,
        params: HmcParams { integrator: cfg.integrator, n_md: cfg.n_md, tau: cfg.tau, tau_jitter: cfg.tau_jitter },
        cluster_updates: cfg.cluster_updates,
        seed: cfg.seed,
        start: cfg.start,
        chains: c0..c1,
    }
}

/// `run` on a chosen device: the chains live in an [`HmcEngine`] built once for `device`
/// (CPU reference, or all of this rank's chains on its GPU). The theory is chosen here;
/// the driver below is generic.
pub fn run_on(cfg: &HmcConfig, comm: &Comm, stop: &StopFlag, device: Device) -> Result<HmcSummary> {
    let lat = cfg.lattice();
    match cfg.couplings()? {
        Couplings::Phi4(param) => {
            let setup = setup_for(cfg, comm, Phi4::new(lat, param));
            let engine = device::build(device, &setup)?;
            drive(cfg, comm, stop, device, engine, &setup)
        }
        Couplings::U1 { beta } => {
            let setup = setup_for(cfg, comm, U1::new(lat, beta));
            let engine = device::build(device, &setup)?;
            drive(cfg, comm, stop, device, engine, &setup)
        }
        // No GPU kernels for SU(2): the CPU engine (`cli::hmc` refuses --device cuda).
        Couplings::Su2 { beta } => {
            let setup = setup_for(cfg, comm, Su2::new(lat, beta));
            anyhow::ensure!(device == Device::Cpu, "theory su2 runs on the CPU only");
            let engine: Box<dyn super::engine::HmcEngine> = Box::new(super::engine::CpuHmc::new(&setup));
            drive(cfg, comm, stop, device, engine, &setup)
        }
    }
}

/// One line naming the theory and its couplings, e.g. "phi4 kappa = 0.27, lambda = 0.022 (hopping)".
fn headline(c: &Couplings) -> String {
    match c {
        Couplings::Phi4(p) => format!("phi4 {} ({})", p.describe(), p.name()),
        Couplings::U1 { beta } => format!("u1 beta = {beta}"),
        Couplings::Su2 { beta } => format!("su2 beta = {beta}"),
    }
}

/// How a phase of the run ended: done with its result, or stopped by a signal (a
/// checkpoint was written; the words say where, for the message).
enum Phase1<T> {
    Done(T),
    Stopped(String),
}

/// One `latdiff hmc` run on this rank: what its phases share.
struct Run<'a> {
    cfg: &'a HmcConfig,
    comm: &'a Comm,
    stop: &'a StopFlag,
    engine: Box<dyn HmcEngine>,
    /// Rank 0 only.
    writer: Option<EnsembleWriter>,
    resumed: Option<HmcCheckpoint>,
    t0: std::time::Instant,
    /// Stored values per configuration (sites × values per site).
    v: usize,
    /// Sites (plaquettes for U(1)): what densities are per.
    vf: f64,
    /// Chains per rank.
    counts: Vec<usize>,
    /// The theory's integer monitor column (U(1): the topological charge).
    int_col: Option<&'static str>,
}

/// Thermalisation, then production, for any theory: what `run_on` built.
fn drive<T: Theory>(
    cfg: &HmcConfig,
    comm: &Comm,
    stop: &StopFlag,
    device: Device,
    engine: Box<dyn HmcEngine>,
    setup: &HmcSetup<T>,
) -> Result<HmcSummary> {
    let mut run = Run::open(cfg, comm, stop, engine, setup)?;
    run.announce(device, setup)?;
    let report = match run.thermalise(setup.theory.monitor_name())? {
        Phase1::Done(r) => r,
        Phase1::Stopped(what) => return Ok(run.stopped(what)),
    };
    let stats = match run.produce(&report)? {
        Phase1::Done(s) => s,
        Phase1::Stopped(what) => return Ok(run.stopped(what)),
    };
    let summary = run.summarise(&stats, report);
    run.finish(&setup.theory, &summary, device)?;
    Ok(summary)
}

impl<'a> Run<'a> {
    /// Restores a resumed run's chains and opens (rank 0) the partial output.
    fn open<T: Theory>(
        cfg: &'a HmcConfig,
        comm: &'a Comm,
        stop: &'a StopFlag,
        mut engine: Box<dyn HmcEngine>,
        setup: &HmcSetup<T>,
    ) -> Result<Self> {
        let t0 = std::time::Instant::now();
        let lat = cfg.lattice();
        let theory = &setup.theory;
        let shape = ConfigShape::new(theory.dof_shape(lat))?;
        // A resumed run: every rank reads its own chains from the checkpoint.
        let resumed = if cfg.resume {
            Some(HmcCheckpoint::read(&checkpoint_path(&cfg.out), setup.chains.clone())?)
        } else {
            None
        };
        if let Some(r) = &resumed {
            engine.restore(&r.chains)?;
        }
        const F64_COLS: [&str; 2] = ["action", "delta_h"];
        // U(1) stores its topological charge per configuration, checked to be an integer.
        let int_col = theory.integer_monitor_column();
        let i64_cols: Vec<&str> = ["chain", "trajectory"].into_iter().chain(int_col).collect();
        let writer = match (&resumed, comm.is_root()) {
            (_, false) => None,
            (Some(r), true) => {
                Some(EnsembleWriter::reopen(&cfg.out, shape.clone(), &F64_COLS, &i64_cols, r.rows_written)?)
            }
            (None, true) => Some(EnsembleWriter::create_resumable(&cfg.out, shape.clone(), &F64_COLS, &i64_cols)?),
        };
        Ok(Run {
            cfg,
            comm,
            stop,
            engine,
            writer,
            resumed,
            t0,
            v: shape.len(),
            vf: lat.volume() as f64,
            counts: comm.block_counts(cfg.n_chains),
            int_col,
        })
    }

    fn root(&self) -> bool {
        self.comm.is_root()
    }

    /// Seconds of this run, including those before a resume.
    fn elapsed(&self) -> f64 {
        self.resumed.as_ref().map_or(0.0, |r| r.seconds) + self.t0.elapsed().as_secs_f64()
    }

    fn checkpoint(&mut self, p: Progressed) -> Result<()> {
        write_checkpoint(self.cfg, self.comm, self.engine.as_mut(), self.writer.as_ref(), p)
    }

    /// The summary of a run a signal stopped (its checkpoint is written).
    fn stopped(&self, what: String) -> HmcSummary {
        if self.root() {
            eprintln!(
                "stopped by signal {what}: checkpoint written to {}; continue with --resume",
                checkpoint_path(&self.cfg.out).display()
            );
        }
        HmcSummary {
            n_configs: 0,
            acceptance: f64::NAN,
            exp_mdh: f64::NAN,
            exp_mdh_err: f64::NAN,
            delta_h_rms: f64::NAN,
            therm: ThermReport::default(),
            seconds: self.elapsed(),
            trajectories: 0,
            stopped: true,
        }
    }

    /// Rank 0's opening lines: the run, the device, where a resumed run continues.
    fn announce<T: Theory>(&self, device: Device, setup: &HmcSetup<T>) -> Result<()> {
        if !self.root() {
            return Ok(());
        }
        let cfg = self.cfg;
        eprintln!(
            "latdiff hmc: {} on {}, {} chains over {} rank(s) x {} thread(s), {} n_md={} ({} force evaluations) tau={}, cluster flips/traj {}",
            headline(&cfg.couplings()?),
            cfg.lattice(),
            cfg.n_chains,
            self.comm.size(),
            rayon::current_num_threads(),
            cfg.integrator.name(),
            cfg.n_md,
            setup.params.integrator.force_evals(cfg.n_md),
            cfg.tau,
            cfg.cluster_updates
        );
        if let Device::Cuda { .. } = device {
            eprintln!("device: {}", self.engine.describe());
        }
        if let Some(r) = &self.resumed {
            let at = match r.phase {
                Phase::Therm { .. } => {
                    format!("thermalisation, trajectory {}", r.hist.first().map_or(0, |h| h.action_density.len()))
                }
                Phase::Production { rounds_done } => {
                    format!("production, round {rounds_done} ({} rows kept)", r.rows_written)
                }
            };
            eprintln!("resuming from {} at {at}", checkpoint_path(&cfg.out).display());
        }
        Ok(())
    }

    /// Thermalisation, checked: `n_therm` trajectories, or with `auto` doubled until the
    /// drift check passes (up to `n_therm_max`); a run resumed in production reuses its
    /// stored report. Rank 0 prints the verdict.
    fn thermalise(&mut self, monitor_name: &str) -> Result<Phase1<ThermReport>> {
        // Per chain, whether each thermalisation trajectory of this process was accepted (not
        // checkpointed: after a resume the verdict sees the trajectories run since).
        let mut accepted: Vec<Vec<bool>> = vec![Vec::new(); self.engine.n_chains()];
        let mut report = match &self.resumed {
            Some(HmcCheckpoint { phase: Phase::Production { .. }, report: Some(r), .. }) => r.clone(),
            _ => match self.thermalise_until_verdict(&mut accepted, monitor_name)? {
                Phase1::Done(r) => r,
                stopped => return Ok(stopped),
            },
        };
        if report.acceptance.is_none() {
            report.acceptance = last_quarter_acceptance(&accepted, report.n_therm, self.comm);
        }
        if self.root() {
            print_therm_verdict(&report);
        }
        Ok(Phase1::Done(report))
    }

    fn thermalise_until_verdict(
        &mut self,
        accepted: &mut [Vec<bool>],
        monitor_name: &str,
    ) -> Result<Phase1<ThermReport>> {
        let cfg = self.cfg;
        let (mut target, auto) = match cfg.n_therm {
            NTherm::Fixed(n) => (n, false),
            NTherm::Auto => (200.min(cfg.n_therm_max), true),
        };
        let mut hist: Vec<ChainHistory> = match &self.resumed {
            Some(r) if matches!(r.phase, Phase::Therm { .. }) => r.hist.clone(),
            _ => self
                .engine
                .hot_starts()
                .into_iter()
                .map(|hot_start| ChainHistory { hot_start, ..Default::default() })
                .collect(),
        };
        if let Some(Phase::Therm { target: t }) = self.resumed.as_ref().map(|r| r.phase) {
            target = t;
        }
        loop {
            if let Some(what) = self.therm_batches(target, &mut hist, accepted)? {
                return Ok(Phase1::Stopped(what));
            }
            let (report, more) = self.therm_verdict(&hist, target, auto, monitor_name)?;
            if !more {
                return Ok(Phase1::Done(report));
            }
            if self.root() {
                eprintln!("thermalisation: {target} trajectories not yet in equilibrium, extending");
                for l in report.lines() {
                    eprintln!("{l}");
                }
            }
            target = (2 * target).min(cfg.n_therm_max);
        }
    }

    /// Runs every chain up to `target` thermalisation trajectories in batches, recording
    /// histories; Some(where) when a signal stopped it (checkpoint written).
    fn therm_batches(
        &mut self,
        target: usize,
        hist: &mut [ChainHistory],
        accepted: &mut [Vec<bool>],
    ) -> Result<Option<String>> {
        let done = hist.first().map_or(0, |h| h.action_density.len());
        let todo = target - done;
        let batch = 10.max(todo / 20).min(todo.max(1));
        let mut progress = Progress::new("therm", todo as u64, "traj", self.root());
        let mut left = todo;
        while left > 0 {
            let k = batch.min(left);
            let res =
                advance_or_stop(self.engine.as_mut(), k, self.comm, self.stop, self.comm.block(self.cfg.n_chains).0)?;
            if let Some(res) = &res {
                for ((h, a), rs) in hist.iter_mut().zip(accepted.iter_mut()).zip(res) {
                    for r in rs {
                        h.action_density.push(r.action / self.vf);
                        h.monitor.push((r.monitor / self.vf).abs());
                        a.push(r.accepted);
                    }
                }
                left -= k;
                progress.inc(k as u64);
            }
            // `res` is None on every rank or on none, so all take part in the collective.
            if res.is_none() || stop_everywhere(self.comm, self.stop) {
                let p = Progressed {
                    phase: Phase::Therm { target },
                    rows_written: 0,
                    report: None,
                    hist,
                    stats: &[],
                    seconds: self.elapsed(),
                };
                self.checkpoint(p)?;
                progress.finish();
                return Ok(Some(format!("during thermalisation ({} trajectories per chain)", target - left)));
            }
        }
        progress.finish();
        Ok(None)
    }

    /// Gathers every chain's history to rank 0, which decides for all (deterministically):
    /// the report, and whether `auto` thermalisation goes on.
    fn therm_verdict(
        &self,
        hist: &[ChainHistory],
        target: usize,
        auto: bool,
        monitor_name: &str,
    ) -> Result<(ThermReport, bool)> {
        let per = 1 + 2 * target;
        let mut send = Vec::with_capacity(hist.len() * per);
        for h in hist {
            send.push(f64::from(u8::from(h.hot_start)));
            send.extend(&h.action_density);
            send.extend(&h.monitor);
        }
        let all = self.comm.gather(&send, &self.counts.iter().map(|c| c * per).collect::<Vec<_>>());
        let mut msg = Vec::new();
        if self.root() {
            let hs: Vec<ChainHistory> = all
                .chunks(per)
                .map(|c| ChainHistory {
                    hot_start: c[0] != 0.0,
                    action_density: c[1..1 + target].to_vec(),
                    monitor: c[1 + target..].to_vec(),
                })
                .collect();
            let report = ThermReport::from_histories(&hs, monitor_name);
            let more = auto && !report.equilibrated() && target < self.cfg.n_therm_max;
            msg = serde_json::to_vec(&(report, more))?;
        }
        self.comm.broadcast_bytes(&mut msg);
        Ok(serde_json::from_slice(&msg)?)
    }

    /// Production: rounds of `n_sep` updates of every chain, one saved configuration per
    /// chain and round, streamed to the output; checkpoints on a signal or every
    /// `checkpoint_every` rounds. Returns the per-chain trajectory statistics.
    fn produce(&mut self, report: &ThermReport) -> Result<Phase1<Vec<TrajStats>>> {
        let cfg = self.cfg;
        let n_rounds = cfg.n_configs.div_ceil(cfg.n_chains);
        let (mut stats, first_round) = match &self.resumed {
            Some(r @ HmcCheckpoint { phase: Phase::Production { rounds_done }, .. }) => {
                (r.stats.iter().map(|a| TrajStats::from_array(*a)).collect(), *rounds_done)
            }
            _ => (vec![TrajStats::default(); self.engine.n_chains()], 0),
        };
        let mut progress = Progress::new("hmc", ((n_rounds - first_round) * cfg.n_sep) as u64, "traj", self.root());
        let first_chain = self.comm.block(cfg.n_chains).0;
        for round in first_round..n_rounds {
            // An interrupted round was rolled back: the checkpoint is taken before it.
            let Some(res) = advance_or_stop(self.engine.as_mut(), cfg.n_sep, self.comm, self.stop, first_chain)? else {
                self.checkpoint(in_production(cfg, report, round, &stats, self.elapsed()))?;
                progress.finish();
                return Ok(Phase1::Stopped(format!("during round {} of {n_rounds} (redone on --resume)", round + 1)));
            };
            for (st, rs) in stats.iter_mut().zip(&res) {
                rs.iter().for_each(|r| st.add(r));
            }
            self.save_round(round, &res)?;
            progress.inc(cfg.n_sep as u64);
            let stopping = round + 1 < n_rounds && stop_everywhere(self.comm, self.stop);
            let periodic = cfg.checkpoint_every > 0 && (round + 1) % cfg.checkpoint_every == 0 && round + 1 < n_rounds;
            if stopping || periodic {
                self.checkpoint(in_production(cfg, report, round + 1, &stats, self.elapsed()))?;
            }
            if stopping {
                progress.finish();
                return Ok(Phase1::Stopped(format!("after {} of {n_rounds} rounds", round + 1)));
            }
        }
        progress.finish();
        Ok(Phase1::Done(stats))
    }

    /// Every chain's configuration after `round` (the last update's results `res`),
    /// gathered to rank 0 and appended in chain order (the last round keeps only up to
    /// `n_configs`).
    fn save_round(&mut self, round: usize, res: &[Vec<TrajectoryResult>]) -> Result<()> {
        let (v, cfg) = (self.v, self.cfg);
        let n_i64 = 2 + usize::from(self.int_col.is_some());
        let rows = self.engine.snapshot()?;
        let mut f32s = Vec::with_capacity(rows.len() * v);
        let mut f64s = Vec::with_capacity(rows.len() * 2);
        let mut i64s = Vec::with_capacity(rows.len() * n_i64);
        for (row, rs) in rows.iter().zip(res) {
            let last = rs.last().copied().unwrap_or_default();
            f32s.extend(&row.phi);
            f64s.extend([row.action, last.delta_h]);
            i64s.extend([row.index as i64, row.n_traj as i64]);
            if let Some(name) = self.int_col {
                i64s.push(integer_monitor(name, last.monitor, row.index)?);
            }
        }
        let by = |k: usize| self.counts.iter().map(|c| c * k).collect::<Vec<_>>();
        let all32 = self.comm.gather(&f32s, &by(v));
        let all64 = self.comm.gather(&f64s, &by(2));
        let alli = self.comm.gather(&i64s, &by(n_i64));
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        let keep = cfg.n_chains.min(cfg.n_configs - round * cfg.n_chains);
        let action: Vec<f64> = all64.chunks(2).take(keep).map(|x| x[0]).collect();
        let dh: Vec<f64> = all64.chunks(2).take(keep).map(|x| x[1]).collect();
        let int_cols: Vec<Vec<i64>> =
            (0..n_i64).map(|k| alli.chunks(n_i64).take(keep).map(|x| x[k]).collect()).collect();
        let int_refs: Vec<&[i64]> = int_cols.iter().map(Vec::as_slice).collect();
        w.append(&all32[..keep * v], &[&action, &dh], &int_refs)
    }

    /// The run's totals over every chain, in chain order on rank 0 (collective).
    fn summarise(&self, stats: &[TrajStats], report: ThermReport) -> HmcSummary {
        let flat: Vec<f64> = stats.iter().flat_map(|s| s.to_vec()).collect();
        let all = self.comm.gather(&flat, &self.counts.iter().map(|c| c * 6).collect::<Vec<_>>());
        let mut tot = [0.0; 6];
        for s in all.chunks(6) {
            for (t, x) in tot.iter_mut().zip(s) {
                *t += x;
            }
        }
        let n = tot[0].max(1.0);
        let exp_mdh = tot[2] / n;
        HmcSummary {
            n_configs: self.cfg.n_configs,
            acceptance: tot[1] / n,
            exp_mdh,
            exp_mdh_err: ((tot[3] / n - exp_mdh * exp_mdh).max(0.0) / (n - 1.0).max(1.0)).sqrt(),
            delta_h_rms: (tot[5] / n).sqrt(),
            therm: report,
            seconds: self.elapsed(),
            trajectories: tot[0] as u64,
            stopped: false,
        }
    }

    /// Rank 0: attributes, the output renamed into place, the served checkpoint removed,
    /// the closing lines.
    fn finish(self, theory: &impl Theory, summary: &HmcSummary, device: Device) -> Result<()> {
        let Some(w) = self.writer else { return Ok(()) };
        let cfg = self.cfg;
        write_attrs(&w, cfg, theory, self.comm, summary)?;
        if let Device::Cuda { .. } = device {
            w.set_attr("device", AttrValue::Str(self.engine.describe()))?;
            w.set_attr("rng", AttrValue::Str("philox4x32-10 (GPU); start configurations from xoshiro256++".into()))?;
        }
        w.finish()?;
        // The run is complete: its checkpoint (if any) has served.
        let _ = std::fs::remove_file(checkpoint_path(&cfg.out));
        if summary.acceptance < super::therm::LOW_ACCEPTANCE {
            eprintln!(
                "WARNING: production acceptance {:.4} is below {} %: successive configurations are (nearly) \
                 identical; do not use this ensemble.",
                summary.acceptance,
                100.0 * super::therm::LOW_ACCEPTANCE
            );
        }
        eprintln!(
            "wrote {} configurations to {}: acceptance {:.3}, <exp(-dH)> = {}, rms dH {}, {:.1} s",
            cfg.n_configs,
            cfg.out.display(),
            summary.acceptance,
            crate::util::fmt_pm(summary.exp_mdh, summary.exp_mdh_err),
            crate::util::fmt_sig(summary.delta_h_rms, 3),
            summary.seconds
        );
        Ok(())
    }
}

/// A checkpoint's record after `rounds_done` production rounds.
fn in_production<'b>(
    cfg: &HmcConfig,
    report: &'b ThermReport,
    rounds_done: usize,
    stats: &'b [TrajStats],
    seconds: f64,
) -> Progressed<'b> {
    Progressed {
        phase: Phase::Production { rounds_done },
        rows_written: cfg.n_configs.min(rounds_done * cfg.n_chains),
        report: Some(report),
        hist: &[],
        stats,
        seconds,
    }
}

/// Rank 0's thermalisation lines and the loud warnings of a failed verdict.
fn print_therm_verdict(report: &ThermReport) {
    eprintln!("thermalisation: {} trajectories per chain", report.n_therm);
    for l in report.lines() {
        eprintln!("{l}");
    }
    if report.drifting() {
        eprintln!(
            "WARNING: thermalisation has NOT converged: the observables still drift between the last two quarters. \
             The ensemble is not in equilibrium; use a longer --n-therm (or auto with a larger --n-therm-max), \
             an ordered start, or --cluster-updates near criticality."
        );
    }
    if report.low_acceptance() {
        eprintln!(
            "WARNING: HMC acceptance {:.4} over the last quarter of thermalisation is below {} %: the chains \
             barely move, and the drift check cannot see that. The ensemble is NOT thermalised; use more \
             MD steps (--n-md) or a shorter trajectory (--tau).",
            report.acceptance.unwrap_or(0.0),
            100.0 * super::therm::LOW_ACCEPTANCE
        );
    }
    if report.starts_disagree() {
        eprintln!(
            "WARNING: ordered and random starts disagree after thermalisation: chains are trapped \
             (phi4: domain walls; u1: frozen topological sectors). Do not train on this ensemble."
        );
    }
}

/// The monitor of chain `chain` as the integer it must be (to 1e−6), or an error: a
/// non-integer topological charge means a broken field, not a measurement.
fn integer_monitor(name: &str, x: f64, chain: u64) -> Result<i64> {
    crate::theory::as_integer(x)
        .ok_or_else(|| anyhow::anyhow!("{name} of chain {chain} is {x}, not an integer to 1e-6"))
}

/// The physics and provenance attributes shared by every ensemble file: the theory's own
/// (`Theory::attrs`), the lattice, version and time.
pub fn theory_attrs(w: &EnsembleWriter, theory: &impl Theory, lat: crate::lattice::Lattice) -> Result<()> {
    let a = theory.attrs();
    for (k, v) in a.labels {
        w.set_attr(k, AttrValue::Str(v))?;
    }
    for (k, v) in a.couplings {
        w.set_attr(k, AttrValue::F64(v))?;
    }
    w.set_attr("lattice", AttrValue::I64s(vec![lat.lt as i64, lat.lx as i64]))?;
    w.set_attr("latdiff_version", AttrValue::Str(crate::VERSION.into()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    w.set_attr("created_unix", AttrValue::I64(now as i64))?;
    Ok(())
}

fn write_attrs(w: &EnsembleWriter, cfg: &HmcConfig, theory: &impl Theory, comm: &Comm, s: &HmcSummary) -> Result<()> {
    theory_attrs(w, theory, cfg.lattice())?;
    w.set_attr("generator", AttrValue::Str("hmc".into()))?;
    w.set_attr("integrator", AttrValue::Str(cfg.integrator.name().into()))?;
    w.set_attr("n_md", AttrValue::I64(cfg.n_md as i64))?;
    w.set_attr("tau", AttrValue::F64(cfg.tau))?;
    w.set_attr("tau_jitter", AttrValue::F64(cfg.tau_jitter))?;
    w.set_attr("n_therm", AttrValue::I64(s.therm.n_therm as i64))?;
    w.set_attr("n_sep", AttrValue::I64(cfg.n_sep as i64))?;
    w.set_attr("n_chains", AttrValue::I64(cfg.n_chains as i64))?;
    w.set_attr("start", AttrValue::Str(format!("{:?}", cfg.start).to_lowercase()))?;
    w.set_attr("cluster_updates", AttrValue::I64(cfg.cluster_updates as i64))?;
    w.set_attr(
        "update_mix",
        AttrValue::Str(match cfg.couplings()? {
            Couplings::Phi4(_) => format!(
                "1 HMC trajectory ({} n_md={} tau={}) + {} Wolff cluster flips per update",
                cfg.integrator.name(),
                cfg.n_md,
                cfg.tau,
                cfg.cluster_updates
            ),
            Couplings::U1 { .. } => format!(
                "1 HMC trajectory ({} n_md={} tau={}) + {} flux moves per update",
                cfg.integrator.name(),
                cfg.n_md,
                cfg.tau,
                cfg.cluster_updates
            ),
            Couplings::Su2 { .. } => {
                format!("1 HMC trajectory ({} n_md={} tau={}) per update", cfg.integrator.name(), cfg.n_md, cfg.tau)
            }
        }),
    )?;
    w.set_attr("seed", AttrValue::I64(cfg.seed as i64))?;
    w.set_attr("n_ranks", AttrValue::I64(comm.size() as i64))?;
    w.set_attr("acceptance", AttrValue::F64(s.acceptance))?;
    w.set_attr("exp_minus_delta_h", AttrValue::F64(s.exp_mdh))?;
    w.set_attr("exp_minus_delta_h_err", AttrValue::F64(s.exp_mdh_err))?;
    w.set_attr("delta_h_rms", AttrValue::F64(s.delta_h_rms))?;
    w.set_attr("therm_ok", AttrValue::I64(i64::from(s.therm.ok())))?;
    w.set_attr("therm_report", AttrValue::Str(serde_json::to_string(&s.therm)?))?;
    w.set_attr("config", AttrValue::Str(crate::config::to_toml(cfg)))?;
    Ok(())
}
