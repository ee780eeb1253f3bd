//! `latdiff train`.

use crate::backend::DeviceRequest;
use crate::config::{TrainConfig, TrainOptions};

pub fn run(opts: &TrainOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        TrainConfig::from_options(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force || cfg.resume },
        |_| Ok(()),
        |cfg, comm, stop, dev| crate::diffusion::train::train(cfg, comm, stop, dev).map(|_| ()),
    )
}
