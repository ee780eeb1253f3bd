//! The em, pc and ode samplers' batches spread over ranks, streamed to one file.
//!
//! Global sample i always uses `rng::stream(seed, Domain::Sample, i)`. Round r covers the
//! indices [r·R·b, (r+1)·R·b) and rank k draws the k-th block of b of them, so rank 0
//! receives every round's samples in index order: the file is the same for any rank count.

use anyhow::{anyhow, Result};
use rand::RngExt;
use rayon::prelude::*;

use crate::config::SampleConfig;
use crate::diffusion::generate::output::{write_attrs, SampleSummary, Target, Timed};
use crate::diffusion::generate::plan::Plan;
use crate::diffusion::sample::sampler::{sample_batch, Imh};
use crate::dist::Comm;
use crate::io::EnsembleWriter;
use crate::rng::{self, Domain, Stream};
use crate::util::{Progress, StopFlag};

/// Index of the `Domain::Misc` stream whose uniforms decide the `--metropolis` chain (one
/// per proposal, in index order, the first included): with the proposals' log-weights this
/// reproduces the chain through `sampler::independence_metropolis`.
pub const METROPOLIS_STREAM: u64 = 0x494d48;

/// The em, pc or ode sampler's batches (module docs): rounds of batches until every
/// configuration is drawn or a stop signal arrives, then the summary and the attributes.
pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, p: Plan) -> Result<SampleSummary> {
    let target = Target::new(p.lattice, p.target);
    let b = p.batch.min(cfg.n_configs.div_ceil(comm.size())).max(1);
    if comm.is_root() {
        announce(cfg, &p, b, comm.size());
    }
    let timed = Timed::new(p.loaded.model.as_ref()).stopping_on(stop);
    let mut run = Rounds::new(cfg, &p, &target, b, comm)?;
    let t0 = std::time::Instant::now();
    let mut progress = Progress::new("sample", cfg.n_configs as u64, "configs", comm.is_root());
    for round in 0..run.n_rounds {
        let Some(done) = run.round(round, &timed, comm)? else { break };
        progress.inc(done as u64);
        // Every rank decides together (a rank stopping alone would leave the others in the
        // next round's gather); what is done is kept as a complete, shorter ensemble.
        let mut flag = [f64::from(u8::from(stop.raised()))];
        comm.all_reduce_sum(&mut flag);
        if flag[0] > 0.0 && round + 1 < run.n_rounds {
            break;
        }
    }
    progress.finish();
    if run.n_done == 0 {
        return Err(crate::error::StoppedBySignal(format!(
            "stopped by signal before the first round of configurations was complete: nothing was written; exit code {}",
            crate::error::EXIT_STOPPED
        ))
        .into());
    }
    run.finish(t0.elapsed().as_secs_f64(), timed.seconds(), comm)
}

fn announce(cfg: &SampleConfig, p: &Plan, b: usize, nr: usize) {
    crate::backend::announce();
    eprintln!(
        "latdiff sample: {} on {}, target {} {}, {} sampler, {} kernel, {} steps, sigma in [{:.3e}, {:.3e}], {} configs in batches of {b} over {nr} rank(s), model on {}",
        p.loaded.model.describe(),
        p.lattice,
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

/// The state of a run between rounds.
struct Rounds<'a> {
    cfg: &'a SampleConfig,
    p: &'a Plan,
    target: &'a Target,
    /// Configurations per rank and round.
    b: usize,
    n_rounds: usize,
    weighted: bool,
    /// Rank 0's output.
    writer: Option<EnsembleWriter>,
    /// Rank 0's independence-Metropolis chain over the proposals (`--metropolis`).
    chain: Option<MetropolisChain>,
    all_log_w: Vec<f64>,
    /// Network evaluations here.
    evals: usize,
    /// Σ over configurations of their batch's corrector acceptance, and their number.
    corrector: [f64; 2],
    n_done: usize,
}

impl<'a> Rounds<'a> {
    fn new(cfg: &'a SampleConfig, p: &'a Plan, target: &'a Target, b: usize, comm: &Comm) -> Result<Self> {
        let weighted = p.settings.has_weights();
        let mut cols: Vec<&str> = vec!["action"];
        if weighted && !cfg.metropolis {
            cols.push("log_weight");
        }
        if cfg.metropolis {
            cols.push("proposal_log_weight");
        }
        let icols: Vec<&str> =
            if cfg.metropolis { vec!["chain", "trajectory", "accepted"] } else { vec!["chain", "trajectory"] };
        let root = comm.is_root();
        let writer = if root { Some(EnsembleWriter::create(&cfg.out, target.shape(), &cols, &icols)?) } else { None };
        Ok(Rounds {
            cfg,
            p,
            target,
            b,
            n_rounds: cfg.n_configs.div_ceil(b * comm.size()),
            weighted,
            writer,
            chain: (root && cfg.metropolis).then(|| MetropolisChain::new(cfg.seed)),
            all_log_w: Vec::new(),
            evals: 0,
            corrector: [0.0, 0.0],
            n_done: 0,
        })
    }

    /// Draws round `round` on every rank and appends it on rank 0; the number of
    /// configurations it added, or `None` when a stop signal dropped it.
    fn round(&mut self, round: usize, timed: &Timed, comm: &Comm) -> Result<Option<usize>> {
        let (cfg, lat, b) = (self.cfg, self.p.lattice, self.b);
        let (r, nr) = (comm.rank(), comm.size());
        let per_round = b * nr;
        let first = round * per_round + r * b;
        let k = b.min(cfg.n_configs.saturating_sub(first));
        let batch = (k > 0).then(|| {
            let t = self.weighted.then_some(self.target.action());
            sample_batch(timed, t, lat, &self.p.settings, cfg.seed, first as u64, k)
        });
        // A batch interrupted on any rank drops the whole round on every rank.
        if crate::diffusion::generate::output::interrupted_anywhere(comm, &batch) {
            return Ok(None);
        }
        let (mut cfgs, logw) = match batch {
            Some(sb) => {
                let sb = sb.map_err(|e| anyhow!(e))?;
                self.evals += sb.network_evaluations();
                if let Some(a) = sb.corrector_acceptance {
                    self.corrector[0] += a * k as f64;
                    self.corrector[1] += k as f64;
                }
                (sb.configs, sb.log_weight.unwrap_or_else(|| vec![0.0; k]))
            }
            None => (Vec::new(), Vec::new()),
        };
        self.target.refine(&mut cfgs, cfg.seed, first as u64, cfg.hmc_refine);
        let counts: Vec<usize> =
            (0..nr).map(|q| b.min(cfg.n_configs.saturating_sub(round * per_round + q * b))).collect();
        let (all32, act, lw) = self.gather(comm, &cfgs, &logw, &counts);
        if self.writer.is_some() {
            self.append(round * per_round, &all32, &act, &lw)?;
        }
        let done = counts.iter().sum::<usize>();
        self.n_done += done;
        Ok(Some(done))
    }

    /// The round's configurations (f32), actions and log-weights from every rank, in index
    /// order on rank 0 (empty elsewhere).
    fn gather(&self, comm: &Comm, cfgs: &[f64], logw: &[f64], counts: &[usize]) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let v = self.target.shape().len();
        let actions: Vec<f64> = cfgs.par_chunks(v).map(|c| self.target.action().action(c)).collect();
        let c32: Vec<f32> = cfgs.iter().map(|&x| x as f32).collect();
        let all32 = comm.gather(&c32, &counts.iter().map(|c| c * v).collect::<Vec<_>>());
        let pair: Vec<f64> = actions.iter().zip(logw).flat_map(|(a, w)| [*a, *w]).collect();
        let all64 = comm.gather(&pair, &counts.iter().map(|c| 2 * c).collect::<Vec<_>>());
        let act = all64.iter().step_by(2).copied().collect();
        let lw = all64.iter().skip(1).step_by(2).copied().collect();
        (all32, act, lw)
    }

    /// Rank 0: the round's rows, from global index `base` on.
    fn append(&mut self, base: usize, all32: &[f32], act: &[f64], lw: &[f64]) -> Result<()> {
        let w = self.writer.as_mut().expect("rank 0 writes");
        let n = act.len();
        self.all_log_w.extend(lw);
        let idx: Vec<i64> = (0..n).map(|i| (base + i) as i64).collect();
        let zeros = vec![0i64; n];
        match self.chain.as_mut() {
            Some(chain) => chain.append(w, all32, act, lw, &idx),
            None if self.weighted => w.append(all32, &[act, lw], &[&zeros, &idx]),
            None => w.append(all32, &[act], &[&zeros, &idx]),
        }
    }

    /// The summary on every rank; rank 0 writes the attributes and publishes the file.
    fn finish(self, seconds: f64, network_seconds: f64, comm: &Comm) -> Result<SampleSummary> {
        let (cfg, nr) = (self.cfg, comm.size());
        let mut ev = [self.evals as f64, network_seconds];
        comm.all_reduce_sum(&mut ev);
        let network_share = ev[1] / (seconds * nr as f64);
        let mut corrector = self.corrector;
        comm.all_reduce_sum(&mut corrector);
        let mut s = SampleSummary {
            n: self.n_done,
            seconds,
            ess_fraction: None,
            log_w_std: None,
            acceptance: None,
            corrector_acceptance: (corrector[1] > 0.0).then(|| corrector[0] / corrector[1]),
            network_share,
            network_evals_per_s: ev[0] / seconds,
        };
        let Some(w) = self.writer else { return Ok(s) };
        if self.weighted {
            let ess = crate::analysis::stats::ess(&self.all_log_w);
            let n = self.all_log_w.len() as f64;
            let m = self.all_log_w.iter().sum::<f64>() / n;
            s.ess_fraction = Some(ess / n);
            s.log_w_std = Some((self.all_log_w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt());
        }
        s.acceptance = self.chain.as_ref().map(|c| c.imh.acceptance());
        write_attrs(&w, cfg, self.p, comm, &s)?;
        w.finish()?;
        report(cfg, &s);
        Ok(s)
    }
}

/// Rank 0's closing lines.
fn report(cfg: &SampleConfig, s: &SampleSummary) {
    if s.n < cfg.n_configs {
        eprintln!(
            "stopped by signal after {} of {} configurations: those are written as a partial ensemble (attribute stopped_by_signal = 1, n_requested)",
            s.n, cfg.n_configs
        );
    }
    eprintln!(
        "wrote {} configurations to {}: {:.2} configs/s, {:.1} network evaluations/s ({:.0}% of the time in the network){}{}{}{}",
        s.n,
        cfg.out.display(),
        s.n as f64 / s.seconds,
        s.network_evals_per_s,
        100.0 * s.network_share,
        s.ess_fraction.map(|e| format!(", ESS/N = {e:.4}")).unwrap_or_default(),
        s.log_w_std.map(|e| format!(", std(log w) = {e:.3}")).unwrap_or_default(),
        s.acceptance.map(|a| format!(", Metropolis acceptance {a:.3}")).unwrap_or_default(),
        s.corrector_acceptance.map(|a| format!(", MALA corrector acceptance {a:.3}")).unwrap_or_default(),
    );
    // As SMC warns of few lineages: whole-path weights this uneven leave a handful of
    // effective samples, and analyze will mark the file unreliable.
    let floor = crate::analysis::observables::MIN_RELIABLE_ESS;
    if let Some(ess) = s.ess_fraction.map(|e| e * s.n as f64).filter(|ess| *ess < floor) {
        eprintln!(
            "WARNING: ESS {ess:.1} < {floor} of {} configurations: the reweighted results rest on a handful of \
             configurations (analyze marks them unreliable); sample on the training lattice, train longer, or use \
             --sampler smc (README: when a result is flagged unreliable)",
            s.n
        );
    }
}

/// Independence Metropolis over the weighted proposals in index order, streamed.
struct MetropolisChain {
    rng: Stream,
    imh: Imh,
    /// The configuration, action and index of the proposal the chain sits on.
    state: Option<(Vec<f32>, f64, i64)>,
}

impl MetropolisChain {
    fn new(seed: u64) -> Self {
        MetropolisChain { rng: rng::stream(seed, Domain::Misc, METROPOLIS_STREAM), imh: Imh::new(), state: None }
    }

    /// Advances the chain over the proposals and appends where it sits after each.
    fn append(&mut self, w: &mut EnsembleWriter, all32: &[f32], act: &[f64], lw: &[f64], idx: &[i64]) -> Result<()> {
        let (n, v) = (act.len(), all32.len() / act.len().max(1));
        let (mut out, mut oa, mut olw, mut ot, mut oacc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let moved = self.imh.step(lw[i], self.rng.random());
            if moved {
                self.state = Some((all32[i * v..][..v].to_vec(), act[i], idx[i]));
            }
            let (c, a, j) = self.state.as_ref().expect("the first proposal starts the chain");
            out.extend_from_slice(c);
            oa.push(*a);
            olw.push(self.imh.log_weight().expect("the first proposal starts the chain"));
            ot.push(*j);
            oacc.push(i64::from(moved));
        }
        w.append(&out, &[&oa, &olw], &[&vec![0i64; n], &ot, &oacc])
    }
}
