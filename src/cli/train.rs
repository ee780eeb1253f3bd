//! `latdiff train`.

use super::{input_err, report};
use crate::backend::{self, DeviceRequest};
use crate::config::{TrainConfig, TrainOptions};
use crate::dist::Comm;
use crate::util::StopFlag;

pub fn run(opts: &TrainOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    let cfg = match TrainConfig::from_options(opts).map_err(input_err) {
        Ok(c) => c,
        Err(e) => return report(Err(e), 0),
    };
    let comm = Comm::init();
    comm.configure_threads(threads);
    let stop = StopFlag::install();
    if let Err(e) = backend::select(device, false, comm.node_local_rank(), comm.is_root()) {
        return report(Err(input_err(e)), comm.rank());
    }
    let r = crate::diffusion::train::train(&cfg, &comm, &stop).map(|_| ());
    let code = report(r, comm.rank());
    // Bad input is found identically on every rank; anything else may be one rank's
    // failure, so end the whole job rather than leave the others waiting.
    if code == 1 && comm.size() > 1 {
        comm.abort(code);
    }
    code
}
