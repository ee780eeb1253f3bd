//! `latdiff train`: denoising score matching, data-parallel over MPI ranks.
//!
//! Every rank holds identical parameters. Per step each rank fills its batch slots (see
//! `data`), computes the gradient of its slots' mean loss, and one all-reduce (sum) of one
//! flat buffer — the gradient followed by a few scalars (loss sums per σ band and the stop
//! flag) — makes every rank's AdamW update identical. A parameter checksum is compared
//! every `checksum_every` steps; a mismatch stops the job with an error, never silently.

use super::data::{self, Shard};
use super::engine::{self, NetEngine, Weights};
use super::form::{ScoreForm, ScoreParts};
use super::model_file::ModelFile;
use super::objective::SigmaSchedule;
use crate::backend::Device;
use crate::config::TrainConfig;
use crate::dist::{block_of, Comm};
use crate::io::{AttrValue, Ensemble};
use crate::lattice::Lattice;
use crate::nn::optim::{AdamW, AdamWConfig};
use crate::nn::{ActionArch, ActionNet, Arch, Network, ParamLayout};
use crate::rng::{self, Domain, Stream};
use crate::theory::{Action, Couplings, Phi4, Theory, U1};
use crate::util::{Progress, StopFlag};
use anyhow::{anyhow, bail, Result};
use rand_distr::{Distribution, StandardNormal};

/// Scalars appended to the gradient buffer: loss sum and count in 3 σ bands, stop flag.
const N_EXTRA: usize = 7;

/// What training needs from the theory of its data.
struct DataTheory {
    couplings: Couplings,
    lattice: Lattice,
    /// Values per configuration: V for φ⁴, 2V link angles for U(1).
    dof: usize,
    /// The action whose force the score at σ_min is compared with.
    action: Box<dyn Action + Send>,
    /// What the model file records of the theory (`Theory::attrs`).
    labels: Vec<(&'static str, String)>,
}

impl DataTheory {
    fn new(lattice: Lattice, couplings: Couplings) -> Self {
        let v = lattice.volume();
        match couplings {
            Couplings::Phi4(p) => {
                let t = Phi4::new(lattice, p);
                DataTheory { couplings, lattice, dof: v, labels: t.attrs().labels, action: Box::new(t) }
            }
            Couplings::U1 { beta } => {
                let t = U1::new(lattice, beta);
                DataTheory { couplings, lattice, dof: 2 * v, labels: t.attrs().labels, action: Box::new(t) }
            }
        }
    }

    /// The preset's network with the theory's channels (U(1): plaquette cos/sin in, one
    /// score per link direction out, the bounded input unscaled).
    fn network_arch(&self, preset: Arch) -> Arch {
        match self.couplings {
            Couplings::Phi4(_) => preset,
            Couplings::U1 { .. } => Arch {
                in_channels: super::gauge::IN_CHANNELS,
                out_channels: super::gauge::OUT_CHANNELS,
                scaled_input: false,
                ..preset
            },
        }
    }

    /// A random symmetry image of a configuration (`data::Augment`).
    fn augment(&self, dst: &mut [f32], src: &[f32], rng: &mut Stream) {
        match self.couplings {
            Couplings::Phi4(_) => data::augment(dst, src, self.lattice, &|v| -v, rng),
            Couplings::U1 { .. } => super::gauge::symmetry::augment_links(dst, src, self.lattice, rng),
        }
    }

    /// σ_data, the default noise range and the data's two-point function G(p) (U(1): of the
    /// plaquette angles, recorded for information; no sampler kernel uses it).
    fn statistics(&self, cfg: &TrainConfig, stat_cfgs: &[f32], rows: &[f32]) -> (f64, SigmaSchedule, Vec<f64>) {
        let lat = self.lattice;
        match self.couplings {
            Couplings::Phi4(_) => {
                let (rms, dmax) = data::field_scales(stat_cfgs, self.dof);
                let sigma_max = if cfg.sigma_max > 0.0 { cfg.sigma_max } else { dmax.max(10.0 * cfg.sigma_min) };
                let sched = SigmaSchedule { sigma_min: cfg.sigma_min, sigma_max, t_eps: 1e-5 };
                (if rms > 0.0 { rms } else { 1.0 }, sched, data::two_point(rows, lat))
            }
            Couplings::U1 { .. } => {
                let u = U1::new(lat, 1.0);
                let plaq: Vec<f32> = rows
                    .chunks(self.dof)
                    .flat_map(|c| {
                        let t: Vec<f64> = c.iter().map(|&x| x as f64).collect();
                        u.plaquette_angles(&t).into_iter().map(|a| crate::theory::manifold::wrap_angle(a) as f32)
                    })
                    .collect();
                let sched = super::gauge::prior::default_schedule(cfg.sigma_min, cfg.sigma_max);
                (super::gauge::prior::link_scale(lat, stat_cfgs), sched, data::two_point(&plaq, lat))
            }
        }
    }
}

/// Consecutive steps with a non-finite loss or gradient after which training stops as
/// diverged (exit code 1, no model written). Such a step is skipped, parameters unchanged:
/// an isolated overflow costs one batch, while K in a row means the parameters themselves
/// no longer give finite losses and more steps cannot help.
pub const MAX_NONFINITE_STEPS: u64 = 5;

/// An update from a finite gradient can still overflow: a checkpoint with non-finite
/// weights is refused, so the last good one on disk is never replaced by it.
fn check_finite_weights(params: &[f32], ema: &[f32], step: u64) -> Result<()> {
    if params.iter().chain(ema).any(|x| !x.is_finite()) {
        bail!(
            "training diverged at step {step}: non-finite parameters; no model written (the last checkpoint on disk, if any, is kept)"
        );
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub steps_done: u64,
    pub finished: bool,
    pub stopped_by_signal: bool,
    pub final_val_loss: f64,
    pub samples_per_s: f64,
    pub allreduce_share: f64,
}

/// Which third of log σ ∈ [log σ_min, log σ_max] a noise level falls in.
fn band(sched: &SigmaSchedule, sigma: f64) -> usize {
    let t = (sigma / sched.sigma_min).ln() / (sched.sigma_max / sched.sigma_min).ln();
    ((t * 3.0).floor().max(0.0) as usize).min(2)
}

/// Fixed held-out noise draws, so validation losses are comparable between epochs and runs;
/// the loss inputs of the score form are prepared once.
pub struct Validation {
    pub phi0: Vec<f32>,
    pub sigma: Vec<f32>,
    phi_sigma: Vec<f32>,
    scale: Vec<f32>,
    offset: Vec<f32>,
}

impl Validation {
    pub fn new(configs: Vec<f32>, v: usize, sched: &SigmaSchedule, seed: u64, parts: &ScoreParts) -> Self {
        let n = configs.len() / v;
        let mut rng = rng::stream(seed, Domain::Misc, 0x7661_6c);
        let z: Vec<f32> = (0..n * v).map(|_| StandardNormal.sample(&mut rng)).map(|x: f64| x as f32).collect();
        let sigma: Vec<f32> = (0..n).map(|_| sched.sample(&mut rng) as f32).collect();
        let (phi_sigma, scale, offset) = parts.training_inputs(&configs, &z, &sigma);
        Validation { phi0: configs, sigma, phi_sigma, scale, offset }
    }

    /// The prepared loss inputs (φ_σ, a, e).
    pub fn inputs(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.phi_sigma, &self.scale, &self.offset)
    }

    pub fn empty() -> Self {
        Validation { phi0: vec![], sigma: vec![], phi_sigma: vec![], scale: vec![], offset: vec![] }
    }

    pub fn len(&self) -> usize {
        self.sigma.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigma.is_empty()
    }

    /// Mean DSM loss (and per σ band) over the held-out set with weights `w`, in chunks of `chunk`.
    pub fn loss(
        &self,
        engine: &mut dyn NetEngine,
        w: Weights,
        lat: Lattice,
        chunk: usize,
        sched: &SigmaSchedule,
    ) -> Result<(f64, [f64; 3])> {
        let n = self.len();
        if n == 0 {
            return Ok((f64::NAN, [f64::NAN; 3]));
        }
        // Network inputs and outputs per configuration (their channels may differ).
        let (vx, v) = (self.phi_sigma.len() / n, self.offset.len() / n);
        let (mut tot, mut bs, mut bc) = (0.0, [0.0; 3], [0.0; 3]);
        let mut a = 0;
        while a < n {
            let b = (a + chunk).min(n);
            let mut per = vec![0.0f32; b - a];
            let (x, e) = (&self.phi_sigma[a * vx..b * vx], &self.offset[a * v..b * v]);
            engine.losses(w, lat, x, &self.sigma[a..b], &self.scale[a..b], e, &mut per)?;
            for (i, l) in per.iter().enumerate() {
                let bd = band(sched, self.sigma[a + i] as f64);
                tot += *l as f64;
                bs[bd] += *l as f64;
                bc[bd] += 1.0;
            }
            a = b;
        }
        Ok((tot / n as f64, std::array::from_fn(|i| if bc[i] > 0.0 { bs[i] / bc[i] } else { f64::NAN })))
    }
}

/// ‖s_θ(φ, σ_min) + ∂S/∂φ‖ / ‖∂S/∂φ‖ over the given configurations: how close the learnt
/// score at the smallest noise is to the exact force (stochastic quantisation's drift).
pub fn score_force_deviation(
    engine: &mut dyn NetEngine,
    w: Weights,
    parts: &ScoreParts,
    theory: &dyn Action,
    (configs, v): (&[f32], usize),
    sigma_min: f64,
) -> Result<f64> {
    let lat = theory.lattice();
    let n = configs.len() / v;
    if n == 0 {
        return Ok(f64::NAN);
    }
    let chunk = n.min(32);
    let (mut num, mut den) = (0.0, 0.0);
    let mut a = 0;
    while a < n {
        let k = chunk.min(n - a);
        let sig = vec![sigma_min as f32; k];
        let mut f = vec![0.0f32; k * v];
        let phi: Vec<f64> = configs[a * v..(a + k) * v].iter().map(|&x| x as f64).collect();
        engine.output(w, lat, &parts.network_input(&phi), &sig, &mut f)?;
        let mut s = vec![0.0; k * v];
        parts.compose(&phi, &vec![sigma_min; k], &f, &mut s);
        let mut d = vec![0.0; v];
        for b in 0..k {
            theory.deriv(&phi[b * v..][..v], &mut d);
            for x in 0..v {
                num += (s[b * v + x] + d[x]).powi(2);
                den += d[x] * d[x];
            }
        }
        a += k;
    }
    Ok((num / den.max(1e-300)).sqrt())
}

fn checksum20(params: &[f32]) -> f64 {
    // FNV-1a over the bit patterns, folded to 20 bits so that R·h² stays exact in f64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        h ^= p.to_bits() as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ((h ^ (h >> 20) ^ (h >> 40)) & 0xF_FFFF) as f64
}

/// Refuses (as bad input, on every rank) a run whose estimate exceeds a rank's budget,
/// before the data are read.
fn check_memory(cfg: &TrainConfig, comm: &Comm, arch: &Arch, ens: &Ensemble, split: &data::Split) -> Result<()> {
    let (j0, j1) = block_of(cfg.batch, comm.size(), comm.rank());
    let shape = super::memory::TrainShape {
        arch,
        lattice: ens.lattice,
        n_rows: ens.n,
        n_train: split.n_train(),
        n_val: split.val.len(),
        batch: cfg.batch,
        local: j1 - j0,
        root: comm.is_root(),
    };
    let (bytes, what) = super::memory::train_bytes(&shape);
    crate::limits::check(comm, bytes, &what, cfg.max_memory)
}

pub fn train(cfg: &TrainConfig, comm: &Comm, stop: &StopFlag, device: Device) -> Result<TrainSummary> {
    let root = comm.is_root();
    let (rank, n_ranks) = (comm.rank(), comm.size());
    let input = crate::error::input_err;

    // ---- everything that can be wrong with the input, before any work ----
    let ens = Ensemble::open(&cfg.data).map_err(input)?;
    let lat = ens.lattice;
    let theory = DataTheory::new(lat, ens.couplings().map_err(input)?);
    let preset = Arch::preset(&cfg.preset).ok_or_else(|| input(anyhow!("preset: unknown '{}'", cfg.preset)))?;
    let arch0 = theory.network_arch(preset);
    let form = ScoreForm::parse(&cfg.score_form).map_err(|e| input(anyhow!(e)))?;
    if matches!(theory.couplings, Couplings::U1 { .. }) && form != ScoreForm::Physics {
        return Err(input(anyhow!(
            "score_form: '{}' is not available for U(1) gauge fields (physics only: the angles live on a torus)",
            form.name()
        )));
    }
    let action0 = action_arch(form, &cfg.preset).map_err(input)?;
    let stride = if action0.is_some() { 1 } else { arch0.stride() };
    if lat.lt % stride != 0 || lat.lx % stride != 0 {
        return Err(input(anyhow!(
            "data: lattice {lat} is not divisible by 2^levels = {stride} of preset '{}'",
            cfg.preset
        )));
    }
    if cfg.batch < n_ranks || cfg.batch % n_ranks != 0 {
        return Err(input(anyhow!("batch: {} cannot be split evenly over {n_ranks} ranks", cfg.batch)));
    }
    let chain = if ens.has("chain") { Some(ens.read_i64("chain")?) } else { None };
    let split = data::split(chain.as_deref(), ens.n, cfg.val_fraction);
    let n_train = split.n_train();
    if n_train < cfg.batch {
        return Err(input(anyhow!(
            "batch: {} exceeds the {n_train} training configurations in '{}'",
            cfg.batch,
            cfg.data.display()
        )));
    }
    let resume = if cfg.resume { Some(ModelFile::read(&cfg.out).map_err(input)?) } else { None };
    if let Some(m) = &resume {
        let mut a = m.arch.clone();
        a.sigma_data = arch0.sigma_data;
        if a != arch0 {
            return Err(input(anyhow!(
                "resume: checkpoint '{}' has another architecture than preset '{}'",
                cfg.out.display(),
                cfg.preset
            )));
        }
        if m.slot_rng.len() != cfg.batch {
            return Err(input(anyhow!(
                "resume: checkpoint was trained with batch {}, not {}",
                m.slot_rng.len(),
                cfg.batch
            )));
        }
        if m.train_lattice != lat {
            return Err(input(anyhow!("resume: checkpoint was trained on {}, data is {lat}", m.train_lattice)));
        }
        let m_form = super::model::model_form(m).map_err(input)?;
        if m_form != form {
            return Err(input(anyhow!(
                "resume: checkpoint has the {} score form, the configuration asks for {}",
                m_form.name(),
                form.name()
            )));
        }
        if m.action_arch().map_err(input)? != action0 {
            return Err(input(anyhow!(
                "resume: checkpoint '{}' has another action network than preset '{}'",
                cfg.out.display(),
                cfg.preset
            )));
        }
    }

    check_memory(cfg, comm, &arch0, &ens, &split)?;
    if root {
        crate::backend::announce();
    }

    // ---- data statistics: identical on every rank (same configurations, same arithmetic) ----
    let v = theory.dof;
    let mut arch = arch0;
    let (schedule, two_point, magnetisation) = match &resume {
        Some(m) => {
            arch.sigma_data = m.arch.sigma_data;
            (m.schedule, m.two_point.clone(), m.magnetisation.clone())
        }
        None => {
            // Every rank needs G(p) and the magnetisations: the physics prior is part of
            // each rank's objective.
            let stat_cfgs = data::read_rows(&ens, &split.train[..n_train.min(256)])?;
            let rows = data::read_rows(&ens, &split.train[..n_train.min(1024)])?;
            let (sigma_data, schedule, g) = theory.statistics(cfg, &stat_cfgs, &rows);
            arch.sigma_data = sigma_data;
            let m = match (form, theory.couplings) {
                (ScoreForm::Physics, Couplings::Phi4(_)) => data::magnetisations(&rows, lat),
                _ => Vec::new(),
            };
            (schedule, g, m)
        }
    };
    let net = Network::new(arch.clone());
    let action_net = action0.clone().map(ActionNet::new);
    let layout: ParamLayout = action_net.as_ref().map_or_else(|| net.layout.clone(), |a| a.layout.clone());
    let parts =
        super::model::score_parts(form, theory.couplings, arch.sigma_data, two_point.clone(), &magnetisation, lat)
            .map_err(|e| input(anyhow!("data: {e}")))?;
    let opt_cfg = AdamWConfig {
        lr: cfg.lr,
        lr_min: cfg.lr_min,
        warmup_steps: cfg.warmup,
        total_steps: cfg.steps,
        weight_decay: cfg.weight_decay,
        clip_norm: cfg.clip,
        ema_decay: cfg.ema_decay,
        ..AdamWConfig::default()
    };

    // ---- state: fresh or restored bit for bit ----
    let (j0, j1) = block_of(cfg.batch, n_ranks, rank);
    let b_local = j1 - j0;
    let shard = Shard::read(&ens, &split, cfg.batch, j0, j1)?;
    let (params0, opt0, mut slots): (Vec<f32>, Option<AdamW<f32>>, Vec<Stream>) = match &resume {
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
    let opt = Some((opt_cfg.clone(), opt0.as_ref()));
    let mut engine = match &action0 {
        Some(a) => engine::build_action(device, a.clone(), arch.sigma_data, &params0, opt)?,
        None => engine::build(device, arch.clone(), &params0, opt)?,
    };
    drop((params0, opt0));
    if start_step >= cfg.steps && root {
        eprintln!("train: checkpoint is already at step {start_step} of {}; nothing to do", cfg.steps);
    }
    let val = if root {
        Validation::new(data::read_rows(&ens, &split.val)?, v, &schedule, cfg.seed, &parts)
    } else {
        Validation::empty()
    };
    let held_out = if split.val_chains.is_empty() {
        format!("{} held out: last rows", split.val.len())
    } else {
        format!("{} held out: chains {:?}", split.val.len(), split.val_chains)
    };

    if root {
        eprintln!(
            "latdiff train: {} ({} parameters, {} score) on {lat} from {} ({} train / {held_out}), batch {} over {n_ranks} rank(s) on {}, sigma in [{:.3e}, {:.3e}], sigma_data {:.4}",
            cfg.preset,
            layout.len(),
            form.name(),
            cfg.data.display(),
            n_train,
            cfg.batch,
            engine.describe(),
            schedule.sigma_min,
            schedule.sigma_max,
            arch.sigma_data
        );
        if start_step > 0 {
            eprintln!("resuming at step {start_step}");
        }
    }

    // ---- the step loop ----
    let np = layout.len();
    let mut buf = vec![0.0f32; np + N_EXTRA];
    let mut phi0 = vec![0.0f32; b_local * v];
    let mut z = vec![0.0f32; b_local * v];
    let mut sigma = vec![0.0f32; b_local];
    let mut per = vec![0.0f32; b_local];
    let steps_per_epoch = (n_train / cfg.batch).max(1) as u64;
    let mut progress = Progress::new("train", cfg.steps.saturating_sub(start_step), "step", root);
    let t0 = std::time::Instant::now();
    let mut t_allreduce = 0.0;
    let mut step = start_step;
    let mut stopped = false;
    let mut last_val = f64::NAN;
    let mut recent = (0.0f64, 0.0f64);
    let mut last_grad_norm = f64::NAN;
    let mut nonfinite_run = 0u64;
    let write_checkpoint =
        |engine: &mut dyn NetEngine, slots: &[Stream], step: u64, extra: Vec<(String, AttrValue)>| -> Result<()> {
            // Every rank's slot streams, gathered in slot order.
            let words: Vec<u64> = slots.iter().flat_map(|s| rng::state_words(s)).collect();
            let counts: Vec<usize> = (0..n_ranks)
                .map(|r| {
                    let (a, b) = block_of(cfg.batch, n_ranks, r);
                    4 * (b - a)
                })
                .collect();
            let all = comm.gather(&words, &counts);
            if !root {
                return Ok(());
            }
            let (params, opt) = engine.state()?;
            check_finite_weights(&params, &opt.ema, step)?;
            let mut m = ModelFile {
                arch: arch.clone(),
                layout: layout.clone(),
                params,
                ema: opt.ema,
                adam_m: opt.m,
                adam_v: opt.v,
                step,
                slot_rng: all.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
                optimiser: opt.cfg,
                schedule,
                train_lattice: lat,
                two_point: two_point.clone(),
                magnetisation: magnetisation.clone(),
                data_attrs: ens.attrs()?,
                attrs: Vec::new(),
            };
            m.set("data", AttrValue::Str(cfg.data.display().to_string()));
            // The theory's labels; its couplings stay in the data attributes.
            for (k, v) in &theory.labels {
                m.set(k, AttrValue::Str(v.clone()));
            }
            m.set("preset", AttrValue::Str(cfg.preset.clone()));
            m.set("score_form", AttrValue::Str(form.name().into()));
            if let Some(a) = &action0 {
                m.set(super::model_file::ACTION_ARCH, AttrValue::Str(serde_json::to_string(a)?));
            }
            if !split.val_chains.is_empty() {
                m.set("val_chains", AttrValue::I64s(split.val_chains.clone()));
            }
            m.set("sigma_data", AttrValue::F64(arch.sigma_data));
            m.set("steps", AttrValue::I64(cfg.steps as i64));
            m.set("seed", AttrValue::I64(cfg.seed as i64));
            m.set("n_ranks", AttrValue::I64(n_ranks as i64));
            m.set("device", AttrValue::Str(engine.describe()));
            m.set("batch", AttrValue::I64(cfg.batch as i64));
            m.set("finished", AttrValue::I64(i64::from(step >= cfg.steps)));
            m.set("latdiff_version", AttrValue::Str(crate::VERSION.into()));
            m.set("config", AttrValue::Str(crate::config::to_toml(cfg)));
            for (k, v) in extra {
                m.set(&k, v);
            }
            m.write(&cfg.out)
        };

    let augment = |d: &mut [f32], s: &[f32], r: &mut Stream| theory.augment(d, s, r);
    while step < cfg.steps {
        for (i, slot) in (j0..j1).enumerate() {
            sigma[i] = data::fill_slot(
                &mut phi0[i * v..][..v],
                &mut z[i * v..][..v],
                &shard,
                (cfg.batch, slot),
                cfg.augment.then_some(&augment),
                &schedule,
                &mut slots[i],
            );
        }
        buf[np..].iter_mut().for_each(|g| *g = 0.0);
        let (x, scale, offset) = parts.training_inputs(&phi0, &z, &sigma);
        engine.loss_and_grad(lat, &x, &sigma, &scale, &offset, &mut per, &mut buf[..np])?;
        for (i, l) in per.iter().enumerate() {
            let bd = band(&schedule, sigma[i] as f64);
            buf[np + bd] += *l;
            buf[np + 3 + bd] += 1.0;
        }
        buf[np + 6] = f32::from(u8::from(stop.raised()));
        let ta = std::time::Instant::now();
        comm.all_reduce_sum(&mut buf);
        t_allreduce += ta.elapsed().as_secs_f64();
        // Each rank's gradient is of its own slots' mean: the global mean is their average.
        let inv = 1.0 / n_ranks as f32;
        buf[..np].iter_mut().for_each(|g| *g *= inv);
        // The all-reduced buffer is the same on every rank, so every rank skips, and stops
        // at, the same step.
        step += 1;
        if !buf[..np + 3].iter().all(|x| x.is_finite()) {
            nonfinite_run += 1;
            if nonfinite_run >= MAX_NONFINITE_STEPS {
                bail!(
                    "training diverged: non-finite loss or gradient for {MAX_NONFINITE_STEPS} consecutive steps (steps {}-{step}); no model written (the last checkpoint on disk, if any, is kept)",
                    step + 1 - MAX_NONFINITE_STEPS
                );
            }
            progress.inc_with(1, &format!("non-finite loss or gradient at step {step}: step skipped"));
            // No update, validation, checksum or checkpoint for a skipped step; a stop still stops.
            if buf[np + 6] > 0.0 {
                stopped = true;
                break;
            }
            continue;
        }
        nonfinite_run = 0;
        let info = engine.update(&buf[..np])?;
        last_grad_norm = info.grad_norm;
        let loss = (buf[np] + buf[np + 1] + buf[np + 2]) as f64 / cfg.batch as f64;
        recent = (recent.0 + loss, recent.1 + 1.0);
        let bands: [f64; 3] = std::array::from_fn(|i| buf[np + i] as f64 / (buf[np + 3 + i] as f64).max(1.0));
        progress.inc_with(
            1,
            &format!(
                "loss {:.4} (sigma bands {:.3}/{:.3}/{:.3}), lr {:.2e}, |g| {:.3e}, {:.1} samples/s",
                recent.0 / recent.1,
                bands[0],
                bands[1],
                bands[2],
                info.lr,
                info.grad_norm,
                (step - start_step) as f64 * cfg.batch as f64 / t0.elapsed().as_secs_f64()
            ),
        );
        if cfg.checksum_every > 0 && step % cfg.checksum_every == 0 && n_ranks > 1 {
            let h = checksum20(&engine.params()?);
            let mut c = [h, h * h];
            comm.all_reduce_sum(&mut c);
            let r = n_ranks as f64;
            if c[0] * c[0] != r * c[1] {
                bail!("parameters diverged between ranks at step {step} (checksums differ): stopping");
            }
        }
        if root && (step % steps_per_epoch == 0 || step == cfg.steps) && !val.is_empty() {
            let (vl, vb) = val.loss(engine.as_mut(), Weights::Current, lat, cfg.batch, &schedule)?;
            last_val = vl;
            let every = steps_per_epoch.max(cfg.steps / 20);
            if (progress_is_plain() && step % every < steps_per_epoch) || step == cfg.steps {
                eprintln!(
                    "step {step}: train loss {:.4}, validation loss {vl:.4} (bands {:.3}/{:.3}/{:.3})",
                    recent.0 / recent.1,
                    vb[0],
                    vb[1],
                    vb[2]
                );
            }
            recent = (0.0, 0.0);
        }
        if buf[np + 6] > 0.0 {
            stopped = true;
            break;
        }
        if step % cfg.checkpoint_every == 0 && step < cfg.steps {
            write_checkpoint(engine.as_mut(), &slots, step, vec![])?;
        }
    }
    progress.finish();
    let elapsed = t0.elapsed().as_secs_f64();

    // ---- final checkpoint with diagnostics ----
    // The last step's global gradient norm: the same for any rank count (a sum instead of
    // a mean over ranks would show here; AdamW's normalised update would hide it).
    let mut extra = vec![("last_grad_norm".to_string(), AttrValue::F64(last_grad_norm))];
    if root && step >= cfg.steps {
        let (vl, vb) = val.loss(engine.as_mut(), Weights::Current, lat, cfg.batch, &schedule)?;
        let (vle, _) = val.loss(engine.as_mut(), Weights::Ema, lat, cfg.batch, &schedule)?;
        last_val = vl;
        let dev = score_force_deviation(
            engine.as_mut(),
            Weights::Ema,
            &parts,
            theory.action.as_ref(),
            (&val.phi0, v),
            schedule.sigma_min,
        )?;
        eprintln!(
            "validation loss {vl:.4} (EMA weights {vle:.4}; sigma bands {:.3}/{:.3}/{:.3}); score at sigma_min vs exact force: relative deviation {dev:.3}",
            vb[0], vb[1], vb[2]
        );
        extra.push(("val_loss".to_string(), AttrValue::F64(vl)));
        extra.push(("val_loss_ema".to_string(), AttrValue::F64(vle)));
        extra.push(("val_loss_bands".to_string(), AttrValue::F64s(vb.to_vec())));
        // In the units of the path weights: with weight σ² and log-uniform σ the loss is
        // ∫ E σ²|s − t|² d ln σ / ln(σ_max/σ_min) ≥ the score error's share of the KL
        // divergence between the sampler's and the forward path measures (the target's own
        // variance is the excess), so each third of ln σ bounds its KL contribution (nats).
        let third = (schedule.sigma_max / schedule.sigma_min).ln() / 3.0;
        let kl: Vec<f64> = vb.iter().map(|b| b * third).collect();
        eprintln!(
            "path KL bound per sigma band (nats; the KL is var(log w)/2 for small spreads): {:.3}/{:.3}/{:.3}",
            kl[0], kl[1], kl[2]
        );
        extra.push(("val_kl_bound_bands".to_string(), AttrValue::F64s(kl)));
        extra.push(("score_force_rel_dev".to_string(), AttrValue::F64(dev)));
    }
    write_checkpoint(engine.as_mut(), &slots, step, extra)?;
    let samples = (step - start_step) as f64 * cfg.batch as f64;
    if root {
        if stopped {
            eprintln!(
                "stopped by signal at step {step}: checkpoint written to {}; continue with --resume",
                cfg.out.display()
            );
        } else {
            eprintln!(
                "wrote {} at step {step}: {:.1} samples/s, all-reduce {:.1}% of the time",
                cfg.out.display(),
                samples / elapsed,
                100.0 * t_allreduce / elapsed
            );
        }
    }
    Ok(TrainSummary {
        steps_done: step,
        finished: step >= cfg.steps,
        stopped_by_signal: stopped,
        final_val_loss: last_val,
        samples_per_s: samples / elapsed.max(1e-9),
        allreduce_share: t_allreduce / elapsed.max(1e-9),
    })
}

/// The action network of the action form's preset (`None` for the U-Net forms).
fn action_arch(form: ScoreForm, preset: &str) -> Result<Option<ActionArch>> {
    if form != ScoreForm::Action {
        return Ok(None);
    }
    ActionArch::preset(preset).map(Some).ok_or_else(|| {
        anyhow!("preset: '{preset}' has no action network (score form action takes {})", ActionArch::NAMES)
    })
}

fn progress_is_plain() -> bool {
    use std::io::IsTerminal;
    !std::io::stderr().is_terminal()
}
