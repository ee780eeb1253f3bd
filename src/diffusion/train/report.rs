//! The end of a training: the final diagnostics (validation losses with current and EMA
//! weights, the path-KL bound per σ band, the score's deviation from the force at σ_min),
//! the last checkpoint, the closing line and the summary.

use crate::diffusion::net::engine::Weights;
use crate::diffusion::train::steps::Outcome;
use crate::diffusion::train::trainer::Trainer;
use crate::diffusion::train::validation::score_force_deviation;
use crate::diffusion::train::TrainSummary;
use crate::io::AttrValue;
use anyhow::Result;

impl Trainer<'_> {
    pub fn finish(&mut self, out: Outcome) -> Result<TrainSummary> {
        let (cfg, root) = (self.cfg, self.comm.is_root());
        // The last step's global gradient norm: the same for any rank count (a sum instead
        // of a mean over ranks would show here; AdamW's normalised update would hide it).
        let mut extra = vec![("last_grad_norm".to_string(), AttrValue::F64(out.last_grad_norm))];
        let mut last_val = out.last_val;
        if root && out.step >= cfg.steps {
            let (vl, diagnostics) = self.final_diagnostics()?;
            last_val = vl;
            extra.extend(diagnostics);
        }
        self.write_checkpoint(out.step, extra)?;
        let samples = (out.step - self.start_step) as f64 * cfg.batch as f64;
        if root {
            if out.stopped {
                eprintln!(
                    "stopped by signal at step {}: checkpoint written to {}; continue with --resume",
                    out.step,
                    cfg.out.display()
                );
            } else {
                eprintln!(
                    "wrote {} at step {}: {:.1} samples/s, all-reduce {:.1}% of the time",
                    cfg.out.display(),
                    out.step,
                    samples / out.elapsed,
                    100.0 * out.t_allreduce / out.elapsed
                );
            }
        }
        Ok(TrainSummary {
            steps_done: out.step,
            finished: out.step >= cfg.steps,
            stopped_by_signal: out.stopped,
            final_val_loss: last_val,
            samples_per_s: samples / out.elapsed.max(1e-9),
            allreduce_share: out.t_allreduce / out.elapsed.max(1e-9),
        })
    }

    /// Rank 0, at the last step: the validation loss and the attributes that record it.
    fn final_diagnostics(&mut self) -> Result<(f64, Vec<(String, AttrValue)>)> {
        let (lat, batch, sched) = (self.plan.lat, self.cfg.batch, self.schedule);
        let (vl, vb) = self.val.loss(self.engine.as_mut(), Weights::Current, lat, batch, &sched)?;
        let (vle, _) = self.val.loss(self.engine.as_mut(), Weights::Ema, lat, batch, &sched)?;
        let dev = score_force_deviation(
            self.engine.as_mut(),
            Weights::Ema,
            &self.parts,
            self.plan.theory.action.as_ref(),
            (&self.val.phi0, self.plan.theory.dof),
            sched.sigma_min,
        )?;
        // The physics form is the exact force at sigma_min by construction (the prior's
        // weight there is 1): its deviation checks the composition, not the network.
        let by_construction = if self.cfg.score_form == crate::config::ScoreForm::Physics {
            " (the physics form's prior is the exact force there by construction: not a check of the network)"
        } else {
            ""
        };
        eprintln!(
            "validation loss {vl:.4} (EMA weights {vle:.4}; sigma bands {:.3}/{:.3}/{:.3}); score at sigma_min vs exact force: relative deviation {}{by_construction}",
            vb[0], vb[1], vb[2], crate::util::fmt_sig(dev, 2)
        );
        // In the units of the path weights: with weight σ² and log-uniform σ the loss is
        // ∫ E σ²|s − t|² d ln σ / ln(σ_max/σ_min) ≥ the score error's share of the KL
        // divergence between the sampler's and the forward path measures (the target's own
        // variance is the excess), so each third of ln σ bounds its KL contribution (nats).
        let third = (sched.sigma_max / sched.sigma_min).ln() / 3.0;
        let kl: Vec<f64> = vb.iter().map(|b| b * third).collect();
        eprintln!(
            "path KL bound per sigma band (nats; the KL is var(log w)/2 for small spreads): {:.3}/{:.3}/{:.3}",
            kl[0], kl[1], kl[2]
        );
        let extra = vec![
            ("val_loss".to_string(), AttrValue::F64(vl)),
            ("val_loss_ema".to_string(), AttrValue::F64(vle)),
            ("val_loss_bands".to_string(), AttrValue::F64s(vb.to_vec())),
            ("val_kl_bound_bands".to_string(), AttrValue::F64s(kl)),
            ("score_force_rel_dev".to_string(), AttrValue::F64(dev)),
        ];
        Ok((vl, extra))
    }
}
