//! `latdiff hmc`.

use crate::backend::DeviceRequest;
use crate::config::{read_options_file, stored_config, HmcConfig, HmcOptions, TheoryName};
use crate::mc::checkpoint::{checkpoint_path, HmcCheckpoint};
use anyhow::Result;

pub fn run(opts: &HmcOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        resolve(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force },
        // One GPU per rank (its node-local index picks it). The updates besides HMC (φ⁴'s
        // Wolff flips, U(1)'s flux moves) are CPU-only, so with them `auto` stays on the CPU
        // and `cuda` is refused.
        |cfg| {
            match (cfg.theory, cfg.cluster_updates) {
                (_, 0) => Ok(()),
                (TheoryName::Phi4, _) => {
                    Err("Wolff cluster updates run on the CPU only (--cluster-updates 0 runs HMC on the GPU)")
                }
                (TheoryName::U1, _) => Err("flux moves run on the CPU only (--cluster-updates 0 runs HMC on the GPU)"),
                (TheoryName::Su2, _) => Ok(()),
            }
            .and(match cfg.theory {
                TheoryName::Su2 => Err("theory su2 runs on the CPU only (no GPU kernels for SU(2) yet)"),
                _ => Ok(()),
            })
        },
        |cfg, comm, stop, dev| {
            let local = comm.block_counts(cfg.n_chains)[comm.rank()];
            let (bytes, what) = crate::mc::memory::estimate(cfg, local, comm.is_root(), rayon::current_num_threads());
            crate::limits::check(comm, bytes, &what, cfg.max_memory)?;
            crate::backend::announce();
            let r = crate::mc::ensemble::run_on(cfg, comm, stop, dev).map(|_| ());
            // The partial output is kept for a checkpoint that refers to it; a run that
            // failed before writing one would leave only debris.
            let ckpt = crate::mc::checkpoint::checkpoint_path(&cfg.out);
            if r.is_err() && comm.is_root() && !ckpt.exists() {
                let _ = std::fs::remove_file(crate::io::partial_path(&cfg.out));
            }
            // What is left is not debris: say so, or a user cleaning up after a full disk
            // throws away the work the checkpoint holds.
            // (Not when the finished output was refused because a file appeared at its name.)
            // A checkpoint continues only with its partial output: say "--resume" only when
            // both are there.
            let partial = crate::io::partial_path(&cfg.out);
            let resumable = checkpoint_serves(&r) && ckpt.exists();
            r.map_err(|e| match (resumable, partial.exists()) {
                (true, true) => anyhow::anyhow!(
                    "{}; the checkpoint '{}' is kept: continue with --resume",
                    crate::io::full::one_line(&e),
                    ckpt.display()
                ),
                (true, false) => anyhow::anyhow!(
                    "{}; the checkpoint '{}' cannot be resumed: its partial output '{}' is gone (start again without --resume)",
                    crate::io::full::one_line(&e),
                    ckpt.display(),
                    partial.display()
                ),
                (false, _) => e,
            })
        },
    )
}

/// Whether a failed run's checkpoint is worth resuming: not for bad input, nor when the
/// finished output was kept aside because a file appeared at its name.
fn checkpoint_serves(r: &Result<()>) -> bool {
    r.as_ref().err().is_some_and(|e| {
        e.downcast_ref::<super::InputError>().is_none()
            && e.downcast_ref::<crate::io::publish::OutputAppeared>().is_none()
    })
}

/// The run's configuration: flags over the `--config` file (or, resuming without one, the
/// checkpoint's stored configuration) over defaults; then the checks that need the files:
/// the output may be written, a resumed run matches its checkpoint, the output is not the
/// `--config` file.
pub fn resolve(flags: &HmcOptions) -> Result<HmcConfig> {
    let out = flags.out.clone().unwrap_or_else(|| HmcConfig::default().out);
    let ckpt = checkpoint_path(&out);
    if let Some(c) = &flags.config {
        crate::io::check_regular_input(c, "config")?;
    }
    let file: HmcOptions = match &flags.config {
        Some(p) => read_options_file(p)?,
        // Resuming without a config file: the checkpoint's own stored configuration.
        None if flags.resume == Some(true) && ckpt.exists() => stored_config(&HmcCheckpoint::read_config(&ckpt)?)?,
        None => HmcOptions::default(),
    };
    let cfg = HmcConfig::from_layers(&file, flags)?;
    crate::io::check_output_path(&cfg.out, cfg.force)?;
    if cfg.resume {
        let ckpt = checkpoint_path(&cfg.out);
        cfg.check_resumes(&HmcCheckpoint::read_config(&ckpt)?, &ckpt)?;
    }
    super::check_config_not_out(&flags.config, &cfg.out)?;
    Ok(cfg)
}
