//! One writer per output: an advisory lock beside it.
//!
//! Rank 0 holds `flock(LOCK_EX)` on `.NAME.lock` for the whole run and writes its PID and
//! host into it, so a second run writing the same output is refused at start with the
//! holder named, before either can spoil the other's temporary or partial file. The kernel
//! releases the lock when the holder dies, however it dies: a lock file left by a killed
//! run is stale and the next run takes it over. The file is removed when the run ends.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// `.NAME.lock`: the lock file of the output `out`.
pub fn lock_path(out: &Path) -> PathBuf {
    super::hidden_sibling(out, "lock")
}

/// This machine's host name ("unknown" if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "unknown".to_string(),
    }
}

/// The held lock of one output; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

impl OutputLock {
    /// Takes the lock of `out`, or fails with one line naming the process holding it.
    pub fn acquire(out: &Path) -> Result<Self> {
        match Self::try_take(out)? {
            Some(mut lock) => {
                // A full disk fails here first; dropping `lock` removes the empty file.
                lock.write_holder().with_context(|| format!("out: writing the lock file '{}'", lock.path.display()))?;
                Ok(lock)
            }
            None => bail!(
                "out: '{}' is being written by another latdiff run ({}; lock file '{}')",
                out.display(),
                holder(&lock_path(out)),
                lock_path(out).display()
            ),
        }
    }

    /// Takes the lock of `out` without naming this process in it (`latdiff clean` on a
    /// full disk must still work); None while another process holds it.
    pub fn try_take(out: &Path) -> Result<Option<Self>> {
        let path = lock_path(out);
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("out: cannot create the lock file '{}': {e}", path.display()))?;
            // SAFETY: a valid open descriptor; flock has no memory effects.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => return Ok(None),
                    // A file system without flock (Lustre mounted without it, some NFS):
                    // running unprotected beats refusing every run there.
                    Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::ENOLCK) => {
                        eprintln!(
                            "warning: the file system does not support flock ({e}): nothing stops a second run writing '{}'",
                            out.display()
                        );
                    }
                    _ => bail!("out: cannot lock '{}': {e}", path.display()),
                }
            }
            // The previous holder removes its file before releasing it: if it did so between
            // our open and our flock, we hold a lock on a name-less file; lock the new one.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            };
            if same {
                return Ok(Some(OutputLock { path, file }));
            }
        }
    }

    fn write_holder(&mut self) -> Result<()> {
        let text = format!("pid {} on host {}\n", std::process::id(), hostname());
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }
}

/// "pid P on host H" as the holder wrote it; it writes just after taking the lock, so an
/// empty file is read again for a moment.
fn holder(path: &Path) -> String {
    for _ in 0..50 {
        let mut text = String::new();
        if let Ok(mut f) = File::open(path) {
            let _ = f.read_to_string(&mut text);
        }
        let line = text.lines().next().unwrap_or("").trim().to_string();
        if !line.is_empty() {
            return line;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    "holder unknown".to_string()
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, and only if it is still ours: a run waiting on this
        // file then sees it unlinked and retries on a fresh one (see `acquire`).
        if let (Ok(a), Ok(b)) = (self.file.metadata(), std::fs::metadata(&self.path)) {
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        // Closing the descriptor (dropping `file`) releases the lock.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_and_the_file_goes_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e.h5");
        let first = OutputLock::acquire(&out).unwrap();
        let text = std::fs::read_to_string(lock_path(&out)).unwrap();
        assert!(text.starts_with(&format!("pid {} on host ", std::process::id())), "{text}");
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        let msg = format!("{:#}", OutputLock::acquire(&out).unwrap_err());
        assert!(msg.contains("being written by another latdiff run") && msg.contains(text.trim()), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        drop(first);
        assert!(!lock_path(&out).exists(), "lock file left behind");
        // A stale lock file (its holder killed) is taken over.
        std::fs::write(lock_path(&out), "pid 1 on host gone\n").unwrap();
        let again = OutputLock::acquire(&out).unwrap();
        drop(again);
        assert!(!lock_path(&out).exists());
    }
}
