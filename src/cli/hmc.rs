//! `latdiff hmc`.

use super::{input_err, report};
use crate::backend::{self, DeviceRequest};
use crate::config::{HmcConfig, HmcOptions};
use crate::dist::Comm;
use crate::util::StopFlag;

pub fn run(opts: &HmcOptions, device: DeviceRequest, threads: Option<usize>) -> i32 {
    // Validate before MPI starts and before any file exists.
    let cfg = match HmcConfig::from_options(opts).map_err(input_err) {
        Ok(c) => c,
        Err(e) => return report(Err(e), 0),
    };
    let comm = Comm::init();
    comm.configure_threads(threads);
    let stop = StopFlag::install();
    if let Err(e) = backend::select(device, false, 0, comm.is_root()) {
        return report(Err(input_err(e)), comm.rank());
    }
    crate::backend::announce();
    let r = crate::mc::ensemble::run(&cfg, &comm, &stop).map(|_| ());
    let code = report(r, comm.rank());
    if code == 1 && comm.size() > 1 {
        comm.abort(code);
    }
    code
}
