//! `latdiff sample`.

use super::{input_err, report};
use crate::backend::{self, DeviceRequest};
use crate::config::{SampleConfig, SampleOptions};
use crate::dist::Comm;
use crate::util::StopFlag;

pub fn run(opts: &SampleOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    let cfg = match SampleConfig::from_options(opts).map_err(input_err) {
        Ok(c) => c,
        Err(e) => return report(Err(e), 0),
    };
    let comm = Comm::init();
    comm.configure_threads(threads);
    let stop = StopFlag::install();
    if let Err(e) = backend::select(device, false, comm.node_local_rank(), comm.is_root()) {
        return report(Err(input_err(e)), comm.rank());
    }
    let r = crate::diffusion::generate::run(&cfg, &comm, &stop).map(|_| ());
    let code = report(r, comm.rank());
    if code == 1 && comm.size() > 1 {
        comm.abort(code);
    }
    code
}
