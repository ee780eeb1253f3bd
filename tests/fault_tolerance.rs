//! Fault tolerance of real processes:
//! * outputs are never half-written: a run killed (SIGKILL) while writing leaves the
//!   previous file or none under the final name (only a hidden `.NAME.tmp.HOST.PID` or, for
//!   HMC, `.NAME.partial` remains, with the output's lock file `.NAME.lock`, which the kernel
//!   unlocked when the run died);
//! * a rank that fails aborts the whole MPI job with the failing rank's message, never a
//!   hang (every wait here has a deadline; a hang fails the test);
//! * HMC stopped by a signal on any rank checkpoints; killed, it resumes from its last
//!   checkpoint to the same ensemble.

mod common;
use common::{bin, latdiff, mpirun};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run big enough to be killed mid-way: L = 64, writing a configuration round every
/// trajectory from the start.
const LONG_HMC: &[&str] = &[
    "hmc",
    "--lattice",
    "64",
    "--n-configs",
    "1000000",
    "--n-chains",
    "4",
    "--n-therm",
    "0",
    "--n-sep",
    "1",
    "--n-md",
    "4",
    "--cluster-updates",
    "0",
];

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// Waits for `child` at most `limit`; on time-out kills it and fails the test.
fn wait_deadline(mut child: Child, limit: Duration, what: &str) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?} (a hang); killed. stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until `cond` holds, at most `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigkill(pid: u32) {
    let ok = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -KILL {pid}");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args(["-s", sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -s {sig} {pid}");
}

/// Starts the long run writing `out` in `dir`, waits until its partial file holds at
/// least 1 MB of configurations (it is mid-write), SIGKILLs it.
fn kill_while_writing(dir: &Path, out: &str, extra: &[&str]) {
    let child = latdiff()
        .current_dir(dir)
        .args(["--threads", "1"])
        .args(LONG_HMC)
        .args(["--seed", "3", "--out", out])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let tmp = dir.join(format!(".{out}.partial"));
    wait_for(Duration::from_secs(60), "the partial file to grow past 1 MB", || {
        std::fs::metadata(&tmp).map(|m| m.len() > 1 << 20).unwrap_or(false)
    });
    sigkill(pid);
    let out = wait_deadline(child, Duration::from_secs(20), "killed hmc");
    assert!(!out.status.success(), "a SIGKILLed run cannot succeed");
}

#[test]
fn sigkill_mid_write_leaves_no_file_under_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    kill_while_writing(dir.path(), "ens.h5", &[]);
    let files = files_in(dir.path());
    // A SIGKILLed run cannot clean up: only its hidden partial file may remain (no
    // checkpoint refers to it: it checkpoints only on a signal or with --checkpoint-every),
    // and its lock file, no longer locked.
    assert_eq!(files, vec![".ens.h5.lock".to_string(), ".ens.h5.partial".to_string()], "files left: {files:?}");
    assert!(!dir.path().join("ens.h5").exists());
    // The next run is not disturbed by the stale temporary and lock files.
    let st = latdiff()
        .current_dir(dir.path())
        .args(["hmc", "--lattice", "4", "--n-configs", "4", "--n-chains", "2", "--n-therm", "5", "--out", "ens.h5"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(latdiff().arg("info").arg(dir.path().join("ens.h5")).output().unwrap().status.success());
}

#[test]
fn sigkill_mid_overwrite_leaves_the_previous_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let made = latdiff()
        .current_dir(dir.path())
        .args(["hmc", "--lattice", "8", "--n-configs", "16", "--n-chains", "4", "--n-therm", "10", "--seed", "1"])
        .args(["--out", "ens.h5"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let before = std::fs::read(dir.path().join("ens.h5")).unwrap();
    kill_while_writing(dir.path(), "ens.h5", &["--force"]);
    let after = std::fs::read(dir.path().join("ens.h5")).unwrap();
    assert!(before == after, "the previous ens.h5 changed ({} -> {} bytes)", before.len(), after.len());
    let info = latdiff().arg("info").arg(dir.path().join("ens.h5")).output().unwrap();
    assert!(info.status.success(), "previous file unreadable: {}", String::from_utf8_lossy(&info.stderr));
    let files = files_in(dir.path());
    let left = [".ens.h5.lock", ".ens.h5.partial", "ens.h5"].map(String::from).to_vec();
    assert_eq!(files, left, "files left: {files:?}");
}

// ---------------------------------------------------------------- MPI

/// `mpirun -n 2 latdiff hmc ...` (small) in `dir`, started; None without mpirun.
fn mpirun_hmc(dir: &Path, args: &[&str]) -> Option<Child> {
    let mut cmd = mpirun()?;
    cmd.current_dir(dir).args(["-n", "2"]).arg(bin()).args(["--threads", "1"]).args(args);
    Some(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

/// The latdiff processes started by mpirun `launcher`, as (pid, rank).
fn ranks_of(launcher: u32) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) else { continue };
        let ppid: u32 = rest.split(' ').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid != launcher {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let rank = env
            .split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK=").and_then(|r| r.parse().ok()));
        if let Some(r) = rank {
            v.push((pid, r));
        }
    }
    v
}

#[test]
fn mpi_validation_error_exits_quickly_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let Some(child) = mpirun_hmc(
        dir.path(),
        &["hmc", "--lattice", "4", "--n-configs", "4", "--n-chains", "2", "--out", "/nonexistent-dir/x.h5"],
    ) else {
        return;
    };
    let out = wait_deadline(child, Duration::from_secs(60), "mpirun with a bad --out");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(err.contains("directory '/nonexistent-dir' does not exist"), "message missing: {err}");
    assert!(files_in(dir.path()).is_empty());
}

/// Bad input under `mpirun -n 2`: one error line (rank 0's), exit code 2 from the job; with
/// `mpirun -q` (README) nothing else, as mpirun's banner is a notice it then leaves out.
/// Covers a flag clap refuses, a value a check refuses, and a path only `resolve` refuses.
#[test]
fn mpi_bad_input_is_reported_once_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 3] = [
        &["hmc", "--lattice", "0"],
        &["hmc", "--n-mdd", "3"],
        &["hmc", "--lattice", "4", "--n-chains", "2", "--n-configs", "4", "--out", "/nonexistent-dir/x.h5"],
    ];
    for args in cases {
        for quiet in [false, true] {
            let Some(mut cmd) = mpirun() else { return };
            if quiet {
                cmd.arg("-q");
            }
            cmd.current_dir(dir.path()).args(["-n", "2"]).arg(bin()).args(["--threads", "1"]).args(args);
            let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
            let out = wait_deadline(child, Duration::from_secs(60), "mpirun with bad input");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: exit code: {err}");
            let errors = err.lines().filter(|l| l.starts_with("error")).count();
            assert_eq!(errors, 1, "{args:?}: the error once, not per rank: {err}");
            if quiet {
                assert_eq!(err.lines().count(), 1, "{args:?} under mpirun -q: only the error: {err}");
            }
        }
    }
    assert!(files_in(dir.path()).is_empty());
}

/// MPMD launch: only rank 1 gets a bad argument, fails validation before MPI starts and
/// exits; mpirun must end the job (rank 0 waiting in MPI_Init) with rank 1's message.
#[test]
fn mpi_one_rank_failing_validation_aborts_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut cmd) = mpirun() else { return };
    let common = ["--threads", "1", "hmc", "--lattice", "8", "--n-configs", "8", "--n-chains", "2", "--n-therm", "5"];
    cmd.current_dir(dir.path())
        .args(["-n", "1"])
        .arg(bin())
        .args(common)
        .args(["--out", "ok.h5", ":", "-n", "1"])
        .arg(bin())
        .args(common)
        .args(["--out", "/nonexistent-dir/x.h5"]);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let out = wait_deadline(child, Duration::from_secs(60), "MPMD job with one bad rank");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(err.contains("directory '/nonexistent-dir' does not exist"), "rank 1's message missing: {err}");
    let files = files_in(dir.path());
    assert!(!files.iter().any(|f| f == "ok.h5"), "a failed job left an output: {files:?}");
}

/// Rank 1 alone is stopped (SIGTERM) mid-run: the ranks agree to stop at the same round,
/// rank 0 writes the checkpoint, every rank exits 0, and no output appears.
#[test]
fn mpi_one_rank_stopping_mid_run_checkpoints_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(child) = mpirun_hmc(dir.path(), &[LONG_HMC, &["--out", "ens.h5"]].concat()) else { return };
    let launcher = child.id();
    let mut ranks = Vec::new();
    wait_for(Duration::from_secs(30), "two ranks under mpirun", || {
        ranks = ranks_of(launcher);
        ranks.len() == 2
    });
    // Mid-run: the root's partial output is being written.
    wait_for(Duration::from_secs(60), "the run to start writing", || {
        files_in(dir.path()).iter().any(|f| f == ".ens.h5.partial")
    });
    let rank1 = ranks.iter().find(|r| r.1 == 1).unwrap().0;
    signal(rank1, "TERM");
    let out = wait_deadline(child, Duration::from_secs(60), "job after rank 1 stopped");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a stop by signal is a clean exit: {err}");
    assert!(err.contains("stopped by signal") && err.contains("--resume"), "no stop message: {err}");
    assert!(dir.path().join("ens.h5.ckpt").exists(), "no checkpoint: {:?}", files_in(dir.path()));
    assert!(!dir.path().join("ens.h5").exists());
}

/// HMC with periodic checkpoints is SIGKILLed mid-run; `--resume` (here with another rank
/// count: one process instead of two) continues from the last checkpoint, re-producing the
/// rows written after it, and the file equals an uninterrupted run's row for row.
#[test]
fn sigkilled_hmc_resumes_to_the_same_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |out: &str| -> Vec<String> {
        ["--threads", "1", "hmc", "--lattice", "24", "--n-configs", "6000", "--n-chains", "4", "--n-therm", "20"]
            .iter()
            .map(|s| s.to_string())
            .chain(
                ["--n-sep", "2", "--seed", "4", "--checkpoint-every", "50", "--out", out].iter().map(|s| s.to_string()),
            )
            .collect()
    };
    let o = latdiff().current_dir(d).args(args("straight.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut cmd = match mpirun() {
        Some(mut c) => {
            c.args(["-n", "2"]).arg(bin());
            c
        }
        None => latdiff(),
    };
    let child = cmd.current_dir(d).args(args("killed.h5")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = d.join("killed.h5.ckpt");
    wait_for(Duration::from_secs(60), "a checkpoint", || ckpt.exists());
    std::thread::sleep(Duration::from_millis(100));
    let pid = child.id();
    for (r, _) in ranks_of(pid) {
        sigkill(r);
    }
    sigkill(pid);
    let out = wait_deadline(child, Duration::from_secs(20), "killed hmc");
    assert!(!out.status.success(), "the run finished before it could be killed: make it longer");
    assert!(!d.join("killed.h5").exists());
    let o = latdiff().current_dir(d).args(args("killed.h5")).arg("--resume").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from"), "{err}");
    assert!(!ckpt.exists(), "the checkpoint of a completed run is removed");
    let (a, b) = (
        latdiff::io::Ensemble::open(&d.join("straight.h5")).unwrap(),
        latdiff::io::Ensemble::open(&d.join("killed.h5")).unwrap(),
    );
    assert_eq!((a.n, b.n), (6000, 6000));
    assert!(a.read_configs(0, a.n).unwrap() == b.read_configs(0, b.n).unwrap(), "configurations differ");
    for col in ["action", "delta_h"] {
        assert_eq!(a.read_f64(col).unwrap(), b.read_f64(col).unwrap(), "{col} differs");
    }
    assert_eq!(a.read_i64("trajectory").unwrap(), b.read_i64("trajectory").unwrap());
    assert_eq!(a.attr_f64("acceptance"), b.attr_f64("acceptance"));
}

/// Rank 1 is SIGKILLed mid-run (a node or OOM kill): mpirun must end the job and name it.
#[test]
fn mpi_one_rank_killed_aborts_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(child) = mpirun_hmc(dir.path(), &[LONG_HMC, &["--out", "ens.h5"]].concat()) else { return };
    let launcher = child.id();
    let mut ranks = Vec::new();
    wait_for(Duration::from_secs(30), "two ranks under mpirun", || {
        ranks = ranks_of(launcher);
        ranks.len() == 2
    });
    wait_for(Duration::from_secs(60), "the run to start writing", || {
        files_in(dir.path()).iter().any(|f| f == ".ens.h5.partial")
    });
    let rank1 = ranks.iter().find(|r| r.1 == 1).unwrap().0;
    sigkill(rank1);
    let out = wait_deadline(child, Duration::from_secs(60), "job after rank 1 was killed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(err.contains("rank 1"), "mpirun should name rank 1: {err}");
    assert!(!dir.path().join("ens.h5").exists());
}

/// Training killed with SIGKILL mid-way and restarted with `--resume` continues from the
/// last checkpoint and ends with the same parameters as an uninterrupted run.
#[test]
fn sigkilled_training_resumes_to_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = latdiff()
        .current_dir(d)
        .args(["hmc", "--lattice", "8", "--kappa", "0.2", "--lambda", "0", "--n-configs", "128", "--n-chains", "4"])
        .args(["--n-therm", "20", "--out", "e.h5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let train = |out: &str, extra: &[&str]| {
        let mut c = latdiff();
        c.current_dir(d)
            .args(["--threads", "1", "train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--steps", "1500"])
            .args(["--checkpoint-every", "100", "--seed", "9", "--out", out])
            .args(extra);
        c
    };
    let o = train("straight.h5", &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let child = train("killed.h5", &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let path = d.join("killed.h5");
    wait_for(Duration::from_secs(60), "a checkpoint", || path.exists());
    std::thread::sleep(Duration::from_millis(150));
    sigkill(child.id());
    let out = wait_deadline(child, Duration::from_secs(20), "killed train");
    assert!(!out.status.success());
    let mid = latdiff::diffusion::net::model_file::ModelFile::read(&path)
        .expect("the last checkpoint is complete and readable");
    assert!(mid.step > 0 && mid.step < 1500 && mid.step % 100 == 0, "checkpoint at step {}", mid.step);
    let o = train("killed.h5", &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = latdiff::diffusion::net::model_file::ModelFile::read(&d.join("straight.h5")).unwrap();
    let b = latdiff::diffusion::net::model_file::ModelFile::read(&path).unwrap();
    assert_eq!((a.step, b.step), (1500, 1500));
    assert!(a.params == b.params && a.ema == b.ema, "resumed run differs from the uninterrupted one");
    eprintln!("killed at or after step {}, resumed, identical after 1500 steps", mid.step);
}
