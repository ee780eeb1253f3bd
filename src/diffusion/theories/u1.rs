//! U(1)'s diffusion pieces behind [`DiffusionTheory`]: link angles on the torus.

use anyhow::{anyhow, bail, Result};

use crate::config::{SampleConfig, ScoreForm, TrainConfig};
use crate::diffusion::data;
use crate::diffusion::form::ScoreParts;
use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::sample::settings::SamplerSettings;
use crate::diffusion::smc::SmcLevels;
use crate::diffusion::theory::{DiffusionTheory, PriorModel, SampleTarget};
use crate::diffusion::u1::levels::TorusLevels;
use crate::diffusion::u1::model::GaugePriorModel;
use crate::diffusion::u1::{prior, symmetry, GaugePrior, IN_CHANNELS, OUT_CHANNELS};
use crate::diffusion::ScoreModel;
use crate::error::input_err;
use crate::io::Ensemble;
use crate::lattice::Lattice;
use crate::nn::Arch;
use crate::rng::Stream;
use crate::theory::manifold::wrap_angle;
use crate::theory::{Couplings, Theory, U1};

/// U(1) at coupling β.
pub struct U1Diffusion {
    pub beta: f64,
}

impl DiffusionTheory for U1Diffusion {
    fn couplings(&self) -> Couplings {
        Couplings::U1 { beta: self.beta }
    }

    fn dof(&self, lat: Lattice) -> usize {
        2 * lat.volume()
    }

    fn target(&self, lat: Lattice) -> Box<dyn SampleTarget> {
        Box::new(U1::new(lat, self.beta))
    }

    fn labels(&self, lat: Lattice) -> Vec<(&'static str, String)> {
        U1::new(lat, self.beta).attrs().labels
    }

    fn check_form(&self, form: ScoreForm) -> Result<(), String> {
        match form {
            ScoreForm::Physics => Ok(()),
            f => Err(format!(
                "score_form: '{}' is not available for U(1) gauge fields (physics only: the angles live on a torus)",
                f.name()
            )),
        }
    }

    /// Plaquette cos/sin in, one score per link direction out, the bounded input unscaled.
    fn network_arch(&self, preset: Arch) -> Arch {
        Arch { in_channels: IN_CHANNELS, out_channels: OUT_CHANNELS, scaled_input: false, ..preset }
    }

    fn augment(&self, lat: Lattice, dst: &mut [f32], src: &[f32], rng: &mut Stream) {
        symmetry::augment_links(dst, src, lat, rng)
    }

    /// G(p) of the plaquette angles, recorded for information (no sampler kernel uses it).
    fn statistics(
        &self,
        lat: Lattice,
        cfg: &TrainConfig,
        stat_cfgs: &[f32],
        rows: &[f32],
    ) -> (f64, SigmaSchedule, Vec<f64>) {
        let u = U1::new(lat, 1.0);
        let plaq: Vec<f32> = rows
            .chunks(self.dof(lat))
            .flat_map(|c| {
                let t: Vec<f64> = c.iter().map(|&x| x as f64).collect();
                u.plaquette_angles(&t).into_iter().map(|a| wrap_angle(a) as f32)
            })
            .collect();
        let sched = prior::default_schedule(cfg.sigma_min, cfg.sigma_max);
        (prior::link_scale(lat, stat_cfgs), sched, data::two_point(&plaq, lat))
    }

    fn zero_mode_data(&self, _form: ScoreForm, _lat: Lattice, _rows: &[f32]) -> Vec<f64> {
        Vec::new()
    }

    /// The gauge prior at this β with the network's share scaled by β/β_train
    /// (β-conditioning, `form` docs).
    fn score_parts(
        &self,
        form: ScoreForm,
        sigma_data: f64,
        _g: Vec<f64>,
        _m: &[f64],
        lat: Lattice,
        trained: Couplings,
    ) -> Result<ScoreParts, String> {
        if form != ScoreForm::Physics {
            return Err(format!("score form {}: U(1) gauge fields take the physics form only", form.name()));
        }
        let prior = GaugePrior::new(lat, self.beta);
        let net_scale = match trained {
            Couplings::U1 { beta } => prior.beta / beta,
            _ => 1.0,
        };
        Ok(ScoreParts::Gauge { prior, sigma_data, net_scale })
    }

    fn torus_dof(&self, lat: Lattice) -> Option<usize> {
        Some(self.dof(lat))
    }

    fn can_condition_on(&self, target: Couplings) -> bool {
        match target {
            Couplings::U1 { beta } => beta > 0.0 && beta.is_finite(),
            other => other == self.couplings(),
        }
    }

    /// The prior is exact for any coupling at σ = 0, so it takes any β.
    fn prior_model(&self, _ens: &Ensemble, beta: Option<f64>) -> Result<PriorModel> {
        let beta = beta.unwrap_or(self.beta);
        Ok(PriorModel {
            model: Box::new(GaugePriorModel { beta }),
            theory: U1Diffusion { beta }.couplings(),
            schedule: prior::default_schedule(0.01, 0.0),
        })
    }

    /// β from the flags (it conditions the model on it); φ⁴'s couplings are refused.
    fn target_couplings(&self, cfg: &SampleConfig) -> Result<Couplings> {
        for (k, v) in [("kappa", cfg.kappa), ("m2", cfg.m2), ("lambda", cfg.lambda)] {
            if let Some(v) = v {
                bail!(input_err(anyhow!("{k}: {v} given, but the model is a U(1) gauge model (its coupling is beta)")));
            }
        }
        Ok(U1Diffusion { beta: cfg.beta.unwrap_or(self.beta) }.couplings())
    }

    fn conditioning(&self, trained: Couplings) -> Option<(&'static str, f64)> {
        match trained {
            // β-conditioning: the network's correction scaled by β/β_train.
            Couplings::U1 { beta } => Some(("beta_conditioning", self.beta / beta)),
            _ => None,
        }
    }

    fn smc_ladder(
        &self,
        _model: &dyn ScoreModel,
        lat: Lattice,
        settings: &SamplerSettings,
        cfg: &SampleConfig,
    ) -> Result<(ReverseKernel, Box<dyn SmcLevels>), String> {
        if cfg.exact_magnetisation {
            return Err("exact_magnetisation: a U(1) field has no magnetisation".into());
        }
        let kernel = ReverseKernel::torus(lat, settings, self.dof(lat))?;
        Ok((kernel, Box::new(TorusLevels::new(lat, self.beta, settings.sigma_ladder()))))
    }
}
