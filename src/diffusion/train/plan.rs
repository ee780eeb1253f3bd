//! Everything that can be wrong with a training's input, checked before any work: the data,
//! the preset against the lattice, the batch against the ranks and the data, a resumed
//! checkpoint against the configuration, the memory estimate.

use crate::config::TrainConfig;
use crate::diffusion::data;
use crate::diffusion::form::ScoreForm;
use crate::diffusion::net::model_file::ModelFile;
use crate::diffusion::theories;
use crate::diffusion::train::theory::DataTheory;
use crate::dist::{block_of, Comm};
use crate::error::input_err as input;
use crate::io::Ensemble;
use crate::lattice::Lattice;
use crate::nn::{ActionArch, Arch};
use anyhow::{anyhow, Result};

/// A training whose input has been checked.
pub(super) struct Plan {
    pub ens: Ensemble,
    pub lat: Lattice,
    pub theory: DataTheory,
    /// The preset's network with the theory's channels (σ_data still the preset's).
    pub arch0: Arch,
    pub form: ScoreForm,
    /// The action network of the action form (`None` for the U-Net forms).
    pub action0: Option<ActionArch>,
    pub split: data::Split,
    pub n_train: usize,
    /// The checkpoint a `--resume` continues from.
    pub resume: Option<ModelFile>,
    /// The training data's content hash (`Ensemble::content_hash`), stored in the model.
    pub data_hash: String,
}

impl Plan {
    pub fn check(cfg: &TrainConfig, comm: &Comm) -> Result<Plan> {
        let ens = Ensemble::open(&cfg.data).map_err(input)?;
        let lat = ens.lattice;
        let couplings = ens.couplings().map_err(input)?;
        let couplings = theories::built(couplings).map_err(|e| input(anyhow!("{}: {e}", cfg.data.display())))?;
        let theory = DataTheory::new(lat, couplings);
        let resume = if cfg.resume { Some(ModelFile::read(&cfg.out).map_err(input)?) } else { None };
        if let Some(m) = &resume {
            check_same_theory(cfg, m, &theory)?;
        }
        let arch0 = theory.network_arch(cfg.preset.unet.clone());
        let form = cfg.score_form;
        theory.diffusion.check_form(form).map_err(|e| input(anyhow!(e)))?;
        let action0 = cfg.preset.action.clone();
        let stride = if action0.is_some() { 1 } else { arch0.stride() };
        if lat.lt % stride != 0 || lat.lx % stride != 0 {
            return Err(input(anyhow!(
                "data: lattice {lat} is not divisible by 2^levels = {stride} of preset '{}'",
                cfg.preset
            )));
        }
        let n_ranks = comm.size();
        if cfg.batch < n_ranks || cfg.batch % n_ranks != 0 {
            return Err(input(anyhow!("batch: {} cannot be split evenly over {n_ranks} ranks", cfg.batch)));
        }
        if cfg.antithetic && (cfg.batch / n_ranks) % 2 != 0 {
            return Err(input(anyhow!(
                "batch: {} gives {} slots per rank on {n_ranks} ranks; antithetic pairs need an even number",
                cfg.batch,
                cfg.batch / n_ranks
            )));
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
        let data_hash = String::new();
        let mut plan = Plan { ens, lat, theory, arch0, form, action0, split, n_train, resume, data_hash };
        if let Some(m) = &plan.resume {
            plan.check_resume(cfg, m)?;
        }
        check_memory(cfg, comm, &plan.arch0, &plan.ens, &plan.split)?;
        plan.data_hash = hash_data(&plan.ens, comm)?;
        if let Some(m) = &plan.resume {
            check_same_data(cfg, m, &plan.data_hash)?;
        }
        Ok(plan)
    }

    /// A resumed checkpoint must be this configuration's: same network, batch, lattice and
    /// form.
    fn check_resume(&self, cfg: &TrainConfig, m: &ModelFile) -> Result<()> {
        let mut a = m.arch.clone();
        a.sigma_data = self.arch0.sigma_data;
        if a != self.arch0 {
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
        if m.train_lattice != self.lat {
            return Err(input(anyhow!("resume: checkpoint was trained on {}, data is {}", m.train_lattice, self.lat)));
        }
        let m_form = crate::diffusion::net::model::model_form(m).map_err(input)?;
        if m_form != self.form {
            return Err(input(anyhow!(
                "resume: checkpoint has the {} score form, the configuration asks for {}",
                m_form.name(),
                self.form.name()
            )));
        }
        if m.action_arch().map_err(input)? != self.action0 {
            return Err(input(anyhow!(
                "resume: checkpoint '{}' has another action network than preset '{}'",
                cfg.out.display(),
                cfg.preset
            )));
        }
        Ok(())
    }
}

/// A checkpoint of one theory cannot continue on another's data: said as such, before the
/// network, form or lattice checks would name a symptom ("another architecture").
fn check_same_theory(cfg: &TrainConfig, m: &ModelFile, theory: &DataTheory) -> Result<()> {
    let trained_on = m.couplings().map_err(input)?;
    if trained_on.name() != theory.couplings.name() {
        return Err(input(anyhow!(
            "resume: checkpoint '{}' is a {} model, but --data '{}' holds {} configurations",
            cfg.out.display(),
            theory_title(trained_on.name()),
            cfg.data.display(),
            theory_title(theory.couplings.name())
        )));
    }
    Ok(())
}

/// "φ⁴" or "U(1)" for a theory's file name.
fn theory_title(name: &str) -> &str {
    match name {
        "phi4" => "φ⁴",
        "u1" => "U(1) gauge",
        other => other,
    }
}

/// The data's content hash, computed by rank 0 (it reads every configuration, and refuses a
/// non-finite one naming it) and sent to every rank, so that all refuse alike.
fn hash_data(ens: &Ensemble, comm: &Comm) -> Result<String> {
    let mut verdict = match comm.is_root() {
        true => match ens.content_hash() {
            Ok(h) => format!("ok {h}"),
            Err(e) => format!("error {}", crate::io::full::one_line(&e)),
        },
        false => String::new(),
    }
    .into_bytes();
    comm.broadcast_bytes(&mut verdict);
    let verdict = String::from_utf8_lossy(&verdict).to_string();
    match verdict.split_once(' ') {
        Some(("ok", h)) => Ok(h.to_string()),
        Some((_, e)) => Err(input(anyhow!("data: {e}"))),
        None => Err(anyhow!("internal: no data hash from rank 0")),
    }
}

/// A resumed run must train on the data its checkpoint was trained on: the statistics it
/// restores (σ_data, G(p), the magnetisations) and the attributes it records are those
/// data's. Checkpoints written before data hashes existed must name the same file.
fn check_same_data(cfg: &TrainConfig, m: &ModelFile, hash: &str) -> Result<()> {
    let text = |k: &str| m.attr(k).and_then(|v| v.as_str().map(str::to_string));
    match (text("data_hash"), text("data")) {
        (Some(was), Some(path)) if was != hash && std::path::Path::new(&path) == cfg.data => Err(input(anyhow!(
            "resume: --data '{}' changed since the checkpoint '{}' was written (hash {hash}, the checkpoint's {was})",
            cfg.data.display(),
            cfg.out.display()
        ))),
        (Some(was), path) => match was == hash {
            true => Ok(()),
            false => Err(input(anyhow!(
                "resume: --data '{}' is not the data checkpoint '{}' was trained on ('{}'; hash {hash}, the checkpoint's {was})",
                cfg.data.display(),
                cfg.out.display(),
                path.unwrap_or_default()
            ))),
        },
        (None, Some(was)) if std::path::Path::new(&was) != cfg.data => Err(input(anyhow!(
            "resume: checkpoint '{}' was trained on '{was}', not --data '{}' (it predates data hashes: resume with the same file)",
            cfg.out.display(),
            cfg.data.display()
        ))),
        _ => Ok(()),
    }
}

/// Refuses (as bad input, on every rank) a run whose estimate exceeds a rank's budget,
/// before the data are read.
fn check_memory(cfg: &TrainConfig, comm: &Comm, arch: &Arch, ens: &Ensemble, split: &data::Split) -> Result<()> {
    let (j0, j1) = block_of(cfg.batch, comm.size(), comm.rank());
    let shape = crate::diffusion::net::memory::TrainShape {
        arch,
        lattice: ens.lattice,
        n_rows: ens.n,
        n_train: split.n_train(),
        n_val: split.val.len(),
        batch: cfg.batch,
        local: j1 - j0,
        root: comm.is_root(),
    };
    let (bytes, what) = crate::diffusion::net::memory::train_bytes(&shape);
    crate::limits::check(comm, bytes, &what, cfg.max_memory)
}
