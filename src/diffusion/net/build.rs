//! The network engine for a device: the U-Net's (CPU or CUDA) or the action network's (CPU).

use anyhow::{anyhow, Result};

use crate::backend::Device;
use crate::diffusion::net::action_engine::{ActionEngine, NO_CUDA};
use crate::diffusion::net::engine::{Engine, NetEngine};
use crate::nn::optim::{AdamW, AdamWConfig};
use crate::nn::{Arch, CpuOps, Network};

/// The action network's engine (`action_engine`): the CPU only.
pub fn action(
    device: Device,
    arch: crate::nn::ActionArch,
    sigma_data: f64,
    params: &[f32],
    opt: Option<(AdamWConfig, Option<&AdamW<f32>>)>,
) -> Result<Box<dyn NetEngine>> {
    match device {
        Device::Cpu => Ok(Box::new(ActionEngine::new(arch, sigma_data, params, opt)?)),
        Device::Cuda { .. } => Err(anyhow!("device cuda: {}", NO_CUDA)),
    }
}

/// Builds the engine for `device`: `net` with `params`, and an optimiser when `opt` is given.
pub fn unet(
    device: Device,
    arch: Arch,
    params: &[f32],
    opt: Option<(AdamWConfig, Option<&AdamW<f32>>)>,
) -> Result<Box<dyn NetEngine>> {
    let net = Network::new(arch);
    match device {
        Device::Cpu => Ok(Box::new(Engine::new(CpuOps::<f32>::default(), net, params, opt)?)),
        Device::Cuda { ordinal } => {
            let dev = crate::backend::cuda_nn::CudaOps::new(ordinal)?;
            Ok(Box::new(Engine::new(dev, net, params, opt)?))
        }
    }
}
