//! What an SMC run reports: per-replica log Z, resamplings and ancestors as file
//! attributes, per-level ESS and MALA figures as datasets of the group `/smc_levels`
//! (README: "SMC output"), and one summary line. The level records are R × N numbers: as
//! attributes they outgrow HDF5's 64 KiB object header at 64 replicas of 200 levels, which
//! failed the write after the whole run.

use anyhow::Result;

use crate::diffusion::smc::resample::combined_log_z;
use crate::diffusion::smc::SmcSettings;
use crate::diffusion::smc::{LevelRecord, Replica};
use crate::io::{AttrValue, EnsembleWriter};

/// Per-replica figures that travel to rank 0 (the configurations go separately).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStats {
    pub log_z: f64,
    pub resamplings: usize,
    pub distinct_ancestors: usize,
    pub levels: Vec<LevelRecord>,
}

pub const LEVEL_FIELDS: usize = 6;

impl ReplicaStats {
    pub fn of(r: &Replica) -> Self {
        ReplicaStats {
            log_z: r.log_z,
            resamplings: r.resamplings,
            distinct_ancestors: r.distinct_ancestors(),
            levels: r.levels.clone(),
        }
    }

    pub fn to_f64s(&self) -> Vec<f64> {
        let mut x = vec![self.log_z, self.resamplings as f64, self.distinct_ancestors as f64];
        for l in &self.levels {
            x.extend([
                l.sigma,
                l.ess_fraction,
                f64::from(u8::from(l.resampled)),
                l.acceptance,
                l.step,
                l.lineages as f64,
            ]);
        }
        x
    }

    pub fn from_f64s(x: &[f64]) -> Self {
        let levels = x[3..]
            .chunks(LEVEL_FIELDS)
            .map(|l| LevelRecord {
                sigma: l[0],
                ess_fraction: l[1],
                resampled: l[2] != 0.0,
                acceptance: l[3],
                step: l[4],
                lineages: l[5] as usize,
            })
            .collect();
        ReplicaStats { log_z: x[0], resamplings: x[1] as usize, distinct_ancestors: x[2] as usize, levels }
    }
}

/// The group of the per-level records.
pub const LEVELS_GROUP: &str = "smc_levels";

/// `/smc_levels` read back for the figures: per level (in the order visited) and replica.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelTable {
    pub sigma: Vec<f64>,
    /// [R][N]: ESS/n on arrival at each level, before any resampling.
    pub ess_fraction: Vec<Vec<f64>>,
    /// [R][N]: distinct lineages after each level (empty in files written before it).
    pub lineages: Vec<Vec<f64>>,
    /// Particles per replica (the `particles_per_replica` attribute).
    pub n_particles: usize,
}

/// The file's `/smc_levels`, `None` when it has none (not an SMC output).
pub fn read_levels(file: &hdf5::File) -> Result<Option<LevelTable>> {
    let Ok(g) = file.group(LEVELS_GROUP) else {
        return Ok(None);
    };
    let sigma = g.dataset("sigma")?.read_raw::<f64>()?;
    let n = sigma.len().max(1);
    let rows = |x: Vec<f64>| -> Vec<Vec<f64>> { x.chunks(n).map(<[f64]>::to_vec).collect() };
    let ess_fraction = rows(g.dataset("ess_fraction")?.read_raw::<f64>()?);
    let lineages = match g.dataset("lineages") {
        Ok(d) => rows(d.read_raw::<i64>()?.into_iter().map(|x| x as f64).collect()),
        Err(_) => Vec::new(),
    };
    let n_particles = crate::io::attrs::read_attr(file, "particles_per_replica")
        .ok()
        .and_then(|v| v.as_f64())
        .map_or(0, |x| x as usize);
    Ok(Some(LevelTable { sigma, ess_fraction, lineages, n_particles }))
}

/// The replicas' figures in replica order.
pub struct Report<'a> {
    stats: &'a [ReplicaStats],
    n_particles: usize,
    /// Mean over replicas of the final weights' ESS/n (1 after a final resampling).
    pub final_ess_fraction: f64,
}

impl<'a> Report<'a> {
    pub fn new(stats: &'a [ReplicaStats], n_particles: usize) -> Self {
        let finals: Vec<f64> = stats
            .iter()
            .map(|s| s.levels.last().map_or(1.0, |l| if l.resampled { 1.0 } else { l.ess_fraction }))
            .collect();
        let final_ess_fraction = finals.iter().sum::<f64>() / finals.len().max(1) as f64;
        Report { stats, n_particles, final_ess_fraction }
    }

    fn log_z(&self) -> Vec<f64> {
        self.stats.iter().map(|s| s.log_z).collect()
    }

    /// Every replica's records of level field `f`, replica-major.
    fn levels<T>(&self, f: impl Fn(&crate::diffusion::smc::LevelRecord) -> T) -> Vec<T> {
        self.stats.iter().flat_map(|s| s.levels.iter().map(&f)).collect()
    }

    pub fn write_attrs(&self, w: &EnsembleWriter, settings: &SmcSettings, surrogate: &str) -> Result<()> {
        let int = |x: usize| AttrValue::I64(x as i64);
        let ints =
            |f: &dyn Fn(&ReplicaStats) -> usize| AttrValue::I64s(self.stats.iter().map(|s| f(s) as i64).collect());
        let (log_z, log_z_err) = combined_log_z(&self.log_z());
        w.set_attr("n_chains", int(self.stats.len()))?;
        w.set_attr("replicas", int(self.stats.len()))?;
        w.set_attr("particles_per_replica", int(self.n_particles))?;
        w.set_attr("resample_ess", AttrValue::F64(settings.resample_ess))?;
        w.set_attr("rejuvenate", int(settings.rejuvenate))?;
        w.set_attr("smc_surrogate", AttrValue::Str(surrogate.into()))?;
        w.set_attr("log_z", AttrValue::F64s(self.log_z()))?;
        w.set_attr("log_z_combined", AttrValue::F64(log_z))?;
        w.set_attr("log_z_combined_err", AttrValue::F64(log_z_err))?;
        w.set_attr("resamplings", ints(&|s| s.resamplings))?;
        w.set_attr("distinct_ancestors", ints(&|s| s.distinct_ancestors))?;
        self.write_levels(w)
    }

    /// `/smc_levels/sigma` [N] and, [R, N] replica-major, `ess_fraction`, `resampled`,
    /// `acceptance`, `step`, `lineages`.
    fn write_levels(&self, w: &EnsembleWriter) -> Result<()> {
        let g = w.file().create_group(LEVELS_GROUP)?;
        let sigma: Vec<f64> =
            self.stats.first().map(|s| s.levels.iter().map(|l| l.sigma).collect()).unwrap_or_default();
        g.new_dataset_builder().with_data(sigma.as_slice()).create("sigma")?;
        let shape = (self.stats.len(), sigma.len());
        let f64s = |name: &str, x: Vec<f64>| -> Result<()> {
            g.new_dataset_builder().with_data(&ndarray::Array2::from_shape_vec(shape, x)?).create(name)?;
            Ok(())
        };
        f64s("ess_fraction", self.levels(|l| l.ess_fraction))?;
        f64s("acceptance", self.levels(|l| l.acceptance))?;
        f64s("step", self.levels(|l| l.step))?;
        let resampled = ndarray::Array2::from_shape_vec(shape, self.levels(|l| i64::from(l.resampled)))?;
        g.new_dataset_builder().with_data(&resampled).create("resampled")?;
        let lineages = ndarray::Array2::from_shape_vec(shape, self.levels(|l| l.lineages as i64))?;
        g.new_dataset_builder().with_data(&lineages).create("lineages")?;
        Ok(())
    }

    /// A warning when a replica descends from fewer starting particles than `analyze` trusts
    /// (`MIN_RELIABLE_ESS`): even weights then hide that only a few lineages were explored.
    pub fn lineage_warning(&self) -> Option<String> {
        let fewest = self.stats.iter().map(|s| s.distinct_ancestors).min()?;
        let floor = crate::analysis::observables::MIN_RELIABLE_ESS;
        ((fewest as f64) < floor).then(|| {
            format!(
                "warning: a replica descends from only {fewest} of its {} starting particles (< {floor}): its particles explored what those few lineages reached, so the estimates and their replica errors are not to be trusted (more particles per replica, or `latdiff analyze` to see the flag)",
                self.n_particles
            )
        })
    }

    /// log Z, resamplings, ancestors, the smallest ESS/n and the mean MALA acceptance.
    pub fn summary_line(&self) -> String {
        let r = self.stats.len().max(1) as f64;
        let (log_z, err) = combined_log_z(&self.log_z());
        let resamplings = self.stats.iter().map(|s| s.resamplings).sum::<usize>() as f64 / r;
        let distinct: Vec<usize> = self.stats.iter().map(|s| s.distinct_ancestors).collect();
        let min_ess = self.levels(|l| l.ess_fraction).into_iter().fold(f64::INFINITY, f64::min);
        let acc: Vec<f64> = self.levels(|l| l.acceptance).into_iter().filter(|a| a.is_finite()).collect();
        let log_z = if err.is_finite() {
            crate::util::fmt_pm(log_z, err)
        } else {
            format!("{} ± unavailable (1 replica)", crate::util::fmt_sig(log_z, 6))
        };
        format!(
            "log Z = {log_z}, {resamplings:.1} resamplings per replica, distinct ancestors {}..{} of {}, smallest ESS/N {min_ess:.3} on arrival at a level, final ESS/N {:.3}, MALA acceptance {}",
            distinct.iter().min().unwrap_or(&0),
            distinct.iter().max().unwrap_or(&0),
            self.n_particles,
            self.final_ess_fraction,
            if acc.is_empty() { "n/a".into() } else { format!("{:.3}", acc.iter().sum::<f64>() / acc.len() as f64) },
        )
    }
}
