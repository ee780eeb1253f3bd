//! Everything `latdiff sample` decides before any work: the model, the lattice, the target
//! theory, the sampler's settings and the batch size; errors here are bad input.

use crate::backend::Device;
use crate::config::SampleConfig;
use crate::diffusion::net::model::{self, LoadedModel};
use crate::diffusion::sample::sampler::{Kernel, SamplerKind, SamplerSettings};
use crate::diffusion::theories;
use crate::dist::Comm;
use crate::error::input_err;
use crate::lattice::Lattice;
use crate::theory::Couplings;
use anyhow::{anyhow, bail, Result};

/// Everything decided before any work; errors here are bad input.
pub struct Plan {
    pub loaded: LoadedModel,
    pub lattice: Lattice,
    pub target: Couplings,
    pub settings: SamplerSettings,
    pub batch: usize,
}

/// What the torus takes: the em sampler and SMC on it (the wrapped em kernel).
fn check_torus_sampler(sampler: SamplerKind) -> Result<()> {
    if !matches!(sampler, SamplerKind::Em | SamplerKind::Smc) {
        bail!(input_err(anyhow!(
            "sampler: '{}' is not available for U(1) gauge models (em, with path weights and --metropolis, or smc)",
            sampler.name()
        )));
    }
    Ok(())
}

pub fn plan(cfg: &SampleConfig, device: Device, comm: &Comm) -> Result<Plan> {
    if let Some(b) = cfg.beta {
        if !(b > 0.0 && b.is_finite()) {
            bail!(input_err(anyhow!("beta: {b} is not a positive coupling")));
        }
    }
    let loaded = model::load_conditioned(&cfg.model, !cfg.no_ema, device, cfg.beta)?;
    let lattice = match (cfg.lattice, loaded.lattice) {
        (Some(l), _) => l.0,
        (None, Some(l)) => l,
        (None, None) => return Err(input_err(anyhow!("lattice: required with an analytic model ({})", cfg.model))),
    };
    loaded.model.check_lattice(lattice).map_err(|e| input_err(anyhow!(e)))?;
    let batch = batch_within_budget(cfg, &loaded, lattice, comm)?;
    // The theory the weights are exact for: the model's training theory, with whatever
    // couplings the flags give instead.
    let target = theories::of(loaded.theory).target_couplings(cfg)?;
    let (sampler, mut kernel) = (cfg.sampler, cfg.kernel);
    if loaded.model.torus_dof(lattice).is_some() {
        check_torus_sampler(sampler)?;
        // The matched kernel (the default) is Gaussian on R^V: the torus has the wrapped em.
        kernel = Kernel::Em;
    }
    let v = lattice.volume() as f64;
    let (smin, smax) = match loaded.schedule {
        // The network knows only the noise levels it was trained on: keep them on larger
        // lattices too. The matched start N(0, G + σ_max²) already carries the data's
        // two-point function, so σ_max need not swamp the (√V larger) configurations.
        Some(s) => (s.sigma_min, s.sigma_max),
        None => {
            let g = loaded.model.two_point(lattice);
            let phi2 = g.iter().sum::<f64>() / v;
            (0.01, 2.0 * (v * phi2).sqrt())
        }
    };
    let mut settings =
        SamplerSettings::new(sampler, cfg.steps, cfg.sigma_min.unwrap_or(smin), cfg.sigma_max.unwrap_or(smax));
    settings.kernel = kernel;
    settings.corrector_steps = cfg.corrector_steps;
    settings.snr = cfg.snr;
    settings.validate().map_err(|e| input_err(anyhow!(e)))?;
    Ok(Plan { loaded, lattice, target, settings, batch })
}

/// Without `--max-memory`, batches are sized for at most this much per rank (more buys
/// little speed), or the default budget where that is smaller.
const DEFAULT_BATCH_MIB: u64 = 2048;

/// The batch (`--batch`, or the largest that fits the sizing budget), checked against every
/// rank's memory budget before anything lattice-sized is allocated. Rank 0's sizing budget
/// is used on every rank: the rounds' layout needs one batch size.
fn batch_within_budget(cfg: &SampleConfig, loaded: &LoadedModel, lattice: Lattice, comm: &Comm) -> Result<usize> {
    let shape = crate::diffusion::net::memory::SampleShape {
        arch: loaded.file.as_ref().map(|f| &f.arch),
        n_params: loaded.file.as_ref().map_or(0, |f| f.params.len()),
        lattice,
        n_configs: cfg.n_configs,
        ranks: comm.size(),
        threads: rayon::current_num_threads(),
        hmc_refine: cfg.hmc_refine > 0,
        root: comm.is_root(),
    };
    let batch = match cfg.batch {
        Some(b) => b,
        None => {
            let limit = crate::limits::budget(cfg.max_memory, comm.node_local_size());
            let sizing = match (cfg.max_memory, limit) {
                (Some(m), _) => (m as u64) << 20,
                (None, Some(b)) => b.bytes.min(DEFAULT_BATCH_MIB << 20),
                (None, None) => DEFAULT_BATCH_MIB << 20,
            };
            let mut bytes = sizing.to_le_bytes().to_vec();
            comm.broadcast_bytes(&mut bytes);
            // Sized as rank 0, which also holds the gathered rows, so that all agree.
            let as_root = crate::diffusion::net::memory::SampleShape { root: true, ..shape };
            as_root.batch_for(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")))
        }
    };
    let (bytes, what) = shape.bytes(batch.min(cfg.n_configs.div_ceil(comm.size())).max(1));
    crate::limits::check(comm, bytes, &what, cfg.max_memory)?;
    Ok(batch)
}
