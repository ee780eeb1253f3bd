//! The HMC engine for a device: the one place that knows every engine, so that the
//! interface (`engine`) stays below the engines that implement it.

use super::cuda_hmc::CudaHmc;
use super::cuda_theory::CudaTheory;
use super::engine::{CpuHmc, HmcEngine, HmcSetup};
use crate::backend::Device;
use anyhow::Result;

/// Builds the engine for `device`, for any theory with GPU kernels ([`CudaTheory`]: φ⁴,
/// U(1)); a theory without them runs on [`CpuHmc`] directly.
pub fn build<T: CudaTheory + 'static>(device: Device, setup: &HmcSetup<T>) -> Result<Box<dyn HmcEngine>> {
    match device {
        Device::Cpu => Ok(Box::new(CpuHmc::new(setup))),
        Device::Cuda { ordinal } => Ok(Box::new(CudaHmc::new(ordinal, setup)?)),
    }
}
