//! Each theory's HMC kernels on the GPU: the small set the generic engine
//! ([`CudaHmc<T>`](super::cuda_hmc::CudaHmc)) launches for theory `T`.
//!
//! Everything else is shared: the integrators' schedule (`Integrator::run`), Philox momenta
//! and the Metropolis restore (`kernels/hmc.cu`, any number of values per chain), the
//! Metropolis rule and the chains' bookkeeping. A theory supplies its force (a kick, and a
//! kick fused with the drift on its manifold) and its energies: φ⁴ in `kernels/phi4_md.cu`
//! and `reduce.cu`, U(1) in `kernels/u1_md.cu`.
//!
//! Buffers hold `n_chains` fields chain-major, each of the theory's `dof_shape` (φ⁴: V
//! sites, U(1): 2V links); `dt[c]` is chain c's step size, scaled by the coefficients.

use crate::backend::cuda::CudaBackend;
use crate::cuda_launch;
use crate::theory::{Phi4, Theory, U1};
use anyhow::Result;
use cudarc::driver::CudaSlice;

pub trait CudaTheory: Theory {
    /// `out[3c..3c + 3]` ← (S, the theory's monitor, ½Σp²) of chain c: what a trajectory's
    /// Metropolis test and the thermalisation check need, read back in one transfer.
    fn launch_energies(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        field: &CudaSlice<f64>,
        mom: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()>;

    /// `mom −= kick·dt[c]·∂S/∂φ(field_in)`, then `field_out` = `field_in` moved along the new
    /// momenta for `drift·dt[c]` on the theory's manifold.
    #[allow(clippy::too_many_arguments)]
    fn launch_kick_drift(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        drift: f64,
        field_in: &CudaSlice<f64>,
        field_out: &mut CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()>;

    /// `mom −= kick·dt[c]·∂S/∂φ(field)`: the closing kick of a trajectory.
    fn launch_kick(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        field: &CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()>;
}

/// (L_t, L_x) as the kernels take them.
fn extents(t: &impl Theory) -> (i32, i32) {
    let lat = t.lattice();
    (lat.lt as i32, lat.lx as i32)
}

/// One thread per lattice site, every chain at once.
fn site_grid(be: &CudaBackend, t: &impl Theory, n_chains: usize) -> cudarc::driver::LaunchConfig {
    be.grid(n_chains * t.lattice().volume())
}

impl CudaTheory for Phi4 {
    fn launch_energies(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        field: &CudaSlice<f64>,
        mom: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        let (hop, quad, lam) = self.param.coefficients();
        let (lt, lx) = extents(self);
        cuda_launch!(be, "reduce", "phi4_energy", be.rows(n_chains), field, mom, out, &lt, &lx, &hop, &quad, &lam)
    }

    fn launch_kick_drift(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        drift: f64,
        field_in: &CudaSlice<f64>,
        field_out: &mut CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()> {
        let (hop, quad, lam) = self.param.coefficients();
        let (lt, lx) = extents(self);
        let cfg = site_grid(be, self, n_chains);
        cuda_launch!(
            be,
            "phi4_md",
            "phi4_kick_drift",
            cfg,
            field_in,
            field_out,
            mom,
            dt,
            &kick,
            &drift,
            &(n_chains as i64),
            &lt,
            &lx,
            &hop,
            &quad,
            &lam
        )
    }

    fn launch_kick(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        field: &CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()> {
        let (hop, quad, lam) = self.param.coefficients();
        let (lt, lx) = extents(self);
        let cfg = site_grid(be, self, n_chains);
        cuda_launch!(
            be,
            "phi4_md",
            "phi4_kick",
            cfg,
            field,
            mom,
            dt,
            &kick,
            &(n_chains as i64),
            &lt,
            &lx,
            &hop,
            &quad,
            &lam
        )
    }
}

/// Wilson action on the torus: one thread per site updates the site's two links; the drift
/// wraps the angles into (−π, π] as `Torus::drift` does; the monitor is Q.
impl CudaTheory for U1 {
    fn launch_energies(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        field: &CudaSlice<f64>,
        mom: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        let (lt, lx) = extents(self);
        cuda_launch!(be, "u1_md", "u1_energy", be.rows(n_chains), field, mom, out, &lt, &lx, &self.beta)
    }

    fn launch_kick_drift(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        drift: f64,
        field_in: &CudaSlice<f64>,
        field_out: &mut CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()> {
        let (lt, lx) = extents(self);
        let cfg = site_grid(be, self, n_chains);
        cuda_launch!(
            be,
            "u1_md",
            "u1_kick_drift",
            cfg,
            field_in,
            field_out,
            mom,
            dt,
            &kick,
            &drift,
            &(n_chains as i64),
            &lt,
            &lx,
            &self.beta
        )
    }

    fn launch_kick(
        &self,
        be: &CudaBackend,
        n_chains: usize,
        kick: f64,
        field: &CudaSlice<f64>,
        mom: &mut CudaSlice<f64>,
        dt: &CudaSlice<f64>,
    ) -> Result<()> {
        let (lt, lx) = extents(self);
        let cfg = site_grid(be, self, n_chains);
        cuda_launch!(be, "u1_md", "u1_kick", cfg, field, mom, dt, &kick, &(n_chains as i64), &lt, &lx, &self.beta)
    }
}
