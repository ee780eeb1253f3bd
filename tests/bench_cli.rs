//! `latdiff bench` produces its machine-readable figures (speed itself is measured by the
//! benchmarks, not by tests).

mod common;
use common::latdiff;

fn json(args: &[&str]) -> serde_json::Value {
    let o = latdiff().arg("bench").args(args).arg("--json").output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})"))
}

#[test]
fn bench_reports_json_figures() {
    let h = json(&["hmc", "--lattice", "8,16", "--seconds", "0.05"]);
    for l in ["8", "16"] {
        assert!(h["site_updates_per_s"][l].as_f64().unwrap() > 0.0, "{h}");
    }
    let t = json(&["train", "--preset", "tiny", "--lattice", "8", "--batch", "4", "--seconds", "0.05"]);
    let r = &t["runs"][0];
    assert!(r["samples_per_s"].as_f64().unwrap() > 0.0 && r["gflops"].as_f64().unwrap() > 0.0, "{t}");
    let f = json(&["forward", "--preset", "tiny", "--lattice", "8", "--batch", "3", "--seconds", "0.05"]);
    let r = &f["runs"][0];
    assert!(r["network_evals_per_s"].as_f64().unwrap() > 0.0 && r["batch"] == 3, "{f}");
    let s = json(&["sample", "--preset", "tiny", "--lattice", "8", "--steps", "2", "--seconds", "0.05"]);
    let r = &s["runs"][0];
    assert!(r["configs_per_s"].as_f64().unwrap() > 0.0, "{s}");
    let share = r["outside_network_share"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&share), "{s}");
}

/// A lattice the network cannot take is one line and exit 2, before any benchmark runs
/// (it was a panic with exit 101).
#[test]
fn bench_sample_refuses_a_lattice_the_network_cannot_take() {
    let o = latdiff()
        .args(["--device", "cpu", "bench", "sample", "--preset", "tiny", "--lattice", "8,15", "--seconds", "0.05"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("lattice: 15"), "{err}");
}
