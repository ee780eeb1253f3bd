//! HMC on the GPU for any theory with kernels ([`CudaTheory`]: φ⁴, U(1)): every chain of
//! the rank advances together, f64 throughout.
//!
//! Per trajectory (all chains at once): Philox momenta keyed by (seed, chain, trajectory)
//! (`hmc_momenta`), the energies S, the theory's monitor and ½p² per chain (the theory's
//! energy kernel), the MD steps as fused kick+drift launches (the field ping-ponged), the
//! closing kick, the energies again; then the host reads 6 numbers per chain, makes the
//! Metropolis decisions with Philox uniforms of the same key (`philox::hmc_uniforms`) and
//! the rejected chains get their old field back (`hmc_restore`). Trajectory-length jitter
//! is a per-chain step size. Only the force and the energies are the theory's
//! (`mc::cuda_theory`); this file knows no theory by name.
//!
//! Start configurations are the CPU's (`Chain::new`), so a GPU run starts where a CPU run
//! with the same seed does; after that the random numbers differ (Philox, not xoshiro), so
//! GPU ensembles agree with CPU ones statistically, not bit-wise. Updates besides HMC
//! (φ⁴'s Wolff flips, U(1)'s flux moves) are CPU-only. The parity tests
//! (tests/cuda_parity.rs) compare MD integration and energies for given fields and momenta
//! with the CPU code, and whole trajectories with [`reference_trajectory`], the same
//! Philox-driven algorithm on the CPU.

use super::cuda_theory::CudaTheory;
use super::engine::{ChainRow, ChainState, HmcEngine, HmcSetup};
use super::hmc::{metropolis, HmcParams, TrajectoryResult};
use super::integrator::MdField;
use crate::backend::cuda::CudaBackend;
use crate::backend::philox;
use crate::cuda_launch;
use crate::theory::{Manifold, Phi4, Theory};
use anyhow::{anyhow, bail, Result};
use cudarc::driver::CudaSlice;

pub struct CudaHmc<T: CudaTheory = Phi4> {
    pub be: CudaBackend,
    pub theory: T,
    pub params: HmcParams,
    seed: u64,
    chain0: usize,
    n_chains: usize,
    /// Values per chain's field (φ⁴: V sites; U(1): 2V links).
    dof: usize,
    hot: Vec<bool>,
    /// Trajectories done by every chain (they advance together); the Philox step counter.
    pub n_traj: u64,
    n_accept: Vec<u64>,
    /// Cached S and monitor of every chain's current field, as a CPU `Chain` keeps them.
    action: Vec<f64>,
    monitor: Vec<f64>,
    field: CudaSlice<f64>,
    field_tmp: CudaSlice<f64>,
    field_old: CudaSlice<f64>,
    mom: CudaSlice<f64>,
    dt: CudaSlice<f64>,
    energy0: CudaSlice<f64>,
    energy1: CudaSlice<f64>,
    accept: CudaSlice<i32>,
}

fn drv<T>(what: &str, r: Result<T, cudarc::driver::DriverError>) -> Result<T> {
    r.map_err(|e| anyhow!("CUDA hmc: {what}: {e}"))
}

impl<T: CudaTheory> CudaHmc<T> {
    pub fn new(ordinal: usize, setup: &HmcSetup<T>) -> Result<Self> {
        if setup.cluster_updates > 0 {
            bail!(
                "device cuda: cluster updates (Wolff flips, flux moves) run on the CPU only \
                 (use --cluster-updates 0 or --device cpu)"
            );
        }
        if setup.params.n_md == 0 {
            bail!("device cuda: n_md must be at least 1");
        }
        let be = CudaBackend::new(ordinal)?;
        let theory = setup.theory.clone();
        let dof: usize = theory.dof_shape(theory.lattice()).iter().product();
        let n = setup.chains.len();
        let starts = setup.start_chains();
        let init: Vec<f64> = starts.iter().flat_map(|c| c.phi.iter().copied()).collect();
        let hot: Vec<bool> = starts.iter().map(|c| c.hot_start).collect();
        let s = &be.stream;
        let field = drv("upload", s.clone_htod(&init))?;
        let mut h = CudaHmc {
            field_tmp: drv("alloc", s.alloc_zeros(n * dof))?,
            field_old: drv("alloc", s.alloc_zeros(n * dof))?,
            mom: drv("alloc", s.alloc_zeros(n * dof))?,
            dt: drv("alloc", s.alloc_zeros(n))?,
            energy0: drv("alloc", s.alloc_zeros(3 * n))?,
            energy1: drv("alloc", s.alloc_zeros(3 * n))?,
            accept: drv("alloc", s.alloc_zeros(n))?,
            field,
            theory,
            params: setup.params,
            seed: setup.seed,
            chain0: setup.chains.start,
            n_chains: n,
            dof,
            hot,
            n_traj: 0,
            n_accept: vec![0; n],
            action: vec![0.0; n],
            monitor: vec![0.0; n],
            be,
        };
        // S and monitor of the start configurations (mom = 0 here).
        h.energies(true)?;
        let e = drv("download", h.be.stream.clone_dtoh(&h.energy0))?;
        h.action = e.chunks(3).map(|x| x[0]).collect();
        h.monitor = e.chunks(3).map(|x| x[1]).collect();
        Ok(h)
    }

    /// energy0 (first) or energy1 ← (S, monitor, ½p²) per chain of the current field and mom.
    fn energies(&mut self, first: bool) -> Result<()> {
        let out = if first { &mut self.energy0 } else { &mut self.energy1 };
        self.theory.launch_energies(&self.be, self.n_chains, &self.field, &self.mom, out)
    }

    /// Every chain's MD trajectory with the step sizes in `dt`: the integrators' own
    /// schedule (`Integrator::run`) driving this engine's kernels.
    fn integrate(&mut self) -> Result<()> {
        let (integrator, n_md) = (self.params.integrator, self.params.n_md);
        integrator.run(self, n_md, &|| false).map(|_| ())
    }

    /// Testing hook: integrates given fields and momenta (chain-major) over `tau` and returns
    /// them; compared with `Integrator::integrate` on the CPU.
    pub fn integrate_given(&mut self, field: &[f64], mom: &[f64], tau: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        let s = self.be.stream.clone();
        drv("upload", s.memcpy_htod(field, &mut self.field))?;
        drv("upload", s.memcpy_htod(mom, &mut self.mom))?;
        drv("upload", s.memcpy_htod(&vec![tau / self.params.n_md as f64; self.n_chains], &mut self.dt))?;
        self.integrate()?;
        Ok((drv("download", s.clone_dtoh(&self.field))?, drv("download", s.clone_dtoh(&self.mom))?))
    }

    /// Testing hook: (S, monitor, ½p²) per chain for given fields and momenta.
    pub fn energies_given(&mut self, field: &[f64], mom: &[f64]) -> Result<Vec<f64>> {
        let s = self.be.stream.clone();
        drv("upload", s.memcpy_htod(field, &mut self.field))?;
        drv("upload", s.memcpy_htod(mom, &mut self.mom))?;
        self.energies(false)?;
        drv("download", s.clone_dtoh(&self.energy1))
    }

    /// Testing hook: the force −∂S/∂φ of given fields, from one kick of zero momenta with
    /// unit step (the kernels the MD steps use); compared with `Action::deriv`.
    pub fn force_given(&mut self, field: &[f64]) -> Result<Vec<f64>> {
        let s = self.be.stream.clone();
        drv("upload", s.memcpy_htod(field, &mut self.field))?;
        drv("upload", s.memcpy_htod(&vec![0.0; field.len()], &mut self.mom))?;
        drv("upload", s.memcpy_htod(&vec![1.0; self.n_chains], &mut self.dt))?;
        MdField::kick(self, 1.0)?;
        drv("download", s.clone_dtoh(&self.mom))
    }

    /// Testing hook: the momenta of the next trajectory, as generated on the GPU.
    pub fn momenta(&mut self) -> Result<Vec<f64>> {
        self.draw_momenta()?;
        drv("download", self.be.stream.clone_dtoh(&self.mom))
    }

    pub fn fields(&mut self) -> Result<Vec<f64>> {
        drv("download", self.be.stream.clone_dtoh(&self.field))
    }

    fn draw_momenta(&mut self) -> Result<()> {
        let (k0, k1) = (self.seed as u32, (self.seed >> 32) as u32);
        let (c0, traj) = (self.chain0 as u32, self.n_traj as u32);
        let cfg = self.be.grid(self.n_chains * self.dof.div_ceil(2));
        let (nc, dof) = (self.n_chains as i64, self.dof as i32);
        cuda_launch!(&self.be, "hmc", "hmc_momenta", cfg, &mut self.mom, &nc, &dof, &k0, &k1, &c0, &traj)
    }

    /// Chains with `accept[c] == 0` get the field they had before the trajectory.
    fn restore_rejected(&mut self, accept: &[i32]) -> Result<()> {
        drv("upload accept", self.be.stream.memcpy_htod(accept, &mut self.accept))?;
        let cfg = self.be.grid(self.n_chains * self.dof);
        let (nc, dof) = (self.n_chains as i64, self.dof as i32);
        cuda_launch!(&self.be, "hmc", "hmc_restore", cfg, &mut self.field, &self.field_old, &self.accept, &nc, &dof)
    }

    /// One trajectory of every chain.
    pub fn trajectory_all(&mut self) -> Result<Vec<TrajectoryResult>> {
        let n = self.n_chains;
        let traj = self.n_traj as u32;
        let u: Vec<(f64, f64)> =
            (0..n).map(|c| philox::hmc_uniforms(self.seed, (self.chain0 + c) as u32, traj)).collect();
        let p = self.params;
        let dt: Vec<f64> = u.iter().map(|&(ut, _)| p.trajectory_length(ut) / p.n_md as f64).collect();
        let s = self.be.stream.clone();
        drv("upload dt", s.memcpy_htod(&dt, &mut self.dt))?;
        self.draw_momenta()?;
        drv("copy field", s.memcpy_dtod(&self.field, &mut self.field_old))?;
        self.energies(true)?;
        self.integrate()?;
        self.energies(false)?;
        let e0 = drv("download energies", s.clone_dtoh(&self.energy0))?;
        let e1 = drv("download energies", s.clone_dtoh(&self.energy1))?;
        let mut acc = vec![0i32; n];
        let mut out = Vec::with_capacity(n);
        for c in 0..n {
            let (s0, k0) = (e0[3 * c], e0[3 * c + 2]);
            let (s1, m1, k1) = (e1[3 * c], e1[3 * c + 1], e1[3 * c + 2]);
            let delta_h = (s1 + k1) - (s0 + k0);
            let accepted = metropolis(delta_h, u[c].1);
            if accepted {
                self.action[c] = s1;
                self.monitor[c] = m1;
                self.n_accept[c] += 1;
                acc[c] = 1;
            }
            out.push(TrajectoryResult { delta_h, accepted, action: self.action[c], monitor: self.monitor[c] });
        }
        if acc.contains(&0) {
            self.restore_rejected(&acc)?;
        }
        self.n_traj += 1;
        Ok(out)
    }
}

/// The engine's kernels for the integrators: the theory's force kick, fused with the drift
/// where a drift follows (the field ping-ponged between two buffers).
impl<T: CudaTheory> MdField for CudaHmc<T> {
    type Error = anyhow::Error;

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        let (field, out) = (&self.field, &mut self.field_tmp);
        self.theory.launch_kick_drift(&self.be, self.n_chains, kick, drift, field, out, &mut self.mom, &self.dt)?;
        std::mem::swap(&mut self.field, &mut self.field_tmp);
        Ok(())
    }

    fn kick(&mut self, kick: f64) -> Result<()> {
        self.theory.launch_kick(&self.be, self.n_chains, kick, &self.field, &mut self.mom, &self.dt)
    }
}

impl<T: CudaTheory> HmcEngine for CudaHmc<T> {
    fn describe(&self) -> String {
        format!("cuda:{} {} ({})", self.be.ordinal, self.be.name, self.be.arch)
    }
    fn n_chains(&self) -> usize {
        self.n_chains
    }
    fn hot_starts(&self) -> Vec<bool> {
        self.hot.clone()
    }
    fn advance(&mut self, k: usize) -> Result<Vec<Vec<TrajectoryResult>>> {
        let mut res = vec![Vec::with_capacity(k); self.n_chains];
        for _ in 0..k {
            for (r, t) in res.iter_mut().zip(self.trajectory_all()?) {
                r.push(t);
            }
        }
        Ok(res)
    }
    /// Per degree of freedom (φ⁴'s site, U(1)'s link; f64 = 8 B): momenta 8, field copy 16,
    /// two energy passes 2·16, each fused kick+drift 32 (the field read once from DRAM,
    /// neighbours from cache; mom read+write; the new field), the closing kick 24.
    /// Rejections' restores are not counted.
    fn bytes_per_site_trajectory(&self) -> Option<f64> {
        // Every force evaluation but the closing kick is a fused kick+drift launch.
        let launches = self.params.integrator.force_evals(self.params.n_md) - 1;
        Some((8 + 16 + 32 + 32 * launches + 24) as f64)
    }
    fn peak_bytes_per_s(&self) -> Option<f64> {
        self.be.peak_bandwidth()
    }
    fn save(&mut self) -> Result<Vec<ChainState>> {
        let fields = self.fields()?;
        Ok(fields
            .chunks(self.dof)
            .enumerate()
            .map(|(c, f)| ChainState {
                phi: f.to_vec(),
                rng: [0; 4], // Philox: the stream is (seed, chain, trajectory), nothing to keep
                n_traj: self.n_traj,
                n_accept: self.n_accept[c],
                action: self.action[c],
                monitor: self.monitor[c],
                hot_start: self.hot[c],
            })
            .collect())
    }
    fn restore(&mut self, states: &[ChainState]) -> Result<()> {
        anyhow::ensure!(
            states.len() == self.n_chains,
            "checkpoint holds {} chains, not {}",
            states.len(),
            self.n_chains
        );
        let n_traj = states.first().map_or(0, |s| s.n_traj);
        anyhow::ensure!(
            states.iter().all(|s| s.n_traj == n_traj),
            "GPU chains advance together: unequal trajectory counts"
        );
        let fields: Vec<f64> = states.iter().flat_map(|s| s.phi.iter().copied()).collect();
        anyhow::ensure!(fields.len() == self.field.len(), "checkpoint fields do not match the lattice");
        drv("upload checkpoint", self.be.stream.memcpy_htod(&fields, &mut self.field))?;
        self.n_traj = n_traj;
        self.n_accept = states.iter().map(|s| s.n_accept).collect();
        self.action = states.iter().map(|s| s.action).collect();
        self.monitor = states.iter().map(|s| s.monitor).collect();
        self.hot = states.iter().map(|s| s.hot_start).collect();
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Vec<ChainRow>> {
        let fields = self.fields()?;
        Ok(fields
            .chunks(self.dof)
            .enumerate()
            .map(|(c, f)| ChainRow {
                phi: f.iter().map(|&x| x as f32).collect(),
                action: self.action[c],
                index: (self.chain0 + c) as u64,
                n_traj: self.n_traj,
            })
            .collect())
    }
}

/// The GPU's trajectory algorithm on the CPU (Philox momenta and uniforms, same integrator
/// and manifold): the reference the parity test compares whole GPU trajectories with.
/// Updates `field`.
pub fn reference_trajectory<T: Theory>(
    theory: &T,
    params: &HmcParams,
    seed: u64,
    chain: u32,
    traj: u32,
    field: &mut Vec<f64>,
) -> TrajectoryResult {
    let manifold = theory.manifold();
    let (ut, ua) = philox::hmc_uniforms(seed, chain, traj);
    let tau = params.trajectory_length(ut);
    let mut mom = philox::normals(seed, chain, traj, philox::HMC_MOMENTA, field.len());
    let (s0, _) = theory.action_and_monitor(field);
    let k0 = manifold.kinetic(&mom);
    let mut new = field.clone();
    params.integrator.integrate(theory, &mut new, &mut mom, params.n_md, tau);
    let (s1, m1) = theory.action_and_monitor(&new);
    let k1 = manifold.kinetic(&mom);
    let delta_h = (s1 + k1) - (s0 + k0);
    let accepted = metropolis(delta_h, ua);
    if accepted {
        *field = new;
    }
    let (s, m) = if accepted { (s1, m1) } else { theory.action_and_monitor(field) };
    TrajectoryResult { delta_h, accepted, action: s, monitor: m }
}
