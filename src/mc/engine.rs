//! The HMC backend interface: a set of chains that advance by whole Markov updates.
//!
//! The ensemble driver (`mc::ensemble`) and the benchmarks are written once against
//! [`HmcEngine`]; the device is chosen once, when the engine is built (`mc::device::build`).
//! The CPU engine runs the reference code (`Chain::trajectory` + Wolff flips, xoshiro
//! streams, rayon over chains). The CUDA engine (`mc::cuda_hmc`) runs every chain's
//! trajectory on the GPU with Philox random numbers: its ensembles differ bit-wise from the
//! CPU's but sample the same distribution.

use super::hmc::{update, update_until, Chain, HmcParams, Start, TrajectoryResult};
use crate::theory::{Phi4, Theory};
use crate::util::StopFlag;
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

/// What a chain needs to continue bit for bit: its field, its random stream (xoshiro words
/// on the CPU; the GPU's Philox stream is keyed by the trajectory count) and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainState {
    pub phi: Vec<f64>,
    pub rng: [u64; 4],
    pub n_traj: u64,
    pub n_accept: u64,
    /// Cached S and thermalisation observable of `phi` (kept, not recomputed, so the
    /// continuation is bit-identical).
    pub action: f64,
    pub monitor: f64,
    pub hot_start: bool,
}

pub trait HmcEngine {
    /// e.g. "cpu (8 threads)" or "cuda:0 NVIDIA H100 (compute_90)".
    fn describe(&self) -> String;
    fn n_chains(&self) -> usize;
    /// Per chain: whether it started hot (random) rather than ordered.
    fn hot_starts(&self) -> Vec<bool>;
    /// `k` Markov updates of every chain; `result[chain][i]` is update i of that chain.
    fn advance(&mut self, k: usize) -> Result<Vec<Vec<TrajectoryResult>>>;
    /// As `advance`, but None when `stop` was raised before all `k` updates were done: the
    /// chains are then in no defined state until `restore`d. Engines that cannot stop early
    /// (`interruptible` false) advance fully.
    fn advance_until(&mut self, k: usize, stop: &StopFlag) -> Result<Option<Vec<Vec<TrajectoryResult>>>> {
        let _ = stop;
        self.advance(k).map(Some)
    }
    /// Whether `advance_until` may give up (the driver then saves the chains first).
    fn interruptible(&self) -> bool {
        false
    }
    /// Every chain's current configuration (f32) and counters, in chain order.
    fn snapshot(&mut self) -> Result<Vec<ChainRow>>;
    /// Every chain's complete state, in chain order (checkpoints).
    fn save(&mut self) -> Result<Vec<ChainState>>;
    /// Continues from states `save` returned for the same chains.
    fn restore(&mut self, states: &[ChainState]) -> Result<()>;
    /// Modelled DRAM bytes moved per degree of freedom (lattice site; link for U(1)) per
    /// trajectory (for bandwidth figures).
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
pub struct HmcSetup<T: Theory = Phi4> {
    pub theory: T,
    pub params: HmcParams,
    pub cluster_updates: usize,
    pub seed: u64,
    pub start: Start,
    pub chains: std::ops::Range<usize>,
}

impl<T: Theory> HmcSetup<T> {
    /// The start configurations: the same on every device for the same seed.
    pub fn start_chains(&self) -> Vec<Chain> {
        self.chains.clone().map(|c| Chain::new(&self.theory, self.seed, c as u64, self.start)).collect()
    }
}

/// The CPU reference engine for any theory: chains spread over rayon's threads.
pub struct CpuHmc<T: Theory = Phi4> {
    pub theory: T,
    pub params: HmcParams,
    pub cluster_updates: usize,
    pub chains: Vec<Chain>,
}

impl<T: Theory> CpuHmc<T> {
    pub fn new(s: &HmcSetup<T>) -> Self {
        CpuHmc {
            theory: s.theory.clone(),
            params: s.params,
            cluster_updates: s.cluster_updates,
            chains: s.start_chains(),
        }
    }
}

impl<T: Theory> HmcEngine for CpuHmc<T> {
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
    fn advance_until(&mut self, k: usize, stop: &StopFlag) -> Result<Option<Vec<Vec<TrajectoryResult>>>> {
        let (th, p, cl) = (&self.theory, &self.params, self.cluster_updates);
        let raised = || stop.raised();
        let res: Vec<Option<Vec<TrajectoryResult>>> =
            self.chains.par_iter_mut().map(|c| (0..k).map(|_| update_until(c, th, p, cl, &raised)).collect()).collect();
        Ok(res.into_iter().collect())
    }
    fn interruptible(&self) -> bool {
        true
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
    fn save(&mut self) -> Result<Vec<ChainState>> {
        Ok(self
            .chains
            .iter()
            .map(|c| ChainState {
                phi: c.phi.clone(),
                rng: crate::rng::state_words(&c.rng),
                n_traj: c.n_traj,
                n_accept: c.n_accept,
                action: c.action,
                monitor: c.monitor,
                hot_start: c.hot_start,
            })
            .collect())
    }
    fn restore(&mut self, states: &[ChainState]) -> Result<()> {
        anyhow::ensure!(
            states.len() == self.chains.len(),
            "checkpoint holds {} chains, not {}",
            states.len(),
            self.chains.len()
        );
        for (c, s) in self.chains.iter_mut().zip(states) {
            anyhow::ensure!(
                s.phi.len() == c.phi.len(),
                "checkpoint field has {} sites, not {}",
                s.phi.len(),
                c.phi.len()
            );
            c.phi.copy_from_slice(&s.phi);
            c.rng = crate::rng::from_state_words(s.rng);
            c.n_traj = s.n_traj;
            c.n_accept = s.n_accept;
            c.action = s.action;
            c.monitor = s.monitor;
            c.hot_start = s.hot_start;
        }
        Ok(())
    }
}
