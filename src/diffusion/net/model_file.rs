//! Model / checkpoint files written by `latdiff train`.
//!
//! Layout (documented in README.md):
//!   /params, /ema, /adam_m, /adam_v   float32 [P]   flat buffers sharing one layout
//!   /slot_rng                         uint64  [B, 4] the batch-slot random streams
//!   /two_point                        float64 [L_t, L_x] G(p) of the training data
//!   /magnetisation                    float64 [N]   the training data's m = Σφ/V (physics
//!                                     form; absent in files written before it)
//!   /data_attrs                       group: the training ensemble's attributes
//!   /loss_history                     float64 [n, 3] step, training loss, validation loss
//!                                     (one row per epoch end; absent in older files)
//! Root attributes: arch, layout, optimiser, schedule (JSON), step, steps, config (TOML),
//! data, theory couplings, train_lattice, sigma_data, seed, n_ranks, latdiff_version,
//! finished, and the diagnostics (validation loss, score-vs-force deviation).
//! Action-form models (`score_form = "action"`) also have `action_arch` (JSON of
//! `nn::ActionArch`): the network the flat buffers belong to; their `arch` is the U-Net
//! preset of the same name and only carries σ_data and the memory estimate's sizes.

use crate::diffusion::objective::SigmaSchedule;
use crate::io::attrs::{self, AttrValue};
use crate::lattice::Lattice;
use crate::nn::optim::AdamWConfig;
use crate::nn::{Arch, ParamLayout};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The root attribute holding an action-form model's `nn::ActionArch`.
pub const ACTION_ARCH: &str = "action_arch";

#[derive(Clone, Debug)]
pub struct ModelFile {
    pub arch: Arch,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
    pub step: u64,
    pub slot_rng: Vec<[u64; 4]>,
    pub optimiser: AdamWConfig,
    pub schedule: SigmaSchedule,
    pub train_lattice: Lattice,
    pub two_point: Vec<f64>,
    /// The training configurations' magnetisations (empty: none stored).
    pub magnetisation: Vec<f64>,
    pub data_attrs: Vec<(String, AttrValue)>,
    /// The loss curve so far (empty in files written before it).
    pub loss_history: LossHistory,
    /// Everything else stored as root attributes (config, theory, diagnostics, ...).
    pub attrs: Vec<(String, AttrValue)>,
}

/// Whether `path` is a model file (an HDF5 file whose `kind` is `latdiff-model`).
pub fn is_model_file(path: &Path) -> bool {
    crate::io::ensemble::is_hdf5(path)
        && crate::io::h5_open(path)
            .ok()
            .and_then(|f| attrs::read_attr(&f, "kind").ok())
            .is_some_and(|v| v.as_str() == Some("latdiff-model"))
}

/// The root attribute holding [`LossHistory::pending`].
const LOSS_PENDING: &str = "loss_pending";

/// The training loss curve: one row per epoch end (and the last step), written with every
/// checkpoint so that `--resume` continues it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossHistory {
    /// (step, mean training loss over the steps since the previous row, validation loss on
    /// the held-out set with the current weights; NaN without a held-out set).
    pub rows: Vec<[f64; 3]>,
    /// Sum and count of the training losses since the last row. A checkpoint between two
    /// rows carries them, so that a resumed run's next row is the uninterrupted run's.
    pub pending: [f64; 2],
}

impl LossHistory {
    /// One finite step's training loss.
    pub fn add(&mut self, loss: f64) {
        self.pending[0] += loss;
        self.pending[1] += 1.0;
    }

    /// The mean training loss since the last row (NaN when no step was counted).
    pub fn pending_mean(&self) -> f64 {
        self.pending[0] / self.pending[1]
    }

    /// Closes a row at `step` with the validation loss `val`; returns the training loss
    /// it records.
    pub fn close_row(&mut self, step: u64, val: f64) -> f64 {
        let train = self.pending_mean();
        self.rows.push([step as f64, train, val]);
        self.pending = [0.0, 0.0];
        train
    }

    fn write(&self, f: &hdf5::File) -> Result<()> {
        attrs::write_attr(f, LOSS_PENDING, &AttrValue::F64s(self.pending.to_vec()))?;
        if !self.rows.is_empty() {
            let flat: Vec<f64> = self.rows.iter().flatten().copied().collect();
            let arr = ndarray::Array2::from_shape_vec((self.rows.len(), 3), flat)?;
            f.new_dataset_builder().with_data(&arr).create("loss_history")?;
        }
        Ok(())
    }

    fn read(f: &hdf5::File, path: &Path) -> Result<Self> {
        let rows = match f.dataset("loss_history") {
            Ok(d) => {
                let flat = d.read_raw::<f64>()?;
                if d.shape().get(1) != Some(&3) {
                    bail!("{}: /loss_history has shape {:?}, not [n, 3]", path.display(), d.shape());
                }
                flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
            }
            Err(_) => Vec::new(),
        };
        let pending = match attrs::read_attr(f, LOSS_PENDING) {
            Ok(AttrValue::F64s(v)) if v.len() == 2 => [v[0], v[1]],
            _ => [0.0, 0.0],
        };
        Ok(LossHistory { rows, pending })
    }
}

impl ModelFile {
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn set(&mut self, name: &str, v: AttrValue) {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((name.to_string(), v)),
        }
    }

    /// The action network of an action-form model (`None` for the U-Net forms).
    pub fn action_arch(&self) -> Result<Option<crate::nn::ActionArch>> {
        match self.attr(ACTION_ARCH) {
            None => Ok(None),
            Some(v) => {
                let text = v.as_str().ok_or_else(|| anyhow!("model: attribute '{ACTION_ARCH}' is not text"))?;
                let a = serde_json::from_str(text).map_err(|e| anyhow!("model: attribute '{ACTION_ARCH}': {e}"))?;
                Ok(Some(a))
            }
        }
    }

    /// The theory and couplings the model was trained on, read by the theory from the
    /// training data's attributes.
    pub fn couplings(&self) -> Result<crate::theory::Couplings> {
        let find = |k: &str| self.data_attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        crate::theory::Couplings::from_attrs(&|k| find(k).and_then(|v| v.as_str().map(str::to_string)), &|k| {
            find(k).and_then(AttrValue::as_f64)
        })
        .map_err(|e| anyhow!("model: training data: {e}"))
    }

    /// The φ⁴ theory the model was trained on (an error for a U(1) model).
    pub fn theory(&self) -> Result<crate::theory::Parametrisation> {
        self.couplings()?.phi4().map_err(|e| anyhow!("model: training data: {e}"))
    }

    /// Writes atomically: a temporary sibling, then rename over any previous checkpoint.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, |tmp| self.write_to(tmp))
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        let f = crate::io::h5_create(path).with_context(|| format!("creating '{}'", path.display()))?;
        for (name, v) in
            [("params", &self.params), ("ema", &self.ema), ("adam_m", &self.adam_m), ("adam_v", &self.adam_v)]
        {
            f.new_dataset_builder().with_data(v.as_slice()).create(name)?;
        }
        let words: Vec<u64> = self.slot_rng.iter().flatten().copied().collect();
        let arr = ndarray::Array2::from_shape_vec((self.slot_rng.len(), 4), words)?;
        f.new_dataset_builder().with_data(&arr).create("slot_rng")?;
        let tp =
            ndarray::Array2::from_shape_vec((self.train_lattice.lt, self.train_lattice.lx), self.two_point.clone())?;
        f.new_dataset_builder().with_data(&tp).create("two_point")?;
        if !self.magnetisation.is_empty() {
            f.new_dataset_builder().with_data(self.magnetisation.as_slice()).create("magnetisation")?;
        }
        let g = f.create_group("data_attrs")?;
        for (k, v) in &self.data_attrs {
            attrs::write_attr(&g, k, v)?;
        }
        self.loss_history.write(&f)?;
        let w = |k: &str, v: AttrValue| attrs::write_attr(&f, k, &v);
        w("kind", AttrValue::Str("latdiff-model".into()))?;
        w("arch", AttrValue::Str(serde_json::to_string(&self.arch)?))?;
        w("layout", AttrValue::Str(serde_json::to_string(&self.layout)?))?;
        w("optimiser", AttrValue::Str(serde_json::to_string(&self.optimiser)?))?;
        w("schedule", AttrValue::Str(serde_json::to_string(&self.schedule)?))?;
        w("step", AttrValue::I64(self.step as i64))?;
        w("train_lattice", AttrValue::I64s(vec![self.train_lattice.lt as i64, self.train_lattice.lx as i64]))?;
        w("n_params", AttrValue::I64(self.params.len() as i64))?;
        for (k, v) in &self.attrs {
            attrs::write_attr(&f, k, v)?;
        }
        f.flush()?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        // A file that starts like HDF5 but cannot be opened was cut short (a copy or a
        // transfer that stopped) or damaged: "not an HDF5 file" would point the wrong way.
        let f = crate::io::h5_open(path).map_err(|_| match crate::io::ensemble::is_hdf5(path) {
            true => anyhow!("{}: truncated or damaged HDF5 file, not a readable latdiff model", path.display()),
            false => anyhow!("{}: not an HDF5 file (truncated or not a latdiff model)", path.display()),
        })?;
        let kind = attrs::read_attr(&f, "kind").ok().and_then(|v| v.as_str().map(str::to_string));
        if kind.as_deref() != Some("latdiff-model") {
            bail!("{}: not a latdiff model file", path.display());
        }
        let s = |k: &str| -> Result<String> {
            attrs::read_attr(&f, k)?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{}: attribute '{k}' is not text", path.display()))
        };
        let arch: Arch = serde_json::from_str(&s("arch")?)?;
        let layout: ParamLayout = serde_json::from_str(&s("layout")?)?;
        let optimiser: AdamWConfig = serde_json::from_str(&s("optimiser")?)?;
        let schedule: SigmaSchedule = serde_json::from_str(&s("schedule")?)?;
        let step = attrs::read_attr(&f, "step")?.as_f64().unwrap_or(0.0) as u64;
        let lat = match attrs::read_attr(&f, "train_lattice")? {
            AttrValue::I64s(v) if v.len() == 2 => Lattice::new(v[0] as usize, v[1] as usize),
            other => bail!("{}: bad train_lattice {other:?}", path.display()),
        };
        let rd = |k: &str| -> Result<Vec<f32>> { Ok(f.dataset(k)?.read_raw::<f32>()?) };
        let words = f.dataset("slot_rng")?.read_raw::<u64>()?;
        let slot_rng = words.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        let g = f.group("data_attrs")?;
        let skip =
            ["kind", "arch", "layout", "optimiser", "schedule", "step", "train_lattice", "n_params", LOSS_PENDING];
        let attrs = attrs::read_all(&f)?.into_iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
        let m = ModelFile {
            arch,
            layout,
            params: rd("params")?,
            ema: rd("ema")?,
            adam_m: rd("adam_m")?,
            adam_v: rd("adam_v")?,
            step,
            slot_rng,
            optimiser,
            schedule,
            train_lattice: lat,
            two_point: f.dataset("two_point")?.read_raw::<f64>()?,
            magnetisation: match f.dataset("magnetisation") {
                Ok(d) => d.read_raw::<f64>()?,
                Err(_) => Vec::new(),
            },
            data_attrs: attrs::read_all(&g)?,
            loss_history: LossHistory::read(&f, path)?,
            attrs,
        };
        m.check_buffers(path)?;
        Ok(m)
    }

    /// The four flat buffers hold exactly the architecture's parameters: a file cut short or
    /// edited is refused at load, in one line, not by an assertion in sampling or in a
    /// resumed optimiser step.
    fn check_buffers(&self, path: &Path) -> Result<()> {
        let expected = match self.action_arch()? {
            Some(a) => crate::nn::ActionNet::new(a).num_params(),
            None => crate::nn::Network::new(self.arch.clone()).num_params(),
        };
        for (name, v) in
            [("params", &self.params), ("ema", &self.ema), ("adam_m", &self.adam_m), ("adam_v", &self.adam_v)]
        {
            if v.len() != expected {
                bail!(
                    "{}: /{name} holds {} values but the architecture has {expected} parameters (damaged model file)",
                    path.display(),
                    v.len()
                );
            }
        }
        Ok(())
    }
}
