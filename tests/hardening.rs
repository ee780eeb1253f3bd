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
