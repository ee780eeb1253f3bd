//! HDF5 files: ensembles (configurations plus per-configuration columns) and their
//! attributes. Every output is written under a temporary name and renamed when complete,
//! so a killed job leaves the previous file or none, never a half-written one.

pub mod attrs;
pub mod debris;
pub mod ensemble;
pub mod full;
pub mod lock;
pub mod publish;

pub use attrs::AttrValue;
pub use ensemble::{ConfigShape, Ensemble, EnsembleWriter};
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

/// Refuses an input that exists but is not a regular file (a FIFO, a device, a socket, a
/// directory): opening a FIFO blocks until something writes to it, so it is found here,
/// before the output's lock or any file exists. A missing file is left to the reader,
/// which names it.
pub fn check_regular_input(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(m) = std::fs::metadata(path) else { return Ok(()) };
    let t = m.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    bail!("{what}: '{}' is {kind}, not a regular file", path.display())
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
    durable_rename(&tmp, path).inspect_err(|e| discard_unless_kept(e, &tmp))
}

/// After a failed publication: removes the temporary, unless the error says it is kept
/// (`publish::OutputAppeared`: the finished result waits there for the user).
pub fn discard_unless_kept(e: &anyhow::Error, tmp: &Path) {
    if e.downcast_ref::<publish::OutputAppeared>().is_none() {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Renames a finished temporary over `path` so that a crash or power loss right after never
/// leaves a named file with missing contents: the temporary's data reach the disk before the
/// rename (fsync), and the directory entry after it (fsync of the directory). Without the
/// first, a journalling file system may commit the rename before the data, and the output
/// or checkpoint survives a crash as an empty or truncated file under its final name.
pub fn durable_rename(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| anyhow::anyhow!("flushing '{}' to disk: {e}", tmp.display()))?;
    publish::rename_into_place(tmp, path).map_err(|e| match e.downcast_ref::<publish::OutputAppeared>() {
        Some(_) => e,
        None => anyhow::anyhow!("renaming '{}' into '{}': {e}", tmp.display(), path.display()),
    })?;
    // Some file systems cannot sync a directory (EINVAL): the rename is then as durable as
    // they make it, and nothing else can be done.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rename replaces the target with the temporary's bytes and leaves no temporary; a
    /// missing temporary is one error naming it, and the target is untouched. (That the
    /// bytes reach the disk before the name does cannot be observed without a crash.)
    #[test]
    fn durable_rename_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, out) = (dir.path().join(".o.tmp"), dir.path().join("o.h5"));
        std::fs::write(&out, b"old").unwrap();
        std::fs::write(&tmp, b"new").unwrap();
        durable_rename(&tmp, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!tmp.exists());
        let e = durable_rename(&tmp, &out).unwrap_err().to_string();
        assert!(e.contains(".o.tmp"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
    }
}
