//! A trained network as a `ScoreModel`, and model loading by name (`free:…` or a file).

use crate::backend::Device;
use crate::diffusion::form::PartsCache;
use crate::diffusion::form::{ScoreForm, ScoreParts};
use crate::diffusion::net::engine::{NetEngine, Weights};
use crate::diffusion::net::model_file::ModelFile;
use crate::diffusion::objective::{CpuDsmWorkspace, SigmaSchedule};
use crate::diffusion::phi4::free::FreeScoreModel;
use crate::diffusion::phi4::prior::PhysicsPrior;
use crate::diffusion::theories;
use crate::diffusion::ScoreModel;
use crate::lattice::Lattice;
use crate::nn::{ActionArch, Arch, Network};
use crate::theory::Couplings;
use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};

pub struct NetworkScoreModel {
    pub arch: Arch,
    /// G(p) of the training data on `train_lattice` (the matched kernel's propagator).
    pub two_point: Vec<f64>,
    pub train_lattice: Lattice,
    /// The training data's magnetisations: the prior's zero mode on `train_lattice`
    /// (empty in files written before it, which keep the Gaussian zero mode).
    pub magnetisation: Vec<f64>,
    pub form: ScoreForm,
    /// The action network of the action form (the U-Net otherwise).
    pub action: Option<ActionArch>,
    /// The training theory: the physics prior's action on every lattice.
    theory: Couplings,
    /// The theory sampled (U(1): another β than the training one conditions the score on
    /// it, `form` docs); the training theory unless `conditioned_on` says otherwise.
    target: Couplings,
    label: String,
    /// The network with its weights on the chosen device, built at the first evaluation so
    /// that every input check comes before the device is touched.
    engine: Mutex<Slot>,
    /// The score form's parts per sampling lattice (the prior needs G(p) carried to it).
    parts: PartsCache,
}

enum Slot {
    Pending(Device, Vec<f32>),
    Ready(Box<dyn NetEngine>),
}

impl NetworkScoreModel {
    /// The EMA weights (used for sampling) unless `ema` is false, on `device`. Fails on a
    /// score form this version does not know, and on non-finite weights (a diverged
    /// training): they would give NaN configurations and weights, not an error.
    pub fn new(file: &ModelFile, ema: bool, device: Device) -> Result<Self> {
        let params = if ema { &file.ema } else { &file.params };
        if let Some(i) = params.iter().position(|x| !x.is_finite()) {
            return Err(anyhow!(
                "model: its {} weights are not finite (parameter {i} is {}): the training diverged",
                if ema { "EMA" } else { "current (--no-ema)" },
                params[i]
            ));
        }
        let preset = file.attr("preset").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let form = model_form(file)?;
        let label = format!(
            "network {preset}, {} score ({} parameters) trained on {} at step {}",
            form.name(),
            params.len(),
            file.train_lattice,
            file.step
        );
        let theory = theories::built(file.couplings()?).map_err(|e| anyhow!("model: {e}"))?;
        let action = file.action_arch()?;
        if (form == ScoreForm::Action) != action.is_some() {
            return Err(anyhow!(
                "model: score form {} but {} action network description ('{}')",
                form.name(),
                if action.is_some() { "an" } else { "no" },
                crate::diffusion::net::model_file::ACTION_ARCH
            ));
        }
        let (arch, tp, lat) = (file.arch.clone(), file.two_point.clone(), file.train_lattice);
        let mut m = Self::from_parts(arch, form, theory, params, tp, lat, label, device)
            .with_magnetisation(file.magnetisation.clone());
        m.action = action;
        Ok(m)
    }

    /// A network with given weights, form and data propagator (benchmarks use random weights).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        arch: Arch,
        form: ScoreForm,
        theory: Couplings,
        params: &[f32],
        two_point: Vec<f64>,
        train_lattice: Lattice,
        label: String,
        device: Device,
    ) -> Self {
        let engine = Mutex::new(Slot::Pending(device, params.to_vec()));
        let parts = PartsCache::default();
        let magnetisation = Vec::new();
        let action = None;
        let target = theory;
        NetworkScoreModel {
            arch,
            two_point,
            train_lattice,
            magnetisation,
            form,
            action,
            theory,
            target,
            label,
            engine,
            parts,
        }
    }

    /// The model sampling `target` instead of its training theory: for U(1), the prior at the
    /// target β and the network's correction scaled by β/β_train (exact as σ → 0). Other
    /// changes of theory are refused.
    pub fn conditioned_on(mut self, target: Couplings) -> Result<Self, String> {
        if !theories::of(self.theory).can_condition_on(target) {
            let (a, b) = (self.theory, target);
            return Err(format!(
                "model: trained on {} {}; it cannot be conditioned on {} {}",
                a.name(),
                a.describe(),
                b.name(),
                b.describe()
            ));
        }
        self.target = target;
        self.parts = PartsCache::default();
        Ok(self)
    }

    /// The model with its training data's magnetisations (see the field).
    pub fn with_magnetisation(mut self, magnetisation: Vec<f64>) -> Self {
        self.magnetisation = magnetisation;
        self
    }

    /// The score form's parts on `lat` (built once per lattice).
    pub fn parts(&self, lat: Lattice) -> Result<Arc<ScoreParts>, String> {
        let m = if lat == self.train_lattice { &self.magnetisation[..] } else { &[] };
        self.parts.get(lat, || {
            let g = self.two_point(lat);
            theories::of(self.target).score_parts(self.form, self.arch.sigma_data, g, m, lat, self.theory)
        })
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut dyn NetEngine) -> Result<R>) -> Result<R> {
        let mut slot = self.engine.lock().map_err(|_| anyhow!("a previous network evaluation panicked"))?;
        if let Slot::Pending(device, params) = &*slot {
            let e = match &self.action {
                Some(a) => {
                    crate::diffusion::net::build::action(*device, a.clone(), self.arch.sigma_data, params, None)?
                }
                None => crate::diffusion::net::build::unet(*device, self.arch.clone(), params, None)?,
            };
            *slot = Slot::Ready(e);
        }
        match &mut *slot {
            Slot::Ready(e) => f(e.as_mut()),
            Slot::Pending(..) => unreachable!(),
        }
    }
}

impl ScoreModel for NetworkScoreModel {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        if self.action.is_some() {
            // A sum of 3×3-local terms: defined on every periodic lattice.
            return lat.validate();
        }
        let s = self.arch.stride();
        if lat.lt % s != 0 || lat.lx % s != 0 {
            return Err(format!("lattice: {lat} is not divisible by 2^levels = {s} of this network"));
        }
        Ok(())
    }

    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        let parts = self.parts(lat)?;
        let x = parts.network_input(phi);
        let sig32: Vec<f32> = sigma.iter().map(|&x| x as f32).collect();
        // One output per degree of freedom, like the field.
        let mut f = vec![0.0f32; phi.len()];
        self.with_engine(|e| e.output(Weights::Current, lat, &x, &sig32, &mut f))
            .map_err(|e| format!("network: {e:#}"))?;
        parts.compose(phi, sigma, &f, out);
        Ok(())
    }

    fn has_action(&self) -> bool {
        self.action.is_some()
    }

    fn action_values(
        &self,
        lat: Lattice,
        phi: &[f64],
        sigma: &[f64],
        action: &mut [f64],
        score: Option<&mut [f64]>,
    ) -> Result<(), String> {
        if !self.has_action() {
            return Err(format!("{} has no learnt action (only score form action has one)", self.label));
        }
        let parts = self.parts(lat)?;
        let phi32: Vec<f32> = phi.iter().map(|&x| x as f32).collect();
        let sig32: Vec<f32> = sigma.iter().map(|&x| x as f32).collect();
        let mut s32 = vec![0.0f32; sigma.len()];
        let mut f = score.as_ref().map(|_| vec![0.0f32; phi.len()]);
        self.with_engine(|e| e.actions(Weights::Current, lat, &phi32, &sig32, &mut s32, f.as_deref_mut()))
            .map_err(|e| format!("network: {e:#}"))?;
        action.iter_mut().zip(&s32).for_each(|(a, s)| *a = *s as f64);
        if let (Some(out), Some(f)) = (score, f) {
            parts.compose(phi, sigma, &f, out);
        }
        Ok(())
    }

    fn device(&self) -> String {
        self.with_engine(|e| Ok(e.describe())).unwrap_or_else(|e| format!("unavailable ({e:#})"))
    }

    fn torus_dof(&self, lat: Lattice) -> Option<usize> {
        theories::of(self.theory).torus_dof(lat)
    }

    fn physics_prior(&self, lat: Lattice) -> Option<Arc<PhysicsPrior>> {
        match &*self.parts(lat).ok()? {
            ScoreParts::Physics { prior, .. } => Some(prior.clone()),
            _ => None,
        }
    }

    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        match self.form {
            ScoreForm::Plain | ScoreForm::Action => {
                crate::diffusion::data::resample_two_point(&self.two_point, self.train_lattice, lat)
            }
            // The prior needs a G(p) without spurious near-zeros (see the function).
            ScoreForm::Physics => {
                crate::diffusion::data::nearest_momentum_two_point(&self.two_point, self.train_lattice, lat)
            }
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// Whether `spec` names a model file of the action form (decides the device before the
/// model is loaded; a file that cannot be read is reported by the load itself).
pub fn is_action_model(spec: &str) -> bool {
    if spec.contains(':') && !std::path::Path::new(spec).exists() {
        return false;
    }
    ModelFile::read(std::path::Path::new(spec)).is_ok_and(|f| matches!(model_form(&f), Ok(ScoreForm::Action)))
}

/// The score form a model file records (plain for files older than score forms).
pub fn model_form(file: &ModelFile) -> Result<ScoreForm> {
    let attr = file.attr("score_form").map(|v| v.as_str().map(str::to_string).unwrap_or_default());
    ScoreForm::from_attr(attr.as_deref()).map_err(|e| anyhow!("model: {e}"))
}

/// Bytes of network workspace per configuration of `arch` on `lat` (for batch sizing and
/// the memory estimate). Every buffer is a fixed part (the σ embedding) plus a part
/// proportional to the sites, so two small workspaces give the line through both: the
/// workspace of a lattice too large to allocate is never built to be measured.
pub fn workspace_bytes_per_config(arch: &crate::nn::Arch, lat: Lattice) -> usize {
    let net = Network::new(arch.clone());
    let s = 2 * arch.stride();
    let at = |l: usize| CpuDsmWorkspace::<f32>::new(&net, 1, l, l).net.bytes() as f64;
    let (v0, v1) = ((s * s) as f64, (4 * s * s) as f64);
    let (b0, b1) = (at(s), at(2 * s));
    let per_site = (b1 - b0) / (v1 - v0);
    (b0 + per_site * (lat.volume() as f64 - v0)).max(0.0) as usize
}

/// A loaded model with what the sampler needs besides the score.
pub struct LoadedModel {
    pub model: Box<dyn ScoreModel>,
    /// The theory it was trained on (or is exact for).
    pub theory: Couplings,
    /// Its training lattice, if it has one.
    pub lattice: Option<Lattice>,
    /// Its noise range, if trained.
    pub schedule: Option<SigmaSchedule>,
    pub spec: String,
    pub file: Option<ModelFile>,
    pub stride: usize,
}

/// The prior of an ensemble's theory (U(1): at `beta` when given, the prior being exact
/// for any coupling at σ = 0; φ⁴ takes no beta).
fn load_prior(spec: &str, path: &str, beta: Option<f64>) -> Result<LoadedModel> {
    let ens = crate::io::Ensemble::open(std::path::Path::new(path))?;
    let couplings = theories::built(ens.couplings()?).map_err(|e| crate::error::input_err(anyhow!("{path}: {e}")))?;
    let prior = theories::of(couplings).prior_model(&ens, beta)?;
    Ok(LoadedModel {
        model: prior.model,
        theory: prior.theory,
        lattice: Some(ens.lattice),
        schedule: Some(prior.schedule),
        spec: spec.into(),
        file: None,
        stride: 1,
    })
}

/// `free:kappa=0.2` / `free:m2=0.5` (exact analytic score), `prior:ENSEMBLE.h5` (the physics
/// prior of an ensemble's theory and two-point function) or a model file, with a network
/// placed on `device`. A spec or file that cannot be read is bad input (`error::InputError`);
/// a device that fails is not.
pub fn load(spec: &str, ema: bool, device: Device) -> Result<LoadedModel> {
    load_conditioned(spec, ema, device, None)
}

/// As [`load`], a U(1) model conditioned on `beta` when given (`conditioned_on`); the
/// loaded model's `theory` stays the training theory.
pub fn load_conditioned(spec: &str, ema: bool, device: Device, beta: Option<f64>) -> Result<LoadedModel> {
    let input = crate::error::input_err;
    if let Some(path) = spec.strip_prefix("prior:") {
        return load_prior(spec, path, beta).map_err(|e| input(anyhow!("model: {e:#}")));
    }
    if spec.starts_with("free:") {
        let m = FreeScoreModel::parse(spec).map_err(|e| input(anyhow!("model: {e}")))?;
        let theory = Couplings::Phi4(m.param());
        return Ok(LoadedModel {
            model: Box::new(m),
            theory,
            lattice: None,
            schedule: None,
            spec: spec.into(),
            file: None,
            stride: 1,
        });
    }
    let file = ModelFile::read(std::path::Path::new(spec)).map_err(|e| input(anyhow!("model: {e}")))?;
    let theory = file.couplings().map_err(|e| input(anyhow!("model: {e}")))?;
    let lattice = Some(file.train_lattice);
    let schedule = Some(file.schedule);
    let mut m = NetworkScoreModel::new(&file, ema, device).map_err(input)?;
    if let Some(beta) = beta {
        m = m.conditioned_on(Couplings::U1 { beta }).map_err(|e| input(anyhow!(e)))?;
    }
    let stride = if m.action.is_some() { 1 } else { file.arch.stride() };
    Ok(LoadedModel { model: Box::new(m), theory, lattice, schedule, spec: spec.into(), file: Some(file), stride })
}

#[cfg(test)]
/// An action-form score model of the tiny action network with `random_action_params` and
/// σ_data = 0.8 (so c_in ≠ 1 at every σ).
pub(crate) fn random_action_model(lat: Lattice, seed: u64) -> NetworkScoreModel {
    let unet = crate::nn::Arch { sigma_data: 0.8, ..crate::nn::Arch::tiny() };
    let theory = crate::theory::Couplings::Phi4(crate::theory::Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
    let (form, device) = (crate::diffusion::form::ScoreForm::Action, crate::backend::Device::Cpu);
    let params = crate::diffusion::net::action_engine::random_action_params(seed);
    let g = vec![1.0; lat.volume()];
    let mut m = NetworkScoreModel::from_parts(unet, form, theory, &params, g, lat, "test".into(), device);
    m.action = Some(ActionArch::tiny());
    m
}

#[cfg(test)]
#[path = "action_model_tests.rs"]
mod action_model_tests;
