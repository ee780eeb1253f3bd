//! What a theory brings to diffusion: the one interface every theory-specific piece of
//! training, the score forms, the samplers and SMC reach it through. φ⁴'s implementation is
//! `theories::phi4::Phi4Diffusion`, U(1)'s `theories::u1::U1Diffusion`; `theories::of` is the
//! one place that picks one from `Couplings`.

use anyhow::Result;

use crate::config::{SampleConfig, ScoreForm, TrainConfig};
use crate::diffusion::form::ScoreParts;
use crate::diffusion::multilevel::Ladder;
use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::sample::settings::SamplerSettings;
use crate::diffusion::smc::SmcLevels;
use crate::diffusion::ScoreModel;
use crate::io::{ConfigShape, Ensemble, EnsembleWriter};
use crate::lattice::Lattice;
use crate::nn::Arch;
use crate::rng::Stream;
use crate::theory::{Action, Couplings, Theory};

/// A theory's diffusion pieces at given couplings, on any lattice.
pub trait DiffusionTheory: Send + Sync {
    fn couplings(&self) -> Couplings;

    /// Values per configuration on `lat` (φ⁴: V; U(1): 2V link angles).
    fn dof(&self, lat: Lattice) -> usize;

    /// The action the samples are exact for, on `lat`, with what the output files need.
    fn target(&self, lat: Lattice) -> Box<dyn SampleTarget>;

    /// What a model file records of the theory (`Theory::attrs`).
    fn labels(&self, lat: Lattice) -> Vec<(&'static str, String)>;

    // Training.

    /// Why `form` cannot score this theory's fields, if it cannot.
    fn check_form(&self, form: ScoreForm) -> Result<(), String>;

    /// The preset's network with the theory's channels.
    fn network_arch(&self, preset: Arch) -> Arch;

    /// A random symmetry image of a configuration (`data::Augment`).
    fn augment(&self, lat: Lattice, dst: &mut [f32], src: &[f32], rng: &mut Stream);

    /// σ_data, the default noise range and the data's two-point function G(p).
    fn statistics(
        &self,
        lat: Lattice,
        cfg: &TrainConfig,
        stat_cfgs: &[f32],
        rows: &[f32],
    ) -> (f64, SigmaSchedule, Vec<f64>);

    /// What the model file keeps of the data for the score form's prior (φ⁴'s physics form:
    /// the magnetisations, its exact zero mode); empty where nothing is kept.
    fn zero_mode_data(&self, form: ScoreForm, lat: Lattice, rows: &[f32]) -> Vec<f64>;

    // Models.

    /// The parts of `form` on `lat` for a model trained at `trained` that samples this
    /// theory: the prior with the data's two-point function `g` carried to `lat` and the
    /// zero-mode data `m` (empty: none).
    fn score_parts(
        &self,
        form: ScoreForm,
        sigma_data: f64,
        g: Vec<f64>,
        m: &[f64],
        lat: Lattice,
        trained: Couplings,
    ) -> Result<ScoreParts, String>;

    /// For a field of angles on the torus, their number per configuration on `lat`.
    fn torus_dof(&self, _lat: Lattice) -> Option<usize> {
        None
    }

    /// Whether a model trained on this theory may sample `target` (U(1): any β, the
    /// network's correction scaled by β/β_train).
    fn can_condition_on(&self, target: Couplings) -> bool {
        target == self.couplings()
    }

    /// The prior alone as a model (`--model prior:ENSEMBLE.h5`), at `beta` where given.
    fn prior_model(&self, ens: &Ensemble, beta: Option<f64>) -> Result<PriorModel>;

    // Sampling.

    /// The couplings the samples are exact for: the training theory with whatever the
    /// sample flags give instead.
    fn target_couplings(&self, cfg: &SampleConfig) -> Result<Couplings>;

    /// The attribute that records a change of coupling from the training theory
    /// (U(1): `beta_conditioning` = β/β_train), if any.
    fn conditioning(&self, _trained: Couplings) -> Option<(&'static str, f64)> {
        None
    }

    /// SMC's reverse kernel and ladder of targets on `lat` for `model`.
    fn smc_ladder(
        &self,
        model: &dyn ScoreModel,
        lat: Lattice,
        settings: &SamplerSettings,
        cfg: &SampleConfig,
    ) -> Result<(ReverseKernel, Box<dyn SmcLevels>), String>;

    /// The multilevel sampler's ladder from `cfg.coarsest` up to `lat` (`--sampler
    /// multilevel`); an error for a theory that has none.
    fn multilevel_ladder(&self, lat: Lattice, cfg: &SampleConfig) -> Result<Box<dyn Ladder>, String> {
        let _ = (lat, cfg);
        Err(format!("sampler: multilevel is built for phi4 only (the target theory is {})", self.couplings().name()))
    }
}

/// The prior of an ensemble's theory as a score model.
pub struct PriorModel {
    pub model: Box<dyn ScoreModel>,
    pub theory: Couplings,
    pub schedule: SigmaSchedule,
}

/// The theory the samples are exact for, on the sampling lattice.
pub trait SampleTarget: Send + Sync {
    fn action(&self) -> &dyn Action;

    /// One configuration's shape in /configs (the theory's `dof_shape`).
    fn shape(&self) -> ConfigShape;

    /// `trajectories` HMC trajectories of the true action from each configuration.
    fn refine(&self, configs: &mut [f64], seed: u64, first: u64, trajectories: usize);

    /// The theory's attributes of an output file.
    fn write_attrs(&self, w: &EnsembleWriter) -> Result<()>;

    /// The action alone, owned.
    fn into_action(self: Box<Self>) -> Box<dyn Action + Send>;
}

impl<T: Theory + Sync + 'static> SampleTarget for T {
    fn action(&self) -> &dyn Action {
        self
    }

    fn shape(&self) -> ConfigShape {
        ConfigShape::new(self.dof_shape(self.lattice())).expect("a theory's configuration shape")
    }

    fn refine(&self, configs: &mut [f64], seed: u64, first: u64, trajectories: usize) {
        crate::diffusion::sample::refine::hmc_refine(self, configs, seed, first, trajectories)
    }

    fn write_attrs(&self, w: &EnsembleWriter) -> Result<()> {
        crate::mc::ensemble::theory_attrs(w, self, self.lattice())
    }

    fn into_action(self: Box<Self>) -> Box<dyn Action + Send> {
        self
    }
}
