//! latdiff: lattice field theory ensembles from HMC and score-based diffusion models.
//!
//! One folder per concern: `lattice` (geometry), `theory` (actions and forces),
//! `mc` (HMC integrators and updates), `dist` (MPI), `io` (HDF5 files), `analysis`
//! (observables and statistics), `nn` (score network layers), `diffusion` (training
//! objective and samplers), `backend` (CPU / CUDA device choice), `config` (options),
//! `error` (bad input). They form layers without import cycles: docs/architecture.md,
//! checked by tests/architecture.rs.

pub mod analysis;
pub mod backend;
pub mod cli;
pub mod config;
pub mod diffusion;
pub mod dist;
pub mod error;
pub mod io;
pub mod lattice;
pub mod limits;
pub mod mc;
pub mod nn;
pub mod rng;
pub mod theory;
pub mod util;

/// Version string recorded in every output file.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("LATDIFF_GIT"));
