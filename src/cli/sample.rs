//! `latdiff sample`.

use crate::backend::DeviceRequest;
use crate::config::{SampleConfig, SampleOptions};

pub fn run(opts: &SampleOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    super::run_distributed(
        SampleConfig::from_options(opts),
        device,
        threads,
        |cfg| super::Output { path: cfg.out.clone(), replace: cfg.force },
        |_| Ok(()),
        |cfg, comm, stop, dev| crate::diffusion::generate::run(cfg, comm, stop, dev).map(|_| ()),
    )
}
