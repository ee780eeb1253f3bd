//! Markov chain Monte Carlo: molecular-dynamics integrators (separate from the actions
//! they integrate), HMC chains, and the ensemble driver shared by `latdiff hmc`.

pub mod bench;
pub mod checkpoint;
pub mod cuda_hmc;
pub mod cuda_theory;
pub mod device;
pub mod engine;
pub mod ensemble;
pub mod hmc;
pub mod integrator;
pub mod memory;
pub mod therm;

pub use hmc::{Chain, HmcParams, TrajectoryResult};
pub use integrator::Integrator;
