//! `latdiff train`.

use crate::backend::DeviceRequest;
use crate::config::{read_options_file, stored_config, ScoreForm, TrainConfig, TrainOptions};
use crate::diffusion::net::model::model_form;
use crate::diffusion::net::model_file::ModelFile;
use anyhow::{anyhow, bail, Result};
use std::path::Path;

pub fn run(opts: &TrainOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        resolve(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force || cfg.resume },
        |cfg| match cfg.score_form {
            ScoreForm::Action => Err(crate::diffusion::net::action_engine::NO_CUDA),
            ScoreForm::Plain | ScoreForm::Physics => Ok(()),
        },
        |cfg, comm, stop, dev| crate::diffusion::train::train(cfg, comm, stop, dev).map(|_| ()),
    )
}

/// The run's configuration: flags over the `--config` file (or, resuming without one, the
/// checkpoint's stored configuration) over defaults; then the checks that need the files:
/// the output is not the training data, may be written (or, resuming, exists and was
/// trained with the same settings), and is not the `--config` file.
pub fn resolve(flags: &TrainOptions) -> Result<TrainConfig> {
    let out = flags.out.clone().unwrap_or_else(|| TrainConfig::default().out);
    if let Some(c) = &flags.config {
        crate::io::check_regular_input(c, "config")?;
    }
    let stored = match flags.resume == Some(true) && out.exists() {
        true => Some(stored_options(&out)?),
        false => None,
    };
    let file: TrainOptions = match &flags.config {
        Some(p) => read_options_file(p)?,
        // Resuming without a config file: the checkpoint's own stored configuration.
        None => stored.clone().unwrap_or_default(),
    };
    let cfg = TrainConfig::from_layers(&file, flags)?;
    crate::io::check_regular_input(&cfg.data, "data")?;
    crate::io::check_not_input(&cfg.out, &cfg.data, "training data")?;
    if cfg.resume {
        if !cfg.out.exists() {
            bail!("resume: no checkpoint at '{}'", cfg.out.display());
        }
        let stored = match stored {
            Some(s) if cfg.out == out => s,
            _ => stored_options(&cfg.out)?,
        };
        cfg.check_resumes(&stored, &cfg.out)?;
    } else {
        crate::io::check_output_path(&cfg.out, cfg.force)?;
    }
    super::check_config_not_out(&flags.config, &cfg.out)?;
    Ok(cfg)
}

/// The options a checkpoint was trained with (its `config` attribute).
fn stored_options(out: &Path) -> Result<TrainOptions> {
    let m = ModelFile::read(out).map_err(|e| anyhow!("resume: {e}"))?;
    let text = m.attr("config").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut o: TrainOptions = stored_config(&text)?;
    // Checkpoints older than score forms are plain, whatever today's default is.
    if o.score_form.is_none() {
        o.score_form = Some(model_form(&m)?.name().to_string());
    }
    Ok(o)
}
