//! Second hardening round (issue 32): ensembles too small or frozen to carry an error bar,
//! panics turned into one line, outputs that appear during a run, non-regular inputs.

mod common;
use common::latdiff;
use latdiff::io::{AttrValue, EnsembleWriter};
use latdiff::lattice::Lattice;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// In-process HDF5 use is serialised across the tests of this binary.
fn hdf5_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A φ⁴ ensemble of `configs` (one chain each of `chain`), with extra attributes.
fn write_ensemble(path: &Path, lat: Lattice, configs: &[Vec<f32>], chain: Option<&[i64]>, attrs: &[(&str, AttrValue)]) {
    let _guard = hdf5_lock();
    let i64_cols: Vec<&str> = chain.iter().map(|_| "chain").collect();
    let mut w = EnsembleWriter::create(path, lat, &[], &i64_cols).unwrap();
    w.set_attr("theory", AttrValue::Str("phi4".into())).unwrap();
    w.set_attr("parametrisation", AttrValue::Str("hopping".into())).unwrap();
    w.set_attr("kappa", AttrValue::F64(0.2)).unwrap();
    w.set_attr("lambda", AttrValue::F64(0.0)).unwrap();
    w.set_attr("lattice", AttrValue::I64s(vec![lat.lt as i64, lat.lx as i64])).unwrap();
    w.set_attr("generator", AttrValue::Str("test".into())).unwrap();
    for (k, v) in attrs {
        w.set_attr(k, v.clone()).unwrap();
    }
    let ch: Vec<&[i64]> = chain.into_iter().collect();
    w.append(&configs.concat(), &[], &ch).unwrap();
    w.finish().unwrap();
}

/// `n` configurations of Gaussian-looking, decorrelated values (a fixed hash, no RNG crate).
fn noisy(lat: Lattice, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    (0..n).map(|_| (0..lat.volume()).map(|_| (next() + next() + next()) as f32).collect()).collect()
}

fn analyze(args: &[&str]) -> Output {
    latdiff().arg("analyze").args(args).output().expect("run latdiff")
}

fn analyze_ok(args: &[&str]) -> String {
    let o = analyze(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json_of(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec![path.to_str().unwrap(), "--json"];
    args.extend(extra);
    serde_json::from_str(&analyze_ok(&args)).expect("JSON")
}

/// Unreliable, for a reason containing `why`, in the JSON and in the table; and no error bar
/// or σ in the table that reads as exact or infinite.
fn assert_unreliable(path: &Path, extra: &[&str], why: &str) {
    let j = json_of(path, extra);
    assert_eq!(j["reliable"], false, "{}: {j}", path.display());
    let reason = j["unreliable_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{}: reason {reason:?} lacks {why:?}", path.display());
    assert_eq!(j["min_independent_configs"], 20);
    let mut args = vec![path.to_str().unwrap()];
    args.extend(extra);
    let table = analyze_ok(&args);
    assert!(table.contains(&format!("unreliable: {reason}")), "{table}");
    for bad in ["± 0 ", "± 0\n", "± 0.0 ", "± undefined", "inf sigma", "+inf", "-inf", "NaN"] {
        assert!(!table.contains(bad), "{}: table shows {bad:?}:\n{table}", path.display());
    }
}

/// One and two configurations, 64 identical ones, a frozen HMC run (acceptance 0, failed
/// thermalisation, every chain constant) and too few jackknife bins are all marked
/// unreliable with their reason; 400 decorrelated configurations are not.
#[test]
fn ensembles_too_small_or_frozen_are_unreliable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(4);
    let many = noisy(lat, 400, 1);

    let one = d.join("one.h5");
    write_ensemble(&one, lat, &many[..1], None, &[]);
    assert_unreliable(&one, &[], "1 configurations < 20");

    let two = d.join("two.h5");
    write_ensemble(&two, lat, &many[..2], None, &[]);
    assert_unreliable(&two, &[], "2 configurations < 20");

    let same = d.join("same.h5");
    write_ensemble(&same, lat, &vec![many[0].clone(); 64], None, &[]);
    assert_unreliable(&same, &[], "no chain moved");

    // 4 chains of 16, each stuck on its start, as a run that accepts nothing writes it.
    let frozen = d.join("frozen.h5");
    let configs: Vec<Vec<f32>> = (0..64).map(|i| many[i / 16].clone()).collect();
    let chain: Vec<i64> = (0..64).map(|i| (i / 16) as i64).collect();
    let verdict = [("acceptance", AttrValue::F64(0.0)), ("therm_ok", AttrValue::I64(0))];
    write_ensemble(&frozen, lat, &configs, Some(&chain), &verdict);
    assert_unreliable(&frozen, &[], "no chain moved");
    assert_unreliable(&frozen, &[], "therm_ok = 0");
    assert_unreliable(&frozen, &[], "acceptance 0");
    assert!(!analyze_ok(&[frozen.to_str().unwrap()]).contains("independent samples"));

    let good = d.join("good.h5");
    write_ensemble(&good, lat, &many, None, &[]);
    let j = json_of(&good, &[]);
    assert_eq!(j["reliable"], true, "{j}");
    // The same 400 configurations in 4 bins of 100.
    assert_unreliable(&good, &["--bin-size", "100"], "4 jackknife bins < 20");

    // Against a one-configuration ensemble, no σ is a number.
    let o = analyze_ok(&[good.to_str().unwrap(), one.to_str().unwrap(), "--json"]);
    let c: Value = serde_json::from_str(&o).unwrap();
    assert_eq!(c["comparison"][0]["reliable"], false);
    let table = analyze_ok(&[good.to_str().unwrap(), same.to_str().unwrap()]);
    let m2 = table.lines().find(|l| l.starts_with("<M^2>")).unwrap();
    assert!(m2.contains("± n/a"), "{m2}");
    assert!(!table.contains("inf ") && !table.contains("± 0 "), "{table}");
    let one_vs_one = analyze_ok(&[one.to_str().unwrap(), two.to_str().unwrap()]);
    let m2 = one_vs_one.lines().find(|l| l.starts_with("<M^2>")).unwrap();
    assert!(m2.trim_end().ends_with("n/a *"), "a sigma from no error: {m2}");
}

/// A φ⁴ and a U(1) ensemble side by side: one line, not an index out of bounds, also with
/// --allow-mismatch.
#[test]
fn different_theories_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(4);
    let phi4 = d.join("phi4.h5");
    write_ensemble(&phi4, lat, &noisy(lat, 40, 2), None, &[]);
    let u1 = d.join("u1.h5");
    {
        let _guard = hdf5_lock();
        let shape = latdiff::io::ConfigShape::new(vec![2, 4, 4]).unwrap();
        let mut w = EnsembleWriter::create(&u1, shape, &[], &[]).unwrap();
        w.set_attr("theory", AttrValue::Str("u1".into())).unwrap();
        w.set_attr("beta", AttrValue::F64(1.0)).unwrap();
        w.set_attr("lattice", AttrValue::I64s(vec![4, 4])).unwrap();
        let links: Vec<f32> = noisy(lat, 80, 3).concat();
        w.append(&links, &[], &[]).unwrap();
        w.finish().unwrap();
    }
    for args in [vec![&phi4, &u1], vec![&u1, &phi4]] {
        let mut a: Vec<&str> = args.iter().map(|p| p.to_str().unwrap()).collect();
        a.push("--allow-mismatch");
        let o = analyze(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("measure different observables"), "{err}");
    }
}

/// Runs latdiff with `args` in `dir`; asserts exit 2 and exactly one line on stderr (after
/// notices such as the device fallback) containing `what`.
fn refused(dir: &Path, args: &[&str], what: &str) {
    let o = latdiff().current_dir(dir).args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    one_error_line(&o, what);
}

/// Asserts a failure whose stderr has exactly one error line, containing `what`.
fn one_error_line(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(errors[0].contains(what), "{what:?} missing: {err}");
}

/// /configs of integers, and a `lattice` attribute that disagrees with /configs, are
/// refused in one line before any measurement.
#[test]
fn configs_of_another_type_or_lattice_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(4);
    let ints = d.join("ints.h5");
    {
        let _guard = hdf5_lock();
        let f = hdf5::File::create(&ints).unwrap();
        f.new_dataset::<i32>().shape([30, 4, 4]).create("configs").unwrap();
        let attrs = [
            ("theory", AttrValue::Str("phi4".into())),
            ("parametrisation", AttrValue::Str("hopping".into())),
            ("kappa", AttrValue::F64(0.2)),
            ("lambda", AttrValue::F64(0.0)),
        ];
        for (k, v) in attrs {
            latdiff::io::attrs::write_attr(&f, k, &v).unwrap();
        }
    }
    refused(d, &["analyze", ints.to_str().unwrap()], "/configs holds int32 values");
    refused(d, &["train", "--data", ints.to_str().unwrap(), "--steps", "1"], "int32");

    let wrong = d.join("wrong_lattice.h5");
    write_ensemble(&wrong, lat, &noisy(lat, 30, 4), None, &[("lattice", AttrValue::I64s(vec![8, 8]))]);
    refused(d, &["analyze", wrong.to_str().unwrap()], "lattice = 8x8 but /configs holds 4x4");
    let odd = d.join("odd_lattice.h5");
    write_ensemble(&odd, lat, &noisy(lat, 30, 4), None, &[("lattice", AttrValue::Str("big".into()))]);
    refused(d, &["analyze", odd.to_str().unwrap()], "lattice");
}

/// Replaces dataset `name` of the HDF5 file at `path` by its first `keep` values.
fn shorten(path: &Path, name: &str, keep: usize) {
    let _guard = hdf5_lock();
    let f = latdiff::io::h5_open_rw(path).unwrap();
    let v: Vec<f32> = f.dataset(name).unwrap().read_raw().unwrap();
    f.unlink(name).unwrap();
    f.new_dataset_builder().with_data(&v[..keep]).create(name).unwrap();
}

/// A model whose /ema or /params is a few entries short is refused at load, in one line,
/// by sample and by train --resume (not an assertion in the engine or the optimiser).
#[test]
fn model_buffers_cut_short_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hmc = ["hmc", "--lattice", "8", "--n-configs", "64", "--n-chains", "4", "--n-therm", "10", "--out", "e.h5"];
    assert!(latdiff().current_dir(d).args(hmc).output().unwrap().status.success());
    let train = ["train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--steps", "2", "--out", "m.h5"];
    let o = latdiff().current_dir(d).args(train).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = {
        let _guard = hdf5_lock();
        latdiff::io::h5_open(&d.join("m.h5")).unwrap().dataset("ema").unwrap().size()
    };
    std::fs::copy(d.join("m.h5"), d.join("short_ema.h5")).unwrap();
    shorten(&d.join("short_ema.h5"), "ema", n - 3);
    let sample = ["sample", "--model", "short_ema.h5", "--n-configs", "4", "--out", "s.h5"];
    refused(d, &sample, &format!("/ema holds {} values but the architecture has {n} parameters", n - 3));
    assert!(!d.join("s.h5").exists());

    std::fs::copy(d.join("m.h5"), d.join("short_params.h5")).unwrap();
    shorten(&d.join("short_params.h5"), "params", n - 1);
    let resume = ["train", "--data", "e.h5", "--out", "short_params.h5", "--resume", "--steps", "4"];
    refused(d, &resume, "/params holds");
}

/// Runs `latdiff args` in `dir`, killed (and the test failed) after 20 s.
fn run_within(dir: &Path, args: &[&str]) -> Output {
    let child = latdiff()
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_within(child, std::time::Duration::from_secs(20), &format!("{args:?}")).0
}

/// A FIFO given as an input would block the open until something writes to it (with the
/// output's lock already taken): every command refuses it in one line, at once, and
/// leaves nothing behind.
#[test]
fn fifos_as_inputs_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = std::process::Command::new("mkfifo").arg(d.join("pipe.h5")).status().unwrap();
    assert!(ok.success(), "mkfifo");
    let cases: [&[&str]; 7] = [
        &["train", "--data", "pipe.h5", "--steps", "1", "--out", "m.h5"],
        &["train", "--config", "pipe.h5", "--out", "m.h5"],
        &["sample", "--model", "pipe.h5", "--n-configs", "4", "--out", "s.h5"],
        &["hmc", "--config", "pipe.h5", "--out", "e.h5"],
        &["analyze", "pipe.h5"],
        &["info", "pipe.h5"],
        &["fit-action", "pipe.h5", "--data", "pipe.h5"],
    ];
    for args in cases {
        let o = run_within(d, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {err}");
        assert!(errors[0].contains("'pipe.h5' is a FIFO (named pipe), not a regular file"), "{args:?}: {err}");
        let left: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(left, ["pipe.h5"], "{args:?}");
    }
}

/// A file that appears at the output's name while `sample` runs is not replaced: the run
/// fails in one line naming where its finished ensemble is kept, and both files survive.
/// A training run writing its own checkpoint again (no --force) is not refused.
#[test]
fn an_output_that_appears_during_the_run_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args: Vec<String> = "--threads 1 sample --model free:kappa=0.2 --lattice 32 --n-configs 100000 --batch 2 \
                             --steps 100 --seed 5 --out gen.h5"
        .split_whitespace()
        .map(String::from)
        .collect();
    let (child, lines) = common::spawn_until(d, &args, "[sample] 4/");
    std::fs::write(d.join("gen.h5"), b"precious").unwrap();
    common::sigterm(child.id());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (out, _) = common::wait_within(child, std::time::Duration::from_secs(20), "sample");
    assert_eq!(out.status.code(), Some(1), "{rest:?}");
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{rest:?}");
    assert!(errors[0].contains("'gen.h5' appeared while this run was working and is not replaced"), "{rest:?}");
    assert_eq!(std::fs::read(d.join("gen.h5")).unwrap(), b"precious");
    let kept: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".gen.h5.tmp."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(errors[0].contains(&format!("kept as '{}'", d.join(&kept[0]).display())) || errors[0].contains(&kept[0]));
    let _guard = hdf5_lock();
    let e = latdiff::io::Ensemble::open(&d.join(&kept[0])).unwrap();
    assert!(e.n >= 4, "{}", e.n);
    drop(_guard);

    let hmc = ["hmc", "--lattice", "8", "--n-configs", "32", "--n-chains", "2", "--n-therm", "10", "--out", "e.h5"];
    assert!(latdiff().current_dir(d).args(hmc).output().unwrap().status.success());
    let train =
        ["train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--steps", "3", "--checkpoint-every", "1"];
    let o = latdiff().current_dir(d).args(train).args(["--out", "m.h5"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every rank of an MPMD launch must run the same configuration: a different κ, lattice or
/// seed on rank 1 is refused in one line naming the rank and the key, and nothing is
/// written (no output, no lock).
#[test]
fn ranks_given_different_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hmc = "hmc --n-configs 8 --n-chains 2 --n-therm 5 --out e.h5";
    let cases = [
        (
            format!("{hmc} --lattice 8 --kappa 0.27"),
            format!("{hmc} --lattice 8 --kappa 0.2"),
            "kappa = 0.2 (rank 0: 0.27)",
        ),
        (format!("{hmc} --lattice 8"), format!("{hmc} --lattice 6"), "lattice"),
        (
            "sample --model free:kappa=0.2 --lattice 8 --n-configs 8 --out s.h5 --seed 3".to_string(),
            "sample --model free:kappa=0.2 --lattice 8 --n-configs 8 --out s.h5 --seed 4".to_string(),
            "seed = 4 (rank 0: 3)",
        ),
    ];
    for (a, b, key) in cases {
        let Some(mut mpi) = common::mpirun() else { return };
        let bin = common::bin();
        let o = mpi
            .current_dir(d)
            .args(["-n", "1"])
            .arg(&bin)
            .args(a.split_whitespace())
            .args([":", "-n", "1"])
            .arg(&bin)
            .args(b.split_whitespace())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a} : {b} succeeded: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{a} : {b}: {err}");
        assert!(errors[0].contains("rank 1 was given another configuration than rank 0"), "{err}");
        assert!(errors[0].contains(key), "{key}: {err}");
        let left: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(left.is_empty(), "{a} : {b}: left {left:?}");
    }
}

/// Overwrites value `index` of dataset `name` (f64) of the HDF5 file at `path`.
fn poke_f64(path: &Path, name: &str, index: usize, value: f64) {
    let _guard = hdf5_lock();
    let f = latdiff::io::h5_open_rw(path).unwrap();
    let d = f.dataset(name).unwrap();
    let mut v: Vec<f64> = d.read_raw().unwrap();
    v[index] = value;
    d.write_raw(&v).unwrap();
}

/// A NaN in an HMC checkpoint's field, or in its cached action, stops the resumed run in
/// one line naming the chain, with nothing written.
#[test]
fn non_finite_checkpoints_stop_the_run_naming_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args: Vec<String> = "--threads 1 hmc --lattice 16 --n-configs 1000000 --n-chains 2 --n-therm 4 \
                             --cluster-updates 0 --out e.h5"
        .split_whitespace()
        .map(String::from)
        .collect();
    let (child, lines) = common::spawn_until(d, &args, "latdiff hmc:");
    std::thread::sleep(std::time::Duration::from_millis(500));
    common::sigterm(child.id());
    let _rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (o, _) = common::wait_within(child, std::time::Duration::from_secs(20), "hmc");
    assert!(o.status.success(), "stopped by SIGTERM");
    let ckpt = d.join("e.h5.ckpt");
    let pristine = std::fs::read(&ckpt).unwrap();
    let resume = ["--threads", "1", "hmc", "--resume", "--out", "e.h5"];

    poke_f64(&ckpt, "phi", 256 + 7, f64::NAN);
    one_error_line(&run_within(d, &resume), "chain 1 holds 1 non-finite field values");
    assert!(!d.join("e.h5").exists());

    std::fs::write(&ckpt, &pristine).unwrap();
    poke_f64(&ckpt, "cached", 2, f64::NAN);
    one_error_line(&run_within(d, &resume), "chain 1: action NaN");
    assert!(!d.join("e.h5").exists());
}

/// SIGTERM during start-up (MPI's initialisation takes about 0.3 s) is the documented
/// clean stop: a checkpoint and exit 0, not death by the signal (143).
#[test]
fn sigterm_during_start_up_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let child = latdiff()
        .current_dir(d)
        .args(["--threads", "1", "hmc", "--lattice", "16", "--n-configs", "100000", "--n-therm", "4", "--out", "e.h5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    common::sigterm(child.id());
    let (o, _) = common::wait_within(child, std::time::Duration::from_secs(20), "hmc");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{:?}: {err}", o.status);
    assert!(d.join("e.h5.ckpt").exists(), "{err}");
}

/// Noise levels outside the supported range are refused in one line before any work, and
/// nothing is written (`--sigma-max 1e30` wrote an ensemble of NaN with exit 0).
#[test]
fn noise_levels_outside_the_supported_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = ["sample", "--model", "free:kappa=0.2", "--lattice", "4", "--n-configs", "4", "--steps", "4"];
    for (flag, value) in [("--sigma-max", "1e30"), ("--sigma-min", "1e-30"), ("--sigma-max", "nan")] {
        let mut args = base.to_vec();
        args.extend([flag, value, "--out", "s.h5"]);
        let key = &flag[2..].replace('-', "_");
        refused(d, &args, key);
        assert!(!d.join("s.h5").exists(), "{flag} {value}: an output was written");
    }
}

/// Files from outside (h5py): a U(1) file without `theory` is refused naming the missing
/// label, not "no phi4 couplings"; several chains without /chain are refused; one chain
/// without /chain is read as one, with a warning saying so.
#[test]
fn foreign_files_get_messages_that_name_the_real_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(4);
    let links = |path: &Path, attrs: &[(&str, AttrValue)]| {
        let _guard = hdf5_lock();
        let shape = latdiff::io::ConfigShape::new(vec![2, 4, 4]).unwrap();
        let mut w = EnsembleWriter::create(path, shape, &[], &[]).unwrap();
        w.set_attr("lattice", AttrValue::I64s(vec![4, 4])).unwrap();
        for (k, v) in attrs {
            w.set_attr(k, v.clone()).unwrap();
        }
        w.append(&noisy(lat, 80, 3).concat(), &[], &[]).unwrap();
        w.finish().unwrap();
    };
    let with_beta = d.join("beta_only.h5");
    links(&with_beta, &[("beta", AttrValue::F64(2.0))]);
    let bare = d.join("bare.h5");
    links(&bare, &[]);
    for (f, want) in [(&with_beta, "attribute 'theory' missing"), (&bare, "as U(1) links do")] {
        let o = latdiff().arg("analyze").arg(f).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", f.display());
        assert!(err.contains(want) && err.contains("theory = \"u1\""), "{}: {err}", f.display());
        let o = latdiff().arg("info").arg(f).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains(want), "info {}: {out}", f.display());
    }

    let chains = d.join("chains.h5");
    write_ensemble(&chains, lat, &noisy(lat, 40, 2), None, &[("n_chains", AttrValue::I64(4))]);
    let o = analyze(&[chains.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("n_chains = 4 but no /chain column"), "{err}");
    let one = d.join("one.h5");
    write_ensemble(&one, lat, &noisy(lat, 40, 2), None, &[]);
    let table = analyze_ok(&[one.to_str().unwrap()]);
    assert!(table.contains("warning: no /chain column: the rows are read as one Markov chain"), "{table}");
}

/// Runs `latdiff args` in `dir` and asserts success.
fn ok_in(dir: &Path, args: &[&str]) -> Output {
    let o = latdiff().current_dir(dir).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A resumed training refuses every changed setting that changes its result, in one line
/// naming the key with its old and new value, and data whose content changed (a hash
/// stored in the checkpoint); the checkpoint is left as it was. The keys that only steer
/// the invocation (steps, checkpoint_every, the data's path) may change.
#[test]
fn train_resume_refuses_changed_settings_and_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hmc = ["hmc", "--lattice", "8", "--n-configs", "64", "--n-chains", "4", "--n-therm", "10", "--out", "e.h5"];
    ok_in(d, &hmc);
    std::fs::copy(d.join("e.h5"), d.join("same.h5")).unwrap();
    let train = ["train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--steps", "2", "--seed", "3"];
    ok_in(d, &[&train[..], &["--out", "m.h5"]].concat());
    let info = String::from_utf8_lossy(&ok_in(d, &["info", "m.h5"]).stdout).to_string();
    assert!(info.contains("from e.h5 (fnv1a64:"), "the model records the data's hash: {info}");
    let pristine = std::fs::read(d.join("m.h5")).unwrap();
    let resume = ["train", "--out", "m.h5", "--resume", "--steps", "4"];
    let cases: [(&[&str], &str); 9] = [
        (&["--seed", "9"], "was trained with seed = 3, this run has seed = 9"),
        (&["--sigma-max", "50"], "sigma_max = 0.0, this run has sigma_max = 50.0"),
        (&["--sigma-min", "0.02"], "sigma_min = 0.01, this run has sigma_min = 0.02"),
        (&["--lr", "0.01", "--seed", "4"], "lr = 0.002, this run has lr = 0.01 (also changed: seed)"),
        (&["--ema-decay", "0.99"], "ema_decay"),
        (&["--val-fraction", "0.3"], "val_fraction"),
        (&["--augment", "false"], "augment = true, this run has augment = false"),
        (&["--batch", "4"], "batch = 8, this run has batch = 4"),
        (&["--preset", "small"], "preset = \"tiny\", this run has preset = \"small\""),
    ];
    for (extra, what) in cases {
        refused(d, &[&resume[..], extra].concat(), what);
        assert_eq!(std::fs::read(d.join("m.h5")).unwrap(), pristine, "{extra:?}: the checkpoint changed");
    }

    // The data regenerated under the same name (another seed): refused, naming the hashes.
    ok_in(d, &[&hmc[..], &["--seed", "5", "--force"]].concat());
    refused(d, &resume, "resume: --data 'e.h5' changed since the checkpoint 'm.h5' was written (hash fnv1a64:");
    refused(d, &[&resume[..], &["--data", "e.h5"]].concat(), "changed since the checkpoint");
    assert_eq!(std::fs::read(d.join("m.h5")).unwrap(), pristine);

    // The same content under another name, more steps, another checkpoint interval: resumed.
    ok_in(d, &[&resume[..], &["--data", "same.h5", "--checkpoint-every", "1"]].concat());
    let info = String::from_utf8_lossy(&ok_in(d, &["info", "m.h5"]).stdout).to_string();
    assert!(info.contains("step 4 of 4") && info.contains("from same.h5"), "{info}");
}

/// `hmc --resume` refuses a changed setting (seed, coupling, chains) in one line naming it.
#[test]
fn hmc_resume_refuses_changed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args: Vec<String> = "--threads 1 hmc --lattice 16 --n-configs 1000000 --n-chains 2 --n-therm 4 --seed 3 \
                             --kappa 0.25 --cluster-updates 0 --out e.h5"
        .split_whitespace()
        .map(String::from)
        .collect();
    let (child, lines) = common::spawn_until(d, &args, "latdiff hmc:");
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::sigterm(child.id());
    let _rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (o, _) = common::wait_within(child, std::time::Duration::from_secs(20), "hmc");
    assert!(o.status.success(), "stopped by SIGTERM");
    let pristine = std::fs::read(d.join("e.h5.ckpt")).unwrap();
    let resume = ["hmc", "--resume", "--out", "e.h5"];
    let cases: [(&[&str], &str); 3] = [
        (&["--seed", "9"], "was made with seed = 3, this run has seed = 9"),
        (&["--kappa", "0.2"], "kappa = 0.25, this run has kappa = 0.2"),
        (&["--n-chains", "4"], "n_chains = 2, this run has n_chains = 4"),
    ];
    for (extra, what) in cases {
        refused(d, &[&resume[..], extra].concat(), what);
        assert_eq!(std::fs::read(d.join("e.h5.ckpt")).unwrap(), pristine, "{extra:?}");
    }
}

/// Adds (or replaces) a float64 column `name` in the HDF5 file at `path`.
fn put_column(path: &Path, name: &str, values: &[f64]) {
    let _guard = hdf5_lock();
    let f = latdiff::io::h5_open_rw(path).unwrap();
    if f.link_exists(name) {
        f.unlink(name).unwrap();
    }
    f.new_dataset_builder().with_data(values).create(name).unwrap();
}

/// A non-finite value in /configs is refused in one line naming the configuration and the
/// file, by analyze, train (training rows or the held-out chain) and fit-action; a NaN or
/// +inf log-weight is named by analyze instead of silently weighing 0.
#[test]
fn non_finite_input_data_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(8);
    let chains: Vec<i64> = (0..64).map(|i| i / 16).collect();
    for (name, row, value) in [("train_nan.h5", 17, f32::NAN), ("held_out_inf.h5", 60, f32::INFINITY)] {
        let mut configs = noisy(lat, 64, 5);
        configs[row][5] = value;
        write_ensemble(&d.join(name), lat, &configs, Some(&chains), &[]);
        let what = format!("{name}: configuration {row} of /configs holds {value} at value 5");
        refused(d, &["analyze", name], &what);
        let train = ["train", "--data", name, "--preset", "tiny", "--batch", "8", "--steps", "2", "--out", "m.h5"];
        refused(d, &train, &what);
        assert!(!d.join("m.h5").exists(), "{name}: a model was written");
        refused(d, &["fit-action", "--data", name, "--fit", "data"], &what);
    }

    let weighted = d.join("weighted.h5");
    write_ensemble(&weighted, lat, &noisy(lat, 40, 6), None, &[]);
    let mut w: Vec<f64> = (0..40).map(|i| 0.01 * i as f64).collect();
    w[3] = f64::NEG_INFINITY;
    put_column(&weighted, "log_weight", &w);
    analyze_ok(&[weighted.to_str().unwrap()]);
    w[7] = f64::NAN;
    put_column(&weighted, "log_weight", &w);
    refused(d, &["analyze", "weighted.h5"], "weighted.h5: /log_weight of configuration 7 is NaN");
    w[9] = f64::INFINITY;
    put_column(&weighted, "log_weight", &w);
    refused(d, &["analyze", "weighted.h5"], "configuration 7 is NaN (2 configurations have a NaN or +inf log-weight)");
}

/// Messages that pointed the wrong way: a checkpoint of another theory is named as such
/// (not "another architecture"); a truncated model is "truncated or damaged" (not "not an
/// HDF5 file"); a failed HMC run whose partial output is gone does not say "continue with
/// --resume".
#[test]
fn messages_point_the_right_way() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hmc = ["hmc", "--lattice", "8", "--n-configs", "32", "--n-chains", "2", "--n-therm", "10"];
    ok_in(d, &[&hmc[..], &["--out", "phi4.h5"]].concat());
    ok_in(d, &[&hmc[..], &["--theory", "u1", "--beta", "1.0", "--out", "u1.h5"]].concat());
    let train = ["train", "--preset", "tiny", "--batch", "8", "--steps", "2"];
    ok_in(d, &[&train[..], &["--data", "phi4.h5", "--out", "m_phi4.h5"]].concat());
    ok_in(d, &[&train[..], &["--data", "u1.h5", "--out", "m_u1.h5"]].concat());
    let resume = ["train", "--resume", "--steps", "4"];
    refused(
        d,
        &[&resume[..], &["--data", "u1.h5", "--out", "m_phi4.h5"]].concat(),
        "resume: checkpoint 'm_phi4.h5' is a φ⁴ model, but --data 'u1.h5' holds U(1) gauge configurations",
    );
    refused(
        d,
        &[&resume[..], &["--data", "phi4.h5", "--out", "m_u1.h5"]].concat(),
        "resume: checkpoint 'm_u1.h5' is a U(1) gauge model, but --data 'phi4.h5' holds φ⁴ configurations",
    );

    let model = std::fs::read(d.join("m_phi4.h5")).unwrap();
    std::fs::write(d.join("cut.h5"), &model[..model.len() / 3]).unwrap();
    std::fs::write(d.join("stub.h5"), &model[..7]).unwrap();
    let sample = ["sample", "--n-configs", "4", "--out", "s.h5", "--model"];
    refused(
        d,
        &[&sample[..], &["cut.h5"]].concat(),
        "cut.h5: truncated or damaged HDF5 file, not a readable latdiff model",
    );
    refused(d, &[&sample[..], &["stub.h5"]].concat(), "stub.h5: not an HDF5 file (truncated or not a latdiff model)");
    refused(d, &["train", "--data", "phi4.h5", "--out", "cut.h5", "--resume", "--steps", "4"], "truncated or damaged");
    std::fs::write(d.join("cut_e.h5"), &std::fs::read(d.join("phi4.h5")).unwrap()[..3000]).unwrap();
    refused(d, &["analyze", "cut_e.h5"], "cut_e.h5: truncated or damaged HDF5 file");

    // The partial output removed while the run works: it fails at the end, and says the
    // checkpoint cannot be resumed rather than "continue with --resume".
    let args: Vec<String> = "--threads 1 hmc --lattice 8 --n-configs 400 --n-chains 2 --n-sep 1 --n-therm 4 \
                             --checkpoint-every 1 --out gone.h5"
        .split_whitespace()
        .map(String::from)
        .collect();
    let (child, lines) = common::spawn_until(d, &args, "latdiff hmc:");
    let partial = d.join(".gone.h5.partial");
    let t0 = std::time::Instant::now();
    while std::fs::remove_file(&partial).is_err() {
        assert!(t0.elapsed().as_secs() < 10, "no partial output appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let (o, _) = common::wait_within(child, std::time::Duration::from_secs(60), "hmc");
    assert_eq!(o.status.code(), Some(1), "{rest:?}");
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{rest:?}");
    assert!(!errors[0].contains("continue with --resume"), "{rest:?}");
    assert!(errors[0].contains("the checkpoint 'gone.h5.ckpt' cannot be resumed: its partial output"), "{rest:?}");
}
