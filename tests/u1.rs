//! 2-D U(1) gauge theory end to end through the command line: `latdiff hmc --theory u1`
//! against the exact plaquette and topological susceptibility of the torus
//! (`theory::u1_exact`), hot against cold starts, the file layout, and `analyze` on it.
//! Fixed seeds; tolerances in standard errors of analyze's binned jackknife.

mod common;

use common::{assert_agree, assert_within, latdiff};
use latdiff::io::Ensemble;
use latdiff::theory::u1_exact;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn hmc(dir: &Path, name: &str, beta: f64, l: usize, start: &str, n_configs: usize) -> PathBuf {
    let out = dir.join(name);
    let o = latdiff()
        .args(["hmc", "--theory", "u1", "--beta", &beta.to_string(), "--lattice", &l.to_string()])
        .args(["--n-configs", &n_configs.to_string(), "--n-chains", "8", "--n-sep", "2", "--start", start])
        .args(["--seed", "5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "hmc failed: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn analyze(file: &Path) -> Value {
    let o = latdiff().args(["analyze", "--json"]).arg(file).output().unwrap();
    assert!(o.status.success(), "analyze failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn scalar(j: &Value, key: &str) -> (f64, f64) {
    let o = &j["observables"][key];
    (o["mean"].as_f64().unwrap(), o["err"].as_f64().unwrap())
}

/// β = 1 on 8 × 8 and β = 3 on 16 × 16: plaquette and χ_t within 4σ of the exact values,
/// with errors small enough to mean something (relative error of χ_t below 6 %).
#[test]
fn hmc_matches_the_exact_plaquette_and_susceptibility() {
    let dir = tempfile::tempdir().unwrap();
    for (beta, l) in [(1.0, 8usize), (3.0, 16)] {
        let f = hmc(dir.path(), &format!("b{beta}_l{l}.h5"), beta, l, "mixed", 4000);
        let j = analyze(&f);
        let v = l * l;
        let what = format!("β = {beta}, L = {l}");
        assert_within(&format!("{what}: plaquette"), scalar(&j, "plaquette"), u1_exact::plaquette(beta, v), 4.0);
        let chi = scalar(&j, "chi_t");
        assert_within(&format!("{what}: χ_t"), chi, u1_exact::topological_susceptibility(beta, v), 4.0);
        assert!(chi.1 / chi.0 < 0.06, "{what}: χ_t error {} too large to test anything", chi.1 / chi.0);
        // Topology moves at these couplings, and analyze says how often.
        let changed = j["topology"]["q_changed_fraction"].as_f64().unwrap();
        assert!(changed > 0.1, "{what}: Q changed in only {changed} of successive configurations");
    }
}

/// Where HMC freezes (β = 7 and 9, 16 × 16: Q changed between 0.15 % of saved
/// configurations at β = 7, none at β = 9), four flux moves after each trajectory
/// (`--cluster-updates 4`, `theory::u1::flux_move`) sample the sectors: plaquette and χ_t
/// within 4σ of the exact values with a χ_t error below 10 %, the charge changing between
/// most saved configurations, and P(Q = 0) and P(|Q| = 1) within 4σ (binomial errors
/// inflated by √(2τ) from the chains' serial correlation, τ ≤ 2 saved configurations).
#[test]
fn flux_moves_unfreeze_hmc_at_large_beta() {
    let dir = tempfile::tempdir().unwrap();
    for beta in [7.0, 9.0] {
        let out = dir.path().join(format!("flux_b{beta}.h5"));
        let o = latdiff()
            .args(["hmc", "--theory", "u1", "--beta", &beta.to_string(), "--lattice", "16"])
            .args(["--n-configs", "8000", "--n-chains", "8", "--n-sep", "2", "--start", "mixed"])
            .args(["--cluster-updates", "4", "--seed", "6", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "hmc failed: {}", String::from_utf8_lossy(&o.stderr));
        let j = analyze(&out);
        let (v, what) = (256, format!("β = {beta}, flux moves"));
        assert_within(&format!("{what}: plaquette"), scalar(&j, "plaquette"), u1_exact::plaquette(beta, v), 4.0);
        let chi = scalar(&j, "chi_t");
        assert_within(&format!("{what}: χ_t"), chi, u1_exact::topological_susceptibility(beta, v), 4.0);
        assert!(chi.1 / chi.0 < 0.10, "{what}: χ_t error {} too large to test anything", chi.1 / chi.0);
        let changed = j["topology"]["q_changed_fraction"].as_f64().unwrap();
        assert!(changed > 0.3, "{what}: Q changed in only {changed} of successive configurations");
        let p = u1_exact::charge_distribution(beta, v, 4);
        let q = Ensemble::open(&out).unwrap().read_i64("topological_charge").unwrap();
        let n = q.len() as f64;
        for (sector, exact) in [(0i64, p[0]), (1, 2.0 * p[1])] {
            let got = q.iter().filter(|x| x.abs() == sector).count() as f64 / n;
            let err = (exact * (1.0 - exact) / n).sqrt() * 2.0;
            assert!((got - exact).abs() < 4.0 * err, "{what}: P(|Q| = {sector}) {got} vs exact {exact} ± {err}");
        }
    }
}

/// Ordered and random starts reach the same distribution (β = 3, 16 × 16).
#[test]
fn hot_and_cold_starts_agree() {
    let dir = tempfile::tempdir().unwrap();
    let hot = analyze(&hmc(dir.path(), "hot.h5", 3.0, 16, "hot", 2000));
    let cold = analyze(&hmc(dir.path(), "cold.h5", 3.0, 16, "cold", 2000));
    for key in ["plaquette", "chi_t"] {
        assert_agree(&format!("hot vs cold: {key}"), scalar(&hot, key), scalar(&cold, key), 4.0);
    }
}

/// The documented layout: /configs [N, 2, L_t, L_x] float32 angles in (−π, π], the theory
/// and β as attributes, and the plaquette angle convention of the README reproduces
/// /action = −β Σ_P cos θ_P.
#[test]
fn file_layout_and_plaquette_convention() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("u1.h5");
    let o = latdiff()
        .args(["hmc", "--theory", "u1", "--beta", "2", "--lattice", "4x6", "--n-configs", "4", "--n-chains", "2"])
        .args(["--n-therm", "10", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = Ensemble::open(&out).unwrap();
    assert_eq!(e.shape.dims(), &[2, 4, 6]);
    assert_eq!(e.attr_str("theory").as_deref(), Some("u1"));
    assert_eq!(e.attr_f64("beta"), Some(2.0));
    assert!(e.attr_str("config").unwrap().contains("theory = \"u1\""));
    let configs = e.read_configs(0, e.n).unwrap();
    let action = e.read_f64("action").unwrap();
    let charge = e.read_i64("topological_charge").unwrap();
    let theory = latdiff::theory::U1::new(latdiff::lattice::Lattice::new(4, 6), 2.0);
    let (lt, lx, v) = (4usize, 6usize, 24usize);
    for ((c, s), q) in configs.chunks(2 * v).zip(&action).zip(&charge) {
        let c64: Vec<f64> = c.iter().map(|&a| f64::from(a)).collect();
        assert_eq!(theory.topological_charge(&c64).round() as i64, *q);
        assert!(c.iter().all(|a| -std::f32::consts::PI <= *a && *a <= std::f32::consts::PI));
        let th = |mu: usize, t: usize, x: usize| f64::from(c[mu * v + (t % lt) * lx + x % lx]);
        let mut sum = 0.0;
        for t in 0..lt {
            for x in 0..lx {
                sum += (th(0, t, x) + th(1, t + 1, x) - th(0, t, x + 1) - th(1, t, x)).cos();
            }
        }
        // /action is S of the f64 field; the file holds it rounded to f32.
        assert!((-2.0 * sum - s).abs() < 1e-4, "S from the stored angles {} vs /action {s}", -2.0 * sum);
    }
}

/// Each theory's couplings only with that theory; one clear line, exit code 2.
#[test]
fn couplings_of_another_theory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.h5");
    for (args, needle) in [
        (vec!["--theory", "u1"], "beta: required with theory u1"),
        (vec!["--theory", "u1", "--beta", "2", "--kappa", "0.2"], "theory u1 takes only beta"),
        (vec!["--beta", "2"], "beta is the coupling of theory u1"),
        (vec!["--theory", "u1", "--beta", "-1"], "beta: -1 is negative"),
    ] {
        let o = latdiff().arg("hmc").args(&args).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!out.exists());
    }
}

/// The generic driver under MPI: one, two and three ranks write the same U(1) file (chains
/// split unevenly, the charge column gathered with the configurations).
#[test]
fn one_and_several_ranks_write_the_same_u1_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = "hmc --theory u1 --beta 2 --lattice 6x8 --n-configs 21 --n-chains 7 --n-therm 20 --n-sep 3 --start mixed --seed 9";
    let args: Vec<&str> = args.split_whitespace().collect();
    let o = latdiff().current_dir(d).args(&args).args(["--out", "r1.h5"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = Ensemble::open(&d.join("r1.h5")).unwrap();
    for ranks in ["2", "3"] {
        let Some(mut mpi) = common::mpirun() else { return };
        let out = format!("r{ranks}.h5");
        let o = mpi
            .current_dir(d)
            .args(["-n", ranks])
            .arg(common::bin())
            .args(&args)
            .args(["--out", &out])
            .output()
            .unwrap();
        assert!(o.status.success(), "{ranks} ranks: {}", String::from_utf8_lossy(&o.stderr));
        let b = Ensemble::open(&d.join(&out)).unwrap();
        assert_eq!(a.read_configs(0, 21).unwrap(), b.read_configs(0, 21).unwrap(), "{ranks} ranks: /configs");
        assert_eq!(a.read_f64("action").unwrap(), b.read_f64("action").unwrap(), "{ranks} ranks: /action");
        for col in ["chain", "trajectory", "topological_charge"] {
            assert_eq!(a.read_i64(col).unwrap(), b.read_i64(col).unwrap(), "{ranks} ranks: /{col}");
        }
    }
}

/// SIGTERM in production: the checkpoint resumes bit for bit (configurations, /action and
/// the charges equal those of an uninterrupted run).
#[test]
fn sigterm_and_resume_continue_a_u1_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |out: &str| -> Vec<String> {
        format!(
            "--threads 1 hmc --theory u1 --beta 3 --lattice 32 --n-configs 400 --n-chains 2 --n-therm 20 --n-sep 20 --seed 4 --out {out}"
        )
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    let (child, lines) = common::spawn_until(d, &args("stopped.h5"), "[hmc] ");
    common::sigterm(child.id());
    let err = lines.map(|l| l.unwrap()).collect::<Vec<_>>().join("\n");
    let (out, _) = common::wait_within(child, std::time::Duration::from_secs(30), "u1 hmc");
    assert!(out.status.success() && err.contains("stopped by signal"), "{err}");
    assert!(d.join("stopped.h5.ckpt").exists(), "{err}");
    let info = latdiff().current_dir(d).args(["info", "stopped.h5.ckpt"]).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("run           u1 beta = 3 on 32x32"), "{text}");
    let o = latdiff().current_dir(d).args(args("stopped.h5")).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = latdiff().current_dir(d).args(args("whole.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (Ensemble::open(&d.join("stopped.h5")).unwrap(), Ensemble::open(&d.join("whole.h5")).unwrap());
    assert_eq!(a.n, 400);
    assert!(a.read_configs(0, 400).unwrap() == b.read_configs(0, 400).unwrap(), "the configurations differ");
    assert_eq!(a.read_f64("action").unwrap(), b.read_f64("action").unwrap());
    assert_eq!(a.read_i64("topological_charge").unwrap(), b.read_i64("topological_charge").unwrap());
}

/// At β = 9 on 16 × 16 HMC alone (`--cluster-updates 0`) cannot change Q: ordered starts
/// stay at Q = 0, random ones keep their charges, and the thermalisation check says so (the
/// starts disagree in |Q|/V) with the warning naming frozen topology; `analyze` marks the
/// file unreliable for its frozen charge, in the table and in JSON.
#[test]
fn frozen_topology_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.h5");
    let o = latdiff()
        .args(["hmc", "--theory", "u1", "--beta", "9", "--lattice", "16", "--n-configs", "64", "--n-chains", "8"])
        .args(["--n-therm", "200", "--n-sep", "2", "--start", "mixed", "--cluster-updates", "0", "--seed", "2"])
        .arg("--out")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("abs_q_density   cold starts 0.000000") && err.contains("STARTS DISAGREE"), "{err}");
    assert!(err.contains("frozen topological sectors"), "{err}");
    let j = analyze(&f);
    assert_eq!(j["topology"]["q_changed_fraction"].as_f64(), Some(0.0), "{j}");
    assert_eq!(j["reliable"], Value::Bool(false), "{j}");
    assert!(j["unreliable_reason"].as_str().unwrap().contains("frozen topology"), "{j}");
    let t = latdiff().arg("analyze").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("unreliable: ") && text.contains("frozen topology"), "{text}");
}

/// The new user's command (β = 8, 16 × 16, no update flags): flux moves are on by default
/// for U(1), so Q moves between most saved configurations and analyze sees no frozen
/// topology; the file records the 4 moves per trajectory.
#[test]
fn u1_hmc_uses_flux_moves_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.h5");
    let o = latdiff()
        .args(["hmc", "--theory", "u1", "--beta", "8", "--lattice", "16", "--n-configs", "400", "--n-chains", "4"])
        .args(["--n-sep", "2", "--seed", "3", "--out"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = Ensemble::open(&f).unwrap();
    assert_eq!(e.attr_f64("cluster_updates"), Some(4.0));
    assert!(e.attr_str("update_mix").unwrap().contains("+ 4 flux moves"), "{:?}", e.attr_str("update_mix"));
    let j = analyze(&f);
    let changed = j["topology"]["q_changed_fraction"].as_f64().unwrap();
    assert!(changed > 0.3, "Q changed in only {changed} of successive configurations");
    assert!(!j["unreliable_reason"].as_str().unwrap_or("").contains("frozen"), "{j}");
}

// ---- diffusion on the torus ----

fn train_u1(dir: &Path, data: &Path, steps: usize) -> PathBuf {
    let out = dir.join("u1_model.h5");
    let o = latdiff()
        .args(["train", "--preset", "tiny-local", "--steps", &steps.to_string(), "--batch", "32", "--lr", "2e-3"])
        .args(["--seed", "1", "--data"])
        .arg(data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "train failed: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn sample_u1(dir: &Path, model: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = latdiff()
        .args(["sample", "--n-configs", "1024", "--steps", "400", "--seed", "3", "--model"])
        .arg(model)
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "sample failed: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// A tiny model trained on β = 1, 8 × 8 HMC data, sampled with path weights at β = 1:
/// the reweighted plaquette and χ_t agree with the exact values within 4σ, with enough
/// effective samples to mean something; the file is a U(1) ensemble. The same model
/// conditioned on β = 1.5 (`--beta 1.5`: prior at β = 1.5, correction scaled by 1.5) is
/// exact for β = 1.5 through its weights (ESS/N ≈ 0.16 there, against 0.05 for the prior
/// alone: at β = 2 it is 0.04, too few for a test). Fixed seeds.
#[test]
fn diffusion_model_samples_the_exact_u1_ensemble_with_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = hmc(d, "b1.h5", 1.0, 8, "mixed", 2048);
    let model = train_u1(d, &data, 1500);
    for (beta, extra) in [(1.0, vec![]), (1.5, vec!["--beta", "1.5"])] {
        let f = sample_u1(d, &model, &format!("s{beta}.h5"), &extra);
        let e = Ensemble::open(&f).unwrap();
        assert_eq!(e.shape.dims(), &[2, 8, 8]);
        assert_eq!(e.attr_str("theory").as_deref(), Some("u1"));
        assert_eq!(e.attr_f64("beta"), Some(beta));
        assert_eq!(e.attr_f64("beta_conditioning"), Some(beta));
        // The torus has only the em kernel: the stored configuration says what ran.
        assert_eq!(e.attr_str("kernel").as_deref(), Some("em"));
        assert!(e.attr_str("config").unwrap().contains("kernel = \"em\""), "{:?}", e.attr_str("config"));
        let j = analyze(&f);
        let ess = j["ess"].as_f64().unwrap();
        assert!(ess > 100.0, "β = {beta}: ESS {ess} of 1024 is too few to test anything");
        let what = format!("diffusion at β = {beta} (ESS {ess:.0})");
        assert_within(&format!("{what}: plaquette"), scalar(&j, "plaquette"), u1_exact::plaquette(beta, 64), 4.0);
        let chi = u1_exact::topological_susceptibility(beta, 64);
        assert_within(&format!("{what}: χ_t"), scalar(&j, "chi_t"), chi, 4.0);
    }
}

/// U(1) models refuse what the torus does not have, each with one line naming it.
#[test]
fn u1_diffusion_refuses_what_the_torus_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = hmc(d, "b1.h5", 1.0, 4, "hot", 64);
    let o = latdiff()
        .args(["train", "--preset", "tiny-local", "--steps", "2", "--batch", "8", "--score-form", "plain", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(d.join("plain.h5"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("score_form: 'plain' is not available for U(1)"), "{err}");
    let model = d.join("m.h5");
    let o = latdiff()
        .args(["train", "--preset", "tiny-local", "--steps", "2", "--batch", "8", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (args, want) in [
        (vec!["--sampler", "pc"], "sampler: 'pc' is not available for U(1)"),
        (vec!["--sampler", "ode"], "sampler: 'ode' is not available for U(1)"),
        (vec!["--sampler", "smc", "--exact-magnetisation"], "exact_magnetisation: a U(1) field has no magnetisation"),
        (vec!["--kappa", "0.2"], "kappa: 0.2 given, but the model is a U(1) gauge model"),
        (vec!["--beta", "-1"], "beta: -1 is not a positive coupling"),
    ] {
        let o = latdiff()
            .args(["sample", "--n-configs", "4", "--steps", "4", "--model"])
            .arg(&model)
            .args(&args)
            .arg("--out")
            .arg(d.join("s.h5"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!d.join("s.h5").exists());
    }
}

/// SMC on the torus through the command line (`prior:` model, no training): the file is a
/// U(1) ensemble with its replica columns, the same on one and two ranks (batches that
/// split the work differently), and a replica's estimates are those of the exact torus
/// within 4 replica errors (β = 2, 8 × 8; the physics at larger β is in the SMC unit tests
/// and the README's study).
#[test]
fn smc_on_the_torus_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = hmc(d, "b2.h5", 2.0, 8, "hot", 64);
    let model = format!("prior:{}", data.display());
    let args = ["sample", "--model", &model, "--sampler", "smc", "--replicas", "8", "--n-configs", "512"];
    let args: Vec<&str> = args.iter().copied().chain(["--steps", "60", "--seed", "4"]).collect();
    let o = latdiff().current_dir(d).args(&args).args(["--out", "smc.h5"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = Ensemble::open(&d.join("smc.h5")).unwrap();
    assert_eq!(e.shape.dims(), &[2, 8, 8]);
    assert_eq!(e.read_i64("replica").unwrap().iter().max(), Some(&7));
    let j = analyze(&d.join("smc.h5"));
    assert_eq!(j["n_replicas"].as_u64(), Some(8));
    assert_within("SMC β = 2: plaquette", scalar(&j, "plaquette"), u1_exact::plaquette(2.0, 64), 4.0);
    assert_within("SMC β = 2: χ_t", scalar(&j, "chi_t"), u1_exact::topological_susceptibility(2.0, 64), 4.0);
    // analyze names the exact values it compares with, and the exact P(Q).
    let exact = &j["topology"]["exact"];
    assert_eq!(exact["chi_t"].as_f64(), Some(u1_exact::topological_susceptibility(2.0, 64)));
    let sigma = (scalar(&j, "chi_t").0 - exact["chi_t"].as_f64().unwrap()) / scalar(&j, "chi_t").1;
    assert!((exact["chi_t_sigma"].as_f64().unwrap() - sigma).abs() < 1e-9);
    let p = u1_exact::charge_distribution(2.0, 64, 6);
    assert_eq!(exact["p_q"]["-1"].as_f64(), Some(p[1]));
    // The figures of an HMC and of an SMC ensemble on the torus.
    for (file, names) in [
        ("b2.h5", &["p_q", "q_history", "rho_q2", "hist_action_density"][..]),
        ("smc.h5", &["p_q", "smc_levels", "log_weights"][..]),
    ] {
        let figs = d.join(format!("figs_{file}"));
        let o = latdiff().current_dir(d).args(["analyze", file, "--plot"]).arg(&figs).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for name in names {
            let png = std::fs::metadata(figs.join(format!("{name}.png"))).map(|m| m.len()).unwrap_or(0);
            assert!(png > 5000, "{file}: {name}.png: {png} bytes");
        }
        let svg = std::fs::read_to_string(figs.join("p_q.svg")).unwrap();
        assert!(!latdiff::analysis::font_available() || svg.contains("exact on this torus"), "{file}: p_q legend");
    }
    if let Some((a, b)) = common::one_and_two_ranks(d, &args) {
        assert_eq!(a.read_configs(0, a.n).unwrap(), b.read_configs(0, b.n).unwrap(), "1 vs 2 ranks: /configs");
        assert_eq!(a.read_f64("log_weight").unwrap(), b.read_f64("log_weight").unwrap());
        // Each replica's particles over both ranks (--ranks-per-replica 2): the same file.
        let c = common::spread_over_ranks(d, &args, 2).unwrap();
        assert_eq!(a.read_configs(0, a.n).unwrap(), c.read_configs(0, c.n).unwrap(), "a replica over 2 ranks");
        assert_eq!(a.read_f64("log_weight").unwrap(), c.read_f64("log_weight").unwrap());
        assert_eq!(a.read_i64("ancestor").unwrap(), c.read_i64("ancestor").unwrap());
        assert_eq!(format!("{:?}", a.attr("log_z")), format!("{:?}", c.attr("log_z")));
        assert_eq!(a.read_i64("smc_levels/lineages").unwrap(), c.read_i64("smc_levels/lineages").unwrap());
    }
}
