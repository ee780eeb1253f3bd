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
    // One GPU per rank: the rank's node-local index picks it. Wolff flips are CPU-only, so
    // with them `auto` stays on the CPU (and `cuda` is refused).
    let dev = match backend::select(device, cfg.cluster_updates == 0, comm.node_local_rank(), comm.is_root()) {
        Ok(d) => d,
        Err(e) => return report(Err(input_err(e)), comm.rank()),
    };
    crate::backend::announce();
    let r = crate::mc::ensemble::run_on(&cfg, &comm, &stop, dev).map(|_| ());
    let code = report(r, comm.rank());
    if code == 1 && comm.size() > 1 {
        comm.abort(code);
    }
    code
}
