//! `latdiff clean DIR`: lists latdiff's temporaries by host and PID with their state, and
//! with `--remove` deletes the stale ones only: never a live run's (its process runs here,
//! or its output is locked), never a partial output a checkpoint continues, never anything else.

mod common;
use common::latdiff;
use latdiff::io::OutputLock;
use std::path::Path;

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// `latdiff clean` with `args`; its stdout, the line of each entry found by its file name.
fn clean(args: &[&str]) -> String {
    let o = latdiff().arg("clean").args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn line_of<'a>(out: &'a str, file: &str) -> &'a str {
    out.lines().find(|l| l.contains(&format!("/{file} "))).unwrap_or_else(|| panic!("{file} not listed: {out}"))
}

#[test]
fn clean_lists_by_state_and_removes_only_stale_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host = latdiff::io::lock::hostname();
    // A process that runs for the test: its temporary is live.
    let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let live_tmp = format!(".a.h5.tmp.{host}.{}", sleeper.id());
    // PIDs above the kernel's limit never run.
    let dead_tmp = format!(".b.h5.tmp.{host}.999999999");
    let dead_probe = format!(".b.h5.probe.{host}.999999998");
    let other_host_tmp = ".c.h5.tmp.other-node.77".to_string();
    let entries = [
        (live_tmp.as_str(), ""),
        (dead_tmp.as_str(), ""),
        (dead_probe.as_str(), ""),
        (other_host_tmp.as_str(), ""),
        (".d.h5.lock", "pid 999999999 on host gone-node\n"),
        (".e.h5.partial", ""),
        ("e.h5.ckpt", "checkpoint"),
        (".f.h5.partial", ""),
        (".g.h5.partial", ""),
        ("kept.h5", "an output"),
        (".bashrc", "not latdiff's"),
    ];
    for (name, text) in entries {
        std::fs::write(d.join(name), text).unwrap();
    }
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub").join(".h.h5.partial"), "").unwrap();
    // A run writing g.h5 holds its lock: its partial output is live.
    let lock = OutputLock::acquire(&d.join("g.h5")).unwrap();

    let out = clean(&[d.to_str().unwrap()]);
    assert!(
        line_of(&out, &live_tmp).starts_with("live") && line_of(&out, &live_tmp).contains("running on this host"),
        "{out}"
    );
    for stale in [&dead_tmp, &dead_probe, &other_host_tmp, ".d.h5.lock", ".f.h5.partial", ".h.h5.partial"] {
        assert!(line_of(&out, stale).starts_with("stale"), "{stale}: {out}");
    }
    assert!(line_of(&out, &dead_tmp).contains("pid 999999999 is not running on this host"), "{out}");
    assert!(line_of(&out, ".d.h5.lock").contains("pid 999999999 on host gone-node"), "{out}");
    assert!(line_of(&out, ".e.h5.partial").starts_with("resumable"), "{out}");
    assert!(line_of(&out, ".g.h5.partial").starts_with("live"), "{out}");
    assert!(line_of(&out, ".g.h5.lock").starts_with("live"), "{out}");
    assert!(!out.contains(".bashrc") && !out.contains("kept.h5 "), "{out}");
    assert!(out.lines().last().unwrap().contains("6 stale"), "{out}");
    let before = files_in(d);
    assert!(before.contains(&dead_tmp), "listing removed nothing");

    let out = clean(&["--remove", d.to_str().unwrap()]);
    assert!(out.lines().last().unwrap().contains("removed 6"), "{out}");
    let mut left = vec![live_tmp.clone(), ".bashrc".into(), ".e.h5.partial".into(), ".g.h5.lock".into()];
    left.extend([".g.h5.partial", "e.h5.ckpt", "kept.h5", "sub"].map(String::from));
    left.sort();
    assert_eq!(files_in(d), left);
    assert!(files_in(&d.join("sub")).is_empty());
    drop(lock);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn clean_of_a_missing_directory_is_one_line() {
    let o = latdiff().args(["clean", "/nonexistent-dir"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim(), "error: clean: '/nonexistent-dir' is not a directory");
}
