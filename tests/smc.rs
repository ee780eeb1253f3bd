//! `latdiff sample --sampler smc` end to end: the file layout and attributes, the same file
//! from 1 and 2 MPI ranks (and any batch size), `latdiff analyze`'s replica errors, bad input.
//! The statistics (exact free values, resampling off = em weights, MALA invariance) are
//! unit tests in src/diffusion/smc/tests.rs.

mod common;
use common::*;
use latdiff::io::{AttrValue, Ensemble};
use std::path::Path;

/// A wrong free model (κ 0.17 for the target 0.2) on 8x16, resampling whenever ESS/N < 0.9:
/// every replica resamples and rejuvenates.
const SMC: &[&str] = &[
    "sample",
    "--sampler",
    "smc",
    "--model",
    "free:kappa=0.17",
    "--kappa",
    "0.2",
    "--lambda",
    "0",
    "--lattice",
    "8x16",
    "--n-configs",
    "48",
    "--replicas",
    "3",
    "--steps",
    "20",
    "--resample-ess",
    "0.9",
    "--seed",
    "4",
];

fn analyze(dir: &Path, file: &str, json: bool) -> String {
    let mut c = latdiff();
    c.current_dir(dir).arg("analyze").arg(file);
    if json {
        c.arg("--json");
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every dataset and SMC attribute of two SMC files bit for bit (n configurations).
fn assert_same_smc(a: &Ensemble, b: &Ensemble, n: usize, what: &str) {
    assert_eq!(a.n, n);
    assert!(a.read_configs(0, n).unwrap() == b.read_configs(0, n).unwrap(), "{what}: the configurations differ");
    for col in ["action", "log_weight"] {
        assert_eq!(a.read_f64(col).unwrap(), b.read_f64(col).unwrap(), "{what}: /{col}");
    }
    for col in ["replica", "ancestor", "trajectory", "chain"] {
        assert_eq!(a.read_i64(col).unwrap(), b.read_i64(col).unwrap(), "{what}: /{col}");
    }
    for key in ["log_z", "resamplings", "distinct_ancestors"] {
        // Debug prints every f64 exactly, and NaN (no MALA at that level) equal to itself.
        let (x, y) = (a.attr(key).unwrap(), b.attr(key).unwrap());
        assert_eq!(format!("{x:?}"), format!("{y:?}"), "{what}: attribute {key}");
    }
    for key in ["smc_levels/ess_fraction", "smc_levels/acceptance", "smc_levels/step", "smc_levels/sigma"] {
        let (x, y) = (a.read_f64(key).unwrap(), b.read_f64(key).unwrap());
        assert_eq!(format!("{x:?}"), format!("{y:?}"), "{what}: /{key}");
    }
    let resampled = |e: &Ensemble| e.read_i64("smc_levels/resampled").unwrap();
    assert_eq!(resampled(a), resampled(b), "{what}: /smc_levels/resampled");
}

#[test]
fn one_and_two_ranks_write_the_same_smc_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b)) = one_and_two_ranks(dir.path(), SMC) else { return };
    assert_same_smc(&a, &b, 48, "1 vs 2 ranks");
    let replica: Vec<i64> = (0..48).map(|i| i / 16).collect();
    assert_eq!(a.read_i64("replica").unwrap(), replica);
    assert_eq!(b.attr_f64("n_ranks"), Some(2.0));
    // Both ranks ran replicas that resampled and rejuvenated: the comparison covers them.
    let AttrValue::I64s(resamplings) = a.attr("resamplings").unwrap() else { panic!("resamplings") };
    assert!(resamplings.iter().all(|&r| r > 0), "{resamplings:?}");
    let acc = a.read_f64("smc_levels/acceptance").unwrap();
    assert!(acc.iter().any(|a| a.is_finite() && *a > 0.0), "no MALA step was accepted: {acc:?}");
}

/// A replica's particles spread over 2 and over 3 ranks (`--ranks-per-replica`: 8/8 and
/// 6/5/5 of 16 particles; resampling moves configurations between ranks, MALA adapts from
/// the whole replica's acceptance) write the file one rank writes, bit for bit.
#[test]
fn a_replica_spread_over_ranks_writes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = latdiff().current_dir(dir.path()).args(SMC).args(["--out", "one.h5"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = Ensemble::open(&dir.path().join("one.h5")).unwrap();
    for n_ranks in [2, 3] {
        let Some(spread) = spread_over_ranks(dir.path(), SMC, n_ranks) else { return };
        assert_same_smc(&one, &spread, 48, &format!("1 rank vs a replica over {n_ranks} ranks"));
    }
    // Resampling happened, so particles did move between ranks.
    let AttrValue::I64s(resamplings) = one.attr("resamplings").unwrap() else { panic!("resamplings") };
    assert!(resamplings.iter().all(|&r| r > 0), "{resamplings:?}");
}

/// The layout, the attributes, and `analyze`: errors from the spread between replicas,
/// stated in the header; with one replica, no error bar at all.
#[test]
fn smc_file_layout_and_replica_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = latdiff().current_dir(d).args(SMC).args(["--out", "s.h5"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // 16 particles per replica can never reach the 50 lineages analyze trusts: said at once.
    assert!(stderr.contains("warning: a replica descends from only"), "{stderr}");
    let e = Ensemble::open(&d.join("s.h5")).unwrap();
    assert_eq!(e.attr_str("sampler").as_deref(), Some("smc"));
    assert_eq!(e.attr_f64("replicas"), Some(3.0));
    assert_eq!(e.attr_f64("particles_per_replica"), Some(16.0));
    let AttrValue::F64s(log_z) = e.attr("log_z").unwrap() else { panic!("log_z") };
    assert_eq!(log_z.len(), 3);
    let sigma = e.read_f64("smc_levels/sigma").unwrap();
    assert_eq!((sigma.len(), *sigma.last().unwrap()), (20, 0.0));
    let ess = e.file.dataset("smc_levels/ess_fraction").unwrap();
    assert_eq!(ess.shape(), vec![3, 20]);
    // Lineages per level: 16 at the start, never more after a level, and at the last level
    // the distinct ancestors the replica reports.
    let lineages = e.read_i64("smc_levels/lineages").unwrap();
    let AttrValue::I64s(distinct) = e.attr("distinct_ancestors").unwrap() else { panic!("distinct_ancestors") };
    for (r, row) in lineages.chunks(20).enumerate() {
        assert!(row.windows(2).all(|w| w[1] <= w[0]) && row[0] <= 16, "replica {r}: {row:?}");
        assert_eq!(row[19], distinct[r], "replica {r}: last level vs distinct_ancestors");
    }
    assert!(lineages.iter().any(|&l| l < 16), "resampling whenever ESS/N < 0.9 loses lineages");
    let figs = d.join("figs");
    let o = latdiff().current_dir(d).args(["analyze", "s.h5", "--plot"]).arg(&figs).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["smc_levels", "log_weights", "rho_abs_m"] {
        let png = std::fs::metadata(figs.join(format!("{name}.png"))).map(|m| m.len()).unwrap_or(0);
        assert!(png > 5000, "{name}.png: {png} bytes");
    }
    // Normalised within each replica: mean e^w = 1.
    let lw = e.read_f64("log_weight").unwrap();
    for r in 0..3 {
        let m = lw[16 * r..][..16].iter().map(|w| w.exp()).sum::<f64>() / 16.0;
        assert!((m - 1.0).abs() < 1e-12, "replica {r}: mean weight {m}");
    }
    let table = analyze(d, "s.h5", false);
    assert!(table.contains("jackknife over the 3 independent replicas"), "{table}");
    assert!(!table.contains("tau"), "particles are not a time series: {table}");
    let j: serde_json::Value = serde_json::from_str(&analyze(d, "s.h5", true)).unwrap();
    assert_eq!(j["n_replicas"], 3);
    assert!(j["observables"]["phi2"]["err"].as_f64().unwrap() > 0.0);
    // 16 particles per replica: fewer than 50 lineages, so never a trusted bar.
    let AttrValue::I64s(distinct) = e.attr("distinct_ancestors").unwrap() else { panic!("distinct_ancestors") };
    let fewest = *distinct.iter().min().unwrap();
    assert_eq!(j["min_lineages"].as_i64(), Some(fewest), "{j}");
    assert_eq!(j["reliable"], false);
    assert!(j["unreliable_reason"].as_str().unwrap().contains("starting particles"), "{j}");
    assert!(table.contains(&format!("fewest lineages in a replica {fewest}")), "{table}");

    let one: Vec<&str> = SMC.iter().map(|a| if *a == "3" { "1" } else { a }).collect();
    let o = latdiff().current_dir(d).args(&one).args(["--out", "one.h5"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = analyze(d, "one.h5", false);
    assert!(table.contains("errors unavailable: 1 replica"), "{table}");
    assert!(table.contains("± n/a"), "{table}");
    let j: serde_json::Value = serde_json::from_str(&analyze(d, "one.h5", true)).unwrap();
    assert!(j["observables"]["phi2"]["err"].is_null(), "{}", j["observables"]["phi2"]);
}

#[test]
fn bad_smc_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = ["--model", "free:kappa=0.2", "--lattice", "8", "--n-configs", "12"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--replicas", "3"], "replicas"),
        (vec!["--sampler", "smc", "--replicas", "5"], "multiple"),
        (vec!["--sampler", "smc", "--replicas", "0"], "replicas"),
        (vec!["--sampler", "smc", "--resample-ess", "1.5"], "resample_ess"),
        (vec!["--sampler", "smc", "--metropolis"], "metropolis"),
        (vec!["--sampler", "smc", "--smc-target", "learned"], "'learned'"),
        (vec!["--sampler", "smc", "--smc-target", "learnt"], "smc_target: 'learnt' needs"),
        (vec!["--sampler", "smc", "--smc-target", "learnt", "--network-below", "1"], "network_below"),
        (vec!["--sampler", "smc", "--smc-target", "learnt", "--exact-magnetisation"], "exact_magnetisation"),
        (vec!["--sampler", "smc", "--learnt-above", "1"], "learnt_above: 1 needs smc_target = learnt"),
        (vec!["--rejuvenate-always"], "rejuvenate_always: only the smc sampler"),
        (vec!["--sampler", "smc", "--smc-target", "learnt", "--learnt-above", "-1"], "learnt_above: -1"),
        (
            vec!["--sampler", "smc", "--smc-target", "learnt", "--learnt-above", "1", "--network-below", "2"],
            "network_below: 2",
        ),
    ];
    for (args, key) in cases {
        let o = latdiff().current_dir(d).arg("sample").args(base).args(&args).args(["--out", "x.h5"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(key), "{args:?}: {err}");
        assert!(!d.join("x.h5").exists());
    }
}

/// Many replicas × many levels: the level records (64 × 140 × 8 bytes > 64 KiB) are written
/// (as attributes they failed the write after the whole run).
#[test]
fn large_level_records_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = latdiff()
        .current_dir(d)
        .args(["sample", "--sampler", "smc", "--model", "free:kappa=0.17", "--lattice", "4"])
        .args(["--replicas", "64", "--n-configs", "128", "--steps", "140", "--out", "big.h5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = Ensemble::open(&d.join("big.h5")).unwrap();
    assert_eq!(e.file.dataset("smc_levels/ess_fraction").unwrap().shape(), vec![64, 140]);
}

/// Without `--replicas` a one-rank run has 32 replicas (the default does not follow the rank
/// count), so analyze gives replica errors, the log Z error exists, and a count that does
/// not divide into them is refused naming the default.
#[test]
fn default_replicas_give_errors_on_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = ["sample", "--sampler", "smc", "--model", "free:kappa=0.17", "--kappa", "0.2", "--lattice", "4"];
    let o = latdiff().current_dir(d).args(base).args(["--n-configs", "256", "--steps", "10", "--out", "g.h5"]).output();
    let o = o.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = Ensemble::open(&d.join("g.h5")).unwrap();
    assert_eq!(e.attr_f64("replicas"), Some(32.0));
    let j: serde_json::Value = serde_json::from_str(&analyze(d, "g.h5", true)).unwrap();
    assert_eq!(j["n_replicas"], 32);
    let err = j["observables"]["phi2"]["err"].as_f64().unwrap();
    assert!(err.is_finite() && err > 0.0, "phi2 error {err}");
    assert!(analyze(d, "g.h5", false).contains("jackknife over the 32 independent replicas"));
    // analyze's ESS/N is the sampler's stored one (replicas counted equally), to rounding.
    let stored = e.attr_f64("ess_fraction").unwrap();
    let shown = j["ess_fraction"].as_f64().unwrap();
    assert!((stored - shown).abs() < 1e-9, "stored ESS/N {stored} vs analyze's {shown}");
    let o = latdiff().current_dir(d).args(base).args(["--n-configs", "100", "--out", "h.h5"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not a multiple of the 32 replicas (the default"), "{err}");
}
