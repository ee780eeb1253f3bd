//! Publishing a finished output under its final name without replacing a file that
//! appeared there while the run was working.
//!
//! The frame checks the output at start (and again under the lock), but a run takes hours:
//! a file another job or a user puts there meanwhile must not be overwritten silently. The
//! command's output is registered with [`guard_output`]; its publication then renames
//! without replacing (renameat2 with RENAME_NOREPLACE, or link + unlink where the file
//! system lacks it), unless replacing was asked for (`--force`, a resumed training run) or
//! the file there is the one this process published itself (a training checkpoint written
//! again). A refusal keeps the finished result under its temporary name and says where.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The command's output: its path, whether a file found there may be replaced, and the
/// (device, inode) of what this process last published there.
struct Guard {
    path: PathBuf,
    replace: bool,
    ours: Option<(u64, u64)>,
}

static GUARD: Mutex<Option<Guard>> = Mutex::new(None);

/// Registers the command's output (rank 0, once its lock is held): publishing `path` later
/// replaces an existing file only when `replace` is set or the file is this process's own.
pub fn guard_output(path: &Path, replace: bool) {
    *GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Guard { path: path.to_path_buf(), replace, ours: None });
}

/// The output appeared during the run and was not replaced; the result is at `kept`.
#[derive(Debug)]
pub struct OutputAppeared {
    pub path: PathBuf,
    pub kept: PathBuf,
}

impl std::fmt::Display for OutputAppeared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "out: '{}' appeared while this run was working and is not replaced (--force allows it); the finished result is kept as '{}'",
            self.path.display(),
            self.kept.display()
        )
    }
}

impl std::error::Error for OutputAppeared {}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Renames `tmp` to `path`: for the guarded output without replacing a file that is not
/// this process's own (`OutputAppeared`, `tmp` left in place); anything else as `rename`.
pub fn rename_into_place(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guard.as_mut().filter(|g| g.path == path) else {
        return Ok(std::fs::rename(tmp, path)?);
    };
    let own = g.ours.is_some() && file_id(path) == g.ours;
    if g.replace || own {
        std::fs::rename(tmp, path)?;
    } else {
        match rename_noreplace(tmp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(OutputAppeared { path: path.to_path_buf(), kept: tmp.to_path_buf() }.into())
            }
            r => r?,
        }
    }
    g.ours = file_id(path);
    Ok(())
}

/// rename(2) that fails with `AlreadyExists` instead of replacing.
pub fn rename_noreplace(tmp: &Path, path: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
        let (from, to) = (c(tmp)?, c(path)?);
        // SAFETY: two valid NUL-terminated paths, relative to the working directory.
        let r = unsafe {
            libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Kernels or file systems without the flag (EINVAL, ENOSYS): link + unlink below.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    std::fs::hard_link(tmp, path)?;
    std::fs::remove_file(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noreplace_refuses_an_existing_target_and_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, out) = (dir.path().join(".o.tmp"), dir.path().join("o"));
        std::fs::write(&tmp, b"new").unwrap();
        std::fs::write(&out, b"theirs").unwrap();
        assert_eq!(rename_noreplace(&tmp, &out).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!((std::fs::read(&tmp).unwrap(), std::fs::read(&out).unwrap()), (b"new".to_vec(), b"theirs".to_vec()));
        std::fs::remove_file(&out).unwrap();
        rename_noreplace(&tmp, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!tmp.exists());
    }
}
