//! The em, pc and ode samplers' batches spread over ranks, streamed to one file.
//!
//! Global sample i always uses `rng::stream(seed, Domain::Sample, i)`. Round r covers the
//! indices [r·R·b, (r+1)·R·b) and rank k draws the k-th block of b of them, so rank 0
//! receives every round's samples in index order: the file is the same for any rank count.

use crate::diffusion::sample::sampler::{sample_batch, Imh};
use crate::config::SampleConfig;
use crate::dist::Comm;
use crate::io::EnsembleWriter;
use crate::rng::{self, Domain};

use crate::util::{Progress, StopFlag};
use anyhow::{anyhow, bail, Result};
use rand::RngExt;
use rayon::prelude::*;
use crate::diffusion::sample::INTERRUPTED;
use crate::diffusion::generate::output::{write_attrs, SampleSummary, Target, Timed};
use crate::diffusion::generate::plan::Plan;

/// Index of the `Domain::Misc` stream whose uniforms decide the `--metropolis` chain (one
/// per proposal, in index order, the first included): with the proposals' log-weights this
/// reproduces the chain through `sampler::independence_metropolis`.
pub const METROPOLIS_STREAM: u64 = 0x494d48;

/// The em, pc or ode sampler's batches (module docs).
pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, p: Plan) -> Result<SampleSummary> {
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
