//! HDF5 files: ensembles (configurations plus per-configuration columns) and their
//! attributes. Every output is written under a temporary name and renamed when complete,
//! so a killed job leaves the previous file or none, never a half-written one.

pub mod attrs;
pub mod debris;
pub mod ensemble;
pub mod full;
pub mod lock;

pub use attrs::AttrValue;
pub use ensemble::{Ensemble, EnsembleWriter};
pub use lock::OutputLock;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Checks, before any work, that `path` may be written: refuses to overwrite without
/// `force`, names a missing directory, and creates and removes a file in the directory, so
/// that a directory the run cannot write is found now rather than at the first checkpoint.
pub fn check_output_path(path: &Path, force: bool) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("out: empty output path");
    }
    // Even with --force: the run would end by failing to rename its file over a directory.
    if path.is_dir() {
        bail!("out: '{}' is a directory; name a file (e.g. '{}')", path.display(), path.join("out.h5").display());
    }
    if path.exists() && !force {
        bail!("out: '{}' exists (use --force to overwrite)", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("out: directory '{}' does not exist", parent.display());
    }
    let probe = hidden_sibling(path, &format!("probe.{}", process_tag()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("out: directory '{}' is not writable ({e})", parent.display()),
    }
}

/// Refuses an output that is the same file as an input (also through a hard or symbolic
/// link), `--force` or not: the run would replace the file it is still reading.
pub fn check_not_input(out: &Path, input: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // An output that does not exist yet cannot be an existing input.
    if let (Ok(o), Ok(i)) = (std::fs::metadata(out), std::fs::metadata(input)) {
        if (o.dev(), o.ino()) == (i.dev(), i.ino()) {
            bail!(
                "out: '{}' is the same file as the {what} '{}' (refused even with --force)",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// `HOST.PID`: names this process uniquely across the nodes sharing a file system (a PID
/// alone repeats between nodes).
pub fn process_tag() -> String {
    format!("{}.{}", lock::hostname(), std::process::id())
}

/// `.NAME.SUFFIX` beside `path`.
fn hidden_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// The temporary sibling a file is written to before the atomic rename: `.NAME.tmp.HOST.PID`,
/// this process's own, so two runs never write into one temporary.
pub fn temp_path(path: &Path) -> PathBuf {
    hidden_sibling(path, &format!("tmp.{}", process_tag()))
}

/// Writes a whole file atomically: `write` fills a temporary sibling, which is then renamed
/// over `path` (a failed write removes the temporary and leaves any previous file).
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("renaming '{}' into '{}': {e}", tmp.display(), path.display()))
}

/// `.NAME.partial`: where a resumable run (HMC) writes its output until it is complete. Unlike
/// the per-process temporary it has a fixed name, so that a resumed run finds it; the
/// output's lock (`lock`) keeps a second run from writing it at the same time.
pub fn partial_path(path: &Path) -> PathBuf {
    hidden_sibling(path, "partial")
}

/// Opens an existing HDF5 file for appending, without file locks (see `h5_open`).
pub fn h5_open_rw(path: &Path) -> hdf5::Result<hdf5::File> {
    let mut b = hdf5::File::with_options();
    b.fapl().file_locking(false);
    b.open_rw(path)
}

/// Opens an HDF5 file for reading without HDF5's file locks. Outputs only ever appear by
/// rename once complete, so the locks protect nothing here; they do break on parallel file
/// systems without flock, and a lock inherited by a child process across fork() blocks
/// later opens of the same file.
pub fn h5_open(path: &Path) -> hdf5::Result<hdf5::File> {
    let mut b = hdf5::File::with_options();
    b.fapl().file_locking(false);
    b.open(path)
}

/// Creates (truncates) an HDF5 file without file locks (see `h5_open`).
pub fn h5_create(path: &Path) -> hdf5::Result<hdf5::File> {
    let mut b = hdf5::File::with_options();
    b.fapl().file_locking(false);
    b.create(path)
}
