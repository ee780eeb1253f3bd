//! Ensemble files.
//!
//! Layout (documented in README.md):
//!   /configs     float32 [N, L_t, L_x] (one value per site, φ⁴) or [N, C, L_t, L_x] (C
//!                values per site, U(1): the two link angles) or [N, C, L_t, L_x, K]
//!                (SU(2): two links of K = 4 quaternion components), one configuration
//!                per chunk, shuffle + deflate
//!   /action      float64 [N]   S of each configuration
//!   /delta_h     float64 [N]   ΔH of the trajectory that produced it (HMC)
//!   /chain       int64   [N]   global chain (or sample-stream) index
//!   /trajectory  int64   [N]   trajectory number within its chain
//!   further float64 [N] columns on request (e.g. /log_weight from the sampler)
//! and root attributes describing the run (see `attrs`).

use super::attrs::{self, AttrValue};
use crate::lattice::Lattice;
use anyhow::{bail, Context, Result};
use hdf5::{Extent, Hyperslab, SimpleExtents, SliceOrIndex};
use ndarray::{ArrayView1, ArrayViewD, IxDyn};
use std::path::{Path, PathBuf};

const COLUMN_CHUNK: usize = 4096;

/// The shape of one configuration in /configs: [L_t, L_x], [C, L_t, L_x] for fields with
/// C values per site, or [C, L_t, L_x, K] (a theory's `dof_shape`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigShape(Vec<usize>);

impl ConfigShape {
    /// [L_t, L_x], [C, L_t, L_x] (C ≥ 2: U(1) link angles) or [C, L_t, L_x, K] (K values
    /// per link: SU(2) quaternions); anything else is not an ensemble latdiff writes.
    pub fn new(dims: Vec<usize>) -> Result<Self> {
        match dims.len() {
            2..=4 => Ok(ConfigShape(dims)),
            n => bail!(
                "a configuration of {n} dimensions {dims:?} (expected [L_t, L_x], [C, L_t, L_x] or [C, L_t, L_x, K])"
            ),
        }
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Values per configuration.
    pub fn len(&self) -> usize {
        self.0.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per site: 1 for [L_t, L_x], C for [C, L_t, L_x], C·K for [C, L_t, L_x, K].
    pub fn components(&self) -> usize {
        match self.0.len() {
            3 => self.0[0],
            4 => self.0[0] * self.0[3],
            _ => 1,
        }
    }

    pub fn lattice(&self) -> Lattice {
        match self.0.len() {
            2 => Lattice::new(self.0[0], self.0[1]),
            _ => Lattice::new(self.0[1], self.0[2]),
        }
    }

    /// [rows, dims...].
    fn with_rows(&self, rows: usize) -> Vec<usize> {
        std::iter::once(rows).chain(self.0.iter().copied()).collect()
    }

    /// Rows a..b, every value of each.
    fn rows(&self, a: usize, b: usize) -> Hyperslab {
        let mut sel = vec![SliceOrIndex::from(a..b)];
        sel.extend(self.0.iter().map(|_| SliceOrIndex::from(..)));
        Hyperslab::from(sel)
    }
}

impl From<Lattice> for ConfigShape {
    fn from(l: Lattice) -> Self {
        ConfigShape(vec![l.lt, l.lx])
    }
}

/// Streams an ensemble to disk: rows are appended as they arrive, so memory stays
/// bounded whatever N is. Nothing appears under the final name until `finish`.
pub struct EnsembleWriter {
    file: Option<hdf5::File>,
    tmp: PathBuf,
    path: PathBuf,
    shape: ConfigShape,
    configs: Option<hdf5::Dataset>,
    f64_cols: Vec<(String, hdf5::Dataset)>,
    i64_cols: Vec<(String, hdf5::Dataset)>,
    n: usize,
    /// Written at the fixed `.NAME.partial` and kept when unfinished (a checkpoint refers to it).
    resumable: bool,
}

impl EnsembleWriter {
    /// `f64_columns` and `i64_columns` name the per-configuration columns besides /configs.
    pub fn create(
        path: &Path,
        shape: impl Into<ConfigShape>,
        f64_columns: &[&str],
        i64_columns: &[&str],
    ) -> Result<Self> {
        Self::create_at(path, super::temp_path(path), false, shape.into(), f64_columns, i64_columns)
    }

    /// As `create`, but written to `.NAME.partial` and kept when the run stops unfinished, so
    /// that `reopen` can continue it.
    pub fn create_resumable(
        path: &Path,
        shape: impl Into<ConfigShape>,
        f64_columns: &[&str],
        i64_columns: &[&str],
    ) -> Result<Self> {
        Self::create_at(path, super::partial_path(path), true, shape.into(), f64_columns, i64_columns)
    }

    /// Continues the partial file of a resumable run after its first `rows` rows; rows beyond
    /// (written after the last checkpoint) are dropped.
    pub fn reopen(
        path: &Path,
        shape: impl Into<ConfigShape>,
        f64_columns: &[&str],
        i64_columns: &[&str],
        rows: usize,
    ) -> Result<Self> {
        let shape = shape.into();
        let tmp = super::partial_path(path);
        let file = super::h5_open_rw(&tmp)
            .map_err(|e| anyhow::anyhow!("resume: cannot open the partial output '{}': {e}", tmp.display()))?;
        let configs = file.dataset("configs")?;
        let have = configs.shape().first().copied().unwrap_or(0);
        if have < rows {
            bail!("resume: the partial output '{}' has {have} rows, the checkpoint counts {rows}", tmp.display());
        }
        configs.resize(shape.with_rows(rows))?;
        let mut f64_cols = Vec::new();
        for name in f64_columns {
            let d = file.dataset(name)?;
            d.resize(rows)?;
            f64_cols.push((name.to_string(), d));
        }
        let mut i64_cols = Vec::new();
        for name in i64_columns {
            let d = file.dataset(name)?;
            d.resize(rows)?;
            i64_cols.push((name.to_string(), d));
        }
        Ok(EnsembleWriter {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
            shape,
            configs: Some(configs),
            f64_cols,
            i64_cols,
            n: rows,
            resumable: true,
        })
    }

    fn create_at(
        path: &Path,
        tmp: PathBuf,
        resumable: bool,
        shape: ConfigShape,
        f64_columns: &[&str],
        i64_columns: &[&str],
    ) -> Result<Self> {
        let file = super::h5_create(&tmp).with_context(|| format!("creating '{}'", tmp.display()))?;
        let extents: Vec<Extent> =
            std::iter::once(Extent::resizable(0)).chain(shape.dims().iter().map(|&d| Extent::from(d))).collect();
        let configs = file
            .new_dataset::<f32>()
            .chunk(shape.with_rows(1))
            .shuffle()
            .deflate(4)
            .shape(SimpleExtents::from(extents))
            .create("configs")?;
        let mut f64_cols = Vec::new();
        for name in f64_columns {
            let d = file.new_dataset::<f64>().chunk(COLUMN_CHUNK).shape(0..).create(*name)?;
            f64_cols.push((name.to_string(), d));
        }
        let mut i64_cols = Vec::new();
        for name in i64_columns {
            let d = file.new_dataset::<i64>().chunk(COLUMN_CHUNK).shape(0..).create(*name)?;
            i64_cols.push((name.to_string(), d));
        }
        Ok(EnsembleWriter {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
            shape,
            configs: Some(configs),
            f64_cols,
            i64_cols,
            n: 0,
            resumable,
        })
    }

    /// Pushes everything appended so far to disk (before a checkpoint refers to it).
    pub fn flush(&self) -> Result<()> {
        Ok(self.file().flush()?)
    }

    pub fn file(&self) -> &hdf5::File {
        self.file.as_ref().expect("open until finish")
    }

    pub fn set_attr(&self, name: &str, value: AttrValue) -> Result<()> {
        attrs::write_attr(self.file(), name, &value)
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Appends `k` rows: `configs` holds k·V values, each column k values, in the order
    /// the columns were declared.
    pub fn append(&mut self, configs: &[f32], f64_cols: &[&[f64]], i64_cols: &[&[i64]]) -> Result<()> {
        let v = self.shape.len();
        if configs.len() % v != 0 {
            bail!("internal: {} values is not a whole number of {}-value configurations", configs.len(), v);
        }
        let k = configs.len() / v;
        if f64_cols.len() != self.f64_cols.len() || i64_cols.len() != self.i64_cols.len() {
            bail!("internal: column count mismatch when appending");
        }
        if k == 0 {
            return Ok(());
        }
        let (a, b) = (self.n, self.n + k);
        let ds = self.configs.as_ref().expect("open until finish");
        ds.resize(self.shape.with_rows(b))?;
        ds.write_slice(ArrayViewD::from_shape(IxDyn(&self.shape.with_rows(k)), configs)?, self.shape.rows(a, b))?;
        for ((name, d), col) in self.f64_cols.iter().zip(f64_cols) {
            if col.len() != k {
                bail!("internal: column '{name}' has {} rows, expected {k}", col.len());
            }
            d.resize(b)?;
            d.write_slice(ArrayView1::from(*col), a..b)?;
        }
        for ((name, d), col) in self.i64_cols.iter().zip(i64_cols) {
            if col.len() != k {
                bail!("internal: column '{name}' has {} rows, expected {k}", col.len());
            }
            d.resize(b)?;
            d.write_slice(ArrayView1::from(*col), a..b)?;
        }
        self.n = b;
        Ok(())
    }

    /// Flushes, closes and renames into place. On failure (a full disk) the temporary is
    /// removed like an unfinished one, unless it is resumable or kept on purpose
    /// (`publish::OutputAppeared`).
    pub fn finish(mut self) -> Result<()> {
        let r = self.close_and_publish();
        if let Err(e) = &r {
            if !self.resumable {
                super::discard_unless_kept(e, &self.tmp);
            }
        }
        r
    }

    fn close_and_publish(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.flush()?;
            // HDF5 closes a file only when no dataset handle is left open: drop them first, so
            // the file is really closed before it appears under its final name.
            self.f64_cols.clear();
            self.i64_cols.clear();
            self.configs = None;
            f.close()?;
        }
        super::durable_rename(&self.tmp, &self.path)
    }
}

impl Drop for EnsembleWriter {
    fn drop(&mut self) {
        // Not finished (error or panic): never leave a partial file behind, unless a
        // checkpoint may refer to it.
        if let Some(f) = self.file.take() {
            let _ = f.flush();
            drop(f);
            if !self.resumable {
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
    }
}

/// A read-only view of an ensemble file; configurations are read in ranges, never all at once
/// unless asked.
pub struct Ensemble {
    pub path: PathBuf,
    pub file: hdf5::File,
    pub lattice: Lattice,
    /// One configuration's shape: [L_t, L_x], [C, L_t, L_x] (U(1) link angles) or
    /// [C, L_t, L_x, K] (SU(2) link quaternions).
    pub shape: ConfigShape,
    pub n: usize,
    configs: hdf5::Dataset,
}

impl Ensemble {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        super::check_regular_input(path, "input")?;
        let file = super::h5_open(path).map_err(|e| {
            if is_hdf5(path) {
                anyhow::anyhow!("{}: truncated or damaged HDF5 file ({e})", path.display())
            } else {
                anyhow::anyhow!("{}: not an HDF5 file", path.display())
            }
        })?;
        let configs = file
            .dataset("configs")
            .map_err(|_| anyhow::anyhow!("{}: no /configs dataset (not a latdiff ensemble)", path.display()))?;
        let dims = configs.shape();
        let shape = match dims.split_first() {
            Some((_, rest)) if matches!(rest.len(), 2..=4) => ConfigShape(rest.to_vec()),
            _ => bail!(
                "{}: /configs has shape {:?}, expected [N, L_t, L_x], [N, C, L_t, L_x] or [N, C, L_t, L_x, K]",
                path.display(),
                dims
            ),
        };
        check_configs_dtype(&configs).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        check_lattice_attr(&file, &shape).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Ensemble { path: path.to_path_buf(), file, lattice: shape.lattice(), shape, n: dims[0], configs })
    }

    pub fn attr(&self, name: &str) -> Result<AttrValue> {
        attrs::read_attr(&self.file, name).with_context(|| format!("{}", self.path.display()))
    }

    pub fn attr_f64(&self, name: &str) -> Option<f64> {
        attrs::read_attr(&self.file, name).ok().and_then(|v| v.as_f64())
    }

    pub fn attr_str(&self, name: &str) -> Option<String> {
        attrs::read_attr(&self.file, name).ok().and_then(|v| v.as_str().map(str::to_string))
    }

    pub fn attrs(&self) -> Result<Vec<(String, AttrValue)>> {
        attrs::read_all(&self.file)
    }

    /// The theory and couplings the file was generated for, read by the theory
    /// (`Couplings::from_attrs`).
    pub fn couplings(&self) -> Result<crate::theory::Couplings> {
        crate::theory::Couplings::from_attrs(&|k| self.attr_str(k), &|k| self.attr_f64(k)).map_err(|e| {
            // Link-shaped configurations without a `theory` label: say what is missing.
            let hint = match self.attr_str("theory") {
                None if self.shape.components() == 2 && !e.contains("'theory'") => {
                    "; /configs holds 2 values per site, as U(1) links do: a U(1) file needs the attributes theory = \"u1\" and beta"
                }
                _ => "",
            };
            anyhow::anyhow!("{}: {e}{hint}", self.path.display())
        })
    }

    /// The φ⁴ couplings the file was generated for.
    pub fn theory(&self) -> Result<crate::theory::Parametrisation> {
        self.couplings()?.phi4().map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.link_exists(name)
    }

    /// Configurations [a, b) as f32, row-major [b−a, shape...]. A non-finite value is
    /// refused naming its configuration: one NaN site would otherwise turn every
    /// observable into NaN, or a training's validation loss, without saying where.
    /// Both are bad input (exit code 2), as is a file whose configurations cannot be read.
    pub fn read_configs(&self, a: usize, b: usize) -> Result<Vec<f32>> {
        let arr = self.configs.read_slice::<f32, _, IxDyn>(self.shape.rows(a, b)).map_err(|e| {
            let e = super::full::one_line(&e.into());
            crate::error::input_err(anyhow::anyhow!(
                "{}: configurations {a}..{b} cannot be read (damaged file?): {e}",
                self.path.display()
            ))
        })?;
        let values = arr.into_raw_vec_and_offset().0;
        self.check_finite(a, &values).map_err(crate::error::input_err)?;
        Ok(values)
    }

    /// `values` are configurations a, a+1, …: the first non-finite one is named, with how
    /// many of those read are affected.
    fn check_finite(&self, a: usize, values: &[f32]) -> Result<()> {
        let v = self.shape.len().max(1);
        let Some(first) = values.iter().position(|x| !x.is_finite()) else { return Ok(()) };
        let bad = values.chunks(v).filter(|c| c.iter().any(|x| !x.is_finite())).count();
        let others = match bad {
            1 => String::new(),
            n => format!(" ({} of configurations {a}..{} are affected)", n, a + values.len() / v),
        };
        bail!(
            "{}: configuration {} of /configs holds {} at value {}{others}: non-finite input data are refused",
            self.path.display(),
            a + first / v,
            values[first],
            first % v
        )
    }

    /// A content hash of the configurations (and the chain labels, which pick the held-out
    /// set): FNV-1a (64 bit) over /configs' shape and values as read, as f32 little-endian,
    /// then /chain. Reads every configuration once, in chunks, so it also refuses a
    /// non-finite value anywhere in the file.
    pub fn content_hash(&self) -> Result<String> {
        let mut h = Fnv1a::default();
        for &d in std::iter::once(&self.n).chain(self.shape.dims()) {
            h.write(&(d as u64).to_le_bytes());
        }
        let chunk = (16 << 20) / (4 * self.shape.len().max(1));
        let mut a = 0;
        while a < self.n {
            let b = (a + chunk.max(1)).min(self.n);
            for x in self.read_configs(a, b)? {
                h.write(&x.to_le_bytes());
            }
            a = b;
        }
        if self.has("chain") {
            for c in self.read_i64("chain")? {
                h.write(&c.to_le_bytes());
            }
        }
        Ok(format!("fnv1a64:{:016x}", h.0))
    }

    pub fn read_f64(&self, name: &str) -> Result<Vec<f64>> {
        let d = self.file.dataset(name).with_context(|| format!("{}: no /{name}", self.path.display()))?;
        Ok(d.read_raw::<f64>()?)
    }

    pub fn read_i64(&self, name: &str) -> Result<Vec<i64>> {
        let d = self.file.dataset(name).with_context(|| format!("{}: no /{name}", self.path.display()))?;
        Ok(d.read_raw::<i64>()?)
    }
}

/// FNV-1a, 64 bit: simple, stable across versions and platforms, enough to tell a changed
/// file from the same one (not a defence against a deliberate collision).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// /configs must hold 32- or 64-bit floats: HDF5 would convert integers or half floats
/// silently, and a field stored as integers is not one latdiff wrote.
fn check_configs_dtype(configs: &hdf5::Dataset) -> Result<()> {
    let dt = configs.dtype()?;
    match dt.to_descriptor() {
        Ok(hdf5::types::TypeDescriptor::Float(_)) if dt.size() >= 4 => Ok(()),
        Ok(d) => bail!("/configs holds {d} values, expected float32"),
        Err(_) => {
            bail!("/configs holds values of a type latdiff cannot read ({} bytes each), expected float32", dt.size())
        }
    }
}

/// A `lattice` attribute, where present, must name the lattice /configs has: the couplings
/// and the analysis are read for that lattice.
fn check_lattice_attr(file: &hdf5::File, shape: &ConfigShape) -> Result<()> {
    let Ok(value) = attrs::read_attr(file, "lattice") else { return Ok(()) };
    let lat = shape.lattice();
    match value {
        AttrValue::I64s(v) if v == [lat.lt as i64, lat.lx as i64] => Ok(()),
        AttrValue::I64s(v) if v.len() == 2 => {
            bail!("attribute lattice = {}x{} but /configs holds {lat} configurations", v[0], v[1])
        }
        other => bail!("attribute lattice = {other} is not [L_t, L_x]"),
    }
}

/// Whether the file starts with the HDF5 signature (at 0 or at a user-block offset).
pub fn is_hdf5(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const SIG: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut off = 0u64;
    while off + 8 <= len {
        let mut buf = [0u8; 8];
        if f.seek(SeekFrom::Start(off)).is_err() || f.read_exact(&mut buf).is_err() {
            return false;
        }
        if &buf == SIG {
            return true;
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.h5");
        let lat = Lattice::new(2, 3);
        let mut w = EnsembleWriter::create(&path, lat, &["action"], &["chain"]).unwrap();
        w.set_attr("kappa", AttrValue::F64(0.25)).unwrap();
        w.set_attr("theory", AttrValue::Str("phi4".into())).unwrap();
        w.set_attr("lattice", AttrValue::I64s(vec![2, 3])).unwrap();
        let c1: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        w.append(&c1, &[&[1.0, 2.0]], &[&[0, 1]]).unwrap();
        w.append(&c1[..6], &[&[3.0]], &[&[7]]).unwrap();
        assert!(!path.exists(), "final name must not exist before finish");
        w.finish().unwrap();
        let e = Ensemble::open(&path).unwrap();
        assert_eq!((e.n, e.lattice), (3, lat));
        assert_eq!(e.read_configs(1, 3).unwrap(), [&c1[6..12], &c1[..6]].concat());
        assert_eq!(e.read_f64("action").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(e.read_i64("chain").unwrap(), vec![0, 1, 7]);
        assert_eq!(e.attr_f64("kappa"), Some(0.25));
        assert_eq!(e.attr_str("theory").as_deref(), Some("phi4"));
        assert_eq!(e.attr("lattice").unwrap(), AttrValue::I64s(vec![2, 3]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left behind");
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        let hash = |b: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(b);
            h.0
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// The hash follows the content, not the file: a copy hashes alike, one changed value
    /// (or chain label) does not; a NaN is refused naming its configuration.
    #[test]
    fn content_hash_follows_the_content_and_refuses_nan() {
        let dir = tempfile::tempdir().unwrap();
        let lat = Lattice::new(2, 3);
        let write = |name: &str, x: f32, chain: i64| {
            let path = dir.path().join(name);
            let mut w = EnsembleWriter::create(&path, lat, &[], &["chain"]).unwrap();
            let mut c: Vec<f32> = (0..18).map(|i| i as f32 * 0.25).collect();
            c[13] = x;
            w.append(&c, &[], &[&[0, 0, chain]]).unwrap();
            w.finish().unwrap();
            Ensemble::open(&path).unwrap()
        };
        let a = write("a.h5", 1.5, 1).content_hash().unwrap();
        assert!(a.starts_with("fnv1a64:") && a.len() == 24, "{a}");
        assert_eq!(write("copy.h5", 1.5, 1).content_hash().unwrap(), a);
        assert_ne!(write("value.h5", 1.25, 1).content_hash().unwrap(), a);
        assert_ne!(write("chain.h5", 1.5, 2).content_hash().unwrap(), a);
        let e = write("nan.h5", f32::NAN, 1).content_hash().unwrap_err().to_string();
        assert!(e.contains("configuration 2 of /configs holds NaN at value 1"), "{e}");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.h5");
        {
            let mut w = EnsembleWriter::create(&path, Lattice::square(2), &[], &[]).unwrap();
            w.append(&[0.0; 4], &[], &[]).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn open_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.h5");
        assert!(Ensemble::open(&missing).err().unwrap().to_string().contains("no such file"));
        let txt = dir.path().join("x.h5");
        std::fs::write(&txt, "hello").unwrap();
        assert!(Ensemble::open(&txt).err().unwrap().to_string().contains("not an HDF5 file"));
    }
}
