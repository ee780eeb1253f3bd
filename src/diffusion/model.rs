//! A trained network as a `ScoreModel`, and model loading by name (`free:…` or a file).

use super::engine::{self, NetEngine, Weights};
use super::free::FreeScoreModel;
use super::objective::{CpuDsmWorkspace, SigmaSchedule};
use super::ScoreModel;
use crate::backend::Device;
use crate::io::model::ModelFile;
use crate::lattice::Lattice;
use crate::nn::{Arch, Network};
use crate::theory::Parametrisation;
use anyhow::{anyhow, Result};
use std::sync::Mutex;

pub struct NetworkScoreModel {
    pub arch: Arch,
    /// G(p) of the training data on `train_lattice` (the matched kernel's propagator).
    pub two_point: Vec<f64>,
    pub train_lattice: Lattice,
    label: String,
    /// The network with its weights on the chosen device, built at the first evaluation so
    /// that every input check comes before the device is touched.
    engine: Mutex<Slot>,
}

enum Slot {
    Pending(Device, Vec<f32>),
    Ready(Box<dyn NetEngine>),
}

impl NetworkScoreModel {
    /// The EMA weights (used for sampling) unless `ema` is false, on `device`.
    pub fn new(file: &ModelFile, ema: bool, device: Device) -> Self {
        let params = if ema { &file.ema } else { &file.params };
        let preset = file.attr("preset").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let label = format!(
            "network {preset} ({} parameters) trained on {} at step {}",
            params.len(),
            file.train_lattice,
            file.step
        );
        Self::from_parts(file.arch.clone(), params, file.two_point.clone(), file.train_lattice, label, device)
    }

    /// A network with given weights and data propagator (benchmarks use random weights).
    pub fn from_parts(
        arch: Arch,
        params: &[f32],
        two_point: Vec<f64>,
        train_lattice: Lattice,
        label: String,
        device: Device,
    ) -> Self {
        let engine = Mutex::new(Slot::Pending(device, params.to_vec()));
        NetworkScoreModel { arch, two_point, train_lattice, label, engine }
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut dyn NetEngine) -> Result<R>) -> Result<R> {
        let mut slot = self.engine.lock().map_err(|_| anyhow!("a previous network evaluation panicked"))?;
        if let Slot::Pending(device, params) = &*slot {
            let e = engine::build(*device, self.arch.clone(), params, None)?;
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
        let s = self.arch.stride();
        if lat.lt % s != 0 || lat.lx % s != 0 {
            return Err(format!("lattice: {lat} is not divisible by 2^levels = {s} of this network"));
        }
        Ok(())
    }

    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        let phi32: Vec<f32> = phi.iter().map(|&x| x as f32).collect();
        let sig32: Vec<f32> = sigma.iter().map(|&x| x as f32).collect();
        let mut s = vec![0.0f32; phi.len()];
        self.with_engine(|e| e.score(Weights::Current, lat, &phi32, &sig32, &mut s))
            .map_err(|e| format!("network: {e:#}"))?;
        for (o, v) in out.iter_mut().zip(&s) {
            *o = *v as f64;
        }
        Ok(())
    }

    fn device(&self) -> String {
        self.with_engine(|e| Ok(e.describe())).unwrap_or_else(|e| format!("unavailable ({e:#})"))
    }

    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        super::data::resample_two_point(&self.two_point, self.train_lattice, lat)
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// Bytes of network workspace per configuration of `arch` on `lat` (for batch sizing).
pub fn workspace_bytes_per_config(arch: &crate::nn::Arch, lat: Lattice) -> usize {
    CpuDsmWorkspace::<f32>::new(&Network::new(arch.clone()), 1, lat.lt, lat.lx).net.bytes()
}

/// A loaded model with what the sampler needs besides the score.
pub struct LoadedModel {
    pub model: Box<dyn ScoreModel>,
    /// The theory it was trained on (or is exact for).
    pub theory: Parametrisation,
    /// Its training lattice, if it has one.
    pub lattice: Option<Lattice>,
    /// Its noise range, if trained.
    pub schedule: Option<SigmaSchedule>,
    pub spec: String,
    pub file: Option<ModelFile>,
    pub stride: usize,
}

/// `free:kappa=0.2` / `free:m2=0.5` (exact analytic score) or a model file, with a network
/// placed on `device`. A spec or file that cannot be read is bad input (`cli::InputError`);
/// a device that fails is not.
pub fn load(spec: &str, ema: bool, device: Device) -> Result<LoadedModel> {
    let input = crate::cli::input_err;
    if spec.starts_with("free:") {
        let m = FreeScoreModel::parse(spec).map_err(|e| input(anyhow!("model: {e}")))?;
        let theory = m.param();
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
    let theory = file.theory().map_err(|e| input(anyhow!("model: {e}")))?;
    let lattice = Some(file.train_lattice);
    let schedule = Some(file.schedule);
    let stride = file.arch.stride();
    let m = NetworkScoreModel::new(&file, ema, device);
    Ok(LoadedModel { model: Box::new(m), theory, lattice, schedule, spec: spec.into(), file: Some(file), stride })
}
