//! `latdiff sample`.

use crate::backend::DeviceRequest;
use crate::config::{read_options_file, SampleConfig, SampleOptions};
use anyhow::Result;
use std::path::Path;

pub fn run(opts: &SampleOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        resolve(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force },
        |cfg| match crate::diffusion::net::model::is_action_model(&cfg.model) {
            true => Err(crate::diffusion::net::action_engine::NO_CUDA),
            false => Ok(()),
        },
        |cfg, comm, stop, dev| {
            let s = crate::diffusion::generate::run(cfg, comm, stop, dev)?;
            // Every rank knows the count (the ranks stop after the same round).
            if s.n < cfg.n_configs {
                return Err(crate::error::StoppedBySignal(format!(
                    "partial ensemble: {} of {} configurations written to {} (attribute stopped_by_signal = 1); exit code {}",
                    s.n,
                    cfg.n_configs,
                    cfg.out.display(),
                    crate::error::EXIT_STOPPED
                ))
                .into());
            }
            Ok(())
        },
    )
}

/// The run's configuration: flags over the `--config` file over defaults; then the checks
/// that need the files: the output is not the model nor the `--config` file, and may be written.
pub fn resolve(flags: &SampleOptions) -> Result<SampleConfig> {
    if let Some(c) = &flags.config {
        crate::io::check_regular_input(c, "config")?;
    }
    let file: SampleOptions = match &flags.config {
        Some(p) => read_options_file(p)?,
        None => SampleOptions::default(),
    };
    let cfg = SampleConfig::from_layers(&file, flags)?;
    if !cfg.model.starts_with("free:") {
        crate::io::check_regular_input(Path::new(cfg.model_path()), "model")?;
        crate::io::check_not_input(&cfg.out, Path::new(cfg.model_path()), "model")?;
    }
    super::check_config_not_out(&flags.config, &cfg.out)?;
    crate::io::check_output_path(&cfg.out, cfg.force)?;
    Ok(cfg)
}
