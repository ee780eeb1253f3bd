//! diffusion

pub mod objective;
