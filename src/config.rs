//! Run configuration: command-line flags over a TOML file over built-in defaults.
//!
//! Each command has one options struct that is both its clap arguments and its TOML
//! schema (every field optional, unknown keys refused), and one resolved struct with every
//! value filled in. The resolved struct serialises to TOML: that text is stored in every
//! output file (`config` attribute) and is itself a valid `--config` file.
//!
//! Plain data and parsing, below every layer that uses it (docs/architecture.md): it
//! imports nothing above `theory` and `nn`, and touches the file system only to read its
//! TOML file and to check that named inputs exist. What needs the outputs or a checkpoint
//! (resuming from a stored configuration, output checks) is the command's, in
//! `cli::{hmc, train, sample}::resolve`.

use crate::lattice::Lattice;
use crate::theory::{Couplings, Parametrisation};
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Lattice size from `32`, `"32"` or `"16x32"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatticeSpec(pub Lattice);

impl FromStr for LatticeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Lattice::parse(s).map(LatticeSpec)
    }
}
impl Serialize for LatticeSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}
impl<'de> Deserialize<'de> for LatticeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        s.parse().map_err(serde::de::Error::custom)
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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 0 => Ok(NTherm::Fixed(n as usize)),
            Raw::N(n) => Err(serde::de::Error::custom(format!("n_therm: {n} is negative"))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

// Named choices of the options. They are plain data (a name, its parsing and printing), so
// they live here, below the layers that act on them (`mc`, `diffusion`, which re-export
// them where they were before): config imports nothing above `theory` and `nn`.

/// MD integrator of HMC (`mc::integrator`, where its algorithm is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Integrator {
    /// Leapfrog (velocity Verlet): one force evaluation per step, ΔH = O(dt²).
    Leapfrog,
    /// Omelyan's second-order minimum-norm scheme: two force evaluations per step and a
    /// ~10× smaller error constant, so larger steps at the same acceptance.
    Omelyan,
}

impl Integrator {
    pub fn name(&self) -> &'static str {
        match self {
            Integrator::Leapfrog => "leapfrog",
            Integrator::Omelyan => "omelyan",
        }
    }
}

/// Which lattice field theory a run simulates (`theory::Couplings` holds its couplings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TheoryName {
    /// Real scalar φ⁴ (couplings kappa and lambda, or m2 and lambda).
    #[default]
    Phi4,
    /// Compact U(1) gauge theory with the Wilson action (coupling beta).
    U1,
}

impl TheoryName {
    pub fn is_phi4(&self) -> bool {
        *self == TheoryName::Phi4
    }
}

/// HMC start configuration (`mc::hmc::Chain::new`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Ordered: every site at the classical vacuum, sign drawn per chain (so ⟨M⟩ = 0 over chains).
    Cold,
    /// Random: independent unit Gaussians per site.
    Hot,
    /// Even chains cold, odd chains hot; thermalisation compares the two groups.
    Mixed,
}

/// How the network's output becomes a score (`diffusion::form`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreForm {
    Plain,
    #[default]
    Physics,
    /// The network is a scalar action S_θ; the score is −∂S_θ/∂φ (`nn::action`).
    Action,
}

impl ScoreForm {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "plain" => Ok(ScoreForm::Plain),
            "physics" => Ok(ScoreForm::Physics),
            "action" => Ok(ScoreForm::Action),
            _ => Err(format!("score_form: '{s}' is not one of plain, physics, action")),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScoreForm::Plain => "plain",
            ScoreForm::Physics => "physics",
            ScoreForm::Action => "action",
        }
    }

    /// The form recorded in a model file; files written before forms existed are plain.
    pub fn from_attr(attr: Option<&str>) -> Result<Self, String> {
        match attr {
            None => Ok(ScoreForm::Plain),
            Some(s) => ScoreForm::parse(s).map_err(|_| {
                format!(
                    "score_form '{s}' of this model is unknown to latdiff {} (known: plain, physics, action)",
                    crate::VERSION
                )
            }),
        }
    }
}

/// Which integrator of the reverse process (`diffusion::sampler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Reverse SDE, one kernel step per noise level; exact path weights.
    Em,
    /// Predictor (as `Em`) plus Langevin corrector steps; raw samples.
    Pc,
    /// Probability-flow ODE, Heun; raw samples.
    Ode,
    /// Sequential Monte Carlo along the em/matched path (`diffusion::smc`): replicas of
    /// weighted, resampled and rejuvenated particles.
    Smc,
}

/// The intermediate targets of the SMC sampler (`diffusion::smc::levels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmcTarget {
    /// S_prior, the physics prior's scalar action.
    Prior,
    /// The first-order cumulant surrogate of the noised action (`diffusion::cumulant`).
    Cumulant,
    /// The model's own learnt action S_θ(·, σ_k) (action-form networks).
    Learnt,
}

impl SmcTarget {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "prior" => Ok(SmcTarget::Prior),
            "cumulant" => Ok(SmcTarget::Cumulant),
            "learnt" => Ok(SmcTarget::Learnt),
            _ => Err(format!("smc_target: '{s}' is not one of prior, cumulant, learnt")),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SmcTarget::Prior => "prior",
            SmcTarget::Cumulant => "cumulant",
            SmcTarget::Learnt => "learnt",
        }
    }
}

impl SamplerKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "em" => Ok(SamplerKind::Em),
            "pc" => Ok(SamplerKind::Pc),
            "ode" => Ok(SamplerKind::Ode),
            "smc" => Ok(SamplerKind::Smc),
            _ => Err(format!("sampler: '{s}' is not one of em, pc, ode, smc")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Em => "em",
            SamplerKind::Pc => "pc",
            SamplerKind::Ode => "ode",
            SamplerKind::Smc => "smc",
        }
    }
}

/// Covariance of the reverse step and of the start distribution (see `diffusion::sampler`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// Σ_k = Δ_k I, φ_N ~ N(0, σ_max² I).
    Em,
    /// Σ_k(p) = Δ_k (G + σ_{k−1}²)/(G + σ_k²), φ_N ~ N(0, G + σ_max²).
    #[default]
    Matched,
}

impl Kernel {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "em" => Ok(Kernel::Em),
            "matched" => Ok(Kernel::Matched),
            _ => Err(format!("kernel: '{s}' is not one of em, matched")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Em => "em",
            Kernel::Matched => "matched",
        }
    }
}

/// Reads a TOML options file; errors name the file, the line and the key.
pub fn read_options_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("config: cannot read '{}': {e}", path.display()))?;
    toml::from_str::<T>(&text).map_err(|e| {
        let line = e.span().map(|sp| {
            let line_no = text[..sp.start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!(" line {line_no} (`{line}`)")
        });
        anyhow!("config '{}'{}: {}", path.display(), line.unwrap_or_default(), e.message().trim())
    })
}

/// Flags over file over defaults: both option structs serialise with `None` skipped, the
/// flag map is laid over the file map, and the result fills the resolved struct, whose
/// `#[serde(default)]` supplies the rest.
pub fn merge<O: Serialize, R: DeserializeOwned>(file: &O, flags: &O) -> Result<R> {
    let mut base = serde_json::to_value(file)?;
    let top = serde_json::to_value(flags)?;
    if let (Some(b), Some(t)) = (base.as_object_mut(), top.as_object()) {
        for (k, v) in t {
            if !v.is_null() {
                b.insert(k.clone(), v.clone());
            }
        }
        b.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(base).context("config: merging flags and file")
}

pub fn to_toml<T: Serialize>(cfg: &T) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("# could not serialise config: {e}"))
}

/// JSON (used by `merge`) has no NaN or infinity and would turn them into "not given":
/// checks the float keys of both layers (file and flags) before they pass through it.
fn check_finite<O>(layers: [&O; 2], floats: impl Fn(&O) -> Vec<(&'static str, Option<f64>)>) -> Result<()> {
    for o in layers {
        for (k, v) in floats(o) {
            if let Some(v) = v {
                finite(k, v)?;
            }
        }
    }
    Ok(())
}

pub fn is_false(b: &bool) -> bool {
    !*b
}

fn finite(key: &str, v: f64) -> Result<()> {
    if !v.is_finite() {
        bail!("{key}: {v} is not a finite number");
    }
    Ok(())
}

/// Default theory when none is named: the near-critical hopping-form point of the study.
pub const DEFAULT_KAPPA: f64 = 0.27;
pub const DEFAULT_LAMBDA: f64 = 0.022;

pub fn resolve_theory(kappa: Option<f64>, m2: Option<f64>, lambda: Option<f64>) -> Result<Parametrisation> {
    let p = match (kappa, m2) {
        (Some(_), Some(_)) => {
            bail!("kappa and m2: give one parametrisation (hopping: kappa, mass: m2), not both")
        }
        (None, Some(m2)) => {
            let lambda = lambda.ok_or_else(|| anyhow!("lambda: required with m2 (mass form)"))?;
            Parametrisation::Mass { m2, lambda }
        }
        (k, None) => {
            Parametrisation::Hopping { kappa: k.unwrap_or(DEFAULT_KAPPA), lambda: lambda.unwrap_or(DEFAULT_LAMBDA) }
        }
    };
    match p {
        Parametrisation::Hopping { kappa, lambda } => {
            finite("kappa", kappa)?;
            finite("lambda", lambda)?;
        }
        Parametrisation::Mass { m2, lambda } => {
            finite("m2", m2)?;
            finite("lambda", lambda)?;
        }
    }
    check_representable(&p)?;
    let lambda = p.lambda();
    if lambda < 0.0 {
        bail!("lambda: {lambda} is negative (the action would be unbounded below)");
    }
    if lambda == 0.0 && !crate::theory::free::is_stable(&p) {
        bail!("{}: the free theory (lambda = 0) is unstable here (needs kappa < 1/4, or m2 > 0)", p.describe());
    }
    Ok(p)
}

/// The couplings of `theory` from the flags, refusing another theory's flags.
pub fn resolve_couplings(
    theory: TheoryName,
    kappa: Option<f64>,
    m2: Option<f64>,
    lambda: Option<f64>,
    beta: Option<f64>,
) -> Result<Couplings> {
    match theory {
        TheoryName::Phi4 => {
            if let Some(b) = beta {
                bail!("beta: {b} given, but beta is the coupling of theory u1 (phi4 takes kappa or m2, and lambda)");
            }
            resolve_theory(kappa, m2, lambda).map(Couplings::Phi4)
        }
        TheoryName::U1 => {
            for (k, v) in [("kappa", kappa), ("m2", m2), ("lambda", lambda)] {
                if let Some(v) = v {
                    bail!("{k}: {v} given, but theory u1 takes only beta");
                }
            }
            let beta = beta.ok_or_else(|| anyhow!("beta: required with theory u1 (e.g. --beta 3)"))?;
            finite("beta", beta)?;
            if beta < 0.0 {
                bail!("beta: {beta} is negative (the Wilson action would favour disorder over order)");
            }
            Ok(Couplings::U1 { beta })
        }
    }
}

/// Couplings so large that the action of a start configuration overflows f64 would let a
/// run start and fill its output with NaN: refused here, naming the couplings.
fn check_representable(p: &Parametrisation) -> Result<()> {
    let th = crate::theory::Phi4::new(Lattice::square(2), *p);
    for phi in [th.classical_vacuum(), 1.0] {
        let (s, _) = th.action_and_sum(&[phi; 4]);
        if !s.is_finite() {
            // Debug prints 1e200 as such (Display writes all 201 digits).
            let couplings = match *p {
                Parametrisation::Hopping { kappa, lambda } => format!("kappa = {kappa:?}, lambda = {lambda:?}"),
                Parametrisation::Mass { m2, lambda } => format!("m2 = {m2:?}, lambda = {lambda:?}"),
            };
            bail!("{couplings}: the action of a constant field {phi:.3e} overflows (couplings out of range)");
        }
    }
    Ok(())
}

/// `latdiff hmc` options: flags and TOML keys (same names, `-` ↔ `_`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct HmcOptions {
    /// TOML file with any of these keys; flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Lattice size: L (square) or L_TxL_X.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lattice: Option<LatticeSpec>,
    /// Theory: phi4 (default) or u1 (compact U(1) gauge theory, needs --beta).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theory: Option<TheoryName>,
    /// Hopping parameter κ (hopping form).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
    /// Bare mass squared m² (mass form); excludes --kappa.
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m2: Option<f64>,
    /// Quartic coupling λ.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Gauge coupling β of the Wilson action (theory u1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Number of configurations to save.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_configs: Option<usize>,
    /// Independent Markov chains (spread over threads and ranks).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_chains: Option<usize>,
    /// Thermalisation trajectories per chain, or `auto`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_therm: Option<NTherm>,
    /// Cap for `--n-therm auto`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_therm_max: Option<usize>,
    /// Trajectories between saved configurations of a chain.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_sep: Option<usize>,
    /// MD integrator.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrator: Option<Integrator>,
    /// MD steps per trajectory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_md: Option<usize>,
    /// Trajectory length.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Trajectory lengths are drawn from [tau(1-jitter), tau] (0 = fixed length).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau_jitter: Option<f64>,
    /// Start: cold (ordered), hot (random) or mixed (half each, compared after thermalisation).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Start>,
    /// Updates besides HMC after each trajectory: φ⁴ embedded-Ising (Wolff) cluster flips
    /// (default 4; no effect for kappa <= 0); U(1) flux moves changing Q by ±1 (default 0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_updates: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Output HDF5 file (its checkpoint is OUT.ckpt).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Also checkpoint every N production rounds (0: only when stopped by SIGTERM/SIGUSR1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// Continue the stopped run whose checkpoint is OUT.ckpt (with its stored configuration).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume: bool,
    /// Memory limit per rank in MiB (default: 80 % of the node's available memory shared by its ranks).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HmcConfig {
    pub lattice: LatticeSpec,
    #[serde(skip_serializing_if = "TheoryName::is_phi4")]
    pub theory: TheoryName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    pub n_configs: usize,
    pub n_chains: usize,
    pub n_therm: NTherm,
    pub n_therm_max: usize,
    pub n_sep: usize,
    pub integrator: Integrator,
    pub n_md: usize,
    pub tau: f64,
    pub tau_jitter: f64,
    pub start: Start,
    pub cluster_updates: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
    pub checkpoint_every: usize,
    pub resume: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
}

impl Default for HmcConfig {
    fn default() -> Self {
        HmcConfig {
            lattice: LatticeSpec(Lattice::square(16)),
            theory: TheoryName::Phi4,
            kappa: None,
            m2: None,
            lambda: None,
            beta: None,
            n_configs: 1024,
            n_chains: 16,
            n_therm: NTherm::Auto,
            n_therm_max: 20000,
            n_sep: 10,
            integrator: Integrator::Omelyan,
            n_md: 10,
            tau: 1.0,
            tau_jitter: 0.2,
            start: Start::Cold,
            cluster_updates: 4,
            seed: 1,
            out: PathBuf::from("ensemble.h5"),
            force: false,
            checkpoint_every: 0,
            resume: false,
            max_memory: None,
        }
    }
}

impl HmcConfig {
    /// Flags over `file` over defaults, checked. `file` is the `--config` file or, resuming
    /// without one, the checkpoint's stored configuration: `cli::hmc::resolve` reads it, and
    /// checks the output and the checkpoint afterwards (config reads no HDF5 file).
    pub fn from_layers(file: &HmcOptions, flags: &HmcOptions) -> Result<Self> {
        check_finite([file, flags], |o| {
            vec![
                ("kappa", o.kappa),
                ("m2", o.m2),
                ("lambda", o.lambda),
                ("beta", o.beta),
                ("tau", o.tau),
                ("tau_jitter", o.tau_jitter),
            ]
        })?;
        let mut cfg: HmcConfig = merge(file, flags)?;
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
            // U(1)'s updates besides HMC are flux moves (`theory::u1::flux_move`): asked
            // for, not on by default (the φ⁴ default of 4 Wolff flips does not apply).
            Couplings::U1 { .. } => cfg.cluster_updates = flags.cluster_updates.or(file.cluster_updates).unwrap_or(0),
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

/// A configuration stored in a checkpoint (its `config` attribute), read as options (the
/// file layer of a resumed run) or as the resolved configuration it was.
pub fn stored_config<T: DeserializeOwned>(text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| anyhow!("resume: stored config unreadable: {}", e.message()))
}

fn check_max_memory(m: Option<usize>) -> Result<()> {
    if m == Some(0) {
        bail!("max_memory: must be at least 1 MiB");
    }
    // MiB to bytes must not overflow.
    crate::limits::bound("max_memory", m.unwrap_or(0) as u64, 1 << 40)
}

/// The first key (in TOML order) whose values differ, with both values.
fn first_difference<T: Serialize>(a: &T, b: &T) -> Option<(String, String, String)> {
    let (ta, tb) = (toml::Table::try_from(a).ok()?, toml::Table::try_from(b).ok()?);
    let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    let diff =
        keys.into_iter().find(|k| ta.get(*k) != tb.get(*k)).map(|k| (k.clone(), show(ta.get(k)), show(tb.get(k))));
    diff
}

/// `latdiff train` options: flags and TOML keys (same names, `-` ↔ `_`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// TOML file with any of these keys; flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Training ensemble (HDF5, from `latdiff hmc`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Model / checkpoint file to write.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Network preset: local (default; no normalisation, receptive radius 7), tiny-local, tiny, small, dmassq.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Score form: physics (prior from the action and G(p) plus a learnt correction; default), plain, or action (a learnt scalar action, score −∂S/∂φ).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_form: Option<String>,
    /// Optimiser steps in total.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Global batch size (split evenly over ranks).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine decay.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_min: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Global gradient-norm clip (0 disables).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
    /// Decay of the exponential moving average of the weights.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// Smallest noise level (default 0.01).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    /// Largest noise level (default: the largest distance between training configurations).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Symmetry augmentation (translations, φ → −φ, rotations/reflections on squares).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
    /// Antithetic noise: batch slots in pairs (φ₀ + σz, φ₀ − σz) at one σ. Each term is an
    /// ordinary DSM term, so the loss's expectation is unchanged, but the pair cancels the
    /// O(1/σ) cross term z·s/σ that drowns the gradient at small σ (needs an even number of
    /// slots per rank).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub antithetic: Option<bool>,
    /// Held-out fraction of the ensemble for the validation loss.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    /// Checkpoint every N steps (and at the end, and on SIGTERM/SIGUSR1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Compare a parameter checksum across ranks every N steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_every: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Continue from the checkpoint at --out.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume: bool,
    /// Overwrite an existing output (without --resume).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Memory limit per rank in MiB (default: 80 % of the node's available memory shared by its ranks).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    pub preset: String,
    pub score_form: String,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    pub clip: f64,
    pub ema_decay: f64,
    pub sigma_min: f64,
    /// 0 = from the data.
    pub sigma_max: f64,
    pub augment: bool,
    pub antithetic: bool,
    pub val_fraction: f64,
    pub checkpoint_every: u64,
    pub checksum_every: u64,
    pub seed: u64,
    pub resume: bool,
    pub force: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            out: PathBuf::from("model.h5"),
            preset: "local".into(),
            score_form: "physics".into(),
            steps: 20000,
            batch: 64,
            lr: 1e-3,
            lr_min: 1e-5,
            warmup: 200,
            weight_decay: 0.0,
            clip: 1.0,
            ema_decay: 0.999,
            sigma_min: 0.01,
            sigma_max: 0.0,
            augment: true,
            antithetic: false,
            val_fraction: 0.05,
            checkpoint_every: 1000,
            checksum_every: 200,
            seed: 1,
            resume: false,
            force: false,
            max_memory: None,
        }
    }
}

impl TrainConfig {
    /// Flags over `file` over defaults, checked. `file` is the `--config` file or, resuming
    /// without one, the checkpoint's stored configuration: `cli::train::resolve` reads it, and
    /// checks the output afterwards (config reads no HDF5 file).
    pub fn from_layers(file: &TrainOptions, flags: &TrainOptions) -> Result<Self> {
        check_finite([file, flags], |o| {
            vec![
                ("lr", o.lr),
                ("lr_min", o.lr_min),
                ("weight_decay", o.weight_decay),
                ("clip", o.clip),
                ("ema_decay", o.ema_decay),
                ("sigma_min", o.sigma_min),
                ("sigma_max", o.sigma_max),
                ("val_fraction", o.val_fraction),
            ]
        })?;
        let cfg: TrainConfig = merge(file, flags)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that need no file access beyond existence.
    pub fn validate(&self) -> Result<()> {
        if self.data.as_os_str().is_empty() {
            bail!("data: no training ensemble given (--data ens.h5)");
        }
        if !self.data.exists() {
            bail!("data: '{}' does not exist", self.data.display());
        }
        let form = ScoreForm::parse(&self.score_form).map_err(|e| anyhow!(e))?;
        if form == ScoreForm::Action {
            if crate::nn::ActionArch::preset(&self.preset).is_none() {
                bail!("preset: '{}' is not one of {} (score form action)", self.preset, crate::nn::ActionArch::NAMES);
            }
        } else if crate::nn::Arch::preset(&self.preset).is_none() {
            bail!("preset: '{}' is not one of {}", self.preset, crate::nn::Arch::PRESETS);
        }
        if self.steps == 0 {
            bail!("steps: must be at least 1");
        }
        if self.batch == 0 {
            bail!("batch: must be at least 1");
        }
        if !(self.lr > 0.0) {
            bail!("lr: {} is not a positive learning rate", self.lr);
        }
        if self.lr_min < 0.0 || self.lr_min > self.lr {
            bail!("lr_min: {} is outside [0, lr]", self.lr_min);
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("ema_decay: {} is outside [0, 1)", self.ema_decay);
        }
        if !(self.sigma_min > 0.0) {
            bail!("sigma_min: {} must be positive", self.sigma_min);
        }
        if self.sigma_max != 0.0 && self.sigma_max <= self.sigma_min {
            bail!("sigma_max: {} must exceed sigma_min ({})", self.sigma_max, self.sigma_min);
        }
        if !(0.0..0.5).contains(&self.val_fraction) {
            bail!("val_fraction: {} is outside [0, 0.5)", self.val_fraction);
        }
        if self.checkpoint_every == 0 {
            bail!("checkpoint_every: must be at least 1");
        }
        {
            use crate::limits::{bound, MAX_BATCH, MAX_CONFIGS};
            bound("steps", self.steps, MAX_CONFIGS)?;
            bound("warmup", self.warmup, MAX_CONFIGS)?;
            bound("batch", self.batch as u64, MAX_BATCH)?;
        }
        check_max_memory(self.max_memory)?;
        Ok(())
    }
}

/// `latdiff sample` options: flags and TOML keys (same names, `-` ↔ `_`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SampleOptions {
    /// TOML file with any of these keys; flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Model file from `latdiff train`, `free:kappa=K` / `free:m2=M` (exact free-field score),
    /// or `prior:ENSEMBLE.h5` (the physics prior alone: the baseline a network must beat).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Lattice to sample on (default: the model's training lattice); may be larger.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lattice: Option<LatticeSpec>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_configs: Option<usize>,
    /// em (reverse SDE, weighted), pc (predictor-corrector), ode (probability flow, Heun),
    /// smc (sequential Monte Carlo along the em path: replicas, resampling, MALA).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// Reverse-step covariance: matched (to the data's propagator; default) or em (Δ·I).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Number of noise levels (reverse steps).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Smallest noise level (default: the model's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    /// Largest noise level (default: the model's training range, on any lattice).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Langevin corrector steps per level (pc).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrector_steps: Option<usize>,
    /// Corrector signal-to-noise ratio (pc).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr: Option<f64>,
    /// Target theory of the weights (default: the model's training theory).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m2: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// U(1) target coupling (default: the model's training beta); another beta conditions
    /// the model on it (its learnt correction scaled by beta/beta_train).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Write an independence-Metropolis chain over the weighted proposals.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub metropolis: bool,
    /// HMC trajectories of the true action run from each sample.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmc_refine: Option<usize>,
    /// Sample with the raw (not EMA) weights.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ema: bool,
    /// SMC: independent replicas, --n-configs split evenly over them (default: one per MPI
    /// rank, or per group of --ranks-per-replica ranks).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    /// SMC: MPI ranks that share one replica's particles (default 1: whole replicas per
    /// rank); must divide the rank count. The output does not depend on it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks_per_replica: Option<usize>,
    /// SMC: resample when the ESS falls below this fraction of a replica's particles (0: never).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resample_ess: Option<f64>,
    /// SMC: MALA steps on the level's target after each resampling.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejuvenate: Option<usize>,
    /// SMC: run the MALA steps after every level, not only after a resampling (with
    /// --resample-ess 0: a predictor-corrector sampler whose corrector is Metropolis-adjusted
    /// against the level targets, with exact weights).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub rejuvenate_always: bool,
    /// SMC: intermediate targets, cumulant (the first-order cumulant action, which fades
    /// with the noise; default), prior (the physics prior's action S_prior) or learnt (the
    /// model's own action S_theta(., sigma_k): action-form models only).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smc_target: Option<String>,
    /// SMC: the network drives the reverse steps from sigma at or below this; above it the
    /// level target's own score does (default: the network everywhere).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_below: Option<f64>,
    /// SMC with smc_target = learnt: the hybrid ladder, the learnt action S_theta(., sigma_k)
    /// as the target of the levels with sigma above this and the cumulant action at or below
    /// it (default 0: learnt at every level).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learnt_above: Option<f64>,
    /// SMC: draw each reverse step's magnetisation from its conditional under the level
    /// target (a 1-D grid) instead of the Gaussian step: for critical and broken phases.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub exact_magnetisation: bool,
    /// Memory limit per rank in MiB; also sizes the batch (default: 80 % of the node's available memory shared by its ranks, batches sized for at most 2048 MiB).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
    /// Configurations per batch (overrides the batch sizing by memory).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lattice: Option<LatticeSpec>,
    pub n_configs: usize,
    pub sampler: String,
    pub kernel: String,
    pub steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    pub corrector_steps: usize,
    pub snr: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    pub metropolis: bool,
    pub hmc_refine: usize,
    pub no_ema: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks_per_replica: Option<usize>,
    pub resample_ess: f64,
    pub rejuvenate: usize,
    pub rejuvenate_always: bool,
    pub smc_target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_below: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learnt_above: Option<f64>,
    pub exact_magnetisation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            model: String::new(),
            lattice: None,
            n_configs: 1024,
            sampler: "em".into(),
            kernel: "matched".into(),
            steps: 200,
            sigma_min: None,
            sigma_max: None,
            corrector_steps: 1,
            snr: 0.16,
            kappa: None,
            m2: None,
            lambda: None,
            beta: None,
            metropolis: false,
            hmc_refine: 0,
            no_ema: false,
            replicas: None,
            ranks_per_replica: None,
            resample_ess: 0.5,
            rejuvenate: 5,
            rejuvenate_always: false,
            smc_target: "cumulant".into(),
            network_below: None,
            learnt_above: None,
            exact_magnetisation: false,
            max_memory: None,
            batch: None,
            seed: 1,
            out: PathBuf::from("generated.h5"),
            force: false,
        }
    }
}

impl SampleConfig {
    /// Flags over `file` (the `--config` file, which `cli::sample::resolve` reads) over
    /// defaults, checked; the output is checked by the caller afterwards.
    pub fn from_layers(file: &SampleOptions, flags: &SampleOptions) -> Result<Self> {
        check_finite([file, flags], |o| {
            vec![
                ("kappa", o.kappa),
                ("m2", o.m2),
                ("lambda", o.lambda),
                ("beta", o.beta),
                ("sigma_min", o.sigma_min),
                ("sigma_max", o.sigma_max),
                ("snr", o.snr),
                ("resample_ess", o.resample_ess),
                ("network_below", o.network_below),
                ("learnt_above", o.learnt_above),
            ]
        })?;
        let cfg: SampleConfig = merge(file, flags)?;
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
        SamplerKind::parse(&cfg.sampler).map_err(|e| anyhow!(e))?;
        Kernel::parse(&cfg.kernel).map_err(|e| anyhow!(e))?;
        if cfg.metropolis && cfg.sampler != "em" {
            bail!("metropolis: needs path weights, which only the em sampler has (sampler = {})", cfg.sampler);
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
        if self.rejuvenate_always && self.sampler != "smc" {
            bail!("rejuvenate_always: only the smc sampler rejuvenates (sampler = {})", self.sampler);
        }
        if !(0.0..=1.0).contains(&self.resample_ess) {
            bail!("resample_ess: {} is not a fraction in [0, 1]", self.resample_ess);
        }
        let target = SmcTarget::parse(&self.smc_target).map_err(|e| anyhow!(e))?;
        if let Some(s) = self.network_below.filter(|s| !(*s >= 0.0)) {
            bail!("network_below: {s} is not a noise level (sigma >= 0)");
        }
        if let Some(s) = self.learnt_above {
            if target != SmcTarget::Learnt {
                bail!("learnt_above: {s} needs smc_target = learnt (it sets where the learnt levels end)");
            }
            if !(s >= 0.0) {
                bail!("learnt_above: {s} is not a noise level (sigma >= 0)");
            }
        }
        if target == SmcTarget::Learnt {
            // Only the cumulant levels (σ ≤ learnt_above) have a score of their own to drive
            // with: on learnt levels the target's own score is the network's.
            let above = self.learnt_above.unwrap_or(0.0);
            if let Some(s) = self.network_below.filter(|s| *s >= above) {
                bail!("network_below: {s} means nothing with smc_target = learnt unless it is below learnt_above ({above}): on learnt levels the targets' own score is the network's");
            }
            if self.exact_magnetisation {
                bail!("exact_magnetisation: not built for smc_target = learnt (it evaluates the level target per particle along five shifts)");
            }
        }
        match self.ranks_per_replica {
            Some(_) if self.sampler != "smc" => {
                bail!("ranks_per_replica: only the smc sampler has replicas (sampler = {})", self.sampler)
            }
            Some(0) => bail!("ranks_per_replica: must be at least 1"),
            _ => {}
        }
        match self.replicas {
            Some(_) if self.sampler != "smc" => {
                bail!("replicas: only the smc sampler has replicas (sampler = {})", self.sampler)
            }
            Some(0) => bail!("replicas: must be at least 1"),
            Some(r) if self.n_configs % r != 0 => {
                bail!("replicas: n_configs = {} is not a multiple of replicas = {r}", self.n_configs)
            }
            _ => Ok(()),
        }
    }
}
