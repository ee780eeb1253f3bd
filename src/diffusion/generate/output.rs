//! What every sampler's output shares: the target theory on the sampling lattice, the
//! timing of the network, the summary and the file's attributes.

use crate::config::SampleConfig;
use crate::diffusion::generate::plan::Plan;
use crate::diffusion::sample::INTERRUPTED;
use crate::diffusion::theories;
use crate::diffusion::theory::SampleTarget;
use crate::diffusion::ScoreModel;
use crate::dist::Comm;
use crate::io::{AttrValue, ConfigShape, EnsembleWriter};
use crate::lattice::Lattice;
use crate::theory::{Action, Couplings};
use crate::util::StopFlag;
use anyhow::Result;
use std::sync::atomic::{AtomicU64, Ordering};

/// Times the score evaluations, to report the share of sampling spent in the network.
pub struct Timed<'a> {
    inner: &'a dyn ScoreModel,
    nanos: AtomicU64,
    stop: Option<&'a StopFlag>,
}

impl<'a> Timed<'a> {
    pub fn new(inner: &'a dyn ScoreModel) -> Self {
        Timed { inner, nanos: AtomicU64::new(0), stop: None }
    }

    /// Every score evaluation fails once `stop` is raised: a batch of a huge lattice takes
    /// minutes, longer than a stop signal's grace period.
    pub fn stopping_on(self, stop: &'a StopFlag) -> Self {
        Timed { stop: Some(stop), ..self }
    }

    /// Seconds spent in `score` so far.
    pub fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

impl ScoreModel for Timed<'_> {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        self.inner.check_lattice(lat)
    }
    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        if self.stop.is_some_and(StopFlag::raised) {
            return Err(INTERRUPTED.into());
        }
        let t = std::time::Instant::now();
        let r = self.inner.score(lat, phi, sigma, out);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn has_action(&self) -> bool {
        self.inner.has_action()
    }
    fn action_values(
        &self,
        lat: Lattice,
        phi: &[f64],
        sigma: &[f64],
        action: &mut [f64],
        score: Option<&mut [f64]>,
    ) -> Result<(), String> {
        if self.stop.is_some_and(StopFlag::raised) {
            return Err(INTERRUPTED.into());
        }
        let t = std::time::Instant::now();
        let r = self.inner.action_values(lat, phi, sigma, action, score);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        self.inner.two_point(lat)
    }
    fn torus_dof(&self, lat: Lattice) -> Option<usize> {
        self.inner.torus_dof(lat)
    }
    fn device(&self) -> String {
        self.inner.device()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Whether the round's work was interrupted by a stop signal on any rank: then every rank
/// drops the round (the others would wait in its gather). Collective.
pub(crate) fn interrupted_anywhere<T, E: std::fmt::Display>(comm: &Comm, mine: &Option<Result<T, E>>) -> bool {
    let mut interrupted = [f64::from(u8::from(matches!(mine, Some(Err(e)) if e.to_string() == INTERRUPTED)))];
    comm.all_reduce_sum(&mut interrupted);
    interrupted[0] > 0.0
}

#[derive(Clone, Debug)]
pub struct SampleSummary {
    pub n: usize,
    pub seconds: f64,
    pub ess_fraction: Option<f64>,
    pub log_w_std: Option<f64>,
    pub acceptance: Option<f64>,
    /// pc with an action model: the MALA corrector's mean acceptance probability.
    pub corrector_acceptance: Option<f64>,
    pub network_share: f64,
    pub network_evals_per_s: f64,
}

/// The theory the samples are exact for, on the sampling lattice.
pub(crate) struct Target(Box<dyn SampleTarget>);

impl Target {
    pub(crate) fn new(lat: Lattice, c: Couplings) -> Self {
        Target(theories::of(c).target(lat))
    }

    pub(crate) fn action(&self) -> &dyn Action {
        self.0.action()
    }

    /// One configuration's shape in /configs (the theory's `dof_shape`).
    pub(crate) fn shape(&self) -> ConfigShape {
        self.0.shape()
    }

    pub(crate) fn refine(&self, configs: &mut [f64], seed: u64, first: u64, trajectories: usize) {
        self.0.refine(configs, seed, first, trajectories)
    }

    fn write_attrs(&self, w: &EnsembleWriter) -> Result<()> {
        self.0.write_attrs(w)
    }
}

pub(crate) fn write_attrs(
    w: &EnsembleWriter,
    cfg: &SampleConfig,
    p: &Plan,
    comm: &Comm,
    s: &SampleSummary,
) -> Result<()> {
    Target::new(p.lattice, p.target).write_attrs(w)?;
    w.set_attr("generator", AttrValue::Str("diffusion".into()))?;
    w.set_attr("model", AttrValue::Str(cfg.model.clone()))?;
    w.set_attr("model_description", AttrValue::Str(p.loaded.model.describe()))?;
    w.set_attr("model_theory", AttrValue::Str(p.loaded.theory.describe()))?;
    if let Some((key, value)) = theories::of(p.target).conditioning(p.loaded.theory) {
        w.set_attr(key, AttrValue::F64(value))?;
    }
    w.set_attr("device", AttrValue::Str(p.loaded.model.device()))?;
    if let Some(f) = &p.loaded.file {
        for (k, v) in &f.attrs {
            if k != "config" {
                w.set_attr(&format!("model_{k}"), v.clone())?;
            }
        }
        w.set_attr("model_train_lattice", AttrValue::I64s(vec![f.train_lattice.lt as i64, f.train_lattice.lx as i64]))?;
    }
    w.set_attr("sampler", AttrValue::Str(p.settings.sampler.name().into()))?;
    w.set_attr("kernel", AttrValue::Str(p.settings.kernel.name().into()))?;
    w.set_attr("steps", AttrValue::I64(p.settings.n_steps as i64))?;
    w.set_attr("sigma_min", AttrValue::F64(p.settings.sigma_min))?;
    w.set_attr("sigma_max", AttrValue::F64(p.settings.sigma_max))?;
    w.set_attr("sigma_ladder", AttrValue::F64s(p.settings.sigma_ladder()))?;
    w.set_attr("hmc_refine", AttrValue::I64(cfg.hmc_refine as i64))?;
    w.set_attr("metropolis", AttrValue::I64(i64::from(cfg.metropolis)))?;
    w.set_attr("seed", AttrValue::I64(cfg.seed as i64))?;
    w.set_attr("n_ranks", AttrValue::I64(comm.size() as i64))?;
    w.set_attr("n_chains", AttrValue::I64(1))?;
    // A run stopped by SIGTERM/SIGUSR1 keeps what it made: say so, and how much was asked.
    w.set_attr("n_requested", AttrValue::I64(cfg.n_configs as i64))?;
    w.set_attr("stopped_by_signal", AttrValue::I64(i64::from(s.n < cfg.n_configs)))?;
    if let Some(e) = s.ess_fraction {
        w.set_attr("ess_fraction", AttrValue::F64(e))?;
        w.set_attr("ess", AttrValue::F64(e * s.n as f64))?;
    }
    if let Some(x) = s.log_w_std {
        w.set_attr("log_weight_std", AttrValue::F64(x))?;
    }
    if let Some(a) = s.acceptance {
        w.set_attr("acceptance", AttrValue::F64(a))?;
    }
    if let Some(a) = s.corrector_acceptance {
        w.set_attr("corrector_acceptance", AttrValue::F64(a))?;
    }
    // The stored configuration says what ran: a theory may replace the asked-for kernel
    // (U(1)'s torus has only the em kernel), and the `kernel` attribute says the same.
    let mut ran = cfg.clone();
    ran.kernel = p.settings.kernel;
    w.set_attr("config", AttrValue::Str(crate::config::to_toml(&ran)))?;
    Ok(())
}
