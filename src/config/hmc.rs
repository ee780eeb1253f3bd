//! `latdiff hmc`: its keys and their checks.

use super::keys::command_keys;
use super::{check_max_memory, first_difference, resolve_couplings, stored_config, NumberOrName};
use super::{Integrator, LatticeSpec, Start, TheoryName};
use crate::lattice::Lattice;
use crate::theory::{Couplings, Parametrisation};
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::str::FromStr;

command_keys! {
    /// `latdiff hmc` options: flags and TOML keys (same names, `-` ↔ `_`).
    options HmcOptions;
    /// A resumed run reads its checkpoint's stored configuration back as one of these.
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    config HmcConfig;
    /// Lattice size: L (square) or L_TxL_X.
    lattice: Option<LatticeSpec> => LatticeSpec = LatticeSpec(Lattice::square(16)),
    /// Theory: phi4 (default), u1 (compact U(1) gauge theory, needs --beta) or su2 (SU(2)
    /// gauge theory, needs --beta > 0).
    #[arg(value_enum)]
    #[stored(skip_serializing_if = "TheoryName::is_phi4")]
    theory: Option<TheoryName> => TheoryName = TheoryName::Phi4,
    /// Hopping parameter κ (hopping form).
    #[stored(skip_serializing_if = "Option::is_none")]
    kappa: Option<f64> => Option<f64> = None,
    /// Bare mass squared m² (mass form); excludes --kappa.
    #[arg(allow_hyphen_values = true)]
    #[stored(skip_serializing_if = "Option::is_none")]
    m2: Option<f64> => Option<f64> = None,
    /// Quartic coupling λ.
    #[stored(skip_serializing_if = "Option::is_none")]
    lambda: Option<f64> => Option<f64> = None,
    /// Gauge coupling β of the Wilson action (theories u1 and su2).
    #[stored(skip_serializing_if = "Option::is_none")]
    beta: Option<f64> => Option<f64> = None,
    /// Number of configurations to save.
    n_configs: Option<usize> => usize = 1024,
    /// Independent Markov chains (spread over threads and ranks).
    n_chains: Option<usize> => usize = 16,
    /// Thermalisation trajectories per chain, or `auto`.
    n_therm: Option<NTherm> => NTherm = NTherm::Auto,
    /// Cap for `--n-therm auto`.
    n_therm_max: Option<usize> => usize = 20000,
    /// Trajectories between saved configurations of a chain.
    n_sep: Option<usize> => usize = 10,
    /// MD integrator.
    #[arg(value_enum)]
    integrator: Option<Integrator> => Integrator = Integrator::Omelyan,
    /// MD steps per trajectory.
    n_md: Option<usize> => usize = 10,
    /// Trajectory length.
    tau: Option<f64> => f64 = 1.0,
    /// Trajectory lengths are drawn from [tau(1-jitter), tau] (0 = fixed length).
    tau_jitter: Option<f64> => f64 = 0.2,
    /// Start: cold (ordered), hot (random) or mixed (half each, compared after thermalisation).
    #[arg(value_enum)]
    start: Option<Start> => Start = Start::Cold,
    /// Updates besides HMC after each trajectory: φ⁴ embedded-Ising (Wolff) cluster flips
    /// (no effect for kappa <= 0); U(1) flux moves changing Q by ±1 (without them the
    /// topology freezes at large β). CPU only: 0 lets HMC run on a GPU.
    cluster_updates: Option<usize> => usize = 4,
    seed: Option<u64> => u64 = 1,
    /// Output HDF5 file (its checkpoint is OUT.ckpt).
    out: Option<PathBuf> => PathBuf = PathBuf::from("ensemble.h5"),
    /// Overwrite an existing output.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force: Option<bool> => bool = false,
    /// Also checkpoint every N production rounds (0: only when stopped by SIGTERM/SIGUSR1).
    checkpoint_every: Option<usize> => usize = 0,
    /// Continue the stopped run whose checkpoint is OUT.ckpt (with its stored configuration).
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    resume: Option<bool> => bool = false,
    /// Memory limit per rank in MiB (default: 80 % of the node's available memory shared by its ranks).
    #[stored(skip_serializing_if = "Option::is_none")]
    max_memory: Option<usize> => Option<usize> = None,
}

impl HmcConfig {
    /// Flags over `file` over defaults, checked. `file` is the `--config` file or, resuming
    /// without one, the checkpoint's stored configuration: `cli::hmc::resolve` reads it, and
    /// checks the output and the checkpoint afterwards (config reads no HDF5 file).
    pub fn from_layers(file: &HmcOptions, flags: &HmcOptions) -> Result<Self> {
        let mut cfg = Self::layered(file, flags)?;
        // Record the resolved theory explicitly (defaults included) in the stored config.
        match cfg.couplings()? {
            Couplings::Phi4(Parametrisation::Hopping { kappa, lambda }) => {
                cfg.kappa = Some(kappa);
                cfg.lambda = Some(lambda);
            }
            Couplings::Phi4(Parametrisation::Mass { m2, lambda }) => {
                cfg.m2 = Some(m2);
                cfg.lambda = Some(lambda);
            }
            // U(1)'s updates besides HMC are flux moves (`theory::u1::flux_move`), on by
            // default like φ⁴'s Wolff flips: HMC alone freezes Q at large β (none changed
            // in 8000 saved configurations at β = 9 on 16²), and four moves cost four action
            // evaluations per trajectory, against the ten forces of its MD steps.
            Couplings::U1 { .. } => {}
            // SU(2) has no updates besides HMC: asking for some is refused.
            Couplings::Su2 { .. } => {
                if let Some(n @ 1..) = flags.cluster_updates.or(file.cluster_updates) {
                    bail!("cluster_updates: {n} given, but theory su2 has no updates besides HMC (use 0)");
                }
                cfg.cluster_updates = 0;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The φ⁴ couplings, or an error when the run is another theory's.
    pub fn theory(&self) -> Result<Parametrisation> {
        self.couplings()?.phi4().map_err(|e| anyhow!(e))
    }

    /// The theory and its couplings, checked: each theory's flags only with that theory.
    pub fn couplings(&self) -> Result<Couplings> {
        resolve_couplings(self.theory, self.kappa, self.m2, self.lambda, self.beta)
    }

    pub fn lattice(&self) -> Lattice {
        self.lattice.0
    }

    /// Checks that need no file.
    pub fn validate(&self) -> Result<()> {
        self.lattice.0.validate().map_err(|e| anyhow!(e))?;
        self.couplings()?;
        if self.n_configs == 0 {
            bail!("n_configs: must be at least 1");
        }
        if self.n_chains == 0 {
            bail!("n_chains: must be at least 1");
        }
        if self.n_chains > self.n_configs {
            bail!(
                "n_chains: {} chains for {} configurations (each chain must save at least one)",
                self.n_chains,
                self.n_configs
            );
        }
        if self.n_sep == 0 {
            bail!("n_sep: must be at least 1");
        }
        if self.n_md == 0 {
            bail!("n_md: must be at least 1");
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            bail!("tau: {} is not a positive trajectory length", self.tau);
        }
        if !(0.0..1.0).contains(&self.tau_jitter) {
            bail!("tau_jitter: {} is outside [0, 1)", self.tau_jitter);
        }
        if self.n_therm_max < 8 {
            bail!("n_therm_max: {} is too small (at least 8)", self.n_therm_max);
        }
        self.check_bounds()?;
        Ok(())
    }

    /// Resuming: this run against `stored`, the configuration in its checkpoint `ckpt`.
    pub fn check_resumes(&self, stored: &str, ckpt: &Path) -> Result<()> {
        let stored: HmcConfig = stored_config(stored)?;
        if let Some((key, was, now)) = first_difference(&stored.run_identity(), &self.run_identity()) {
            bail!("resume: checkpoint '{}' was made with {key} = {was}, this run has {key} = {now}", ckpt.display());
        }
        Ok(())
    }

    fn check_bounds(&self) -> Result<()> {
        use crate::limits::{bound, MAX_CHAINS, MAX_CONFIGS, MAX_STEPS, MAX_TRAJECTORIES};
        bound("n_configs", self.n_configs as u64, MAX_CONFIGS)?;
        bound("n_chains", self.n_chains as u64, MAX_CHAINS)?;
        if let NTherm::Fixed(n) = self.n_therm {
            bound("n_therm", n as u64, MAX_TRAJECTORIES)?;
        }
        bound("n_therm_max", self.n_therm_max as u64, MAX_TRAJECTORIES)?;
        bound("n_sep", self.n_sep as u64, MAX_TRAJECTORIES)?;
        bound("n_md", self.n_md as u64, MAX_STEPS)?;
        bound("cluster_updates", self.cluster_updates as u64, MAX_TRAJECTORIES)?;
        check_max_memory(self.max_memory)
    }

    /// The configuration without the keys that only steer this invocation: what must agree
    /// between a checkpoint and the run resuming it.
    fn run_identity(&self) -> HmcConfig {
        HmcConfig { force: false, resume: false, checkpoint_every: 0, max_memory: None, ..self.clone() }
    }
}

/// Thermalisation length: a number of trajectories, or `auto` (extend until the drift
/// check passes, up to `n_therm_max`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NTherm {
    Fixed(usize),
    Auto,
}

impl FromStr for NTherm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(NTherm::Auto);
        }
        s.parse::<usize>()
            .map(NTherm::Fixed)
            .map_err(|_| format!("n_therm: '{s}' is neither a non-negative number of trajectories nor 'auto'"))
    }
}
impl Serialize for NTherm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NTherm::Fixed(n) => s.serialize_u64(*n as u64),
            NTherm::Auto => s.serialize_str("auto"),
        }
    }
}
impl<'de> Deserialize<'de> for NTherm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrName::deserialize(d)? {
            NumberOrName::Number(n) if n >= 0 => Ok(NTherm::Fixed(n as usize)),
            NumberOrName::Number(n) => Err(serde::de::Error::custom(format!("n_therm: {n} is negative"))),
            NumberOrName::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}
