//! `latdiff sample --sampler multilevel`: whole replicas per rank (round t runs replica
//! t·R + rank), streamed to one file in replica order. A replica depends only on (seed,
//! replica, particles) ([`crate::diffusion::multilevel`]), so the file is the same for any
//! rank count.

use anyhow::{anyhow, bail, Result};

use crate::config::SampleConfig;
use crate::diffusion::generate::output::{interrupted_anywhere, write_attrs, SampleSummary, Target};
use crate::diffusion::generate::plan::Plan;
use crate::diffusion::multilevel::{run_replica, Ladder, MultilevelSettings, Replica, LEVEL_FIELD_NAMES};
use crate::diffusion::smc::resample::{combined_log_z, distinct, ess_fraction};
use crate::diffusion::theories;
use crate::dist::Comm;
use crate::error::input_err;
use crate::io::{AttrValue, EnsembleWriter};
use crate::util::{Progress, StopFlag};

/// The group of the per-level records.
pub const LEVELS_GROUP: &str = "multilevel_levels";

/// Replica figures that travel to rank 0: log Z, lineages, then the level fields.
fn stats_of(r: &Replica) -> Vec<f64> {
    let mut x = vec![r.log_z, distinct(&r.ancestors) as f64];
    for l in &r.levels {
        x.extend(l.fields());
    }
    x
}

pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, p: Plan) -> Result<SampleSummary> {
    let (root, rank, n_ranks) = (comm.is_root(), comm.rank(), comm.size());
    let n_replicas = cfg.replicas.unwrap_or(crate::config::DEFAULT_SMC_REPLICAS);
    if cfg.n_configs % n_replicas != 0 {
        bail!(input_err(anyhow!(
            "replicas: n_configs = {} is not a multiple of the {n_replicas} replicas (the default unless --replicas says otherwise)",
            cfg.n_configs
        )));
    }
    let ladder = theories::of(p.target).multilevel_ladder(p.lattice, cfg).map_err(|e| input_err(anyhow!(e)))?;
    let settings = MultilevelSettings {
        n_particles: cfg.n_configs / n_replicas,
        cess: cfg.cess,
        resample_ess: cfg.resample_ess,
        rejuvenate: cfg.rejuvenate,
        max_steps: 10_000,
    };
    let target = Target::new(p.lattice, p.target);
    if root {
        crate::backend::announce();
        eprintln!(
            "latdiff sample: multilevel sampler on {}, target {} {}: {n_replicas} replicas x {} particles over {n_ranks} rank(s); {}; tempering at conditional ESS {}, resample below ESS/N {}, {} MALA sweeps per step",
            p.lattice,
            p.target.name(),
            p.target.describe(),
            settings.n_particles,
            ladder.describe(),
            settings.cess,
            settings.resample_ess,
            settings.rejuvenate
        );
    }
    let columns = (&["action", "log_weight"][..], &["chain", "trajectory", "replica", "ancestor"][..]);
    let mut writer =
        root.then(|| EnsembleWriter::create(&cfg.out, target.shape(), columns.0, columns.1)).transpose()?;
    let mut stats: Vec<Vec<f64>> = Vec::with_capacity(n_replicas);
    let mut all_log_w: Vec<f64> = Vec::new();
    let mut progress = Progress::new("sample", cfg.n_configs as u64, "configs", root);
    let t0 = std::time::Instant::now();
    let n = settings.n_particles;
    let stats_len = 2 + LEVEL_FIELD_NAMES.len() * ladder.lattices().len();
    for round in 0..n_replicas.div_ceil(n_ranks) {
        let replica = round * n_ranks + rank;
        let stopped = || stop.raised();
        let mine = (replica < n_replicas).then(|| run_replica(ladder.as_ref(), &settings, cfg.seed, replica, &stopped));
        if interrupted_anywhere(comm, &mine) {
            break;
        }
        let mine = mine.transpose().map_err(|e| anyhow!(e))?;
        let present: Vec<usize> = (0..n_ranks).map(|q| usize::from(round * n_ranks + q < n_replicas)).collect();
        let counts = |per: usize| present.iter().map(|c| c * per).collect::<Vec<_>>();
        let (c32, rows, anc, st) = mine.as_ref().map(pack).unwrap_or_default();
        let v = target.shape().len();
        let configs = comm.gather(&c32, &counts(n * v));
        let rows = comm.gather(&rows, &counts(2 * n));
        let anc = comm.gather(&anc, &counts(n));
        let st = comm.gather(&st, &counts(stats_len));
        let count: usize = present.iter().sum();
        if let Some(w) = writer.as_mut() {
            for j in 0..count {
                let r = round * n_ranks + j;
                let (act, lw): (Vec<f64>, Vec<f64>) =
                    rows[2 * n * j..][..2 * n].chunks(2).map(|x| (x[0], x[1])).unzip();
                let rep = vec![r as i64; n];
                let idx: Vec<i64> = (0..n).map(|i| (r * n + i) as i64).collect();
                w.append(&configs[n * v * j..][..n * v], &[&act, &lw], &[&rep, &idx, &rep, &anc[n * j..][..n]])?;
                stats.push(st[stats_len * j..][..stats_len].to_vec());
                all_log_w.extend(&lw);
            }
        }
        progress.inc((count * n) as u64);
    }
    progress.finish();
    let n_done = stats.len() * n;
    let mut done = [if root { n_done as f64 } else { 0.0 }];
    comm.all_reduce_sum(&mut done);
    if done[0] == 0.0 {
        return Err(crate::error::StoppedBySignal(format!(
            "stopped by signal before the first round of replicas was complete: nothing was written; exit code {}",
            crate::error::EXIT_STOPPED
        ))
        .into());
    }
    let summary = SampleSummary {
        n: done[0] as usize,
        seconds: t0.elapsed().as_secs_f64(),
        ess_fraction: root.then(|| ess_fraction(&all_log_w)),
        log_w_std: None,
        acceptance: None,
        corrector_acceptance: None,
        network_share: 0.0,
        network_evals_per_s: 0.0,
    };
    match writer {
        Some(w) => finish(w, cfg, comm, &p, (ladder.as_ref(), &settings), &stats, summary),
        None => Ok(summary),
    }
}

/// (configurations as f32, [action, normalised log w] per particle, ancestors, stats).
fn pack(r: &Replica) -> (Vec<f32>, Vec<f64>, Vec<i64>, Vec<f64>) {
    let c32 = r.configs.iter().map(|&x| x as f32).collect();
    let rows = r.action.iter().zip(r.normalised_log_weights()).flat_map(|(a, w)| [*a, w]).collect();
    let anc = r.ancestors.iter().map(|&a| a as i64).collect();
    (c32, rows, anc, stats_of(r))
}

/// Rank 0: attributes, the per-level group, the file under its name, the summary lines.
fn finish(
    w: EnsembleWriter,
    cfg: &SampleConfig,
    comm: &Comm,
    p: &Plan,
    (ladder, settings): (&dyn Ladder, &MultilevelSettings),
    stats: &[Vec<f64>],
    summary: SampleSummary,
) -> Result<SampleSummary> {
    write_attrs(&w, cfg, p, comm, &summary)?;
    let log_z: Vec<f64> = stats.iter().map(|s| s[0]).collect();
    let (lz, lz_err) = combined_log_z(&log_z);
    let int = |x: usize| AttrValue::I64(x as i64);
    w.set_attr("n_chains", int(stats.len()))?;
    w.set_attr("replicas", int(stats.len()))?;
    w.set_attr("particles_per_replica", int(settings.n_particles))?;
    w.set_attr("resample_ess", AttrValue::F64(settings.resample_ess))?;
    w.set_attr("rejuvenate", int(settings.rejuvenate))?;
    w.set_attr("cess", AttrValue::F64(settings.cess))?;
    w.set_attr("multilevel_ladder", AttrValue::Str(ladder.describe()))?;
    w.set_attr("log_z", AttrValue::F64s(log_z))?;
    w.set_attr("log_z_combined", AttrValue::F64(lz))?;
    w.set_attr("log_z_combined_err", AttrValue::F64(lz_err))?;
    w.set_attr("distinct_ancestors", AttrValue::I64s(stats.iter().map(|s| s[1] as i64).collect()))?;
    let levels = write_levels(&w, ladder, stats)?;
    w.finish()?;
    eprintln!(
        "wrote {} configurations ({} replicas x {} particles) to {} in {:.1} s: final ESS/N {:.3}, log Z = {lz:.4} ± {lz_err:.2e}",
        summary.n,
        stats.len(),
        settings.n_particles,
        cfg.out.display(),
        summary.seconds,
        summary.ess_fraction.unwrap_or(f64::NAN),
    );
    for line in levels {
        eprintln!("{line}");
    }
    Ok(summary)
}

/// `/multilevel_levels/lattice` [K, 2] and, [R, K] replica-major, one dataset per field;
/// the per-level lines of the summary (means over replicas, lineages' minimum).
fn write_levels(w: &EnsembleWriter, ladder: &dyn Ladder, stats: &[Vec<f64>]) -> Result<Vec<String>> {
    let lats = ladder.lattices();
    let k = lats.len();
    let g = w.file().create_group(LEVELS_GROUP)?;
    let dims: Vec<i64> = lats.iter().flat_map(|l| [l.lt as i64, l.lx as i64]).collect();
    g.new_dataset_builder().with_data(&ndarray::Array2::from_shape_vec((k, 2), dims)?).create("lattice")?;
    let nf = LEVEL_FIELD_NAMES.len();
    let field = |f: usize| -> Vec<f64> { stats.iter().flat_map(|s| (0..k).map(move |j| s[2 + j * nf + f])).collect() };
    for (f, name) in LEVEL_FIELD_NAMES.iter().enumerate() {
        g.new_dataset_builder()
            .with_data(&ndarray::Array2::from_shape_vec((stats.len(), k), field(f))?)
            .create(*name)?;
    }
    let r = stats.len() as f64;
    let mean = |f: usize, j: usize| stats.iter().map(|s| s[2 + j * nf + f]).sum::<f64>() / r;
    let min = |f: usize, j: usize| stats.iter().map(|s| s[2 + j * nf + f]).fold(f64::INFINITY, f64::min);
    Ok((0..k)
        .map(|j| {
            format!(
                "  level {j} ({}x{}): {:.0} tempering steps, min ESS/n {:.2}, {:.0} resamplings, MALA acceptance {:.2}, HMC acceptance {:.2}, lineages >= {:.0}, {:.2} s (means over replicas)",
                lats[j].lt,
                lats[j].lx,
                mean(0, j),
                mean(1, j),
                mean(3, j),
                mean(4, j),
                mean(5, j),
                min(6, j),
                mean(7, j)
            )
        })
        .collect())
}
