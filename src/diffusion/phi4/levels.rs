//! The intermediate targets π_k ∝ exp(−U_k) of the SMC sampler, one per noise level:
//! U_k for 0 < k < N a surrogate of the noised action at σ_k (S_prior, the cumulant action,
//! or the model's own learnt S_θ(·, σ_k)), U_0 = S (the target action), and the Gaussian
//! preconditioner C_k = G + σ_k² of the MALA moves that leave π_k invariant.
//!
//! The learnt ladder can be a hybrid: S_θ above a crossover σ_c, the cumulant action at and
//! below it. Why: measured on φ⁴ near criticality, S_θ is the better target at large σ
//! (it has learnt the noised double well the cumulant's Gaussian misses) and the worse one
//! near σ = 0, where the cumulant action becomes S exactly and S_θ(·, σ_min) still carries
//! the network's error, paid in full at the last step. The ladder stays exact either way:
//! any family of intermediate targets telescopes to the same final weights.

use std::sync::Arc;

use rayon::prelude::*;

use crate::config::SmcTarget;
use crate::diffusion::phi4::cumulant;
use crate::diffusion::phi4::prior::{PhysicsPrior, PriorWork};
use crate::diffusion::sample::kernel::positive_two_point;
use crate::diffusion::ScoreModel;
use crate::lattice::fft::{self, Fft2};
use crate::lattice::Lattice;
use crate::theory::{Action, Phi4};

/// The prior whose action is S_prior: the model's own, or one built for the sampler.
enum Surrogate {
    /// The physics prior the model's score is built on (with its zero mode, if any).
    Model(Arc<PhysicsPrior>),
    /// The target theory's prior with the model's G(p): models without a prior of their own.
    Built(PhysicsPrior),
}

/// The σ ladder's targets for one model, target theory and lattice.
pub struct Levels {
    surrogate: Surrogate,
    /// Which scalar of the surrogate's G (and theory) the levels 0 < k < N use.
    form: SmcTarget,
    /// With `form` learnt: levels with σ_k above this use S_θ, the others the cumulant
    /// action (0: every level learnt). Unused by the other forms.
    learnt_above: f64,
    target: Phi4,
    /// [σ_0 = 0, σ_1, …, σ_N].
    sigma: Vec<f64>,
    /// G(p) of the model on this lattice (the preconditioner's base).
    g: Vec<f64>,
    fft: Arc<Fft2>,
}

/// U_k of one level, as MALA and the weights evaluate it.
#[derive(Clone, Copy)]
pub enum LevelPotential<'a> {
    /// S_prior(·, σ), 0 < σ.
    Prior { prior: &'a PhysicsPrior, sigma: f64 },
    /// The first-order cumulant surrogate U_σ built on the prior's G ([`cumulant`]).
    Cumulant { prior: &'a PhysicsPrior, sigma: f64 },
    /// The target action S (σ = 0): what the ensemble is exact for.
    Target(&'a Phi4),
}

impl LevelPotential<'_> {
    /// U(φ).
    pub fn energy(&self, phi: &[f64], ws: &mut PriorWork) -> f64 {
        match self {
            LevelPotential::Prior { prior, sigma } => prior.action(phi, *sigma, ws),
            LevelPotential::Cumulant { prior, sigma } => cumulant::action(prior, phi, *sigma, ws),
            LevelPotential::Target(t) => t.action(phi),
        }
    }

    /// grad = ∇U(φ).
    pub fn gradient(&self, phi: &[f64], grad: &mut [f64], ws: &mut PriorWork) {
        match self {
            LevelPotential::Prior { prior, sigma } => {
                prior.score(phi, *sigma, grad, ws);
                grad.iter_mut().for_each(|g| *g = -*g);
            }
            LevelPotential::Cumulant { prior, sigma } => cumulant::gradient(prior, phi, *sigma, grad, ws),
            LevelPotential::Target(t) => t.deriv(phi, grad),
        }
    }
}

/// U_k as the sampler evaluates it.
#[derive(Clone, Copy)]
pub enum Level<'a> {
    /// In closed form, per configuration.
    Analytic(LevelPotential<'a>),
    /// The model's learnt action S_θ(·, σ) (`ScoreModel::action_values`), in batches; its
    /// gradient is minus the model's score at σ.
    Learnt { sigma: f64 },
}

impl Levels {
    /// The levels of `sigma` ([σ_0 = 0, …, σ_N]) for `model` sampling `target`: S_prior from
    /// the model's physics prior when it has one, else from the target theory and the
    /// model's G(p) (exact at every σ for a free target with its exact propagator). The
    /// learnt targets need a model with an action.
    pub fn new(model: &dyn ScoreModel, target: Phi4, sigma: Vec<f64>, form: SmcTarget) -> Result<Self, String> {
        if form == SmcTarget::Learnt && !model.has_action() {
            return Err(format!(
                "smc_target: 'learnt' needs a model with a learnt action (score form action); {} has none",
                model.describe()
            ));
        }
        let lat = target.lattice;
        let g = positive_two_point(model, lat)?;
        let surrogate = match model.physics_prior(lat) {
            Some(prior) => Surrogate::Model(prior),
            None => Surrogate::Built(PhysicsPrior::new(target, g.clone()).map_err(|e| format!("smc: {e}"))?),
        };
        Ok(Levels { surrogate, form, target, sigma, g, fft: fft::plan(lat), learnt_above: 0.0 })
    }

    /// The hybrid learnt ladder (module docs): S_θ above `sigma_c`, the cumulant action at
    /// and below it.
    pub fn learnt_above(mut self, sigma_c: f64) -> Self {
        self.learnt_above = sigma_c;
        self
    }

    /// Whether level k (0 < k < N) is a learnt one.
    pub fn is_learnt(&self, k: usize) -> bool {
        self.form == SmcTarget::Learnt && k > 0 && self.sigma[k] > self.learnt_above
    }

    /// σ_k.
    pub fn sigma(&self, k: usize) -> f64 {
        self.sigma[k]
    }

    pub fn lattice(&self) -> Lattice {
        self.target.lattice
    }

    pub fn fft(&self) -> &Arc<Fft2> {
        &self.fft
    }

    pub fn prior(&self) -> &PhysicsPrior {
        match &self.surrogate {
            Surrogate::Model(prior) => prior,
            Surrogate::Built(prior) => prior,
        }
    }

    /// Where S_prior comes from (logs and the `smc_surrogate` attribute).
    pub fn describe(&self) -> String {
        // The cumulant action does not use the prior's zero-mode marginal.
        let (form, zero_mode) = match self.form {
            SmcTarget::Prior if self.prior().zero_mode().is_some() => ("", " with the data's zero-mode marginal"),
            SmcTarget::Prior => ("", ""),
            SmcTarget::Cumulant => ("the first-order cumulant action on ", ""),
            SmcTarget::Learnt if self.learnt_above > 0.0 => {
                return format!(
                    "the model's learnt action S_theta(., sigma_k) above sigma = {} and the first-order cumulant action at and below it",
                    self.learnt_above
                )
            }
            SmcTarget::Learnt => return "the model's learnt action S_theta(., sigma_k)".into(),
        };
        let source = match &self.surrogate {
            Surrogate::Model(_) => format!("the model's physics prior{zero_mode}"),
            Surrogate::Built(_) => "the target theory's physics prior with the model's G(p)".into(),
        };
        format!("{form}{source}")
    }

    /// What the learnt targets cannot do: their own score is the network's (so a
    /// `network_below` must be below the crossover), and the magnetisation redraw evaluates
    /// U per particle along five shifts.
    pub fn check(&self, settings: &crate::diffusion::smc::SmcSettings) -> Result<(), String> {
        if self.form != SmcTarget::Learnt {
            return Ok(());
        }
        let network_below = Some(settings.network_below).filter(|s| s.is_finite());
        crate::config::check_learnt_levels(network_below, self.learnt_above, settings.exact_magnetisation)
    }

    /// U_k for 0 ≤ k < N.
    pub fn level(&self, k: usize) -> Level<'_> {
        if self.is_learnt(k) {
            assert!(k + 1 < self.sigma.len(), "smc: level {k} is the start level, not a target");
            return Level::Learnt { sigma: self.sigma[k] };
        }
        Level::Analytic(self.potential(k))
    }

    /// U_k for 0 ≤ k < N in closed form (π_N is the start distribution, never a MALA
    /// target; learnt levels have none, see [`Levels::level`]).
    pub fn potential(&self, k: usize) -> LevelPotential<'_> {
        assert!(k + 1 < self.sigma.len(), "smc: level {k} has no surrogate (the start level is Gaussian)");
        if k == 0 {
            LevelPotential::Target(&self.target)
        } else {
            self.surrogate(self.sigma[k])
        }
    }

    /// The surrogate action at σ > 0 (the hybrid learnt ladder's cumulant part at and below
    /// its crossover).
    fn surrogate(&self, sigma: f64) -> LevelPotential<'_> {
        let prior = self.prior();
        match self.form {
            SmcTarget::Prior => LevelPotential::Prior { prior, sigma },
            SmcTarget::Learnt if sigma > self.learnt_above => {
                panic!("smc: a learnt level is evaluated in batches by the model (Levels::level)")
            }
            SmcTarget::Cumulant | SmcTarget::Learnt => LevelPotential::Cumulant { prior, sigma },
        }
    }

    /// out = −∇U at σ_k for every configuration of `phi` (1 ≤ k ≤ N): the surrogate's own
    /// score, which drives the reverse steps where the network's would cost ESS (sampler
    /// docs: `network_below`).
    pub fn surrogate_score(&self, k: usize, phi: &[f64], out: &mut [f64]) {
        assert!(k >= 1 && k < self.sigma.len(), "smc: level {k} has no noise");
        let pot = self.surrogate(self.sigma[k]);
        let v = self.lattice().volume();
        out.par_chunks_mut(v).zip(phi.par_chunks(v)).for_each_init(
            || self.work(),
            |ws, (o, p)| {
                pot.gradient(p, o, ws);
                o.iter_mut().for_each(|x| *x = -*x);
            },
        );
    }

    /// C_k(p) = G(p) + σ_k²: π_k's covariance where it is Gaussian (everywhere for the free
    /// theory), so MALA preconditioned with it moves every momentum at the same rate.
    pub fn preconditioner(&self, k: usize) -> Vec<f64> {
        let s2 = self.sigma[k] * self.sigma[k];
        self.g.iter().map(|g| g + s2).collect()
    }

    pub fn work(&self) -> PriorWork {
        self.prior().work()
    }
}
