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
    pub file: ModelFile,
    /// Workspaces are sized by (batch, lattice); the last one is reused.
    ws: Mutex<Option<(usize, Lattice, DsmWorkspace<f32>)>>,
}

impl NetworkScoreModel {
    /// The EMA weights (used for sampling) unless `ema` is false.
    pub fn new(file: ModelFile, ema: bool) -> Self {
        let net = Network::new(file.arch.clone());
        let params = if ema { file.ema.clone() } else { file.params.clone() };
        NetworkScoreModel { net, params, file, ws: Mutex::new(None) }
    }

    /// Bytes of network workspace per configuration on `lat` (for batch sizing).
    pub fn bytes_per_config(&self, lat: Lattice) -> usize {
        DsmWorkspace::<f32>::new(&self.net, 1, lat.lt, lat.lx).net.bytes()
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
        let tl = self.file.train_lattice;
        let g = &self.file.two_point;
        if lat == tl {
            return g.clone();
        }
        let (lt, lx, tt, tx) = (lat.lt, lat.lx, tl.lt, tl.lx);
        let pi2 = 2.0 * std::f64::consts::PI;
        // G(x) = (1/V) Σ_p G(p) cos(p·x) on the training lattice (G is even in p).
        let vt = tl.volume() as f64;
        let mut gx = vec![0.0; tl.volume()];
        for t in 0..tt {
            for x in 0..tx {
                let mut s = 0.0;
                for kt in 0..tt {
                    for kx in 0..tx {
                        let ph = pi2 * (kt * t) as f64 / tt as f64 + pi2 * (kx * x) as f64 / tx as f64;
                        s += g[kt * tx + kx] * ph.cos();
                    }
                }
                gx[t * tx + x] = s / vt;
            }
        }
        let signed = |i: usize, l: usize| -> i64 {
            if i <= l / 2 {
                i as i64
            } else {
                i as i64 - l as i64
            }
        };
        let mut out = vec![0.0; lat.volume()];
        for kt in 0..lt {
            for kx in 0..lx {
                let mut s = 0.0;
                for t in 0..tt {
                    for x in 0..tx {
                        let (dt, dx) = (signed(t, tt), signed(x, tx));
                        if (2 * dt.abs() as usize) > lt || (2 * dx.abs() as usize) > lx {
                            continue;
                        }
                        let ph = pi2 * (kt as f64 * dt as f64) / lt as f64 + pi2 * (kx as f64 * dx as f64) / lx as f64;
                        s += gx[t * tx + x] * ph.cos();
                    }
                }
                out[kt * lx + kx] = s;
            }
        }
        let gmax = out.iter().cloned().fold(0.0, f64::max);
        out.iter_mut().for_each(|x| *x = x.max(1e-6 * gmax.max(1e-12)));
        out
    }

    fn describe(&self) -> String {
        format!(
            "network {} ({} parameters) trained on {} at step {}",
            self.file.attr("preset").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            self.params.len(),
            self.file.train_lattice,
            self.file.step
        )
    }
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
    let m = NetworkScoreModel::new(file.clone(), ema);
    Ok(LoadedModel { model: Box::new(m), theory, lattice, schedule, spec: spec.into(), file: Some(file), stride })
}
