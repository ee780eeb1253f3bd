//! `latdiff analyze` end to end: exact observables of hand-made files, the free field from
//! HMC against exact values, reweighting, bad input and the JSON layout. Fixed seeds.

mod common;
use common::*;
use latdiff::io::{AttrValue, EnsembleWriter};
use latdiff::lattice::Lattice;
use latdiff::theory::{free, Parametrisation};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Output;

/// In-process HDF5 use is serialised across the tests of this binary: concurrent creation
/// and opening of files from several test threads made `Ensemble::open` fail spuriously.
/// (`latdiff analyze` itself runs in a child process.)
fn hdf5_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes an ensemble of the given configurations with φ⁴ hopping-form attributes.
fn write_file(
    path: &Path,
    lat: Lattice,
    kappa: f64,
    lambda: f64,
    configs: &[Vec<f32>],
    log_weight: Option<&[f64]>,
    chain: Option<&[i64]>,
) {
    let _guard = hdf5_lock();
    let f64_cols: Vec<&str> = log_weight.iter().map(|_| "log_weight").collect();
    let i64_cols: Vec<&str> = chain.iter().map(|_| "chain").collect();
    let mut w = EnsembleWriter::create(path, lat, &f64_cols, &i64_cols).unwrap();
    w.set_attr("theory", AttrValue::Str("phi4".into())).unwrap();
    w.set_attr("parametrisation", AttrValue::Str("hopping".into())).unwrap();
    w.set_attr("kappa", AttrValue::F64(kappa)).unwrap();
    w.set_attr("lambda", AttrValue::F64(lambda)).unwrap();
    w.set_attr("lattice", AttrValue::I64s(vec![lat.lt as i64, lat.lx as i64])).unwrap();
    w.set_attr("generator", AttrValue::Str("test".into())).unwrap();
    let flat: Vec<f32> = configs.concat();
    let lw: Vec<&[f64]> = log_weight.into_iter().collect();
    let ch: Vec<&[i64]> = chain.into_iter().collect();
    w.append(&flat, &lw, &ch).unwrap();
    w.finish().unwrap();
}

fn analyze(args: &[&str]) -> Output {
    latdiff().arg("analyze").args(args).output().expect("run latdiff")
}

fn analyze_json(files: &[&Path], extra: &[&str]) -> Value {
    let mut args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.push("--json".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = analyze(&a);
    assert!(out.status.success(), "analyze failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn scalar(j: &Value, key: &str) -> (f64, f64) {
    let o = &j["observables"][key];
    (o["mean"].as_f64().unwrap_or(f64::NAN), o["err"].as_f64().unwrap_or(f64::NAN))
}

fn close(what: &str, got: f64, expect: f64) {
    assert!((got - expect).abs() <= 1e-9 * (1.0 + expect.abs()), "{what}: {got} vs exact {expect}");
}

/// Configurations φ = c everywhere with c cycling through ±1, ±2 (exact in f32):
/// ⟨M⟩ = 0, ⟨|M|⟩ = 3/2, ⟨M²⟩ = ⟨φ²⟩ = 5/2, ⟨M⁴⟩ = 17/2.
#[test]
fn constant_fields_give_exact_observables() {
    let dir = tempfile::tempdir().unwrap();
    let lat = Lattice::new(4, 6);
    let (kappa, lambda) = (0.2, 0.1);
    let cs = [1.0f32, -1.0, 2.0, -2.0];
    let configs: Vec<Vec<f32>> = (0..40).map(|i| vec![cs[i % 4]; lat.volume()]).collect();
    let path = dir.path().join("const.h5");
    write_file(&path, lat, kappa, lambda, &configs, None, None);
    let j = analyze_json(&[&path], &[]);
    let v = lat.volume() as f64;
    close("m", scalar(&j, "m").0, 0.0);
    close("abs_m", scalar(&j, "abs_m").0, 1.5);
    close("m2", scalar(&j, "m2").0, 2.5);
    close("phi2", scalar(&j, "phi2").0, 2.5);
    close("chi", scalar(&j, "chi").0, v * 2.5);
    close("chi_abs", scalar(&j, "chi_abs").0, v * (2.5 - 2.25));
    close("binder", scalar(&j, "binder").0, 1.0 - 8.5 / (3.0 * 2.5 * 2.5));
    // S/V of a constant field in 2-D: (q − 4κ) c² + λ c⁴ with q = 1 − 2λ.
    let dens = |c: f64| (1.0 - 2.0 * lambda - 4.0 * kappa) * c * c + lambda * c.powi(4);
    close("action_density", scalar(&j, "action_density").0, (dens(1.0) + dens(2.0)) / 2.0);
    // G(t) = L_x (⟨c²⟩ − ⟨c⟩²) for every t, Σ_t G(t) = χ; flat correlator: m_eff = 0.
    let g = j["observables"]["g_t"]["mean"].as_array().unwrap();
    assert_eq!(g.len(), lat.lt);
    for gt in g {
        close("G(t)", gt.as_f64().unwrap(), lat.lx as f64 * 2.5);
    }
    let meff = j["observables"]["m_eff"]["mean"].as_array().unwrap();
    assert_eq!(meff.len(), lat.lt / 2);
    for m in meff {
        close("m_eff", m.as_f64().unwrap(), 0.0);
    }
    // No momentum at p_min: ξ₂ is undefined, reported as null rather than a number.
    assert!(j["observables"]["xi2"]["mean"].is_null(), "xi2 = {}", j["observables"]["xi2"]);
    assert_eq!(j["n_configs"], 40);
    // Per-configuration values cycle with period 4: |M| has a nonzero error.
    assert!(scalar(&j, "abs_m").1 > 0.0);
}

/// One Fourier mode on top of ±1: ξ₂ in closed form (square lattice, both directions averaged).
#[test]
fn single_fourier_mode_gives_exact_xi2() {
    let dir = tempfile::tempdir().unwrap();
    let l = 8;
    let lat = Lattice::square(l);
    // cos(2πx/8) ∈ {0, ±1, ±1/√2}: rounded to f32 once, the exact value uses the same numbers.
    let configs: Vec<Vec<f32>> = (0..10)
        .map(|i| {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            (0..l * l).map(|k| (s + (2.0 * PI * (k % l) as f64 / l as f64).cos()) as f32).collect()
        })
        .collect();
    let path = dir.path().join("mode.h5");
    write_file(&path, lat, 0.1, 0.0, &configs, None, None);
    let j = analyze_json(&[&path], &[]);
    // χ = V⟨M²⟩ = V; G̃(p_x) = V/4 (per configuration), G̃(p_t) = 0, averaged V/8.
    let xi = 7f64.sqrt() / (2.0 * (PI / l as f64).sin());
    let got = scalar(&j, "xi2").0;
    assert!((got - xi).abs() < 1e-5 * xi, "xi2 {got} vs {xi}");
}

#[test]
fn free_field_hmc_matches_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let kappa = 0.2;
    let run = HmcRun { lattice: Lattice::square(8), kappa: Some(kappa), lambda: 0.0, ..Default::default() };
    {
        let _guard = hdf5_lock();
        run.run(dir.path(), "free.h5");
    }
    let path = dir.path().join("free.h5");
    let j = analyze_json(&[&path], &[]);
    let p = Parametrisation::Hopping { kappa, lambda: 0.0 };
    let lat = run.lattice;
    assert_eq!(j["n_chains"], 32);
    assert_within("chi", scalar(&j, "chi"), 1.0 / (2.0 - 8.0 * kappa), 4.0);
    // Gaussian M: ⟨M⁴⟩ = 3⟨M²⟩², U_L = 0.
    assert_within("binder", scalar(&j, "binder"), 0.0, 4.0);
    assert_within("phi2", scalar(&j, "phi2"), free::phi2(&p, &lat), 4.0);
    assert_within("m", scalar(&j, "m"), 0.0, 4.0);
    // G(t) = (1/L_t) Σ_{p_t} cos(p_t t)/K(p_t, 0).
    let g = &j["observables"]["g_t"];
    for t in 0..=lat.lt / 2 {
        let exact: f64 = (0..lat.lt)
            .map(|n| (2.0 * PI * (n * t) as f64 / lat.lt as f64).cos() / free::kernel(&p, &lat, n, 0))
            .sum::<f64>()
            / lat.lt as f64;
        let got = (g["mean"][t].as_f64().unwrap(), g["err"][t].as_f64().unwrap());
        assert_within(&format!("G({t})"), got, exact, 4.0);
    }
    // ξ₂ = sqrt(K(p_min)/K(0) − 1)/(2 sin(p_min/2)) = 1 exactly at κ = 0.2, L = 8.
    let k0 = free::kernel(&p, &lat, 0, 0);
    let k1 = free::kernel(&p, &lat, 0, 1);
    let xi = (k1 / k0 - 1.0).sqrt() / (2.0 * (PI / lat.lx as f64).sin());
    assert_within("xi2", scalar(&j, "xi2"), xi, 4.0);
    // τ_int is reported, at least 1/2, and the bin size follows it.
    let tau = j["observables"]["m2"]["tau_int"].as_f64().unwrap();
    assert!((0.4..20.0).contains(&tau), "tau_int {tau}");
    // The checks are sharp enough to see a 5 % wrong coupling: χ at κ = 0.21 is excluded.
    let (chi, err) = scalar(&j, "chi");
    assert!((chi - 1.0 / (2.0 - 8.0 * 0.21)).abs() > 4.0 * err, "chi {chi} ± {err} cannot tell κ apart");
}

/// Gaussian fields with variance σ_q² per site, reweighted to σ_p²: the target ⟨φ²⟩ = σ_p²
/// is reproduced and the ESS matches the closed form.
#[test]
fn reweighting_to_a_narrower_gaussian() {
    let dir = tempfile::tempdir().unwrap();
    let lat = Lattice::square(2);
    let v = lat.volume();
    let (sq, sp) = (1.0f64, 0.8f64);
    let n = 40_000;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
    let mut configs = Vec::with_capacity(n);
    let mut lw = Vec::with_capacity(n);
    for _ in 0..n {
        let c: Vec<f32> = (0..v)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                (sq * z) as f32
            })
            .collect();
        // log p − log q up to a constant, from the stored (f32) values.
        let s2: f64 = c.iter().map(|&x| f64::from(x).powi(2)).sum();
        lw.push(-s2 / (2.0 * sp * sp) + s2 / (2.0 * sq * sq));
        configs.push(c);
    }
    let path = dir.path().join("rw.h5");
    write_file(&path, lat, 0.0, 0.0, &configs, Some(&lw), None);
    let j = analyze_json(&[&path], &[]);
    assert_within("reweighted phi2", scalar(&j, "phi2"), sp * sp, 4.0);
    assert_within("reweighted m2", scalar(&j, "m2"), sp * sp / v as f64, 4.0);
    // Unweighted the answer would be σ_q² = 1: far outside the errors.
    let (phi2, err) = scalar(&j, "phi2");
    assert!((phi2 - sq * sq).abs() > 10.0 * err);
    // Reported ESS is Kish's (Σw)²/Σw² of the file's weights ...
    let ess = j["ess"].as_f64().unwrap();
    let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lw.iter().map(|x| (x - m).exp()).collect();
    let kish = w.iter().sum::<f64>().powi(2) / w.iter().map(|x| x * x).sum::<f64>();
    assert!((ess - kish).abs() < 1e-6 * kish, "ess {ess} vs {kish}");
    // ... which tends to N · r^V, r = E_q[w]²/E_q[w²] per site = σ_p² sqrt(2/σ_p² − 1/σ_q²)/σ_q
    // (from ∫ p²/q dφ = σ_q / (σ_p² sqrt(2/σ_p² − 1/σ_q²))); here r^4 ≈ 0.7576.
    let r = sp * sp * (2.0 / (sp * sp) - 1.0 / (sq * sq)).sqrt() / sq;
    let exact = r.powi(v as i32);
    let frac = j["ess_fraction"].as_f64().unwrap();
    assert!((frac - ess / n as f64).abs() < 1e-12);
    assert!((frac / exact - 1.0).abs() < 0.02, "ESS/N {frac} vs closed form {exact}");
}

fn one_error_line(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line, got: {err:?}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "'{}' should name '{needle}'", lines[0]);
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
}

fn small_file(dir: &Path, name: &str, lat: Lattice, kappa: f64) -> PathBuf {
    let path = dir.join(name);
    let configs: Vec<Vec<f32>> =
        (0..50).map(|i| (0..lat.volume()).map(|k| ((i * 31 + k * 7) % 11) as f32 * 0.1 - 0.5).collect()).collect();
    write_file(&path, lat, kappa, 0.0, &configs, None, None);
    path
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing.h5");
    one_error_line(&analyze(&[missing.to_str().unwrap()]), "no such file");

    let text = d.join("text.h5");
    std::fs::write(&text, "not hdf5").unwrap();
    one_error_line(&analyze(&[text.to_str().unwrap()]), "not an HDF5 file");

    let noconf = d.join("noconf.h5");
    {
        let _guard = hdf5_lock();
        let f = hdf5::File::create(&noconf).unwrap();
        f.new_dataset::<f64>().shape(3).create("action").unwrap();
    }
    one_error_line(&analyze(&[noconf.to_str().unwrap()]), "no /configs");

    let a = small_file(d, "a.h5", Lattice::square(4), 0.2);
    let b = small_file(d, "b.h5", Lattice::square(4), 0.21);
    let c = small_file(d, "c.h5", Lattice::new(4, 6), 0.2);
    let (a, b, c) = (a.to_str().unwrap(), b.to_str().unwrap(), c.to_str().unwrap());
    one_error_line(&analyze(&[a, b]), "kappa");
    one_error_line(&analyze(&[a, c]), "lattice");
    one_error_line(&analyze(&[a, "--bin-size", "0"]), "bin-size");

    let ok = analyze(&[a, b, "--allow-mismatch"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let table = String::from_utf8_lossy(&ok.stdout);
    assert!(table.contains("B-A /sigma") && table.contains("chi"), "{table}");
    // The same file against itself: identical, hence 0 σ everywhere.
    let same = analyze_json(&[Path::new(a), Path::new(a)], &[]);
    assert_eq!(same["comparison"][0]["observables"]["chi"]["sigma"].as_f64(), Some(0.0));
}

#[test]
fn json_has_stable_keys_and_plots_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_file(dir.path(), "a.h5", Lattice::square(4), 0.2);
    let j = analyze_json(&[&a], &["--bin-size", "5"]);
    for k in ["file", "attributes", "observables", "n_configs"] {
        assert!(j.get(k).is_some(), "missing top-level key {k}");
    }
    assert!(j.get("ess").is_none(), "ess only for weighted ensembles");
    assert_eq!(j["bin_size"], 5);
    assert_eq!(j["attributes"]["kappa"], 0.2);
    for k in ["reliable", "min_ess", "unreliable_reason"] {
        assert!(j.get(k).is_some(), "missing top-level key {k}");
    }
    for k in ["m", "abs_m", "m2", "chi", "chi_abs", "binder", "phi2", "action_density", "xi2"] {
        let o = &j["observables"][k];
        for f in ["mean", "err", "tau_int", "undefined_reason"] {
            assert!(o.get(f).is_some(), "observables.{k}.{f} missing: {o}");
        }
    }
    for k in ["g_t", "m_eff"] {
        assert!(j["observables"][k]["mean"].is_array() && j["observables"][k]["err"].is_array(), "{k}");
    }

    let plots = dir.path().join("figs");
    let multi = analyze_json(&[&a, &a], &["--plot", plots.to_str().unwrap()]);
    assert_eq!(multi["ensembles"].as_array().unwrap().len(), 2);
    assert!(multi["comparison"][0]["observables"]["g_t"]["sigma"].is_array());
    for name in ["hist_m", "hist_action_density", "g_t", "rho_abs_m"] {
        for ext in ["png", "svg"] {
            let f = plots.join(format!("{name}.{ext}"));
            assert!(f.metadata().map(|m| m.len() > 100).unwrap_or(false), "{} missing", f.display());
        }
    }
    // Figures already there are an output like any other: replaced only with --force.
    let again = latdiff().arg("analyze").arg(&a).arg("--plot").arg(&plots).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(err.contains("already holds") && err.contains("--force"), "{err}");
    let forced = latdiff().arg("analyze").arg(&a).arg("--plot").arg(&plots).arg("--force").output().unwrap();
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
}

/// Chains from /chain: interleaved (round-major) rows of two chains with very different
/// means are binned per chain, so the error of ⟨M⟩ sees the chain-to-chain spread.
#[test]
fn chains_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let lat = Lattice::square(2);
    let rounds = 200;
    let mut configs = Vec::new();
    let mut chain = Vec::new();
    for r in 0..rounds {
        for c in 0..2i64 {
            let base = if c == 0 { -1.0 } else { 1.0 };
            let wiggle = ((r * 37 % 17) as f32 - 8.0) * 0.01;
            configs.push(vec![base + wiggle; 4]);
            chain.push(c);
        }
    }
    let with = dir.path().join("with.h5");
    write_file(&with, lat, 0.1, 0.0, &configs, None, Some(&chain));
    let without = dir.path().join("without.h5");
    write_file(&without, lat, 0.1, 0.0, &configs, None, None);
    let jw = analyze_json(&[&with], &["--bin-size", "10"]);
    let jn = analyze_json(&[&without], &["--bin-size", "10"]);
    assert_eq!(jw["n_chains"], 2);
    assert_eq!(jn["n_chains"], 1);
    // Bins within chains have means ≈ ±1: error ≈ 1/sqrt(G−1), G = 40 bins.
    let (ew, en) = (scalar(&jw, "m").1, scalar(&jn, "m").1);
    assert!(ew > 0.1 && en < 0.05, "with chains {ew}, without {en}");
}

/// Weights w_i = r^i, r = e^{−1/2}: Kish ESS = (1 + r)/(1 − r) ≈ 4.08 of 200 configurations.
/// Such an ensemble is marked unreliable everywhere its numbers appear; an unweighted or a
/// flat-weighted one is not.
#[test]
fn few_effective_samples_are_marked_unreliable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lat = Lattice::square(4);
    let configs: Vec<Vec<f32>> =
        (0..200).map(|i| (0..lat.volume()).map(|k| ((i * 31 + k * 7) % 11) as f32 * 0.1 - 0.5).collect()).collect();
    let steep: Vec<f64> = (0..200).map(|i| -0.5 * i as f64).collect();
    let bad = d.join("steep.h5");
    write_file(&bad, lat, 0.2, 0.0, &configs, Some(&steep), None);
    let good = d.join("flat.h5");
    write_file(&good, lat, 0.2, 0.0, &configs, Some(&[0.0; 200]), None);
    let plain = small_file(d, "plain.h5", lat, 0.2);

    let r = (-0.5f64).exp();
    let j = analyze_json(&[&bad], &[]);
    assert!((j["ess"].as_f64().unwrap() - (1.0 + r) / (1.0 - r)).abs() < 1e-3, "ess {}", j["ess"]);
    assert_eq!(j["reliable"], false);
    assert_eq!(j["min_ess"], 50.0);
    assert_eq!(j["unreliable_reason"], "ESS 4.1 < 50");
    for ok in [&good, &plain] {
        let j = analyze_json(&[ok], &[]);
        assert_eq!(j["reliable"], true, "{}", ok.display());
        assert!(j["unreliable_reason"].is_null());
    }
    // A σ against an unreliable ensemble is flagged, either way round.
    for files in [[good.as_path(), bad.as_path()], [bad.as_path(), good.as_path()]] {
        let c = &analyze_json(&files, &[])["comparison"][0];
        assert_eq!(c["reliable"], false);
        assert!(c["unreliable_reason"].as_str().unwrap().contains("steep.h5: ESS 4.1 < 50"), "{c}");
    }
    assert_eq!(analyze_json(&[&good, &plain], &[])["comparison"][0]["reliable"], true);

    let out = analyze(&[good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("unreliable: ESS 4.1 < 50"), "{table}");
    assert!(table.contains("* unreliable: ESS 4.1 < 50 ([B] "), "{table}");
    let chi = table.lines().find(|l| l.starts_with("chi =")).unwrap();
    // The reference's value is clean; the unreliable value and the σ carry the marker.
    assert_eq!(chi.matches(" *").count(), 2, "{chi}");
    assert!(chi.trim_end().ends_with('*'), "{chi}");
    let clean = analyze(&[good.to_str().unwrap(), plain.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&clean.stdout).contains('*'));

    let figs = d.join("figs");
    analyze_json(&[&good, &bad], &["--plot", figs.to_str().unwrap()]);
    if latdiff::analysis::font_available() {
        let svg = std::fs::read_to_string(figs.join("g_t.svg")).unwrap();
        assert!(svg.contains("steep.h5 (ESS 4.1 &lt; 50: unreliable)"), "legend of g_t.svg");
        assert!(svg.contains("flat.h5") && !svg.contains("flat.h5 ("));
    }
}

/// φ = ±0.1 + cos(2πx/8): almost all fluctuation sits at p_min, G̃(p_min) = V/8 ≫ χ = 0.01 V,
/// so the correlator grows with momentum and ξ₂ is undefined, with the reason given.
#[test]
fn xi2_is_undefined_where_the_correlator_does_not_fall_off() {
    let dir = tempfile::tempdir().unwrap();
    let l = 8;
    let lat = Lattice::square(l);
    let configs: Vec<Vec<f32>> = (0..10)
        .map(|i| {
            let s = if i % 2 == 0 { 0.1 } else { -0.1 };
            (0..l * l).map(|k| (s + (2.0 * PI * (k % l) as f64 / l as f64).cos()) as f32).collect()
        })
        .collect();
    let path = dir.path().join("rising.h5");
    write_file(&path, lat, 0.1, 0.0, &configs, None, None);
    let j = analyze_json(&[&path], &[]);
    let xi = &j["observables"]["xi2"];
    assert!(xi["mean"].is_null() && xi["err"].is_null() && xi["tau_int"].is_null(), "{xi}");
    assert!(xi["undefined_reason"].as_str().unwrap().contains("does not fall off"), "{xi}");
    assert!(j["observables"]["chi"]["undefined_reason"].is_null());

    let out = analyze(&[path.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("xi_2")).unwrap();
    assert!(row.contains("undefined") && !row.contains('±'), "{row}");
    assert!(table.contains("note: xi_2: G(p_min) ="), "{table}");
}

/// A figure's PNG and SVG exist, the PNG of a non-trivial size (a chart with data and
/// text, not an empty frame); returns the SVG's text.
fn figure(dir: &Path, name: &str) -> String {
    let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap_or_else(|_| panic!("{name}.png missing"));
    assert!(png.len() > 5000 && png.starts_with(b"\x89PNG"), "{name}.png: {} bytes", png.len());
    std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap_or_else(|_| panic!("{name}.svg missing"))
}

/// `--plot` on an HMC ensemble, a weighted file and a model file: every figure is written
/// and titled with the theory, its couplings and the lattice; ρ(t) marks the Γ-method's
/// window and τ_int, the log-weights carry the ESS; the model's loss curve and history.
#[test]
fn every_figure_is_written_and_titled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run =
        HmcRun { lattice: Lattice::square(8), kappa: Some(0.2), n_chains: 8, per_chain: 64, ..Default::default() };
    {
        let _guard = hdf5_lock();
        run.run(d, "hmc.h5");
    }
    let hmc = d.join("hmc.h5");
    let figs = d.join("figs");
    analyze_json(&[&hmc], &["--plot", figs.to_str().unwrap()]);
    for name in ["hist_m", "hist_action_density", "g_t"] {
        figure(&figs, name);
    }
    let rho = figure(&figs, "rho_abs_m");
    assert!(!figs.join("log_weights.png").exists() && !figs.join("smc_levels.png").exists());
    if latdiff::analysis::font_available() {
        assert!(rho.contains("φ⁴, κ = 0.2, λ = 0, L = 8"), "title of rho_abs_m.svg");
        assert!(rho.contains("window W = ") && rho.contains("ρ(t) ± δρ(t)"), "legend of rho_abs_m.svg");
    }

    let lat = Lattice::square(4);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
    let configs: Vec<Vec<f32>> =
        (0..400).map(|_| (0..lat.volume()).map(|_| StandardNormal.sample(&mut rng)).collect()).collect();
    let lw: Vec<f64> = (0..400)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            0.5 * z
        })
        .collect();
    let weighted = d.join("w.h5");
    write_file(&weighted, lat, 0.1, 0.0, &configs, Some(&lw), None);
    let wfigs = d.join("wfigs");
    let j = analyze_json(&[&weighted], &["--plot", wfigs.to_str().unwrap()]);
    let svg = figure(&wfigs, "log_weights");
    if latdiff::analysis::font_available() {
        let ess = j["ess"].as_f64().unwrap();
        assert!(svg.contains(&format!("ESS = {ess:.1} of 400")), "title of log_weights.svg");
    }

    let model = d.join("model.h5");
    let o = latdiff()
        .args(["train", "--preset", "tiny", "--steps", "12", "--batch", "64", "--seed", "1", "--data"])
        .arg(&hmc)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mfigs = d.join("mfigs");
    let j = analyze_json(&[&model], &["--plot", mfigs.to_str().unwrap()]);
    let m = latdiff::diffusion::net::model_file::ModelFile::read(&model).unwrap();
    let steps: Vec<f64> = m.loss_history.rows.iter().map(|r| r[0]).collect();
    assert!(steps.len() >= 2 && steps.last() == Some(&12.0), "{steps:?}");
    let json_steps: Vec<f64> =
        j["loss_history"]["step"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(json_steps, steps);
    let svg = figure(&mfigs, "loss_history");
    if latdiff::analysis::font_available() {
        assert!(svg.contains("Training loss (φ⁴, κ = 0.2"), "title of loss_history.svg");
    }
    let out = analyze(&[model.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("loss history of {} rows", steps.len())));
    let mixed = analyze(&[hmc.to_str().unwrap(), model.to_str().unwrap()]);
    one_error_line(&mixed, "is a model file");
}
