//! Stop signals inside long work: SIGTERM ends a run within seconds, and what was done is
//! kept (an HMC checkpoint that resumes bit for bit; a partial sample file, exit code 3).

mod common;
use common::{latdiff, sigterm, spawn_until, wait_within};
use latdiff::io::Ensemble;
use std::path::Path;
use std::time::{Duration, Instant};

/// One chain whose trajectories take about three seconds each (600 000 MD steps on 64²):
/// a stop checked only between trajectories would keep the run going for seconds after
/// SIGTERM.
fn slow_hmc(out: &str) -> Vec<String> {
    let a = "--threads 1 hmc --lattice 64 --n-md 600000 --n-therm 2 --n-configs 1 --n-chains 1 --n-sep 1 \
             --cluster-updates 0 --seed 3 --out";
    a.split_whitespace().map(String::from).chain([out.to_string()]).collect()
}

#[test]
fn sigterm_mid_trajectory_checkpoints_at_once_and_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (child, lines) = spawn_until(d, &slow_hmc("stopped.h5"), "latdiff hmc:");
    std::thread::sleep(Duration::from_millis(1000));
    sigterm(child.id());
    let t0 = Instant::now();
    let err = lines.map(|l| l.unwrap()).collect::<Vec<_>>().join("\n");
    let (out, _) = wait_within(child, Duration::from_secs(20), "hmc");
    let took = t0.elapsed();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped by signal during thermalisation"), "{err}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?} to end the run: {err}");
    assert!(d.join("stopped.h5.ckpt").exists() && !d.join("stopped.h5").exists());
    let info = latdiff().current_dir(d).args(["info", "stopped.h5.ckpt"]).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success() && text.contains("HMC checkpoint") && text.contains("thermalisation"), "{text}");

    let o = latdiff().current_dir(d).args(slow_hmc("stopped.h5")).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = latdiff().current_dir(d).args(slow_hmc("whole.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (Ensemble::open(&d.join("stopped.h5")).unwrap(), Ensemble::open(&d.join("whole.h5")).unwrap());
    assert_eq!(a.read_configs(0, 1).unwrap(), b.read_configs(0, 1).unwrap());
    assert_eq!(a.read_f64("action").unwrap(), b.read_f64("action").unwrap());
}

fn sample_args(n: usize, out: &str) -> Vec<String> {
    let a = format!(
        "--threads 1 sample --model free:kappa=0.2 --lattice 32 --n-configs {n} --batch 2 --steps 100 --seed 5 --out {out}"
    );
    a.split_whitespace().map(String::from).collect()
}

/// SIGTERM once some rounds are done: the file holds them and says it is partial, the run
/// exits with 3 (not 0: a Slurm `afterok` chain must not analyse it as complete), and
/// `analyze` says "PARTIAL ENSEMBLE" in its table and JSON.
#[test]
fn sigterm_on_sample_keeps_the_finished_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Progress lines ("[sample] 4/100000 ...") come once rounds are done.
    let (child, lines) = spawn_until(d, &sample_args(100000, "gen.h5"), "[sample] 4/");
    sigterm(child.id());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (out, _) = wait_within(child, Duration::from_secs(20), "sample");
    let err = rest.join("\n");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("stopped by signal after") && err.contains("partial ensemble"), "{err}");
    assert!(err.contains("stopped: partial ensemble: ") && err.contains("exit code 3"), "{err}");

    let e = Ensemble::open(&d.join("gen.h5")).unwrap();
    assert!(e.n >= 4 && e.n < 100000, "{} configurations", e.n);
    assert_eq!(e.attr_f64("stopped_by_signal"), Some(1.0));
    assert_eq!(e.attr_f64("n_requested"), Some(100000.0));
    let info = latdiff().current_dir(d).args(["info", "gen.h5"]).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    for want in ["sampler       em, matched kernel", "ESS", "stopped       by a signal", "free:kappa=0.2"] {
        assert!(text.contains(want), "info lacks '{want}': {text}");
    }
    let a = latdiff().current_dir(d).args(["analyze", "gen.h5"]).output().unwrap();
    let table = String::from_utf8_lossy(&a.stdout);
    let want = format!("warning: PARTIAL ENSEMBLE: the sampler was stopped by a signal after {} of 100000", e.n);
    assert!(a.status.success() && table.contains(&want), "{table}");
    let a = latdiff().current_dir(d).args(["analyze", "--json", "gen.h5"]).output().unwrap();
    assert!(String::from_utf8_lossy(&a.stdout).contains("PARTIAL ENSEMBLE"));
    // Sample i uses stream (seed, i): the kept ones are exactly a shorter run's.
    let o = latdiff().current_dir(d).args(sample_args(e.n, "short.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Ensemble::open(&d.join("short.h5")).unwrap();
    assert_eq!(s.attr_f64("stopped_by_signal"), Some(0.0));
    assert_eq!(e.read_configs(0, e.n).unwrap(), s.read_configs(0, e.n).unwrap());
    assert_eq!(e.read_f64("log_weight").unwrap(), s.read_f64("log_weight").unwrap());
    let left: Vec<_> = std::fs::read_dir(d).unwrap().map(|f| f.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "only the two outputs remain: {left:?}");
}

/// Stopped before any round is complete: nothing is written, the run says so, exit code 3.
#[test]
fn sigterm_on_sample_before_the_first_round_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    let args =
        "--threads 1 sample --model free:kappa=0.2 --lattice 256 --n-configs 64 --batch 64 --steps 400 --out g.h5";
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    let (child, lines) = spawn_until(d, &args, "latdiff sample:");
    std::thread::sleep(Duration::from_millis(300));
    sigterm(child.id());
    let t0 = Instant::now();
    let err = lines.map(|l| l.unwrap()).collect::<Vec<_>>().join("\n");
    let (out, _) = wait_within(child, Duration::from_secs(20), "sample");
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "left files");
}

/// SMC: SIGTERM once some rounds of replicas are done keeps those replicas as a partial
/// file (exit code 3), identical to a run asked for just those replicas.
#[test]
fn sigterm_on_smc_sample_keeps_the_finished_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let smc = |n: usize, out: &str| -> Vec<String> {
        format!(
            "--threads 1 sample --model free:kappa=0.17 --kappa 0.2 --lattice 16 --sampler smc --n-configs {n} --replicas {} --steps 40 --seed 5 --out {out}",
            n / 16
        )
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    let (child, lines) = spawn_until(d, &smc(16 * 20000, "gen.h5"), "[sample] 32/");
    sigterm(child.id());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (out, _) = wait_within(child, Duration::from_secs(20), "sample");
    let err = rest.join("\n");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("stopped by signal after") && err.contains("replicas: those are written"), "{err}");
    let e = Ensemble::open(&d.join("gen.h5")).unwrap();
    assert!(e.n >= 32 && e.n < 16 * 20000 && e.n % 16 == 0, "{} configurations", e.n);
    assert_eq!(e.attr_f64("stopped_by_signal"), Some(1.0));
    assert_eq!(e.attr_f64("replicas"), Some((e.n / 16) as f64));
    let o = latdiff().current_dir(d).args(smc(e.n, "short.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Ensemble::open(&d.join("short.h5")).unwrap();
    assert_eq!(e.read_configs(0, e.n).unwrap(), s.read_configs(0, e.n).unwrap());
    assert_eq!(e.read_f64("log_weight").unwrap(), s.read_f64("log_weight").unwrap());
}
