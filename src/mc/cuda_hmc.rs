//! HMC of φ⁴ on the GPU: every chain of the rank advances together, f64 throughout.
//!
//! Per trajectory (all chains at once): Philox momenta keyed by (seed, chain, trajectory)
//! (`phi4_momenta`), the energies S, Σφ, ½p² per chain (`phi4_energy`), the MD steps as
//! fused kick+drift launches (`phi4_kick_drift`, φ ping-ponged), the closing kick, the
//! energies again; then the host reads 6 numbers per chain, makes the Metropolis decisions
//! with Philox uniforms of the same key (`philox::hmc_uniforms`) and the rejected chains get
//! their old field back (`phi4_restore`). Trajectory-length jitter is a per-chain step size.
//!
//! Start configurations are the CPU's (`Chain::new`), so a GPU run starts where a CPU run
//! with the same seed does; after that the random numbers differ (Philox, not xoshiro), so
//! GPU ensembles agree with CPU ones statistically, not bit-wise. Wolff cluster flips are
//! CPU-only. The parity tests (tests/cuda_parity.rs) compare MD integration and energies for
//! given fields and momenta with the CPU code, and whole trajectories with
//! [`reference_trajectory`], the same Philox-driven algorithm on the CPU.

use super::engine::{ChainRow, ChainState, HmcEngine, HmcSetup};
use super::hmc::{metropolis, HmcParams, TrajectoryResult};
use super::integrator::MdField;
use crate::backend::cuda::CudaBackend;
use crate::backend::philox;
use crate::cuda_launch;
use crate::theory::Phi4;
use anyhow::{anyhow, bail, Result};
use cudarc::driver::CudaSlice;

pub struct CudaHmc {
    pub be: CudaBackend,
    pub theory: Phi4,
    pub params: HmcParams,
    seed: u64,
    chain0: usize,
    n_chains: usize,
    hot: Vec<bool>,
    /// Trajectories done by every chain (they advance together); the Philox step counter.
    pub n_traj: u64,
    n_accept: Vec<u64>,
    action: Vec<f64>,
    phi: CudaSlice<f64>,
    phi_tmp: CudaSlice<f64>,
    phi_old: CudaSlice<f64>,
    mom: CudaSlice<f64>,
    dt: CudaSlice<f64>,
    energy0: CudaSlice<f64>,
    energy1: CudaSlice<f64>,
    accept: CudaSlice<i32>,
}

fn drv<T>(what: &str, r: Result<T, cudarc::driver::DriverError>) -> Result<T> {
    r.map_err(|e| anyhow!("CUDA hmc: {what}: {e}"))
}

impl CudaHmc {
    pub fn new(ordinal: usize, setup: &HmcSetup) -> Result<Self> {
        let HmcSetup { theory, params, cluster_updates, seed, ref chains, .. } = *setup;
        if cluster_updates > 0 {
            bail!("device cuda: Wolff cluster updates run on the CPU only (use --cluster-updates 0 or --device cpu)");
        }
        if params.n_md == 0 {
            bail!("device cuda: n_md must be at least 1");
        }
        let be = CudaBackend::new(ordinal)?;
        let v = theory.lattice.volume();
        let n = chains.len();
        let starts = setup.start_chains();
        let init: Vec<f64> = starts.iter().flat_map(|c| c.phi.iter().copied()).collect();
        let hot: Vec<bool> = starts.iter().map(|c| c.hot_start).collect();
        let s = &be.stream;
        let phi = drv("upload", s.clone_htod(&init))?;
        let mut h = CudaHmc {
            phi_tmp: drv("alloc", s.alloc_zeros(n * v))?,
            phi_old: drv("alloc", s.alloc_zeros(n * v))?,
            mom: drv("alloc", s.alloc_zeros(n * v))?,
            dt: drv("alloc", s.alloc_zeros(n))?,
            energy0: drv("alloc", s.alloc_zeros(3 * n))?,
            energy1: drv("alloc", s.alloc_zeros(3 * n))?,
            accept: drv("alloc", s.alloc_zeros(n))?,
            phi,
            theory,
            params,
            seed,
            chain0: chains.start,
            n_chains: n,
            hot,
            n_traj: 0,
            n_accept: vec![0; n],
            action: vec![0.0; n],
            be,
        };
        // S of the start configurations (mom = 0 here).
        h.energies(true)?;
        let e = drv("download", h.be.stream.clone_dtoh(&h.energy0))?;
        h.action = e.chunks(3).map(|x| x[0]).collect();
        Ok(h)
    }

    fn coeffs(&self) -> (f64, f64, f64) {
        self.theory.param.coefficients()
    }

    fn dims(&self) -> (i32, i32, i64) {
        (self.theory.lattice.lt as i32, self.theory.lattice.lx as i32, self.n_chains as i64)
    }

    /// energy0 (first) or energy1 ← (S, Σφ, ½p²) per chain of the current φ and mom.
    fn energies(&mut self, first: bool) -> Result<()> {
        let (hop, quad, lam) = self.coeffs();
        let (lt, lx, _) = self.dims();
        let cfg = self.be.rows(self.n_chains);
        let out = if first { &mut self.energy0 } else { &mut self.energy1 };
        cuda_launch!(&self.be, "reduce", "phi4_energy", cfg, &self.phi, &self.mom, out, &lt, &lx, &hop, &quad, &lam)
    }

    /// Every chain's MD trajectory with the step sizes in `dt`: the integrators' own
    /// schedule (`Integrator::run`) driving this engine's kernels.
    fn integrate(&mut self) -> Result<()> {
        let (integrator, n_md) = (self.params.integrator, self.params.n_md);
        integrator.run(self, n_md, &|| false).map(|_| ())
    }

    /// Testing hook: integrates given fields and momenta (chain-major) over `tau` and returns
    /// them; compared with `Integrator::integrate` on the CPU.
    pub fn integrate_given(&mut self, phi: &[f64], mom: &[f64], tau: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        let s = self.be.stream.clone();
        drv("upload", s.memcpy_htod(phi, &mut self.phi))?;
        drv("upload", s.memcpy_htod(mom, &mut self.mom))?;
        drv("upload", s.memcpy_htod(&vec![tau / self.params.n_md as f64; self.n_chains], &mut self.dt))?;
        self.integrate()?;
        Ok((drv("download", s.clone_dtoh(&self.phi))?, drv("download", s.clone_dtoh(&self.mom))?))
    }

    /// Testing hook: (S, Σφ, ½p²) per chain for given fields and momenta.
    pub fn energies_given(&mut self, phi: &[f64], mom: &[f64]) -> Result<Vec<f64>> {
        let s = self.be.stream.clone();
        drv("upload", s.memcpy_htod(phi, &mut self.phi))?;
        drv("upload", s.memcpy_htod(mom, &mut self.mom))?;
        self.energies(false)?;
        drv("download", s.clone_dtoh(&self.energy1))
    }

    /// Testing hook: the momenta of the next trajectory, as generated on the GPU.
    pub fn momenta(&mut self) -> Result<Vec<f64>> {
        self.draw_momenta()?;
        drv("download", self.be.stream.clone_dtoh(&self.mom))
    }

    pub fn fields(&mut self) -> Result<Vec<f64>> {
        drv("download", self.be.stream.clone_dtoh(&self.phi))
    }

    fn draw_momenta(&mut self) -> Result<()> {
        let (_, _, nc) = self.dims();
        let v = self.theory.lattice.volume() as i32;
        let (k0, k1) = (self.seed as u32, (self.seed >> 32) as u32);
        let (c0, traj) = (self.chain0 as u32, self.n_traj as u32);
        let cfg = self.be.grid(self.n_chains * (v as usize).div_ceil(2));
        cuda_launch!(&self.be, "phi4_md", "phi4_momenta", cfg, &mut self.mom, &nc, &v, &k0, &k1, &c0, &traj)
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
        drv("copy phi", s.memcpy_dtod(&self.phi, &mut self.phi_old))?;
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
                self.n_accept[c] += 1;
                acc[c] = 1;
            }
            // Σφ of a rejected chain is that of the old field.
            let monitor = if accepted { m1 } else { e0[3 * c + 1] };
            out.push(TrajectoryResult { delta_h, accepted, action: self.action[c], monitor });
        }
        if acc.contains(&0) {
            drv("upload accept", s.memcpy_htod(&acc, &mut self.accept))?;
            let (_, _, nc) = self.dims();
            let v = self.theory.lattice.volume() as i32;
            let cfg = self.be.grid(n * v as usize);
            cuda_launch!(
                &self.be,
                "phi4_md",
                "phi4_restore",
                cfg,
                &mut self.phi,
                &self.phi_old,
                &self.accept,
                &nc,
                &v
            )?;
        }
        self.n_traj += 1;
        Ok(out)
    }
}

/// The engine's kernels for the integrators: φ⁴'s force kick, fused with the drift where a
/// drift follows (φ ping-ponged between two buffers).
impl MdField for CudaHmc {
    type Error = anyhow::Error;

    fn kick_drift(&mut self, kcoef: f64, dcoef: f64) -> Result<()> {
        let (hop, quad, lam) = self.coeffs();
        let (lt, lx, nc) = self.dims();
        let cfg = self.be.grid(self.n_chains * self.theory.lattice.volume());
        cuda_launch!(
            &self.be,
            "phi4_md",
            "phi4_kick_drift",
            cfg,
            &self.phi,
            &mut self.phi_tmp,
            &mut self.mom,
            &self.dt,
            &kcoef,
            &dcoef,
            &nc,
            &lt,
            &lx,
            &hop,
            &quad,
            &lam
        )?;
        std::mem::swap(&mut self.phi, &mut self.phi_tmp);
        Ok(())
    }

    fn kick(&mut self, coef: f64) -> Result<()> {
        let (hop, quad, lam) = self.coeffs();
        let (lt, lx, nc) = self.dims();
        let cfg = self.be.grid(self.n_chains * self.theory.lattice.volume());
        cuda_launch!(
            &self.be,
            "phi4_md",
            "phi4_kick",
            cfg,
            &self.phi,
            &mut self.mom,
            &self.dt,
            &coef,
            &nc,
            &lt,
            &lx,
            &hop,
            &quad,
            &lam
        )
    }
}

impl HmcEngine for CudaHmc {
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
    /// Per site (f64 = 8 B): momenta 8, φ_old copy 16, two energy passes 2·16, each fused
    /// kick+drift 32 (φ read once from DRAM, neighbours from cache; mom read+write; φ_out),
    /// the closing kick 24. Rejections' restores are not counted.
    fn bytes_per_site_trajectory(&self) -> Option<f64> {
        // Every force evaluation but the closing kick is a fused kick+drift launch.
        let launches = self.params.integrator.force_evals(self.params.n_md) - 1;
        Some((8 + 16 + 32 + 32 * launches + 24) as f64)
    }
    fn peak_bytes_per_s(&self) -> Option<f64> {
        self.be.peak_bandwidth()
    }
    fn save(&mut self) -> Result<Vec<ChainState>> {
        let phi = self.fields()?;
        let v = self.theory.lattice.volume();
        Ok(phi
            .chunks(v)
            .enumerate()
            .map(|(c, p)| ChainState {
                phi: p.to_vec(),
                rng: [0; 4], // Philox: the stream is (seed, chain, trajectory), nothing to keep
                n_traj: self.n_traj,
                n_accept: self.n_accept[c],
                action: self.action[c],
                monitor: p.iter().sum(),
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
        let phi: Vec<f64> = states.iter().flat_map(|s| s.phi.iter().copied()).collect();
        anyhow::ensure!(phi.len() == self.phi.len(), "checkpoint fields do not match the lattice");
        drv("upload checkpoint", self.be.stream.memcpy_htod(&phi, &mut self.phi))?;
        self.n_traj = n_traj;
        self.n_accept = states.iter().map(|s| s.n_accept).collect();
        self.action = states.iter().map(|s| s.action).collect();
        self.hot = states.iter().map(|s| s.hot_start).collect();
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Vec<ChainRow>> {
        let phi = self.fields()?;
        let v = self.theory.lattice.volume();
        Ok(phi
            .chunks(v)
            .enumerate()
            .map(|(c, p)| ChainRow {
                phi: p.iter().map(|&x| x as f32).collect(),
                action: self.action[c],
                index: (self.chain0 + c) as u64,
                n_traj: self.n_traj,
            })
            .collect())
    }
}

/// The GPU's trajectory algorithm on the CPU (Philox momenta and uniforms, same integrator):
/// the reference the parity test compares whole GPU trajectories with. Updates `phi`.
pub fn reference_trajectory(
    theory: &Phi4,
    params: &HmcParams,
    seed: u64,
    chain: u32,
    traj: u32,
    phi: &mut Vec<f64>,
) -> TrajectoryResult {
    let v = theory.lattice.volume();
    let (ut, ua) = philox::hmc_uniforms(seed, chain, traj);
    let tau = params.trajectory_length(ut);
    let mut mom = philox::normals(seed, chain, traj, philox::HMC_MOMENTA, v);
    let (s0, _) = theory.action_and_sum(phi);
    let k0 = 0.5 * mom.iter().map(|p| p * p).sum::<f64>();
    let mut new = phi.clone();
    params.integrator.integrate(theory, &mut new, &mut mom, params.n_md, tau);
    let (s1, m1) = theory.action_and_sum(&new);
    let k1 = 0.5 * mom.iter().map(|p| p * p).sum::<f64>();
    let delta_h = (s1 + k1) - (s0 + k0);
    let accepted = metropolis(delta_h, ua);
    if accepted {
        *phi = new;
    }
    let (s, m) = if accepted { (s1, m1) } else { theory.action_and_sum(phi) };
    TrajectoryResult { delta_h, accepted, action: s, monitor: m }
}
