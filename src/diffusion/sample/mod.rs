//! The reverse-diffusion samplers: the reverse kernels and their densities, the em, pc and
//! ode samplers, the Metropolis-adjusted corrector and the HMC refinement.

pub mod corrector;
pub mod kernel;
pub mod refine;
pub mod sampler;
pub mod settings;

/// The error of a sampler stopped by SIGTERM/SIGUSR1 between steps (`util::StopFlag`): the
/// driver tells it from a failure by this text.
pub const INTERRUPTED: &str = "interrupted by a stop signal";
