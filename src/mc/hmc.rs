//! One HMC Markov chain: momentum refresh, MD trajectory, Metropolis test, written once
//! for any [`Theory`] on its [`Manifold`].

use super::Integrator;
use crate::rng::{self, Domain, Stream};
use crate::theory::{Manifold, Theory};
use rand::RngExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HmcParams {
    pub integrator: Integrator,
    /// MD steps per trajectory.
    pub n_md: usize,
    /// Trajectory length τ.
    pub tau: f64,
    /// Each trajectory's length is drawn uniformly from [τ(1 − jitter), τ]. A fixed length
    /// is not ergodic for modes with ωτ ≈ π (a free mode is mapped to −itself whatever the
    /// momentum), which biases ⟨φ²⟩ when such modes exist (mass form, large m²).
    pub tau_jitter: f64,
}

impl HmcParams {
    /// The length of a trajectory whose jitter uniform is `u` ∈ [0, 1).
    pub fn trajectory_length(&self, u: f64) -> f64 {
        self.tau * (1.0 - self.tau_jitter * u)
    }
}

/// The Metropolis test of a trajectory with energy change `delta_h` against the uniform `u`
/// (every engine's, so CPU and device chains accept by the same rule).
pub fn metropolis(delta_h: f64, u: f64) -> bool {
    delta_h <= 0.0 || u < (-delta_h).exp()
}

/// Named in the options, so config's (plain data).
pub use crate::config::Start;

#[derive(Clone, Copy, Debug, Default)]
pub struct TrajectoryResult {
    pub delta_h: f64,
    pub accepted: bool,
    /// S and the theory's thermalisation observable (φ⁴: Σφ) of the chain's configuration
    /// after the Metropolis step.
    pub action: f64,
    pub monitor: f64,
}

/// A chain owns its field, its random stream and its counters, so chains evolve
/// independently and in any order (thread or rank) to the same result.
#[derive(Clone, Debug)]
pub struct Chain {
    pub index: u64,
    pub phi: Vec<f64>,
    pub rng: Stream,
    pub n_traj: u64,
    pub n_accept: u64,
    /// Cached S and thermalisation observable of `phi` (`Theory::action_and_monitor`), so a
    /// trajectory evaluates the action once, not twice.
    pub action: f64,
    pub monitor: f64,
    pub hot_start: bool,
    mom: Vec<f64>,
    phi_old: Vec<f64>,
}

impl Chain {
    pub fn new<T: Theory>(theory: &T, seed: u64, index: u64, start: Start) -> Self {
        let mut rng = rng::stream(seed, Domain::HmcChain, index);
        let hot = match start {
            Start::Hot => true,
            Start::Cold => false,
            Start::Mixed => index % 2 == 1,
        };
        let phi = if hot { theory.hot_start(&mut rng) } else { theory.cold_start(&mut rng) };
        Chain { hot_start: hot, ..Self::restore(theory, index, phi, rng, 0, 0) }
    }

    /// Restores a chain from a checkpoint (field, stream and counters).
    pub fn restore<T: Theory>(theory: &T, index: u64, phi: Vec<f64>, rng: Stream, n_traj: u64, n_accept: u64) -> Self {
        let v = phi.len();
        let (action, monitor) = theory.action_and_monitor(&phi);
        Chain {
            index,
            phi,
            rng,
            n_traj,
            n_accept,
            action,
            monitor,
            hot_start: false,
            mom: vec![0.0; theory.manifold().momentum_len(v)],
            phi_old: vec![0.0; v],
        }
    }

    /// The theory's updates besides HMC (φ⁴'s Wolff flips), `n` of them from the chain's
    /// stream; the cached S and observable follow the field.
    pub fn cluster_flips<T: Theory>(&mut self, theory: &T, n: usize) {
        if theory.cluster_flips(&mut self.phi, &mut self.rng, n).is_some() {
            (self.action, self.monitor) = theory.action_and_monitor(&self.phi);
        }
    }

    pub fn trajectory<T: Theory>(&mut self, theory: &T, params: &HmcParams) -> TrajectoryResult {
        self.trajectory_until(theory, params, &|| false).expect("never stopped")
    }

    /// As `trajectory`, but None when `stop()` interrupts the MD: the field is put back,
    /// the random stream is not (the caller restores a saved chain to continue exactly).
    pub fn trajectory_until<T: Theory>(
        &mut self,
        theory: &T,
        params: &HmcParams,
        stop: &impl Fn() -> bool,
    ) -> Option<TrajectoryResult> {
        let u_tau: f64 = self.rng.random();
        let tau = params.trajectory_length(u_tau);
        let manifold = theory.manifold();
        manifold.sample_momenta(&mut self.rng, &mut self.mom);
        let kinetic0 = manifold.kinetic(&self.mom);
        self.phi_old.copy_from_slice(&self.phi);
        if !params.integrator.integrate_until(theory, &mut self.phi, &mut self.mom, params.n_md, tau, stop) {
            self.phi.copy_from_slice(&self.phi_old);
            return None;
        }
        let kinetic1 = manifold.kinetic(&self.mom);
        let (s1, m1) = theory.action_and_monitor(&self.phi);
        let delta_h = (s1 + kinetic1) - (self.action + kinetic0);
        // Always draw the uniform, so the stream advances the same way on accept and reject.
        let u: f64 = self.rng.random();
        let accepted = metropolis(delta_h, u);
        if accepted {
            self.action = s1;
            self.monitor = m1;
            self.n_accept += 1;
        } else {
            self.phi.copy_from_slice(&self.phi_old);
        }
        self.n_traj += 1;
        Some(TrajectoryResult { delta_h, accepted, action: self.action, monitor: self.monitor })
    }
}

/// One Markov step of a chain: an HMC trajectory followed by the configured cluster flips.
pub fn update<T: Theory>(
    chain: &mut Chain,
    theory: &T,
    params: &HmcParams,
    cluster_updates: usize,
) -> TrajectoryResult {
    update_until(chain, theory, params, cluster_updates, &|| false).expect("never stopped")
}

/// As `update`, but None when `stop()` interrupts it (before or during the trajectory).
pub fn update_until<T: Theory>(
    chain: &mut Chain,
    theory: &T,
    params: &HmcParams,
    cluster_updates: usize,
    stop: &impl Fn() -> bool,
) -> Option<TrajectoryResult> {
    if stop() {
        return None;
    }
    let r = chain.trajectory_until(theory, params, stop)?;
    if cluster_updates == 0 {
        return Some(r);
    }
    chain.cluster_flips(theory, cluster_updates);
    Some(TrajectoryResult { action: chain.action, monitor: chain.monitor, ..r })
}
