//! `latdiff sample --sampler smc`: replicas spread over the MPI ranks, streamed to one file
//! in replica order.
//!
//! The ranks form G groups of `ranks_per_replica` consecutive ranks (P = 1: a group is a
//! rank); round t runs replica t·G + g on group g, its particles spread over the group's
//! ranks ([`crate::diffusion::smc::spread`]); rank 0 gathers the round from the groups' leaders and appends
//! its replicas in order. A replica's result depends only on (seed, replica, particles)
//! (see [`super`]), so the file is the same for any rank count and any P.

use anyhow::{anyhow, Result};

use crate::config::SampleConfig;
use crate::diffusion::generate::output::{interrupted_anywhere, write_attrs, SampleSummary, Target, Timed};
use crate::diffusion::generate::plan::Plan;
use crate::diffusion::generate::smc_report::{ReplicaStats, LEVEL_FIELDS};
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::smc::spread::Spread;
use crate::diffusion::smc::{run_replica_spread, Replica, SmcLevels, SmcSettings};
use crate::diffusion::theories;
use crate::dist::Comm;
use crate::error::input_err;
use crate::io::EnsembleWriter;
use crate::util::{Progress, StopFlag};
use rayon::prelude::*;

/// Everything the replicas share.
struct Setup {
    n_replicas: usize,
    /// P: ranks per replica.
    ranks_per_replica: usize,
    settings: SmcSettings,
    kernel: ReverseKernel,
    levels: Box<dyn SmcLevels>,
    target: Target,
}

fn setup(cfg: &SampleConfig, comm: &Comm, p: &Plan) -> Result<Setup> {
    let model = p.loaded.model.as_ref();
    let ranks_per_replica = cfg.ranks_per_replica.unwrap_or(1);
    if comm.size() % ranks_per_replica != 0 {
        return Err(input_err(anyhow!(
            "ranks_per_replica: {ranks_per_replica} does not divide the {} MPI ranks",
            comm.size()
        )));
    }
    // What the model cannot do is named first: it is the more specific problem.
    let (kernel, levels) =
        theories::of(p.target).smc_ladder(model, p.lattice, &p.settings, cfg).map_err(|e| input_err(anyhow!(e)))?;
    let n_replicas = cfg.replicas.unwrap_or(crate::config::DEFAULT_SMC_REPLICAS);
    if cfg.n_configs % n_replicas != 0 {
        return Err(input_err(anyhow!(
            "replicas: n_configs = {} is not a multiple of the {n_replicas} replicas (the default when --replicas is not given)",
            cfg.n_configs
        )));
    }
    let groups = comm.size() / ranks_per_replica;
    if n_replicas < groups && comm.is_root() {
        eprintln!(
            "note: {n_replicas} replicas for {groups} groups of ranks: {} groups idle (--replicas {groups} or a multiple uses them all)",
            groups - n_replicas
        );
    }
    let n_particles = cfg.n_configs / n_replicas;
    if n_particles < ranks_per_replica {
        return Err(input_err(anyhow!(
            "ranks_per_replica: {ranks_per_replica} ranks for {n_particles} particles per replica (at least one particle per rank)"
        )));
    }
    let settings = SmcSettings {
        n_particles,
        resample_ess: cfg.resample_ess,
        rejuvenate: cfg.rejuvenate,
        rejuvenate_always: cfg.rejuvenate_always,
        network_below: cfg.network_below.unwrap_or(f64::INFINITY),
        exact_magnetisation: cfg.exact_magnetisation,
        batch: p.batch.min(n_particles),
    };
    let target = Target::new(p.lattice, p.target);
    Ok(Setup { n_replicas, ranks_per_replica, settings, kernel, levels, target })
}

pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, p: Plan) -> Result<SampleSummary> {
    let s = setup(cfg, comm, &p)?;
    let (root, rank, n_ranks) = (comm.is_root(), comm.rank(), comm.size());
    if root {
        announce(&p, &s, n_ranks);
    }
    let timed = Timed::new(p.loaded.model.as_ref()).stopping_on(stop);
    let columns = (&["action", "log_weight"][..], &["chain", "trajectory", "replica", "ancestor"][..]);
    let mut writer =
        root.then(|| EnsembleWriter::create(&cfg.out, s.target.shape(), columns.0, columns.1)).transpose()?;
    let mut stats = Vec::with_capacity(s.n_replicas);
    let mut progress = Progress::new("sample", cfg.n_configs as u64, "configs", root);
    let t0 = std::time::Instant::now();
    let mut n_done = 0;
    let per = s.ranks_per_replica;
    let (n_groups, group) = (n_ranks / per, rank / per);
    // The group's communicator (collective to make; none needed for whole replicas).
    let group_comm = if per > 1 { comm.split(group) } else { Comm::single() };
    let spread = Spread::over(&group_comm, s.settings.n_particles);
    for round in 0..s.n_replicas.div_ceil(n_groups) {
        let replica = round * n_groups + group;
        let stopped = || stop.raised();
        let mine = (replica < s.n_replicas).then(|| run_one(&timed, &s, cfg, replica, &spread, &stopped));
        // A replica interrupted on any rank drops the whole round on every rank (the
        // others would wait in its gather); finished rounds are kept.
        if interrupted_anywhere(comm, &mine) {
            break;
        }
        // The group's leader holds the replica; the other ranks of the group send nothing.
        let mine = mine.transpose()?.filter(|_| spread.is_leader());
        let round = Round::gather(comm, &s, p.settings.n_steps, round, mine.as_ref());
        if let Some(w) = writer.as_mut() {
            round.append(w, &mut stats)?;
        }
        progress.inc((round.count * s.settings.n_particles) as u64);
        n_done += round.count * s.settings.n_particles;
    }
    progress.finish();
    if n_done == 0 {
        return Err(crate::error::StoppedBySignal(format!(
            "stopped by signal before the first round of replicas was complete: nothing was written; exit code {}",
            crate::error::EXIT_STOPPED
        ))
        .into());
    }
    let summary = summarise(comm, &p, n_done, t0.elapsed().as_secs_f64(), timed.seconds());
    match writer {
        Some(w) => finish(w, cfg, comm, &p, &s, &stats, summary),
        None => Ok(summary),
    }
}

fn announce(p: &Plan, s: &Setup, n_ranks: usize) {
    crate::backend::announce();
    eprintln!(
        "latdiff sample: {} on {}, target {} {}, smc sampler ({} kernel, {} steps, sigma in [{:.3e}, {:.3e}]): {} replicas x {} particles over {n_ranks} rank(s){}, resample below ESS/N {}, {} MALA steps after each; intermediate targets from {}; {}{}; model on {}",
        p.loaded.model.describe(),
        p.lattice,
        p.target.name(),
        p.target.describe(),
        p.settings.kernel.name(),
        p.settings.n_steps,
        p.settings.sigma_min,
        p.settings.sigma_max,
        s.n_replicas,
        s.settings.n_particles,
        match s.ranks_per_replica {
            1 => String::new(),
            per => format!(" ({per} per replica)"),
        },
        s.settings.resample_ess,
        s.settings.rejuvenate,
        s.levels.describe(),
        match s.settings.network_below {
            x if x.is_infinite() => "the network drives every step".to_string(),
            x => format!("the network drives the steps from sigma <= {x}, the targets' own score those above"),
        },
        if s.settings.exact_magnetisation { "; magnetisation drawn from its conditional at every step" } else { "" },
        p.loaded.model.device()
    );
}

/// One round's replicas gathered on rank 0 (empty elsewhere), in replica order.
struct Round {
    first: usize,
    count: usize,
    n_particles: usize,
    stats_len: usize,
    configs: Vec<f32>,
    /// [action, normalised log w] per particle.
    rows: Vec<f64>,
    ancestors: Vec<i64>,
    stats: Vec<f64>,
}

impl Round {
    fn gather(comm: &Comm, s: &Setup, n_steps: usize, round: usize, mine: Option<&Replica>) -> Self {
        let (n_ranks, n, per) = (comm.size(), s.settings.n_particles, s.ranks_per_replica);
        let n_groups = n_ranks / per;
        let v = s.kernel.dof();
        let stats_len = 3 + LEVEL_FIELDS * n_steps;
        // Rank q sends a replica when it leads a group with one this round.
        let present: Vec<usize> =
            (0..n_ranks).map(|q| usize::from(q % per == 0 && round * n_groups + q / per < s.n_replicas)).collect();
        let counts = |per: usize| present.iter().map(|c| c * per).collect::<Vec<_>>();
        let (c32, rows, ancestors, st) = mine.map(pack).unwrap_or_default();
        Round {
            first: round * n_groups,
            count: present.iter().sum(),
            n_particles: n,
            stats_len,
            configs: comm.gather(&c32, &counts(n * v)),
            rows: comm.gather(&rows, &counts(2 * n)),
            ancestors: comm.gather(&ancestors, &counts(n)),
            stats: comm.gather(&st, &counts(stats_len)),
        }
    }

    /// Appends the round's particles to the file and its replicas' figures to `stats`.
    fn append(&self, w: &mut EnsembleWriter, stats: &mut Vec<ReplicaStats>) -> Result<()> {
        let n = self.n_particles;
        let v = self.configs.len() / (n * self.count).max(1);
        for j in 0..self.count {
            let replica = self.first + j;
            let (act, lw): (Vec<f64>, Vec<f64>) =
                self.rows[2 * n * j..][..2 * n].chunks(2).map(|x| (x[0], x[1])).unzip();
            let rep = vec![replica as i64; n];
            let idx: Vec<i64> = (0..n).map(|i| (replica * n + i) as i64).collect();
            let anc = &self.ancestors[n * j..][..n];
            w.append(&self.configs[n * v * j..][..n * v], &[&act, &lw], &[&rep, &idx, &rep, anc])?;
            stats.push(ReplicaStats::from_f64s(&self.stats[self.stats_len * j..][..self.stats_len]));
        }
        Ok(())
    }
}

/// Rates and the network's share of the time, summed over ranks.
fn summarise(comm: &Comm, p: &Plan, n_done: usize, seconds: f64, network_seconds: f64) -> SampleSummary {
    let n_ranks = comm.size() as f64;
    let mut ev = [(n_done * p.settings.n_steps) as f64 / n_ranks, network_seconds];
    comm.all_reduce_sum(&mut ev);
    SampleSummary {
        n: n_done,
        seconds,
        ess_fraction: None,
        log_w_std: None,
        acceptance: None,
        corrector_acceptance: None,
        network_share: ev[1] / (seconds * n_ranks),
        network_evals_per_s: ev[0] / seconds,
    }
}

/// Rank 0: the attributes, the file under its name, the summary line.
fn finish(
    w: EnsembleWriter,
    cfg: &SampleConfig,
    comm: &Comm,
    p: &Plan,
    s: &Setup,
    stats: &[ReplicaStats],
    mut summary: SampleSummary,
) -> Result<SampleSummary> {
    let report = crate::diffusion::generate::smc_report::Report::new(stats, s.settings.n_particles);
    summary.ess_fraction = Some(report.final_ess_fraction);
    write_attrs(&w, cfg, p, comm, &summary)?;
    report.write_attrs(&w, &s.settings, &s.levels.describe())?;
    w.finish()?;
    if summary.n < cfg.n_configs {
        eprintln!(
            "stopped by signal after {} of {} replicas: those are written as a partial ensemble (attribute stopped_by_signal = 1, n_requested)",
            stats.len(),
            s.n_replicas
        );
    }
    eprintln!(
        "wrote {} configurations ({} replicas x {} particles) to {}: {:.2} configs/s ({:.0}% of the time in the network); {}",
        summary.n,
        stats.len(),
        s.settings.n_particles,
        cfg.out.display(),
        summary.n as f64 / summary.seconds,
        100.0 * summary.network_share,
        report.summary_line()
    );
    if let Some(w) = report.lineage_warning() {
        eprintln!("{w}");
    }
    Ok(summary)
}

/// Replica `index` (whole on the group's leader), refined there with `--hmc-refine`
/// trajectories if asked (HMC leaves e^{−S} invariant: the weights stay valid), with its
/// action.
fn run_one(
    model: &dyn crate::diffusion::ScoreModel,
    s: &Setup,
    cfg: &SampleConfig,
    index: usize,
    spread: &Spread,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<Replica> {
    let key = (cfg.seed, index);
    let mut r = run_replica_spread(model, &s.kernel, s.levels.as_ref(), &s.settings, key, spread, stopped)
        .map_err(|e| anyhow!(e))?;
    if cfg.hmc_refine > 0 && spread.is_leader() {
        let first = (index * s.settings.n_particles) as u64;
        s.target.refine(&mut r.configs, cfg.seed, first, cfg.hmc_refine);
        let v = s.kernel.dof();
        r.action = r.configs.par_chunks(v).map(|c| s.target.action().action(c)).collect();
    }
    Ok(r)
}

/// (configurations as f32, [action, normalised log w] per particle, ancestors, stats).
fn pack(r: &Replica) -> (Vec<f32>, Vec<f64>, Vec<i64>, Vec<f64>) {
    let c32 = r.configs.iter().map(|&x| x as f32).collect();
    let rows = r.action.iter().zip(r.normalised_log_weights()).flat_map(|(a, w)| [*a, w]).collect();
    let ancestors = r.ancestors.iter().map(|&a| a as i64).collect();
    (c32, rows, ancestors, ReplicaStats::of(r).to_f64s())
}
