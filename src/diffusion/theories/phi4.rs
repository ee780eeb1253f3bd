//! φ⁴'s diffusion pieces behind [`DiffusionTheory`].

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};

use crate::config::{resolve_theory, SampleConfig, ScoreForm, TrainConfig};
use crate::diffusion::data;
use crate::diffusion::form::{PartsCache, ScoreParts};
use crate::diffusion::multilevel::Ladder;
use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::phi4::levels::Levels;
use crate::diffusion::phi4::multilevel::Phi4Ladder;
use crate::diffusion::phi4::prior::PhysicsPrior;
use crate::diffusion::phi4::zero_mode::ZeroModeMarginal;
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::sample::settings::SamplerSettings;
use crate::diffusion::smc::SmcLevels;
use crate::diffusion::theory::{DiffusionTheory, PriorModel, SampleTarget};
use crate::diffusion::ScoreModel;
use crate::error::input_err;
use crate::io::Ensemble;
use crate::lattice::Lattice;
use crate::nn::Arch;
use crate::rng::Stream;
use crate::theory::{Couplings, Parametrisation, Phi4, Theory};

/// φ⁴ at one parametrisation of its couplings.
pub struct Phi4Diffusion(pub Parametrisation);

impl DiffusionTheory for Phi4Diffusion {
    fn couplings(&self) -> Couplings {
        Couplings::Phi4(self.0)
    }

    fn dof(&self, lat: Lattice) -> usize {
        lat.volume()
    }

    fn target(&self, lat: Lattice) -> Box<dyn SampleTarget> {
        Box::new(Phi4::new(lat, self.0))
    }

    fn labels(&self, lat: Lattice) -> Vec<(&'static str, String)> {
        Phi4::new(lat, self.0).attrs().labels
    }

    fn check_form(&self, _form: ScoreForm) -> Result<(), String> {
        Ok(())
    }

    fn network_arch(&self, preset: Arch) -> Arch {
        preset
    }

    fn augment(&self, lat: Lattice, dst: &mut [f32], src: &[f32], rng: &mut Stream) {
        data::augment(dst, src, lat, &|v| -v, rng)
    }

    fn statistics(
        &self,
        lat: Lattice,
        cfg: &TrainConfig,
        stat_cfgs: &[f32],
        rows: &[f32],
    ) -> (f64, SigmaSchedule, Vec<f64>) {
        let (rms, dmax) = data::field_scales(stat_cfgs, lat.volume());
        let sigma_max = if cfg.sigma_max > 0.0 { cfg.sigma_max } else { dmax.max(10.0 * cfg.sigma_min) };
        let sched = SigmaSchedule { sigma_min: cfg.sigma_min, sigma_max, t_eps: 1e-5 };
        (if rms > 0.0 { rms } else { 1.0 }, sched, data::two_point(rows, lat))
    }

    fn zero_mode_data(&self, form: ScoreForm, lat: Lattice, rows: &[f32]) -> Vec<f64> {
        match form {
            ScoreForm::Physics => data::magnetisations(rows, lat),
            ScoreForm::Plain | ScoreForm::Action => Vec::new(),
        }
    }

    /// The physics form's prior is the theory's on `lat` with the data's G(p) and the exact
    /// zero-mode marginal of the magnetisations `m` measured on `lat` (none if empty: the
    /// marginal depends on the volume, so other lattices keep the Gaussian zero mode).
    fn score_parts(
        &self,
        form: ScoreForm,
        sigma_data: f64,
        g: Vec<f64>,
        m: &[f64],
        lat: Lattice,
        _trained: Couplings,
    ) -> Result<ScoreParts, String> {
        Ok(match form {
            ScoreForm::Plain => ScoreParts::Plain,
            ScoreForm::Action => ScoreParts::Action { sigma_data },
            ScoreForm::Physics => {
                let mut prior = PhysicsPrior::new(Phi4::new(lat, self.0), g)?;
                if !m.is_empty() {
                    prior = prior.with_zero_mode(ZeroModeMarginal::new(m, lat.volume())?)?;
                }
                ScoreParts::Physics { prior: Arc::new(prior), sigma_data }
            }
        })
    }

    /// The physics prior with the ensemble's G(p) and magnetisations.
    fn prior_model(&self, ens: &Ensemble, beta: Option<f64>) -> Result<PriorModel> {
        if beta.is_some() {
            bail!("beta: the ensemble is phi4's (beta is the U(1) coupling)");
        }
        let lat = ens.lattice;
        let configs = ens.read_configs(0, ens.n.min(1024))?;
        let g = data::two_point(&configs, lat);
        let m = data::magnetisations(&configs, lat);
        let (_, dmax) = data::field_scales(&configs[..ens.n.min(256) * lat.volume()], lat.volume());
        let sigma_min = 0.01;
        let schedule = SigmaSchedule { sigma_min, sigma_max: dmax.max(10.0 * sigma_min), t_eps: 1e-5 };
        let model = Box::new(PriorScoreModel::new(self.0, g, m, lat));
        Ok(PriorModel { model, theory: self.couplings(), schedule })
    }

    /// kappa/m2/lambda from the flags over the training couplings; beta is refused.
    fn target_couplings(&self, cfg: &SampleConfig) -> Result<Couplings> {
        let p = self.0;
        if let Some(b) = cfg.beta {
            bail!(input_err(anyhow!(
                "beta: {b} given, but the model is a phi4 model (its couplings are kappa or m2, and lambda)"
            )));
        }
        if cfg.kappa.is_none() && cfg.m2.is_none() && cfg.lambda.is_none() {
            return Ok(self.couplings());
        }
        let (kappa, m2) = match (cfg.kappa, cfg.m2, p) {
            (None, None, Parametrisation::Hopping { kappa, .. }) => (Some(kappa), None),
            (None, None, Parametrisation::Mass { m2, .. }) => (None, Some(m2)),
            (k, m, _) => (k, m),
        };
        let target = resolve_theory(kappa, m2, cfg.lambda.or(Some(p.lambda()))).map_err(input_err)?;
        Ok(Phi4Diffusion(target).couplings())
    }

    fn smc_ladder(
        &self,
        model: &dyn ScoreModel,
        lat: Lattice,
        settings: &SamplerSettings,
        cfg: &SampleConfig,
    ) -> Result<(ReverseKernel, Box<dyn SmcLevels>), String> {
        let kernel = ReverseKernel::new(model, lat, settings)?;
        let levels = Levels::new(model, Phi4::new(lat, self.0), settings.sigma_ladder(), cfg.smc_target)?
            .learnt_above(cfg.learnt_above.unwrap_or(0.0));
        Ok((kernel, Box::new(levels)))
    }

    fn multilevel_ladder(&self, lat: Lattice, cfg: &SampleConfig) -> Result<Box<dyn Ladder>, String> {
        let moves = (cfg.level_trajectories, cfg.level_flips);
        Ok(Box::new(Phi4Ladder::new(self.0, lat, cfg.coarsest, moves)?))
    }
}

/// The physics prior alone as a score model, no network: the baseline a trained network
/// must beat (`--model prior:ENSEMBLE.h5`, theory and G(p) from a φ⁴ ensemble).
pub struct PriorScoreModel {
    theory: Parametrisation,
    two_point: Vec<f64>,
    /// The data's magnetisations: the zero mode on `data_lattice`.
    magnetisation: Vec<f64>,
    data_lattice: Lattice,
    parts: PartsCache,
}

impl PriorScoreModel {
    pub fn new(theory: Parametrisation, two_point: Vec<f64>, magnetisation: Vec<f64>, data_lattice: Lattice) -> Self {
        PriorScoreModel { theory, two_point, magnetisation, data_lattice, parts: PartsCache::default() }
    }

    fn parts_on(&self, lat: Lattice) -> Result<Arc<ScoreParts>, String> {
        let m = if lat == self.data_lattice { &self.magnetisation[..] } else { &[] };
        let theory = Phi4Diffusion(self.theory);
        self.parts
            .get(lat, || theory.score_parts(ScoreForm::Physics, 1.0, self.two_point(lat), m, lat, theory.couplings()))
    }
}

impl ScoreModel for PriorScoreModel {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        lat.validate()
    }

    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        // A zero network output: the score is the prior's.
        self.parts_on(lat)?.compose(phi, sigma, &vec![0.0f32; phi.len()], out);
        Ok(())
    }

    fn physics_prior(&self, lat: Lattice) -> Option<Arc<PhysicsPrior>> {
        match &*self.parts_on(lat).ok()? {
            ScoreParts::Physics { prior, .. } => Some(prior.clone()),
            _ => None,
        }
    }

    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        data::nearest_momentum_two_point(&self.two_point, self.data_lattice, lat)
    }

    fn describe(&self) -> String {
        format!("physics prior alone ({}; G(p) from {} data)", self.theory.describe(), self.data_lattice)
    }
}
