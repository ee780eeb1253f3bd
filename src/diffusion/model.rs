//! A trained network as a `ScoreModel`, and model loading by name (`free:…` or a file).

use super::free::FreeScoreModel;
use super::objective::{score, DsmWorkspace, SigmaSchedule};
use super::ScoreModel;
use crate::io::model::ModelFile;
use crate::lattice::Lattice;
use crate::nn::Network;
use crate::theory::Parametrisation;
use anyhow::{anyhow, Result};
use std::sync::Mutex;

pub struct NetworkScoreModel {
    pub net: Network,
    pub params: Vec<f32>,
    /// G(p) of the training data on `train_lattice` (the matched kernel's propagator).
    pub two_point: Vec<f64>,
    pub train_lattice: Lattice,
    label: String,
    /// Workspaces are sized by (batch, lattice); the last one is reused.
    ws: Mutex<Option<(usize, Lattice, DsmWorkspace<f32>)>>,
}

impl NetworkScoreModel {
    /// The EMA weights (used for sampling) unless `ema` is false.
    pub fn new(file: &ModelFile, ema: bool) -> Self {
        let params = if ema { file.ema.clone() } else { file.params.clone() };
        let preset = file.attr("preset").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let label = format!(
            "network {preset} ({} parameters) trained on {} at step {}",
            params.len(),
            file.train_lattice,
            file.step
        );
        Self::from_parts(Network::new(file.arch.clone()), params, file.two_point.clone(), file.train_lattice, label)
    }

    /// A network with given weights and data propagator (benchmarks use random weights).
    pub fn from_parts(
        net: Network,
        params: Vec<f32>,
        two_point: Vec<f64>,
        train_lattice: Lattice,
        label: String,
    ) -> Self {
        NetworkScoreModel { net, params, two_point, train_lattice, label, ws: Mutex::new(None) }
    }
}

impl ScoreModel for NetworkScoreModel {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        let s = self.net.arch.stride();
        if lat.lt % s != 0 || lat.lx % s != 0 {
            return Err(format!("lattice: {lat} is not divisible by 2^levels = {s} of this network"));
        }
        Ok(())
    }

    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) {
        let b = sigma.len();
        let mut guard = self.ws.lock().expect("workspace lock");
        if !matches!(&*guard, Some((bb, l, _)) if *bb == b && *l == lat) {
            *guard = Some((b, lat, DsmWorkspace::new(&self.net, b, lat.lt, lat.lx)));
        }
        let ws = &mut guard.as_mut().unwrap().2;
        let phi32: Vec<f32> = phi.iter().map(|&x| x as f32).collect();
        let sig32: Vec<f32> = sigma.iter().map(|&x| x as f32).collect();
        let mut s = vec![0.0f32; phi.len()];
        score(&self.net, &self.params, &phi32, &sig32, &mut s, ws);
        for (o, v) in out.iter_mut().zip(&s) {
            *o = *v as f64;
        }
    }

    /// The training ensemble's G(p). On another lattice: its position-space G(x) within half
    /// the training extent of the origin (zero beyond), transformed on the new lattice, and
    /// kept positive; exact only on the training lattice, but the weights stay exact anyway.
    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        super::data::resample_two_point(&self.two_point, self.train_lattice, lat)
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// Bytes of network workspace per configuration of `arch` on `lat` (for batch sizing).
pub fn workspace_bytes_per_config(arch: &crate::nn::Arch, lat: Lattice) -> usize {
    DsmWorkspace::<f32>::new(&Network::new(arch.clone()), 1, lat.lt, lat.lx).net.bytes()
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

/// `free:kappa=0.2` / `free:m2=0.5` (exact analytic score) or a model file.
pub fn load(spec: &str, ema: bool) -> Result<LoadedModel> {
    if spec.starts_with("free:") {
        let m = FreeScoreModel::parse(spec).map_err(|e| anyhow!("model: {e}"))?;
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
    let file = ModelFile::read(std::path::Path::new(spec)).map_err(|e| anyhow!("model: {e}"))?;
    let theory = file.theory().map_err(|e| anyhow!("model: {e}"))?;
    let lattice = Some(file.train_lattice);
    let schedule = Some(file.schedule);
    let stride = file.arch.stride();
    let m = NetworkScoreModel::new(&file, ema);
    Ok(LoadedModel { model: Box::new(m), theory, lattice, schedule, spec: spec.into(), file: Some(file), stride })
}
