//! `latdiff train`: its keys and their checks.

use super::keys::{command_keys, Layer};
use super::{check_max_memory, NetworkPreset, ScoreForm};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

command_keys! {
    /// `latdiff train` options: flags and TOML keys (same names, `-` ↔ `_`).
    options TrainOptions;
    config TrainConfig;
    /// Training ensemble (HDF5, from `latdiff hmc`).
    data: Option<PathBuf> => PathBuf = PathBuf::new(),
    /// Model / checkpoint file to write.
    out: Option<PathBuf> => PathBuf = PathBuf::from("model.h5"),
    /// Network preset: local (default; no normalisation, receptive radius 7), tiny-local, tiny, small, dmassq.
    #[resolve(preset_of_form)]
    preset: Option<String> => NetworkPreset = NetworkPreset::default(),
    /// Score form: physics (prior from the action and G(p) plus a learnt correction; default), plain, or action (a learnt scalar action, score −∂S/∂φ).
    score_form: Option<String> => ScoreForm = ScoreForm::default(),
    /// Optimiser steps in total (in `sample`, --steps is the number of noise levels).
    steps: Option<u64> => u64 = 20000,
    /// Global batch size: training configurations per optimiser step, split evenly over ranks.
    /// (32 and --lr 2e-3: the main job's measured recipe, jobscripts/run-local.sh.)
    batch: Option<usize> => usize = 32,
    /// Peak learning rate.
    lr: Option<f64> => f64 = 2e-3,
    /// Final learning rate of the cosine decay.
    lr_min: Option<f64> => f64 = 1e-5,
    /// Linear warm-up steps.
    warmup: Option<u64> => u64 = 200,
    weight_decay: Option<f64> => f64 = 0.0,
    /// Global gradient-norm clip (0 disables).
    clip: Option<f64> => f64 = 1.0,
    /// Decay of the exponential moving average of the weights.
    ema_decay: Option<f64> => f64 = 0.999,
    /// Smallest noise level (default 0.01).
    sigma_min: Option<f64> => f64 = 0.01,
    /// Largest noise level (default: the largest distance between training configurations).
    // 0 in the resolved configuration: from the data.
    sigma_max: Option<f64> => f64 = 0.0,
    /// Symmetry augmentation (translations, φ → −φ, rotations/reflections on squares).
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    augment: Option<bool> => bool = true,
    /// Antithetic noise: batch slots in pairs (φ₀ + σz, φ₀ − σz) at one σ. Each term is an
    /// ordinary DSM term, so the loss's expectation is unchanged, but the pair cancels the
    /// O(1/σ) cross term z·s/σ that drowns the gradient at small σ (needs an even number of
    /// slots per rank).
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    antithetic: Option<bool> => bool = false,
    /// Held-out fraction of the ensemble for the validation loss.
    val_fraction: Option<f64> => f64 = 0.05,
    /// Checkpoint every N steps (and at the end, and on SIGTERM/SIGUSR1).
    checkpoint_every: Option<u64> => u64 = 1000,
    /// Compare a parameter checksum across ranks every N steps.
    checksum_every: Option<u64> => u64 = 200,
    seed: Option<u64> => u64 = 1,
    /// Continue from the checkpoint at --out.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    resume: Option<bool> => bool = false,
    /// Overwrite an existing output (without --resume).
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force: Option<bool> => bool = false,
    /// Memory limit per rank in MiB (default: 80 % of the node's available memory shared by its ranks).
    #[stored(skip_serializing_if = "Option::is_none")]
    max_memory: Option<usize> => Option<usize> = None,
}

impl TrainConfig {
    /// Flags over `file` over defaults, checked. `file` is the `--config` file or, resuming
    /// without one, the checkpoint's stored configuration: `cli::train::resolve` reads it, and
    /// checks the output afterwards (config reads no HDF5 file).
    pub fn from_layers(file: &TrainOptions, flags: &TrainOptions) -> Result<Self> {
        let cfg = Self::layered(file, flags)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that need no file access beyond existence.
    pub fn validate(&self) -> Result<()> {
        if self.data.as_os_str().is_empty() {
            bail!("data: no training ensemble given (--data ens.h5)");
        }
        if !self.data.exists() {
            bail!("data: '{}' does not exist", self.data.display());
        }
        if self.steps == 0 {
            bail!("steps: must be at least 1");
        }
        if self.batch == 0 {
            bail!("batch: must be at least 1");
        }
        if !(self.lr > 0.0) {
            bail!("lr: {} is not a positive learning rate", self.lr);
        }
        if self.lr_min < 0.0 || self.lr_min > self.lr {
            bail!("lr_min: {} is outside [0, lr]", self.lr_min);
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("ema_decay: {} is outside [0, 1)", self.ema_decay);
        }
        if !(self.sigma_min > 0.0) {
            bail!("sigma_min: {} must be positive", self.sigma_min);
        }
        if self.sigma_max != 0.0 && self.sigma_max <= self.sigma_min {
            bail!("sigma_max: {} must exceed sigma_min ({})", self.sigma_max, self.sigma_min);
        }
        if !(0.0..0.5).contains(&self.val_fraction) {
            bail!("val_fraction: {} is outside [0, 0.5)", self.val_fraction);
        }
        if self.checkpoint_every == 0 {
            bail!("checkpoint_every: must be at least 1");
        }
        {
            use crate::limits::{bound, MAX_BATCH, MAX_CONFIGS};
            bound("steps", self.steps, MAX_CONFIGS)?;
            bound("warmup", self.warmup, MAX_CONFIGS)?;
            bound("batch", self.batch as u64, MAX_BATCH)?;
        }
        check_max_memory(self.max_memory)?;
        Ok(())
    }
}

/// The keys a resumed training may change: they steer this invocation, not the result.
/// `steps` extends (or shortens) the run; the data's path may move, its content is compared
/// with the checkpoint's by hash (`data_hash`). Every other key changes what the resumed run
/// computes, so a checkpoint would record settings it was not trained with.
pub const RESUME_MAY_CHANGE: [&str; 8] =
    ["steps", "data", "out", "resume", "force", "checkpoint_every", "checksum_every", "max_memory"];

impl TrainConfig {
    /// Resuming: this run against `stored`, the options stored in its checkpoint `ckpt`
    /// (resolved as they were then). Refused in one line naming the first key that differs,
    /// its old and new value, and any other keys that differ.
    pub fn check_resumes(&self, stored: &TrainOptions, ckpt: &Path) -> Result<()> {
        let was = Self::layered(stored, &TrainOptions::default())?;
        let table = |c: &Self| toml::Table::try_from(c).map_err(|e| anyhow!("resume: {e}"));
        let (old, new) = (table(&was)?, table(self)?);
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let differ: Vec<&String> = keys
            .into_iter()
            .filter(|k| !RESUME_MAY_CHANGE.contains(&k.as_str()) && old.get(*k) != new.get(*k))
            .collect();
        let Some(key) = differ.first() else { return Ok(()) };
        let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
        let also = match &differ[1..] {
            [] => String::new(),
            rest => format!(" (also changed: {})", rest.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")),
        };
        bail!(
            "resume: checkpoint '{}' was trained with {key} = {}, this run has {key} = {}{also}; only {} may change on resume",
            ckpt.display(),
            show(old.get(*key)),
            show(new.get(*key)),
            RESUME_MAY_CHANGE.join(", ")
        )
    }
}

/// The preset names the networks of the score form (the names differ by form): layered
/// with it, and checked against it here, once.
fn preset_of_form(flags: &TrainOptions, file: &TrainOptions, default: NetworkPreset) -> Result<NetworkPreset> {
    let form =
        ScoreForm::resolve("score_form", flags.score_form.clone(), file.score_form.clone(), ScoreForm::default())?;
    let name = flags.preset.clone().or(file.preset.clone());
    NetworkPreset::parse(name.as_deref().unwrap_or(default.name()), form).map_err(|e| anyhow!(e))
}
