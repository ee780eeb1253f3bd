//! The HMC backend interface: a set of chains that advance by whole Markov updates.
//!
//! The ensemble driver (`mc::ensemble`) and the benchmarks are written once against
//! [`HmcEngine`]; the device is chosen once, when the engine is built ([`build`]). The CPU
//! engine runs the reference code (`Chain::trajectory` + Wolff flips, xoshiro streams, rayon
//! over chains). The CUDA engine (`backend::cuda_hmc`) runs every chain's trajectory on the
//! GPU with Philox random numbers: its ensembles differ bit-wise from the CPU's but sample
//! the same distribution.

use super::ensemble::update;
use super::hmc::{Chain, HmcParams, Start, TrajectoryResult};
use crate::backend::Device;
use crate::theory::Phi4;
use anyhow::Result;
use rayon::prelude::*;

/// What the driver writes for one chain: its configuration and bookkeeping.
#[derive(Clone, Debug)]
pub struct ChainRow {
    pub phi: Vec<f32>,
    pub action: f64,
    pub index: u64,
    pub n_traj: u64,
}

pub trait HmcEngine {
    /// e.g. "cpu (8 threads)" or "cuda:0 NVIDIA H100 (compute_90)".
    fn describe(&self) -> String;
    fn n_chains(&self) -> usize;
    /// Per chain: whether it started hot (random) rather than ordered.
    fn hot_starts(&self) -> Vec<bool>;
    /// `k` Markov updates of every chain; `result[chain][i]` is update i of that chain.
    fn advance(&mut self, k: usize) -> Result<Vec<Vec<TrajectoryResult>>>;
    /// Every chain's current configuration (f32) and counters, in chain order.
    fn snapshot(&mut self) -> Result<Vec<ChainRow>>;
    /// Modelled DRAM bytes moved per lattice site per trajectory (for bandwidth figures).
    fn bytes_per_site_trajectory(&self) -> Option<f64> {
        None
    }
    /// Peak DRAM bandwidth of the device, bytes/s.
    fn peak_bytes_per_s(&self) -> Option<f64> {
        None
    }
}

/// What every HMC engine is built from: theory, update parameters, and the chains (global
/// indices) it holds with their seed and start.
#[derive(Clone, Debug)]
pub struct HmcSetup {
    pub theory: Phi4,
    pub params: HmcParams,
    pub cluster_updates: usize,
    pub seed: u64,
    pub start: Start,
    pub chains: std::ops::Range<usize>,
}

impl HmcSetup {
    /// The start configurations: the same on every device for the same seed.
    pub fn start_chains(&self) -> Vec<Chain> {
        self.chains.clone().map(|c| Chain::new(&self.theory, self.seed, c as u64, self.start)).collect()
    }
}

/// The CPU reference engine: chains spread over rayon's threads.
pub struct CpuHmc {
    pub theory: Phi4,
    pub params: HmcParams,
    pub cluster_updates: usize,
    pub chains: Vec<Chain>,
}

impl CpuHmc {
    pub fn new(s: &HmcSetup) -> Self {
        CpuHmc { theory: s.theory, params: s.params, cluster_updates: s.cluster_updates, chains: s.start_chains() }
    }
}

impl HmcEngine for CpuHmc {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn n_chains(&self) -> usize {
        self.chains.len()
    }
    fn hot_starts(&self) -> Vec<bool> {
        self.chains.iter().map(|c| c.hot_start).collect()
    }
    fn advance(&mut self, k: usize) -> Result<Vec<Vec<TrajectoryResult>>> {
        let (th, p, cl) = (&self.theory, &self.params, self.cluster_updates);
        Ok(self.chains.par_iter_mut().map(|c| (0..k).map(|_| update(c, th, p, cl)).collect()).collect())
    }
    fn snapshot(&mut self) -> Result<Vec<ChainRow>> {
        Ok(self
            .chains
            .par_iter()
            .map(|c| ChainRow {
                phi: c.phi.iter().map(|&x| x as f32).collect(),
                action: c.action,
                index: c.index,
                n_traj: c.n_traj,
            })
            .collect())
    }
}

/// Builds the engine for `device`.
pub fn build(device: Device, setup: &HmcSetup) -> Result<Box<dyn HmcEngine>> {
    match device {
        Device::Cpu => Ok(Box::new(CpuHmc::new(setup))),
        Device::Cuda { ordinal } => Ok(Box::new(crate::backend::cuda_hmc::CudaHmc::new(ordinal, setup)?)),
    }
}
