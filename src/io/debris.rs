//! latdiff's temporaries left in a directory, and whether a running process still owns them.
//!
//! Every run writes under hidden names beside its output `NAME` (see `super`): the
//! per-process temporary `.NAME.tmp.HOST.PID` and write probe `.NAME.probe.HOST.PID`, the
//! lock `.NAME.lock` (its holder's "pid P on host H" inside), and HMC's `.NAME.partial`.
//! A run removes them on every failure it lives through; SIGKILL, a node crash or a
//! power cut leave them. An entry is *live* while its output's lock is held (the writer
//! holds it for the whole run, whichever node it runs on) or while its process runs on
//! this host; a partial output with its checkpoint beside it is *resumable* work, not debris.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Temporary,
    Probe,
    Lock,
    Partial,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Temporary => "temporary",
            Kind::Probe => "write probe",
            Kind::Lock => "lock file",
            Kind::Partial => "partial output",
        }
    }
}

/// The process named by an entry: in its name (temporaries) or its content (lock files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Its output is being written now: never removed.
    Live(String),
    /// Work a resumed run continues (a checkpoint refers to it): kept.
    Resumable(String),
    /// Cannot tell (another host, and a file system without flock): kept.
    Unknown(String),
    /// Debris: nobody will read or finish it.
    Stale(String),
}

#[derive(Clone, Debug)]
pub struct Debris {
    pub path: PathBuf,
    pub output: PathBuf,
    pub kind: Kind,
    pub owner: Option<Owner>,
}

/// Reads a file name as one of latdiff's temporaries of the output beside it.
pub fn parse(path: &Path) -> Option<Debris> {
    let name = path.file_name()?.to_str()?.strip_prefix('.')?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let at =
        |output: &str, kind, owner| Some(Debris { path: path.to_path_buf(), output: dir.join(output), kind, owner });
    if let Some(output) = name.strip_suffix(".lock") {
        return at(output, Kind::Lock, lock_holder(path));
    }
    if let Some(output) = name.strip_suffix(".partial") {
        return at(output, Kind::Partial, None);
    }
    for (infix, kind) in [(".tmp.", Kind::Temporary), (".probe.", Kind::Probe)] {
        if let Some(i) = name.rfind(infix) {
            let (host, pid) = name[i + infix.len()..].rsplit_once('.')?;
            let owner = Owner { host: host.to_string(), pid: pid.parse().ok()? };
            return at(&name[..i], kind, Some(owner));
        }
    }
    None
}

/// latdiff's temporaries under `dir` (its subdirectories too, not following links), sorted.
pub fn scan(dir: &Path) -> std::io::Result<Vec<Debris>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            found.extend(scan(&entry.path())?);
        } else if ty.is_file() {
            found.extend(parse(&entry.path()));
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Whether `d` is live, resumable, unknown or stale. `resumable` says whether a checkpoint
/// continues the partial output of an output.
pub fn state(d: &Debris, resumable: impl Fn(&Path) -> bool) -> State {
    let lock = lock_state(&super::lock::lock_path(&d.output));
    if lock == LockState::Held {
        return State::Live("its output is locked by a running latdiff".into());
    }
    let this_host = super::lock::hostname();
    match &d.owner {
        Some(o) if o.host == this_host && alive(o.pid) => {
            return State::Live(format!("pid {} is running on this host", o.pid));
        }
        Some(o) if o.host == this_host => return State::Stale(format!("pid {} is not running on this host", o.pid)),
        _ => {}
    }
    if d.kind == Kind::Partial && resumable(&d.output) {
        return State::Resumable("its checkpoint continues it (hmc --resume)".into());
    }
    match (lock, &d.owner) {
        (LockState::Unsupported, Some(o)) => {
            State::Unknown(format!("pid {} on host {}: no flock here to tell; run clean on {}", o.pid, o.host, o.host))
        }
        (LockState::Unsupported, None) => State::Unknown("no flock here to tell whether a run writes it".into()),
        (_, Some(o)) => {
            State::Stale(format!("pid {} on host {}, which no longer holds the output's lock", o.pid, o.host))
        }
        (_, None) => State::Stale("no run holds the output's lock".into()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockState {
    Held,
    Free,
    Unsupported,
}

/// Whether a process holds the lock file (on any host sharing a file system with flock).
/// The probe holds a shared lock for an instant: a run starting in that instant is refused
/// and says so on one line; nothing is damaged.
fn lock_state(lock: &Path) -> LockState {
    let Ok(file) = std::fs::File::open(lock) else { return LockState::Free };
    // SAFETY: a valid open descriptor; flock has no memory effects.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // Closing the descriptor releases it.
        return LockState::Free;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EWOULDBLOCK) => LockState::Held,
        _ => LockState::Unsupported,
    }
}

/// A process with this PID exists on this host (EPERM: it exists, owned by someone else).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// "pid P on host H", as `lock::OutputLock` writes it.
fn lock_holder(path: &Path) -> Option<Owner> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = text.lines().next()?.strip_prefix("pid ")?;
    let (pid, host) = rest.split_once(" on host ")?;
    Some(Owner { host: host.trim().to_string(), pid: pid.trim().parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_with_their_output_and_owner() {
        let d = parse(Path::new("/r/.e.h5.tmp.node-1.cluster.org.4242")).unwrap();
        assert_eq!((d.output.as_path(), d.kind), (Path::new("/r/e.h5"), Kind::Temporary));
        assert_eq!(d.owner, Some(Owner { host: "node-1.cluster.org".into(), pid: 4242 }));
        let d = parse(Path::new("/r/.e.h5.ckpt.tmp.vm.7")).unwrap();
        assert_eq!(d.output, Path::new("/r/e.h5.ckpt"));
        assert_eq!(parse(Path::new("/r/.e.h5.partial")).unwrap().kind, Kind::Partial);
        assert_eq!(parse(Path::new("/r/.m.h5.probe.vm.9")).unwrap().kind, Kind::Probe);
        for other in ["/r/e.h5", "/r/.bashrc", "/r/.e.h5.tmp.vm.notapid", "/r/e.h5.ckpt"] {
            assert!(parse(Path::new(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn a_dead_local_process_is_stale_a_live_one_or_a_held_lock_live() {
        let dir = tempfile::tempdir().unwrap();
        let host = super::super::lock::hostname();
        let out = dir.path().join("e.h5");
        let mine = dir.path().join(format!(".e.h5.tmp.{host}.{}", std::process::id()));
        std::fs::write(&mine, "").unwrap();
        let state = |p: &Path| super::state(&parse(p).unwrap(), |_| false);
        assert!(matches!(state(&mine), State::Live(_)), "{:?}", state(&mine));
        // PIDs above the kernel's limit (4194304 at most) never run.
        let dead = dir.path().join(format!(".e.h5.tmp.{host}.999999999"));
        std::fs::write(&dead, "").unwrap();
        assert!(matches!(state(&dead), State::Stale(_)), "{:?}", state(&dead));
        let elsewhere = dir.path().join(".e.h5.tmp.other-node.12");
        std::fs::write(&elsewhere, "").unwrap();
        assert!(matches!(state(&elsewhere), State::Stale(_)));
        let partial = dir.path().join(".e.h5.partial");
        std::fs::write(&partial, "").unwrap();
        assert!(matches!(super::state(&parse(&partial).unwrap(), |_| true), State::Resumable(_)));
        // While the output is locked, everything of it is live, whoever named it.
        let lock = crate::io::OutputLock::acquire(&out).unwrap();
        for p in [&dead, &elsewhere, &partial] {
            assert!(matches!(state(p), State::Live(_)), "{p:?}: {:?}", state(p));
        }
        drop(lock);
        assert_eq!(scan(dir.path()).unwrap().len(), 4);
    }
}
