//! HMC checkpoints: everything `latdiff hmc --resume` needs to continue a stopped run bit for
//! bit, written atomically to `OUT.ckpt` (HDF5) beside the output.
//!
//! The configurations produced so far are not copied into the checkpoint: they stay in the
//! output's partial file `.OUT.partial` (flushed before every checkpoint), and the
//! checkpoint records how many of its rows count. A resumed run truncates the partial file
//! to that many rows, so rows written after the last checkpoint (a SIGKILL between the two)
//! are produced again, identically.
//!
//! Layout: `/phi` float64 [n_chains, V], `/rng` uint64 [n_chains, 4] (xoshiro words; zero
//! for GPU chains, whose Philox stream is keyed by the trajectory count), `/counters` int64
//! [n_chains, 3] (n_traj, n_accept, hot start), `/cached` float64 [n_chains, 2] (S and the theory's thermalisation observable, Σφ for φ⁴),
//! `/stats` float64 [n_chains, 6] (production sums), `/therm_history` float64
//! [n_chains, 2·done] (thermalisation phase only); attributes `kind` =
//! `latdiff-hmc-checkpoint`, `config` (TOML), `phase`, `therm_target`, `rounds_done`,
//! `rows_written`, `therm_report` (JSON), `seconds`, `n_chains`, `n_ranks`, `latdiff_version`.

use super::engine::ChainState;
use super::therm::{ChainHistory, ThermReport};
use crate::io::attrs::{self, AttrValue};
use anyhow::{anyhow, bail, Context, Result};
use ndarray::{s, Array2};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// `OUT.ckpt`: the checkpoint of the run writing `out`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    out.with_file_name(format!("{name}.ckpt"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Thermalising towards `target` trajectories per chain.
    Therm { target: usize },
    /// Producing; `rounds_done` rounds of n_sep trajectories are in the output.
    Production { rounds_done: usize },
}

#[derive(Clone, Debug)]
pub struct HmcCheckpoint {
    pub config: String,
    pub phase: Phase,
    pub rows_written: usize,
    /// The thermalisation verdict (production phase).
    pub report: Option<ThermReport>,
    /// All chains when written; the requested range when read.
    pub chains: Vec<ChainState>,
    /// Thermalisation histories so far (thermalisation phase), same chains.
    pub hist: Vec<ChainHistory>,
    /// Production sums per chain (n, accepted, e^{−ΔH}, its square, ΔH, ΔH²).
    pub stats: Vec<[f64; 6]>,
    /// Wall time of the run before this checkpoint.
    pub seconds: f64,
    pub n_ranks: usize,
}

impl HmcCheckpoint {
    /// Writes atomically: a temporary sibling, then rename over any previous checkpoint.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, |tmp| self.write_to(tmp))
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        let n = self.chains.len();
        let v = self.chains.first().map_or(0, |c| c.phi.len());
        let f = crate::io::h5_create(path).with_context(|| format!("creating '{}'", path.display()))?;
        let phi: Vec<f64> = self.chains.iter().flat_map(|c| c.phi.iter().copied()).collect();
        f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, v), phi)?).create("phi")?;
        let rng: Vec<u64> = self.chains.iter().flat_map(|c| c.rng).collect();
        f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, 4), rng)?).create("rng")?;
        let counters: Vec<i64> =
            self.chains.iter().flat_map(|c| [c.n_traj as i64, c.n_accept as i64, i64::from(c.hot_start)]).collect();
        f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, 3), counters)?).create("counters")?;
        let cached: Vec<f64> = self.chains.iter().flat_map(|c| [c.action, c.monitor]).collect();
        f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, 2), cached)?).create("cached")?;
        let mut stats: Vec<f64> = self.stats.iter().flatten().copied().collect();
        stats.resize(6 * n, 0.0);
        f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, 6), stats)?).create("stats")?;
        let done = self.hist.first().map_or(0, |h| h.action_density.len());
        if done > 0 {
            let h: Vec<f64> =
                self.hist.iter().flat_map(|h| h.action_density.iter().chain(&h.monitor).copied()).collect();
            f.new_dataset_builder().with_data(&Array2::from_shape_vec((n, 2 * done), h)?).create("therm_history")?;
        }
        let (phase, target, rounds) = match self.phase {
            Phase::Therm { target } => ("therm", target, 0),
            Phase::Production { rounds_done } => ("production", 0, rounds_done),
        };
        let w = |k: &str, v: AttrValue| attrs::write_attr(&f, k, &v);
        w("kind", AttrValue::Str("latdiff-hmc-checkpoint".into()))?;
        w("config", AttrValue::Str(self.config.clone()))?;
        w("phase", AttrValue::Str(phase.into()))?;
        w("therm_target", AttrValue::I64(target as i64))?;
        w("rounds_done", AttrValue::I64(rounds as i64))?;
        w("rows_written", AttrValue::I64(self.rows_written as i64))?;
        w("therm_report", AttrValue::Str(serde_json::to_string(&self.report)?))?;
        w("seconds", AttrValue::F64(self.seconds))?;
        w("n_chains", AttrValue::I64(n as i64))?;
        w("n_ranks", AttrValue::I64(self.n_ranks as i64))?;
        w("latdiff_version", AttrValue::Str(crate::VERSION.into()))?;
        f.flush()?;
        Ok(())
    }

    fn open(path: &Path) -> Result<hdf5::File> {
        if !path.exists() {
            bail!("resume: no checkpoint at '{}'", path.display());
        }
        let f = crate::io::h5_open(path).map_err(|_| anyhow!("resume: '{}' is not an HDF5 file", path.display()))?;
        let kind = attrs::read_attr(&f, "kind").ok().and_then(|v| v.as_str().map(str::to_string));
        if kind.as_deref() != Some("latdiff-hmc-checkpoint") {
            bail!("resume: '{}' is not a latdiff HMC checkpoint", path.display());
        }
        Ok(f)
    }

    /// The stored configuration (TOML) only.
    pub fn read_config(path: &Path) -> Result<String> {
        let f = Self::open(path)?;
        attrs::read_attr(&f, "config")?.as_str().map(str::to_string).ok_or_else(|| anyhow!("resume: config unreadable"))
    }

    /// Reads the state of `chains` (global indices): each rank reads its own block.
    pub fn read(path: &Path, chains: Range<usize>) -> Result<Self> {
        let f = Self::open(path)?;
        let int = |k: &str| -> Result<usize> {
            attrs::read_attr(&f, k)?.as_f64().map(|x| x as usize).ok_or_else(|| anyhow!("resume: bad attribute {k}"))
        };
        let text = |k: &str| -> Result<String> {
            attrs::read_attr(&f, k)?.as_str().map(str::to_string).ok_or_else(|| anyhow!("resume: bad attribute {k}"))
        };
        let n_chains = int("n_chains")?;
        if chains.end > n_chains {
            bail!("resume: checkpoint holds {n_chains} chains, not {}", chains.end);
        }
        let (a, b) = (chains.start, chains.end);
        let phi = f.dataset("phi")?.read_slice_2d::<f64, _>(s![a..b, ..])?;
        let rng = f.dataset("rng")?.read_slice_2d::<u64, _>(s![a..b, ..])?;
        let counters = f.dataset("counters")?.read_slice_2d::<i64, _>(s![a..b, ..])?;
        let cached = f.dataset("cached")?.read_slice_2d::<f64, _>(s![a..b, ..])?;
        let stats = f.dataset("stats")?.read_slice_2d::<f64, _>(s![a..b, ..])?;
        let states = (0..b - a)
            .map(|i| ChainState {
                phi: phi.row(i).to_vec(),
                rng: std::array::from_fn(|k| rng[[i, k]]),
                n_traj: counters[[i, 0]] as u64,
                n_accept: counters[[i, 1]] as u64,
                hot_start: counters[[i, 2]] != 0,
                action: cached[[i, 0]],
                monitor: cached[[i, 1]],
            })
            .collect::<Vec<_>>();
        if let Some((i, c)) = states.iter().enumerate().find(|(_, c)| c.phi.iter().any(|x| !x.is_finite())) {
            let bad = c.phi.iter().filter(|x| !x.is_finite()).count();
            bail!(
                "resume: checkpoint '{}': chain {} holds {bad} non-finite field values (NaN or inf); it cannot be continued",
                path.display(),
                a + i
            );
        }
        let phase = match text("phase")?.as_str() {
            "therm" => Phase::Therm { target: int("therm_target")? },
            "production" => Phase::Production { rounds_done: int("rounds_done")? },
            other => bail!("resume: unknown phase '{other}'"),
        };
        let hist = match (phase, f.dataset("therm_history")) {
            (Phase::Therm { .. }, Ok(d)) => {
                let h = d.read_slice_2d::<f64, _>(s![a..b, ..])?;
                let done = h.ncols() / 2;
                (0..b - a)
                    .map(|i| ChainHistory {
                        hot_start: states[i].hot_start,
                        action_density: h.row(i).iter().take(done).copied().collect(),
                        monitor: h.row(i).iter().skip(done).copied().collect(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(HmcCheckpoint {
            config: text("config")?,
            phase,
            rows_written: int("rows_written")?,
            report: serde_json::from_str(&text("therm_report")?)?,
            chains: states,
            hist,
            stats: (0..b - a).map(|i| std::array::from_fn(|k| stats[[i, k]])).collect(),
            seconds: attrs::read_attr(&f, "seconds")?.as_f64().unwrap_or(0.0),
            n_ranks: int("n_ranks")?,
        })
    }
}
