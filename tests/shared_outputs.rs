//! Runs sharing a cluster file system: one writer per output (the flock'ed `.OUT.lock`), an
//! output never the same file as an input, an unwritable directory refused before any work,
//! divergence an error in training, and models with non-finite weights refused by sampling.

mod common;
use common::latdiff;
use latdiff::diffusion::net::model_file::ModelFile;
use latdiff::io::Ensemble;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

fn run(cmd: &mut Command) -> (i32, String) {
    let o: Output = cmd.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).to_string())
}

/// The one error line of `stderr` (other lines are the run's log), which must contain `needle`.
fn the_error_line<'a>(stderr: &'a str, needle: &str) -> &'a str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    assert!(errors[0].contains(needle), "'{needle}' not in: {stderr}");
    errors[0]
}

/// A small free-field ensemble `e.h5` in `dir` (64 configurations on 8×8).
fn tiny_ensemble(dir: &Path) -> PathBuf {
    let (code, err) = run(latdiff().current_dir(dir).args([
        "hmc",
        "--lattice",
        "8",
        "--kappa",
        "0.2",
        "--lambda",
        "0",
        "--n-configs",
        "64",
        "--n-chains",
        "4",
        "--n-therm",
        "10",
        "--out",
        "e.h5",
    ]));
    assert_eq!(code, 0, "{err}");
    dir.join("e.h5")
}

/// `latdiff train` of the tiny preset on `e.h5` in `dir`, with `extra` flags.
fn train(dir: &Path, out: &str, extra: &[&str]) -> (i32, String) {
    run(latdiff()
        .current_dir(dir)
        .args(["train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--out", out])
        .args(extra))
}

#[test]
fn a_second_hmc_to_the_same_output_is_refused_and_the_first_completes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Long enough (seconds) that the second run starts while the first holds the lock.
    let mut first = latdiff()
        .current_dir(d)
        .args(["--threads", "1", "hmc", "--lattice", "64", "--n-configs", "1000", "--n-chains", "4"])
        .args(["--n-therm", "0", "--n-sep", "10", "--n-md", "8", "--cluster-updates", "0", "--out", "e.h5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = d.join(".e.h5.lock");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&lock).map(|t| t.contains("pid")).unwrap_or(false) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the first run never wrote its lock file");
        std::thread::sleep(Duration::from_millis(10));
    }
    // --force: the refusal must come from the lock, not from an existing file.
    let (code, err) = run(latdiff().current_dir(d).args([
        "hmc",
        "--lattice",
        "8",
        "--n-configs",
        "4",
        "--n-chains",
        "2",
        "--n-therm",
        "5",
        "--out",
        "e.h5",
        "--force",
    ]));
    assert!(first.try_wait().unwrap().is_none(), "the first run ended before the second started: make it longer");
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let line = the_error_line(&err, "being written by another latdiff run");
    assert!(line.contains(&format!("pid {} on host ", first.id())), "holder not named: {line}");

    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "the first run hangs");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "the first run failed: {log}");
    let e = Ensemble::open(&d.join("e.h5")).unwrap();
    assert_eq!((e.n, e.lattice.volume()), (1000, 64 * 64));
    assert_eq!(e.read_i64("chain").unwrap().len(), 1000);
    // Lock file removed, no temporary or partial file left by either run.
    assert_eq!(files_in(d), vec!["e.h5".to_string()]);
}

#[test]
fn an_output_that_is_an_input_is_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ens = tiny_ensemble(d);
    let before = std::fs::read(&ens).unwrap();
    let (code, err) = train(d, "e.h5", &["--steps", "2", "--force"]);
    assert_eq!(code, 2, "{err}");
    the_error_line(&err, "same file as the training data");
    // Through a hard link: another name, the same file.
    std::fs::hard_link(&ens, d.join("link.h5")).unwrap();
    let (code, err) = train(d, "link.h5", &["--steps", "2", "--force"]);
    assert_eq!(code, 2, "{err}");
    the_error_line(&err, "same file as the training data");
    assert!(std::fs::read(&ens).unwrap() == before, "the training data changed");

    let (code, err) = train(d, "m.h5", &["--steps", "2"]);
    assert_eq!(code, 0, "{err}");
    let model = std::fs::read(d.join("m.h5")).unwrap();
    let (code, err) = run(latdiff().current_dir(d).args([
        "sample",
        "--model",
        "m.h5",
        "--n-configs",
        "4",
        "--out",
        "m.h5",
        "--force",
    ]));
    assert_eq!(code, 2, "{err}");
    the_error_line(&err, "same file as the model");
    assert!(std::fs::read(d.join("m.h5")).unwrap() == model, "the model changed");
    assert_eq!(files_in(d), ["e.h5", "link.h5", "m.h5"].map(String::from).to_vec());
}

/// A directory this process cannot create files in: mode 0o555, or as root (which ignores
/// permission bits) /sys where the kernel refuses; None (test skipped) if neither holds.
fn unwritable_dir(scratch: &Path) -> Option<PathBuf> {
    let ro = scratch.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let writable = |d: &Path| {
        let p = d.join(".latdiff-test-probe");
        let ok = std::fs::File::create(&p).is_ok();
        let _ = std::fs::remove_file(&p);
        ok
    };
    [ro, PathBuf::from("/sys")].into_iter().find(|d| d.is_dir() && !writable(d))
}

#[test]
fn an_unwritable_output_directory_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_ensemble(d);
    let Some(ro) = unwritable_dir(d) else {
        eprintln!("skipped: no unwritable directory here (root ignores mode 0o555 and /sys is writable)");
        return;
    };
    let out = ro.join("m.h5");
    // A million steps: only a refusal at start ends this quickly.
    let t0 = Instant::now();
    let (code, err) = train(d, out.to_str().unwrap(), &["--steps", "1000000"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "refused before any work (no training log): {err}");
    the_error_line(&err, &format!("directory '{}' is not writable", ro.display()));
    assert!(t0.elapsed() < Duration::from_secs(30));
    let (code, err) = run(latdiff()
        .current_dir(d)
        .args(["hmc", "--lattice", "8", "--n-configs", "4", "--n-chains", "2"])
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 2, "{err}");
    the_error_line(&err, "is not writable");
    // A path under a regular file: its "directory" does not exist.
    let (code, err) = train(d, "e.h5/m.h5", &["--steps", "1000000"]);
    assert_eq!(code, 2, "{err}");
    the_error_line(&err, "directory 'e.h5' does not exist");
    assert!(!out.exists());
}

#[test]
fn diverging_training_stops_with_an_error_and_writes_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_ensemble(d);
    let (code, err) = train(d, "m.h5", &["--steps", "50", "--lr", "1e30"]);
    assert!(code != 0, "a diverged training must fail: {err}");
    let line = the_error_line(&err, "non-finite");
    let k = latdiff::diffusion::train::MAX_NONFINITE_STEPS;
    assert!(line.contains(&format!("{k} consecutive steps")) && line.contains("step"), "{line}");
    assert_eq!(files_in(d), vec!["e.h5".to_string()], "no model (and no temporary) written");

    // With a checkpoint every step, the checkpoint of the last step with finite weights
    // (step 1: the first update still gives finite, if absurd, weights) stays on disk.
    let (code, err) = train(d, "m.h5", &["--steps", "50", "--lr", "1e30", "--checkpoint-every", "1"]);
    assert!(code != 0, "{err}");
    the_error_line(&err, "non-finite");
    let m = ModelFile::read(&d.join("m.h5")).unwrap();
    assert!(m.step < 50, "step {}", m.step);
    assert!(m.params.iter().chain(&m.ema).all(|x| x.is_finite()), "a non-finite model was written");
}

#[test]
fn a_model_with_non_finite_weights_is_refused_by_sample() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_ensemble(d);
    let (code, err) = train(d, "m.h5", &["--steps", "2"]);
    assert_eq!(code, 0, "{err}");
    let good = ModelFile::read(&d.join("m.h5")).unwrap();
    // EMA weights (what sampling uses by default) with a NaN; then the current weights with
    // one, which --no-ema uses.
    let mut bad_ema = good.clone();
    bad_ema.ema[3] = f32::NAN;
    bad_ema.write(&d.join("nan-ema.h5")).unwrap();
    let mut bad_params = good.clone();
    bad_params.params[5] = f32::INFINITY;
    bad_params.write(&d.join("inf-params.h5")).unwrap();
    for (model, extra) in [("nan-ema.h5", None), ("inf-params.h5", Some("--no-ema"))] {
        let (code, err) = run(latdiff()
            .current_dir(d)
            .args(["--device", "cpu", "sample", "--model", model, "--n-configs", "4", "--steps", "5", "--out", "g.h5"])
            .args(extra));
        assert_eq!(code, 2, "{model}: {err}");
        the_error_line(&err, "not finite");
        assert!(!d.join("g.h5").exists());
    }
    // The same files sample fine with the other, finite weights.
    let (code, err) = run(latdiff().current_dir(d).args([
        "--device",
        "cpu",
        "sample",
        "--model",
        "inf-params.h5",
        "--n-configs",
        "4",
        "--steps",
        "5",
        "--out",
        "g.h5",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(Ensemble::open(&d.join("g.h5")).unwrap().n, 4);
}
