//! A checked training set up to run: the data statistics (fresh, or the checkpoint's), the
//! score form's parts, the parameters and optimiser (fresh, or restored bit for bit), this
//! rank's batch slots and their random streams, the engine, the held-out set.

use crate::backend::Device;
use crate::config::TrainConfig;
use crate::diffusion::data::{self, Shard};
use crate::diffusion::form::ScoreParts;
use crate::diffusion::net::engine::NetEngine;
use crate::diffusion::net::model_file::LossHistory;
use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::train::plan::Plan;
use crate::diffusion::train::validation::Validation;
use crate::dist::{block_of, Comm};
use crate::error::input_err as input;
use crate::nn::optim::{AdamW, AdamWConfig};
use crate::nn::{ActionNet, Arch, Network, ParamLayout};
use crate::rng::{self, Domain, Stream};
use anyhow::{anyhow, Result};

pub(super) struct Trainer<'a> {
    pub cfg: &'a TrainConfig,
    pub comm: &'a Comm,
    pub plan: Plan,
    /// The network with the data's σ_data.
    pub arch: Arch,
    pub layout: ParamLayout,
    pub parts: ScoreParts,
    pub schedule: SigmaSchedule,
    pub two_point: Vec<f64>,
    pub magnetisation: Vec<f64>,
    pub engine: Box<dyn NetEngine>,
    /// This rank's batch slots [j0, j1) and their streams.
    pub slot_range: (usize, usize),
    pub slots: Vec<Stream>,
    pub shard: Shard,
    /// The held-out set (root only; empty elsewhere).
    pub val: Validation,
    pub start_step: u64,
    /// The loss curve, continued from the checkpoint on `--resume`.
    pub history: LossHistory,
}

impl<'a> Trainer<'a> {
    pub fn new(cfg: &'a TrainConfig, comm: &'a Comm, device: Device, plan: Plan) -> Result<Self> {
        let (arch, schedule, two_point, magnetisation) = statistics(cfg, &plan)?;
        let net = Network::new(arch.clone());
        let action_net = plan.action0.clone().map(ActionNet::new);
        let layout: ParamLayout = action_net.as_ref().map_or_else(|| net.layout.clone(), |a| a.layout.clone());
        let parts = crate::diffusion::theories::score_parts(
            plan.form,
            plan.theory.couplings,
            arch.sigma_data,
            two_point.clone(),
            &magnetisation,
            plan.lat,
        )
        .map_err(|e| input(anyhow!("data: {e}")))?;
        let opt_cfg = optimiser(cfg);

        let (j0, j1) = block_of(cfg.batch, comm.size(), comm.rank());
        let shard = Shard::read(&plan.ens, &plan.split, cfg.batch, j0, j1)?;
        let (params0, opt0, slots): (Vec<f32>, Option<AdamW<f32>>, Vec<Stream>) = match &plan.resume {
            Some(m) => {
                let mut opt = AdamW::new(opt_cfg.clone(), &layout, &m.params);
                opt.m = m.adam_m.clone();
                opt.v = m.adam_v.clone();
                opt.ema = m.ema.clone();
                opt.step = m.step;
                let slots = (j0..j1).map(|j| rng::from_state_words(m.slot_rng[j])).collect();
                (m.params.clone(), Some(opt), slots)
            }
            None => {
                let p = match &action_net {
                    Some(a) => a.init_params::<f32>(cfg.seed),
                    None => net.init_params::<f32>(cfg.seed),
                };
                let slots = (j0..j1).map(|j| rng::stream(cfg.seed, Domain::Train, j as u64)).collect();
                (p, None, slots)
            }
        };
        let start_step = opt0.as_ref().map_or(0, |o| o.step);
        let history = plan.resume.as_ref().map(|m| m.loss_history.clone()).unwrap_or_default();
        let opt = Some((opt_cfg.clone(), opt0.as_ref()));
        let engine = match &plan.action0 {
            Some(a) => crate::diffusion::net::build::action(device, a.clone(), arch.sigma_data, &params0, opt)?,
            None => crate::diffusion::net::build::unet(device, arch.clone(), &params0, opt)?,
        };
        drop((params0, opt0));
        let val = if comm.is_root() {
            Validation::new(data::read_rows(&plan.ens, &plan.split.val)?, plan.theory.dof, &schedule, cfg.seed, &parts)
        } else {
            Validation::empty()
        };
        Ok(Trainer {
            cfg,
            comm,
            plan,
            arch,
            layout,
            parts,
            schedule,
            two_point,
            magnetisation,
            engine,
            slot_range: (j0, j1),
            slots,
            shard,
            val,
            start_step,
            history,
        })
    }

    /// The opening lines (rank 0).
    pub fn announce(&self) {
        let (cfg, plan) = (self.cfg, &self.plan);
        if self.start_step >= cfg.steps {
            eprintln!("train: checkpoint is already at step {} of {}; nothing to do", self.start_step, cfg.steps);
        }
        let split = &plan.split;
        let held_out = if split.val_chains.is_empty() {
            format!("{} held out: last rows", split.val.len())
        } else {
            format!("{} held out: chains {:?}", split.val.len(), split.val_chains)
        };
        eprintln!(
            "latdiff train: {} ({} parameters, {} score) on {} from {} ({} train / {held_out}), batch {} over {} rank(s) on {}, sigma in [{:.3e}, {:.3e}], sigma_data {:.4}",
            cfg.preset,
            self.layout.len(),
            plan.form.name(),
            plan.lat,
            cfg.data.display(),
            plan.n_train,
            cfg.batch,
            self.comm.size(),
            self.engine.describe(),
            self.schedule.sigma_min,
            self.schedule.sigma_max,
            self.arch.sigma_data
        );
        if self.start_step > 0 {
            eprintln!("resuming at step {}", self.start_step);
        }
        // A warm-up as long as a short run leaves it at a fraction of --lr throughout.
        if cfg.warmup * 10 > cfg.steps && self.start_step < cfg.warmup {
            eprintln!(
                "note: the learning-rate warm-up ({} steps, --warmup) is {:.0} % of the {} steps: the rate reaches --lr {} only at step {}",
                cfg.warmup,
                100.0 * cfg.warmup as f64 / cfg.steps.max(1) as f64,
                cfg.steps,
                cfg.lr,
                cfg.warmup
            );
        }
    }
}

/// The network with the data's σ_data, the noise schedule, G(p) and the magnetisations:
/// a resumed run's from its checkpoint, a fresh run's from the data, identical on every rank
/// (same configurations, same arithmetic: the physics prior is part of each rank's objective).
fn statistics(cfg: &TrainConfig, plan: &Plan) -> Result<(Arch, SigmaSchedule, Vec<f64>, Vec<f64>)> {
    let mut arch = plan.arch0.clone();
    if let Some(m) = &plan.resume {
        arch.sigma_data = m.arch.sigma_data;
        return Ok((arch, m.schedule, m.two_point.clone(), m.magnetisation.clone()));
    }
    let train_rows = &plan.split.train;
    let stat_cfgs = data::read_rows(&plan.ens, &train_rows[..plan.n_train.min(256)])?;
    let rows = data::read_rows(&plan.ens, &train_rows[..plan.n_train.min(1024)])?;
    let (sigma_data, schedule, g) = plan.theory.statistics(cfg, &stat_cfgs, &rows);
    arch.sigma_data = sigma_data;
    let m = plan.theory.diffusion.zero_mode_data(plan.form, plan.lat, &rows);
    Ok((arch, schedule, g, m))
}

fn optimiser(cfg: &TrainConfig) -> AdamWConfig {
    AdamWConfig {
        lr: cfg.lr,
        lr_min: cfg.lr_min,
        warmup_steps: cfg.warmup,
        total_steps: cfg.steps,
        weight_decay: cfg.weight_decay,
        clip_norm: cfg.clip,
        ema_decay: cfg.ema_decay,
        ..AdamWConfig::default()
    }
}
