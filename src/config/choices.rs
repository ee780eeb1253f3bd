//! The named choices of the options, parsed once on the way in: the resolved
//! configurations hold these, and the layers above (`mc`, `diffusion`, which re-export
//! them where they were before) match on them. They are plain data (a name, its parsing
//! and printing), below the layers that act on them; a choice serialises as its name, so
//! the configuration stored in outputs reads as the flags do.

use crate::nn::{ActionArch, Arch};
use serde::{Deserialize, Serialize, Serializer};

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
    /// SU(2) gauge theory with the Wilson action (coupling beta > 0).
    Su2,
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
    /// Coarse-to-fine SMC (`diffusion::multilevel`): a ladder of lattices doubling from
    /// `--coarsest` to `--lattice`, tempered at each level against the true action.
    Multilevel,
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
            "multilevel" => Ok(SamplerKind::Multilevel),
            _ => Err(format!("sampler: '{s}' is not one of em, pc, ode, smc, multilevel")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Em => "em",
            SamplerKind::Pc => "pc",
            SamplerKind::Ode => "ode",
            SamplerKind::Smc => "smc",
            SamplerKind::Multilevel => "multilevel",
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

/// `--preset` read with the score form: the networks a training builds. With the score
/// form action a name means two networks: the action network, and the U-Net preset it
/// builds on, whose σ_data and noise schedule the model file records (a `-ops` name adds
/// the action network's explicit local operator terms; its U-Net is the name without it).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPreset {
    name: String,
    /// The score network, or the action form's U-Net record.
    pub unet: Arch,
    /// The action network (score form action only).
    pub action: Option<ActionArch>,
}

impl NetworkPreset {
    pub fn parse(name: &str, form: ScoreForm) -> Result<Self, String> {
        let (unet, action) = match form {
            ScoreForm::Action => {
                let action = ActionArch::preset(name).ok_or_else(|| {
                    format!("preset: '{name}' is not one of {} (score form action)", ActionArch::NAMES)
                })?;
                let base = ActionArch::base_preset(name);
                let unet =
                    Arch::preset(base).ok_or_else(|| format!("preset: the U-Net '{base}' of '{name}' is unknown"))?;
                (unet, Some(action))
            }
            ScoreForm::Plain | ScoreForm::Physics => {
                let unet =
                    Arch::preset(name).ok_or_else(|| format!("preset: '{name}' is not one of {}", Arch::PRESETS))?;
                (unet, None)
            }
        };
        Ok(NetworkPreset { name: name.to_string(), unet, action })
    }

    /// The name it was given by (the model file's `preset` attribute).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `local`, for either form (the action form has a local network too: `preset_of_form`
/// reads the name again with the form).
impl Default for NetworkPreset {
    fn default() -> Self {
        NetworkPreset::parse("local", ScoreForm::default()).expect("local is a U-Net preset")
    }
}

impl std::fmt::Display for NetworkPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for NetworkPreset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}
