//! `--hmc-refine K`: K HMC trajectories of the target action from each generated
//! configuration. They leave e^{−S} invariant, so importance weights stay valid.

use rayon::prelude::*;

use crate::mc::hmc::{Chain, HmcParams};
use crate::mc::Integrator;
use crate::rng::{self, Domain};
use crate::theory::Theory;

/// The refinement trajectories' integrator settings.
pub const REFINE: HmcParams = HmcParams { integrator: Integrator::Omelyan, n_md: 10, tau: 1.0, tau_jitter: 0.2 };

/// Configuration i of `configs` (global index `first_index + i`) runs `trajectories` HMC
/// trajectories of `target` with the stream `rng::stream(seed, Domain::HmcChain, 2^40 + index)`.
pub fn hmc_refine<T: Theory>(target: &T, configs: &mut [f64], seed: u64, first_index: u64, trajectories: usize) {
    if trajectories == 0 {
        return;
    }
    let v: usize = target.dof_shape(target.lattice()).iter().product();
    configs.par_chunks_mut(v).enumerate().for_each(|(i, phi)| {
        let idx = first_index + i as u64;
        let rng = rng::stream(seed, Domain::HmcChain, (1u64 << 40) + idx);
        let mut c = Chain::restore(target, idx, phi.to_vec(), rng, 0, 0);
        for _ in 0..trajectories {
            c.trajectory(target, &REFINE);
        }
        phi.copy_from_slice(&c.phi);
    });
}
