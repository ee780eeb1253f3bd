//! HMC throughput, shared by `cargo bench` and `latdiff bench hmc`.

use super::cuda_theory::CudaTheory;
use super::engine::{HmcEngine, HmcSetup};
use super::hmc::{HmcParams, Start};
use super::Integrator;
use crate::config::TheoryName;
use crate::lattice::Lattice;
use crate::theory::{Parametrisation, Phi4, Su2, Theory, U1};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct HmcBench {
    /// "phi4" (κ = 0.27, λ = 0.022), "u1" or "su2" (β = 3).
    pub theory: String,
    pub lattice: usize,
    pub chains: usize,
    pub integrator: String,
    pub n_md: usize,
    pub trajectories_per_chain: usize,
    pub seconds: f64,
    /// chains × degrees of freedom × MD steps / s (an MD step is one force evaluation for
    /// leapfrog, two for Omelyan); the degrees of freedom are the V sites of φ⁴ and the 2V
    /// links of U(1), so for U(1) these are link updates.
    pub site_updates_per_s: f64,
    /// chains × degrees of freedom × force evaluations / s.
    pub force_site_evals_per_s: f64,
    pub threads: usize,
    /// "cpu" or the GPU's description.
    pub device: String,
    /// GPU only: modelled DRAM traffic per second, the device's peak, and their ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_fraction: Option<f64>,
}

/// Runs `chains` chains of an L×L φ⁴ lattice for about `seconds` (after a warm-up) and
/// reports throughput. The chains are spread over rayon's threads.
pub fn hmc_throughput(l: usize, chains: usize, integrator: Integrator, n_md: usize, seconds: f64) -> HmcBench {
    engine_throughput(crate::backend::Device::Cpu, TheoryName::Phi4, l, chains, integrator, n_md, seconds)
        .expect("the CPU engine cannot fail to build")
}

/// Throughput of any [`HmcEngine`](super::engine::HmcEngine) (the device is chosen once, in
/// `device::build`): `chains` cold-started chains of an L×L lattice of `theory` (φ⁴ at
/// κ = 0.27, λ = 0.022; U(1) at β = 3) for about `seconds`. Engines that model their memory
/// traffic (CUDA) also report the achieved bandwidth.
pub fn engine_throughput(
    device: crate::backend::Device,
    theory: TheoryName,
    l: usize,
    chains: usize,
    integrator: Integrator,
    n_md: usize,
    seconds: f64,
) -> anyhow::Result<HmcBench> {
    let lat = Lattice::square(l);
    match theory {
        TheoryName::Phi4 => {
            let phi4 = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 });
            theory_throughput(device, phi4, chains, integrator, n_md, seconds)
        }
        TheoryName::U1 => theory_throughput(device, U1::new(lat, 3.0), chains, integrator, n_md, seconds),
        TheoryName::Su2 => {
            anyhow::ensure!(device == crate::backend::Device::Cpu, "theory su2 runs on the CPU only");
            let setup = bench_setup(Su2::new(lat, 3.0), chains, integrator, n_md);
            measure(Box::new(super::engine::CpuHmc::new(&setup)), &setup, seconds)
        }
    }
}

fn theory_throughput<T: CudaTheory + 'static>(
    device: crate::backend::Device,
    theory: T,
    chains: usize,
    integrator: Integrator,
    n_md: usize,
    seconds: f64,
) -> anyhow::Result<HmcBench> {
    let setup = bench_setup(theory, chains, integrator, n_md);
    measure(super::device::build(device, &setup)?, &setup, seconds)
}

fn bench_setup<T: Theory>(theory: T, chains: usize, integrator: Integrator, n_md: usize) -> HmcSetup<T> {
    let params = HmcParams { integrator, n_md, tau: 1.0, tau_jitter: 0.0 };
    HmcSetup { theory, params, cluster_updates: 0, seed: 1, start: Start::Cold, chains: 0..chains }
}

/// Advances `e` for about `seconds` after one warm-up trajectory.
fn measure<T: Theory>(mut e: Box<dyn HmcEngine>, setup: &HmcSetup<T>, seconds: f64) -> anyhow::Result<HmcBench> {
    let lat = setup.theory.lattice();
    let (l, chains) = (lat.lx, setup.chains.len());
    let (integrator, n_md) = (setup.params.integrator, setup.params.n_md);
    let dof: usize = setup.theory.dof_shape(lat).iter().product();
    e.advance(1)?;
    let t0 = std::time::Instant::now();
    let mut n_traj = 0;
    while t0.elapsed().as_secs_f64() < seconds || n_traj == 0 {
        e.advance(1)?;
        n_traj += 1;
    }
    let dt = t0.elapsed().as_secs_f64();
    let sites = (chains * dof * n_traj) as f64;
    let traffic = e.bytes_per_site_trajectory().map(|b| b * sites / dt);
    let peak = e.peak_bytes_per_s();
    Ok(HmcBench {
        theory: setup.theory.name().into(),
        lattice: l,
        chains,
        integrator: integrator.name().into(),
        n_md,
        trajectories_per_chain: n_traj,
        seconds: dt,
        site_updates_per_s: sites * n_md as f64 / dt,
        force_site_evals_per_s: sites * integrator.force_evals(n_md) as f64 / dt,
        threads: rayon::current_num_threads(),
        device: e.describe(),
        bytes_per_s: traffic,
        peak_bytes_per_s: peak,
        bandwidth_fraction: traffic.zip(peak).map(|(t, p)| t / p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device-generic path (used by `bench hmc --device cuda`) on the CPU engine.
    #[test]
    fn engine_throughput_runs_on_cpu() {
        for theory in [TheoryName::Phi4, TheoryName::U1, TheoryName::Su2] {
            let b = engine_throughput(crate::backend::Device::Cpu, theory, 4, 3, Integrator::Omelyan, 3, 0.0).unwrap();
            assert_eq!(b.device.split(' ').next(), Some("cpu"));
            assert!(b.trajectories_per_chain >= 1 && b.site_updates_per_s > 0.0 && b.bandwidth_fraction.is_none());
        }
    }
}
