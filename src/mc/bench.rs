//! HMC throughput, shared by `cargo bench` and `latdiff bench hmc`.

use super::hmc::{Chain, HmcParams, Start};
use super::Integrator;
use crate::lattice::Lattice;
use crate::theory::{Parametrisation, Phi4};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct HmcBench {
    pub lattice: usize,
    pub chains: usize,
    pub integrator: String,
    pub n_md: usize,
    pub trajectories_per_chain: usize,
    pub seconds: f64,
    /// chains × V × MD steps / s (an MD step is one force evaluation for leapfrog, two for Omelyan).
    pub site_updates_per_s: f64,
    /// chains × V × force evaluations / s.
    pub force_site_evals_per_s: f64,
    pub threads: usize,
}

/// Runs `chains` chains of an L×L φ⁴ lattice for about `seconds` (after a warm-up) and
/// reports throughput. The chains are spread over rayon's threads.
pub fn hmc_throughput(l: usize, chains: usize, integrator: Integrator, n_md: usize, seconds: f64) -> HmcBench {
    let lat = Lattice::square(l);
    let theory = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 });
    let params = HmcParams { integrator, n_md, tau: 1.0, tau_jitter: 0.0 };
    let mut cs: Vec<Chain> = (0..chains).map(|c| Chain::new(&theory, 1, c as u64, Start::Cold)).collect();
    cs.par_iter_mut().for_each(|c| {
        c.trajectory(&theory, &params);
    });
    let t0 = std::time::Instant::now();
    let mut n_traj = 0;
    while t0.elapsed().as_secs_f64() < seconds || n_traj == 0 {
        cs.par_iter_mut().for_each(|c| {
            c.trajectory(&theory, &params);
        });
        n_traj += 1;
    }
    let dt = t0.elapsed().as_secs_f64();
    let sites = (chains * lat.volume() * n_traj) as f64;
    HmcBench {
        lattice: l,
        chains,
        integrator: integrator.name().into(),
        n_md,
        trajectories_per_chain: n_traj,
        seconds: dt,
        site_updates_per_s: sites * n_md as f64 / dt,
        force_site_evals_per_s: sites * integrator.force_evals(n_md) as f64 / dt,
        threads: rayon::current_num_threads(),
    }
}
