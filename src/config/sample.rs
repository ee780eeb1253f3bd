//! `latdiff sample`: its keys and their checks.

use super::keys::command_keys;
use super::{check_max_memory, Kernel, LatticeSpec, SamplerKind, SmcTarget};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// SMC replicas when `--replicas` is not given: independent of the rank count, so the
/// errors (the spread between replicas) exist on one rank and do not change with the
/// launch; at least analyze's 20 jackknife bins (`MIN_INDEPENDENT_CONFIGS`), a power of two
/// so that it divides the usual `--n-configs`.
pub const DEFAULT_SMC_REPLICAS: usize = 32;

command_keys! {
    /// `latdiff sample` options: flags and TOML keys (same names, `-` ↔ `_`).
    options SampleOptions;
    config SampleConfig;
    /// Model file from `latdiff train`, `free:kappa=K` / `free:m2=M` (exact free-field score),
    /// or `prior:ENSEMBLE.h5` (the physics prior alone: the baseline a network must beat).
    model: Option<String> => String = String::new(),
    /// Lattice to sample on (default: the model's training lattice); may be larger.
    #[stored(skip_serializing_if = "Option::is_none")]
    lattice: Option<LatticeSpec> => Option<LatticeSpec> = None,
    n_configs: Option<usize> => usize = 1024,
    /// em (reverse SDE, weighted), pc (predictor-corrector), ode (probability flow, Heun),
    /// smc (sequential Monte Carlo along the em path: replicas, resampling, MALA),
    /// multilevel (coarse-to-fine SMC over lattices doubling up to --lattice; phi4).
    sampler: Option<String> => SamplerKind = SamplerKind::Em,
    /// Reverse-step covariance: matched (to the data's propagator; default) or em (Δ·I).
    kernel: Option<String> => Kernel = Kernel::default(),
    /// Number of noise levels: reverse-SDE steps per configuration (in `train`, --steps
    /// counts optimiser steps).
    steps: Option<usize> => usize = 200,
    /// Smallest noise level (default: the model's).
    #[stored(skip_serializing_if = "Option::is_none")]
    sigma_min: Option<f64> => Option<f64> = None,
    /// Largest noise level (default: the model's training range, on any lattice).
    #[stored(skip_serializing_if = "Option::is_none")]
    sigma_max: Option<f64> => Option<f64> = None,
    /// Langevin corrector steps per level (pc).
    corrector_steps: Option<usize> => usize = 1,
    /// Corrector signal-to-noise ratio (pc).
    snr: Option<f64> => f64 = 0.16,
    /// Target theory of the weights (default: the model's training theory).
    #[stored(skip_serializing_if = "Option::is_none")]
    kappa: Option<f64> => Option<f64> = None,
    #[arg(allow_hyphen_values = true)]
    #[stored(skip_serializing_if = "Option::is_none")]
    m2: Option<f64> => Option<f64> = None,
    #[stored(skip_serializing_if = "Option::is_none")]
    lambda: Option<f64> => Option<f64> = None,
    /// U(1) target coupling (default: the model's training beta); another beta conditions
    /// the model on it (its learnt correction scaled by beta/beta_train).
    #[stored(skip_serializing_if = "Option::is_none")]
    beta: Option<f64> => Option<f64> = None,
    /// Write an independence-Metropolis chain over the weighted proposals.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    metropolis: Option<bool> => bool = false,
    /// HMC trajectories of the true action run from each sample.
    hmc_refine: Option<usize> => usize = 0,
    /// Sample with the raw (not EMA) weights.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    no_ema: Option<bool> => bool = false,
    /// SMC: independent replicas, --n-configs split evenly over them; their spread gives
    /// the errors (default 32, whatever the rank count; spread over the ranks in rounds).
    #[stored(skip_serializing_if = "Option::is_none")]
    replicas: Option<usize> => Option<usize> = None,
    /// SMC: MPI ranks that share one replica's particles (default 1: whole replicas per
    /// rank); must divide the rank count. The output does not depend on it.
    #[stored(skip_serializing_if = "Option::is_none")]
    ranks_per_replica: Option<usize> => Option<usize> = None,
    /// SMC: resample when the ESS falls below this fraction of a replica's particles (0: never).
    resample_ess: Option<f64> => f64 = 0.5,
    /// SMC: MALA steps on the level's target after each resampling.
    rejuvenate: Option<usize> => usize = 5,
    /// SMC: run the MALA steps after every level, not only after a resampling (with
    /// --resample-ess 0: a predictor-corrector sampler whose corrector is Metropolis-adjusted
    /// against the level targets, with exact weights).
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    rejuvenate_always: Option<bool> => bool = false,
    /// SMC: intermediate targets, cumulant (the first-order cumulant action, which fades
    /// with the noise; default), prior (the physics prior's action S_prior) or learnt (the
    /// model's own action S_theta(., sigma_k): action-form models only).
    smc_target: Option<String> => SmcTarget = SmcTarget::Cumulant,
    /// SMC: the network drives the reverse steps from sigma at or below this; above it the
    /// level target's own score does (default: the network everywhere).
    #[stored(skip_serializing_if = "Option::is_none")]
    network_below: Option<f64> => Option<f64> = None,
    /// SMC with smc_target = learnt: the hybrid ladder, the learnt action S_theta(., sigma_k)
    /// as the target of the levels with sigma above this and the cumulant action at or below
    /// it (default 0: learnt at every level).
    #[stored(skip_serializing_if = "Option::is_none")]
    learnt_above: Option<f64> => Option<f64> = None,
    /// SMC: draw each reverse step's magnetisation from its conditional under the level
    /// target (a 1-D grid) instead of the Gaussian step: for critical and broken phases.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    exact_magnetisation: Option<bool> => bool = false,
    /// Multilevel: the coarsest lattice's smaller extent (even, at least 4); the ladder
    /// doubles from it to --lattice.
    coarsest: Option<usize> => usize = 8,
    /// Multilevel: the conditional ESS each tempering step keeps (in (0, 1); closer to 1:
    /// more, smaller steps).
    cess: Option<f64> => f64 = 0.8,
    /// Multilevel: HMC trajectories of the true action at the end of every level.
    level_trajectories: Option<usize> => usize = 20,
    /// Multilevel: Wolff cluster flips after each of those trajectories (phi4).
    level_flips: Option<usize> => usize = 4,
    /// Memory limit per rank in MiB; also sizes the batch (default: 80 % of the node's available memory shared by its ranks, batches sized for at most 2048 MiB).
    #[stored(skip_serializing_if = "Option::is_none")]
    max_memory: Option<usize> => Option<usize> = None,
    /// Configurations generated at once per rank (default: sized by memory); not a
    /// training batch.
    #[stored(skip_serializing_if = "Option::is_none")]
    batch: Option<usize> => Option<usize> = None,
    seed: Option<u64> => u64 = 1,
    out: Option<PathBuf> => PathBuf = PathBuf::from("generated.h5"),
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force: Option<bool> => bool = false,
}

impl SampleConfig {
    /// Flags over `file` (the `--config` file, which `cli::sample::resolve` reads) over
    /// defaults, checked; the output is checked by the caller afterwards.
    pub fn from_layers(file: &SampleOptions, flags: &SampleOptions) -> Result<Self> {
        let cfg = Self::layered(file, flags)?;
        cfg.check_smc()?;
        if cfg.model.is_empty() {
            bail!("model: no model given (--model model.h5, or --model free:kappa=0.2)");
        }
        let path = cfg.model_path();
        if !cfg.model.starts_with("free:") && !Path::new(path).exists() {
            bail!("model: '{path}' does not exist");
        }
        if let Some(l) = cfg.lattice {
            l.0.validate().map_err(|e| anyhow!(e))?;
        }
        if cfg.n_configs == 0 {
            bail!("n_configs: must be at least 1");
        }
        if cfg.steps == 0 {
            bail!("steps: must be at least 1");
        }
        check_noise_range(cfg.sigma_min, cfg.sigma_max)?;
        if cfg.metropolis && cfg.sampler != SamplerKind::Em {
            bail!("metropolis: needs path weights, which only the em sampler has (sampler = {})", cfg.sampler.name());
        }
        if cfg.batch == Some(0) {
            bail!("batch: must be at least 1");
        }
        check_max_memory(cfg.max_memory)?;
        {
            use crate::limits::{bound, MAX_BATCH, MAX_CONFIGS, MAX_STEPS, MAX_TRAJECTORIES};
            bound("n_configs", cfg.n_configs as u64, MAX_CONFIGS)?;
            bound("steps", cfg.steps as u64, MAX_STEPS)?;
            bound("corrector_steps", cfg.corrector_steps as u64, MAX_TRAJECTORIES)?;
            bound("hmc_refine", cfg.hmc_refine as u64, MAX_TRAJECTORIES)?;
            bound("batch", cfg.batch.unwrap_or(1) as u64, MAX_BATCH)?;
        }
        Ok(cfg)
    }

    /// The model's file (`prior:` stripped); meaningless for `free:` models.
    pub fn model_path(&self) -> &str {
        self.model.strip_prefix("prior:").unwrap_or(&self.model)
    }

    /// The SMC keys: in range, and replicas only where they mean something.
    fn check_smc(&self) -> Result<()> {
        let smc = matches!(self.sampler, SamplerKind::Smc | SamplerKind::Multilevel);
        if !(self.cess > 0.0 && self.cess < 1.0) {
            bail!("cess: {} is not a fraction in (0, 1)", self.cess);
        }
        if self.coarsest < 4 || self.coarsest % 2 != 0 {
            bail!("coarsest: {} must be even and at least 4", self.coarsest);
        }
        if self.rejuvenate_always && !smc {
            bail!("rejuvenate_always: only the smc sampler rejuvenates (sampler = {})", self.sampler.name());
        }
        if !(0.0..=1.0).contains(&self.resample_ess) {
            bail!("resample_ess: {} is not a fraction in [0, 1]", self.resample_ess);
        }
        if let Some(s) = self.network_below.filter(|s| !(*s >= 0.0)) {
            bail!("network_below: {s} is not a noise level (sigma >= 0)");
        }
        if let Some(s) = self.learnt_above {
            if self.smc_target != SmcTarget::Learnt {
                bail!("learnt_above: {s} needs smc_target = learnt (it sets where the learnt levels end)");
            }
            if !(s >= 0.0) {
                bail!("learnt_above: {s} is not a noise level (sigma >= 0)");
            }
        }
        if self.smc_target == SmcTarget::Learnt {
            check_learnt_levels(self.network_below, self.learnt_above.unwrap_or(0.0), self.exact_magnetisation)
                .map_err(|e| anyhow!(e))?;
        }
        match self.ranks_per_replica {
            Some(_) if self.sampler != SamplerKind::Smc => {
                bail!(
                    "ranks_per_replica: only the smc sampler spreads a replica over ranks (sampler = {})",
                    self.sampler.name()
                )
            }
            Some(0) => bail!("ranks_per_replica: must be at least 1"),
            _ => {}
        }
        match self.replicas {
            Some(_) if !smc => {
                bail!(
                    "replicas: only the smc and multilevel samplers have replicas (sampler = {})",
                    self.sampler.name()
                )
            }
            Some(0) => bail!("replicas: must be at least 1"),
            Some(r) if self.n_configs % r != 0 => {
                bail!("replicas: n_configs = {} is not a multiple of replicas = {r}", self.n_configs)
            }
            _ => Ok(()),
        }
    }
}

/// What the learnt SMC targets cannot do (`smc_target = learnt`, learnt above `learnt_above`
/// and the cumulant action at and below it): the checks of the configuration and of
/// `diffusion::smc::Levels`, one source of their messages.
pub fn check_learnt_levels(
    network_below: Option<f64>,
    learnt_above: f64,
    exact_magnetisation: bool,
) -> Result<(), String> {
    // Only the cumulant levels (σ ≤ learnt_above) have a score of their own to drive
    // with: on learnt levels the target's own score is the network's.
    if let Some(s) = network_below.filter(|s| *s >= learnt_above) {
        return Err(format!("network_below: {s} means nothing with smc_target = learnt unless it is below learnt_above ({learnt_above}): on learnt levels the targets' own score is the network's"));
    }
    if exact_magnetisation {
        return Err("exact_magnetisation: not built for smc_target = learnt (it evaluates the level target per particle along five shifts)".into());
    }
    Ok(())
}

/// The noise levels a sampler accepts. Why these bounds: lattice fields near criticality
/// have |φ| of order 1–10, so σ beyond 10⁶ adds nothing the Gaussian start does not already
/// have, while σ² and the network's f32 inputs (φ/σ, σ-embeddings) lose all precision or
/// overflow far above it (10³⁰ gave NaN ensembles); below 10⁻⁶ the last reverse step's
/// variance Δ_1 = σ_1² is under f32's resolution of a field of order 1.
pub const SIGMA_RANGE: (f64, f64) = (1e-6, 1e6);

fn check_noise_range(sigma_min: Option<f64>, sigma_max: Option<f64>) -> Result<()> {
    let (lo, hi) = SIGMA_RANGE;
    for (key, s) in [("sigma_min", sigma_min), ("sigma_max", sigma_max)] {
        if let Some(s) = s.filter(|s| !(lo..=hi).contains(s)) {
            bail!("{key}: {s:e} is outside the supported noise range [{lo:e}, {hi:e}] (docs/reference.md)");
        }
    }
    Ok(())
}
