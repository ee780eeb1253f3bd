//! φ⁴'s diffusion pieces: the physics prior (Gaussian of the data's propagator with the
//! exact zero-mode marginal), the cumulant action, the exact free-field score, the SMC
//! level targets and the magnetisation's exact conditional.

pub mod cumulant;
pub mod free;
pub mod heat_bath;
pub mod levels;
pub mod magnetisation;
pub mod mala;
pub mod multilevel;
pub mod prior;
pub mod smc;
pub mod zero_mode;

#[cfg(test)]
mod sampler_tests;
