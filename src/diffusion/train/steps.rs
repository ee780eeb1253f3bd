//! The step loop: fill this rank's slots, the gradient of their mean loss, one all-reduce
//! of one flat buffer, the identical AdamW update on every rank; skipped non-finite steps,
//! the replicas' parameter checksum, validation at epoch ends, checkpoints, the stop flag.

use crate::diffusion::data;
use crate::diffusion::net::engine::Weights;
use crate::diffusion::train::trainer::Trainer;
use crate::diffusion::train::validation::band;
use crate::diffusion::train::MAX_NONFINITE_STEPS;
use crate::rng::Stream;
use crate::util::{Progress, StopFlag};
use anyhow::{bail, Result};
use std::time::Instant;

/// Scalars appended to the gradient buffer: loss sum and count in 3 σ bands, stop flag.
const N_EXTRA: usize = 7;
const STOP: usize = 6;

/// How the loop ended, and what the final report needs of it.
pub(super) struct Outcome {
    pub step: u64,
    pub stopped: bool,
    pub last_val: f64,
    /// The last step's global gradient norm.
    pub last_grad_norm: f64,
    pub elapsed: f64,
    pub t_allreduce: f64,
}

/// This rank's per-step arrays, allocated once.
struct Batch {
    /// The all-reduced buffer: the gradient (np values), then the N_EXTRA scalars.
    buf: Vec<f32>,
    phi0: Vec<f32>,
    z: Vec<f32>,
    sigma: Vec<f32>,
    per: Vec<f32>,
}

/// What happened to one step after the all-reduce.
enum StepEnd {
    Next,
    Stop,
}

impl Trainer<'_> {
    pub fn run_steps(&mut self, stop: &StopFlag) -> Result<Outcome> {
        let (cfg, root) = (self.cfg, self.comm.is_root());
        let (np, v) = (self.layout.len(), self.plan.theory.dof);
        let b_local = self.slot_range.1 - self.slot_range.0;
        let mut batch = Batch {
            buf: vec![0.0; np + N_EXTRA],
            phi0: vec![0.0; b_local * v],
            z: vec![0.0; b_local * v],
            sigma: vec![0.0; b_local],
            per: vec![0.0; b_local],
        };
        let mut progress = Progress::new("train", cfg.steps.saturating_sub(self.start_step), "step", root);
        let t0 = Instant::now();
        let mut out = Outcome {
            step: self.start_step,
            stopped: false,
            last_val: f64::NAN,
            last_grad_norm: f64::NAN,
            elapsed: 0.0,
            t_allreduce: 0.0,
        };
        let mut nonfinite_run = 0u64;
        while out.step < cfg.steps {
            self.local_gradient(&mut batch, stop)?;
            let ta = Instant::now();
            self.comm.all_reduce_sum(&mut batch.buf);
            out.t_allreduce += ta.elapsed().as_secs_f64();
            // Each rank's gradient is of its own slots' mean: the global mean is their average.
            let inv = 1.0 / self.comm.size() as f32;
            batch.buf[..np].iter_mut().for_each(|g| *g *= inv);
            // The all-reduced buffer is the same on every rank, so every rank skips, and
            // stops at, the same step.
            out.step += 1;
            let stop_raised = batch.buf[np + STOP] > 0.0;
            if !batch.buf[..np + 3].iter().all(|x| x.is_finite()) {
                nonfinite_run += 1;
                if nonfinite_run >= MAX_NONFINITE_STEPS {
                    bail!(
                        "training diverged: non-finite loss or gradient for {MAX_NONFINITE_STEPS} consecutive steps (steps {}-{}); no model written (the last checkpoint on disk, if any, is kept)",
                        out.step + 1 - MAX_NONFINITE_STEPS,
                        out.step
                    );
                }
                progress.inc_with(1, &format!("non-finite loss or gradient at step {}: step skipped", out.step));
                // No update, validation, checksum or checkpoint for a skipped step; a stop still stops.
                if stop_raised {
                    out.stopped = true;
                    break;
                }
                continue;
            }
            nonfinite_run = 0;
            let end = self.finish_step(&batch.buf, &mut out, &mut progress, t0)?;
            if let StepEnd::Stop = end {
                out.stopped = true;
                break;
            }
        }
        progress.finish();
        out.elapsed = t0.elapsed().as_secs_f64();
        Ok(out)
    }

    /// This rank's slots filled and the gradient of their mean loss into `batch.buf`, with
    /// the loss sums per σ band and this rank's stop flag after it.
    fn local_gradient(&mut self, batch: &mut Batch, stop: &StopFlag) -> Result<()> {
        let (cfg, v, np) = (self.cfg, self.plan.theory.dof, self.layout.len());
        let theory = &self.plan.theory;
        let augment = |d: &mut [f32], s: &[f32], r: &mut Stream| theory.augment(d, s, r);
        for (i, slot) in (self.slot_range.0..self.slot_range.1).enumerate() {
            batch.sigma[i] = data::fill_slot(
                &mut batch.phi0[i * v..][..v],
                &mut batch.z[i * v..][..v],
                &self.shard,
                (cfg.batch, slot),
                cfg.augment.then_some(&augment),
                &self.schedule,
                &mut self.slots[i],
            );
        }
        if cfg.antithetic {
            // Every rank's slot range starts even (checked in the plan): pairs stay local.
            data::antithetic_pairs(&mut batch.phi0, &mut batch.z, &mut batch.sigma, v);
        }
        let buf = &mut batch.buf;
        buf[np..].iter_mut().for_each(|g| *g = 0.0);
        let (x, scale, offset) = self.parts.training_inputs(&batch.phi0, &batch.z, &batch.sigma);
        self.engine.loss_and_grad(self.plan.lat, &x, &batch.sigma, &scale, &offset, &mut batch.per, &mut buf[..np])?;
        for (i, l) in batch.per.iter().enumerate() {
            let bd = band(&self.schedule, batch.sigma[i] as f64);
            buf[np + bd] += *l;
            buf[np + 3 + bd] += 1.0;
        }
        buf[np + STOP] = f32::from(u8::from(stop.raised()));
        Ok(())
    }

    /// A finite step: the update, its progress line, the replicas' checksum, validation at
    /// an epoch's end, and a checkpoint when one is due.
    fn finish_step(&mut self, buf: &[f32], out: &mut Outcome, progress: &mut Progress, t0: Instant) -> Result<StepEnd> {
        let (cfg, np, step) = (self.cfg, self.layout.len(), out.step);
        let info = self.engine.update(&buf[..np])?;
        out.last_grad_norm = info.grad_norm;
        let loss = (buf[np] + buf[np + 1] + buf[np + 2]) as f64 / cfg.batch as f64;
        self.history.add(loss);
        let bands: [f64; 3] = std::array::from_fn(|i| buf[np + i] as f64 / (buf[np + 3 + i] as f64).max(1.0));
        progress.inc_with(
            1,
            &format!(
                "loss {:.4} (sigma bands {:.3}/{:.3}/{:.3}), lr {:.2e}, |g| {:.3e}, {:.1} samples/s",
                self.history.pending_mean(),
                bands[0],
                bands[1],
                bands[2],
                info.lr,
                info.grad_norm,
                (step - self.start_step) as f64 * cfg.batch as f64 / t0.elapsed().as_secs_f64()
            ),
        );
        self.check_replicas_agree(step)?;
        let steps_per_epoch = (self.plan.n_train / cfg.batch).max(1) as u64;
        if step % steps_per_epoch == 0 || step == cfg.steps {
            self.end_epoch(step, steps_per_epoch, out)?;
        }
        if buf[np + STOP] > 0.0 {
            return Ok(StepEnd::Stop);
        }
        if step % cfg.checkpoint_every == 0 && step < cfg.steps {
            self.write_checkpoint(step, vec![])?;
        }
        Ok(StepEnd::Next)
    }

    /// An epoch's end (or the last step): the held-out loss (rank 0), a row of the loss
    /// history, and the log line every twentieth of the run.
    fn end_epoch(&mut self, step: u64, steps_per_epoch: u64, out: &mut Outcome) -> Result<()> {
        let cfg = self.cfg;
        let validate = self.comm.is_root() && !self.val.is_empty();
        let (vl, vb) = if validate {
            self.val.loss(self.engine.as_mut(), Weights::Current, self.plan.lat, cfg.batch, &self.schedule)?
        } else {
            (f64::NAN, [f64::NAN; 3])
        };
        let train = self.history.close_row(step, vl);
        if !validate {
            return Ok(());
        }
        out.last_val = vl;
        let every = steps_per_epoch.max(cfg.steps / 20);
        if (progress_is_plain() && step % every < steps_per_epoch) || step == cfg.steps {
            eprintln!(
                "step {step}: train loss {train:.4}, validation loss {vl:.4} (bands {:.3}/{:.3}/{:.3})",
                vb[0], vb[1], vb[2]
            );
        }
        Ok(())
    }

    /// Every `checksum_every` steps the ranks compare a parameter checksum: replicas that
    /// drifted apart stop the job with an error, never silently.
    fn check_replicas_agree(&mut self, step: u64) -> Result<()> {
        let (every, n_ranks) = (self.cfg.checksum_every, self.comm.size());
        if every == 0 || step % every != 0 || n_ranks <= 1 {
            return Ok(());
        }
        let h = checksum20(&self.engine.params()?);
        let mut c = [h, h * h];
        self.comm.all_reduce_sum(&mut c);
        if c[0] * c[0] != n_ranks as f64 * c[1] {
            bail!("parameters diverged between ranks at step {step} (checksums differ): stopping");
        }
        Ok(())
    }
}

fn checksum20(params: &[f32]) -> f64 {
    // FNV-1a over the bit patterns, folded to 20 bits so that R·h² stays exact in f64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        h ^= p.to_bits() as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ((h ^ (h >> 20) ^ (h >> 40)) & 0xF_FFFF) as f64
}

fn progress_is_plain() -> bool {
    use std::io::IsTerminal;
    !std::io::stderr().is_terminal()
}
