//! HDF5 files: ensembles (configurations plus per-configuration columns) and their
//! attributes. Every output is written under a temporary name and renamed when complete,
//! so a killed job leaves the previous file or none, never a half-written one.

pub mod attrs;
pub mod ensemble;
pub mod model;

pub use attrs::AttrValue;
pub use ensemble::{Ensemble, EnsembleWriter};

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Checks, before any work, that `path` may be written: refuses to overwrite without
/// `force` and names a missing directory.
pub fn check_output_path(path: &Path, force: bool) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("out: empty output path");
    }
    if path.exists() && !force {
        bail!("out: '{}' exists (use --force to overwrite)", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("out: directory '{}' does not exist", parent.display());
    }
    Ok(())
}

/// The temporary sibling a file is written to before the atomic rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
