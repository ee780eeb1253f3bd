//! The training checkpoint, which is also the model file: parameters, optimiser state, every
//! rank's slot streams (so `--resume` continues bit for bit), the data's statistics and
//! attributes, the full configuration.

use crate::diffusion::net::model_file::{self, ModelFile};
use crate::diffusion::train::trainer::Trainer;
use crate::dist::block_of;
use crate::io::AttrValue;
use crate::rng;
use anyhow::{bail, Result};

impl Trainer<'_> {
    /// Gathers every rank's slot streams (collective: all ranks call it); rank 0 writes.
    pub fn write_checkpoint(&mut self, step: u64, extra: Vec<(String, AttrValue)>) -> Result<()> {
        let (cfg, comm) = (self.cfg, self.comm);
        let words: Vec<u64> = self.slots.iter().flat_map(rng::state_words).collect();
        let counts: Vec<usize> = (0..comm.size())
            .map(|r| {
                let (a, b) = block_of(cfg.batch, comm.size(), r);
                4 * (b - a)
            })
            .collect();
        let all = comm.gather(&words, &counts);
        if !comm.is_root() {
            return Ok(());
        }
        let (params, opt) = self.engine.state()?;
        check_finite_weights(&params, &opt.ema, step)?;
        let plan = &self.plan;
        let mut m = ModelFile {
            arch: self.arch.clone(),
            layout: self.layout.clone(),
            params,
            ema: opt.ema,
            adam_m: opt.m,
            adam_v: opt.v,
            step,
            slot_rng: all.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
            optimiser: opt.cfg,
            schedule: self.schedule,
            train_lattice: plan.lat,
            two_point: self.two_point.clone(),
            magnetisation: self.magnetisation.clone(),
            data_attrs: plan.ens.attrs()?,
            loss_history: self.history.clone(),
            attrs: Vec::new(),
        };
        m.set("data", AttrValue::Str(cfg.data.display().to_string()));
        m.set("data_hash", AttrValue::Str(plan.data_hash.clone()));
        // The theory's labels; its couplings stay in the data attributes.
        for (k, v) in &plan.theory.labels {
            m.set(k, AttrValue::Str(v.clone()));
        }
        m.set("preset", AttrValue::Str(cfg.preset.name().into()));
        m.set("score_form", AttrValue::Str(plan.form.name().into()));
        if let Some(a) = &plan.action0 {
            m.set(model_file::ACTION_ARCH, AttrValue::Str(serde_json::to_string(a)?));
        }
        if !plan.split.val_chains.is_empty() {
            m.set("val_chains", AttrValue::I64s(plan.split.val_chains.clone()));
        }
        m.set("sigma_data", AttrValue::F64(self.arch.sigma_data));
        m.set("steps", AttrValue::I64(cfg.steps as i64));
        m.set("seed", AttrValue::I64(cfg.seed as i64));
        m.set("n_ranks", AttrValue::I64(comm.size() as i64));
        m.set("device", AttrValue::Str(self.engine.describe()));
        m.set("batch", AttrValue::I64(cfg.batch as i64));
        m.set("finished", AttrValue::I64(i64::from(step >= cfg.steps)));
        m.set("latdiff_version", AttrValue::Str(crate::VERSION.into()));
        m.set("config", AttrValue::Str(crate::config::to_toml(cfg)));
        for (k, v) in extra {
            m.set(&k, v);
        }
        m.write(&cfg.out)
    }
}

/// An update from a finite gradient can still overflow: a checkpoint with non-finite
/// weights is refused, so the last good one on disk is never replaced by it.
fn check_finite_weights(params: &[f32], ema: &[f32], step: u64) -> Result<()> {
    if params.iter().chain(ema).any(|x| !x.is_finite()) {
        bail!(
            "training diverged at step {step}: non-finite parameters; no model written (the last checkpoint on disk, if any, is kept)"
        );
    }
    Ok(())
}
