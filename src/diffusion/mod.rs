//! diffusion
