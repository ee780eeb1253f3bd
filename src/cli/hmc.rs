//! `latdiff hmc`.

use crate::backend::DeviceRequest;
use crate::config::{HmcConfig, HmcOptions};

pub fn run(opts: &HmcOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        HmcConfig::from_options(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force },
        // One GPU per rank (its node-local index picks it). Wolff flips are CPU-only, so with
        // them `auto` stays on the CPU and `cuda` is refused.
        |cfg| match cfg.cluster_updates {
            0 => Ok(()),
            _ => Err("Wolff cluster updates run on the CPU only (--cluster-updates 0 runs HMC on the GPU)"),
        },
        |cfg, comm, stop, dev| {
            crate::backend::announce();
            crate::mc::ensemble::run_on(cfg, comm, stop, dev).map(|_| ())
        },
    )
}
