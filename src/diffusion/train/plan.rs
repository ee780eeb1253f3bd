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
}

impl Plan {
    pub fn check(cfg: &TrainConfig, comm: &Comm) -> Result<Plan> {
        let ens = Ensemble::open(&cfg.data).map_err(input)?;
        let lat = ens.lattice;
        let couplings = ens.couplings().map_err(input)?;
        let couplings = theories::built(couplings).map_err(|e| input(anyhow!("{}: {e}", cfg.data.display())))?;
        let theory = DataTheory::new(lat, couplings);
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
        let resume = if cfg.resume { Some(ModelFile::read(&cfg.out).map_err(input)?) } else { None };
        let plan = Plan { ens, lat, theory, arch0, form, action0, split, n_train, resume };
        if let Some(m) = &plan.resume {
            plan.check_resume(cfg, m)?;
        }
        check_memory(cfg, comm, &plan.arch0, &plan.ens, &plan.split)?;
        Ok(plan)
    }

    /// A resumed checkpoint must be this configuration's: same network, batch, lattice and form.
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
