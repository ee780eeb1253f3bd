//! `latdiff clean DIR`: lists latdiff's temporaries and lock files under DIR with their
//! host, PID and state; `--remove` deletes the stale ones. Live entries (a run writes
//! their output now) and resumable ones (a checkpoint continues them) are never removed.

use crate::io::debris::{self, Debris, State};
use anyhow::Result;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct CleanArgs {
    /// Directory to search (with its subdirectories) for latdiff's temporaries.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Delete the stale entries (default: only list them).
    #[arg(long)]
    pub remove: bool,
}

pub fn run(a: &CleanArgs) -> Result<()> {
    if !a.dir.is_dir() {
        return Err(super::input_err(anyhow::anyhow!("clean: '{}' is not a directory", a.dir.display())));
    }
    let found = debris::scan(&a.dir).map_err(|e| anyhow::anyhow!("clean: reading '{}': {e}", a.dir.display()))?;
    let mut stale = Vec::new();
    for d in &found {
        let st = state(d);
        println!("{}", describe(d, &st));
        if matches!(st, State::Stale(_)) {
            stale.push(d);
        }
    }
    match (stale.len(), a.remove) {
        (0, _) => println!("no stale temporaries under {}", a.dir.display()),
        (n, false) => println!("{n} stale: latdiff clean --remove {} deletes them", a.dir.display()),
        (_, true) => println!("removed {} stale", remove(&stale)?),
    }
    Ok(())
}

fn state(d: &Debris) -> State {
    debris::state(d, |out| crate::mc::checkpoint::checkpoint_path(out).exists())
}

/// `stale  PATH  (temporary of 'OUT'; pid P on host H is not running on this host)`.
fn describe(d: &Debris, st: &State) -> String {
    let (word, why) = match st {
        State::Live(w) => ("live", w),
        State::Resumable(w) => ("resumable", w),
        State::Unknown(w) => ("unknown", w),
        State::Stale(w) => ("stale", w),
    };
    format!("{word:<9}  {}  ({} of '{}'; {why})", d.path.display(), d.kind.name(), name(&d.output))
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

/// Removes the stale entries, each under its output's lock (taken without writing, so a
/// full disk does not stop it): a run that started since the listing holds the lock, and
/// its output's entries are then skipped. The lock file itself goes when the lock is dropped.
fn remove(stale: &[&Debris]) -> Result<usize> {
    let mut removed = 0;
    for d in stale {
        let Some(lock) = crate::io::OutputLock::try_take(&d.output)? else { continue };
        if d.kind == debris::Kind::Lock || std::fs::remove_file(&d.path).is_ok() {
            removed += 1;
        }
        drop(lock);
    }
    Ok(removed)
}
