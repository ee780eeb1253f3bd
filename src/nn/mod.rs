//! Score network: explicit forward/backward layers over one flat parameter buffer.

pub mod action;
pub mod activation;
pub mod conv;
pub mod embed;
pub mod float;
pub mod fused;
#[cfg(test)]
pub mod gradcheck;
pub mod groupnorm;
pub mod lanes;
pub mod local_ops;
pub mod ops;
pub mod optim;
pub mod params;
pub mod periodic_conv;
pub mod sample;
pub mod silu2;
pub mod unet;

pub use action::{ActionArch, ActionNet, ActionWorkspace};
pub use float::Float;
pub use ops::{CpuOps, NetOps};
pub use params::{ParamEntry, ParamLayout};
pub use unet::{Arch, CpuWorkspace, Network, Workspace};
