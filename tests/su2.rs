//! 2-D SU(2) gauge theory: the integrators on the group, HMC against the exact
//! character expansion (`theory::su2_exact`), and `latdiff hmc --theory su2` end to end
//! (file layout, analyze, info, checkpoint/resume, bad input). Fixed seeds; errors from the
//! spread of independent chains, or analyze's binned jackknife.

mod common;

use common::{assert_within, latdiff};
use latdiff::analysis::{Observables, Su2Observables};
use latdiff::io::Ensemble;
use latdiff::lattice::Lattice;
use latdiff::mc::engine::{CpuHmc, HmcEngine, HmcSetup};
use latdiff::mc::hmc::{HmcParams, Start};
use latdiff::mc::Integrator;
use latdiff::theory::su2::{first_non_unit, REUNITARISE_TOL};
use latdiff::theory::{su2_exact, Action, Manifold, Su2, Su2Links, Theory};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn hot(lat: Lattice, seed: u64) -> Vec<f64> {
    Su2::new(lat, 1.0).hot_start(&mut latdiff::rng::stream(seed, latdiff::rng::Domain::Misc, 0))
}

fn momenta(n: usize, seed: u64) -> Vec<f64> {
    let mut p = vec![0.0; n];
    Su2Links.sample_momenta(&mut latdiff::rng::stream(seed, latdiff::rng::Domain::Misc, 1), &mut p);
    p
}

/// Forward, flip the momenta, forward again: back to the start to 1e−10, for both
/// integrators, over a long trajectory (400 steps, so rounding has room to accumulate).
#[test]
fn integrators_are_reversible_on_the_group() {
    let lat = Lattice::square(4);
    let th = Su2::new(lat, 2.0);
    for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
        let u0 = hot(lat, 3);
        let p0 = momenta(Su2Links.momentum_len(u0.len()), 4);
        assert_eq!(p0.len(), 3 * 2 * 16);
        let (mut u, mut p) = (u0.clone(), p0.clone());
        integ.integrate(&th, &mut u, &mut p, 400, 4.0);
        assert!(u.iter().zip(&u0).any(|(a, b)| (a - b).abs() > 1e-2), "the trajectory moved");
        p.iter_mut().for_each(|x| *x = -*x);
        integ.integrate(&th, &mut u, &mut p, 400, 4.0);
        let du = u.iter().zip(&u0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let dp = p.iter().zip(&p0).map(|(a, b)| (a + b).abs()).fold(0.0, f64::max);
        assert!(du < 1e-10 && dp < 1e-10, "{integ:?}: field {du:e}, momenta {dp:e} from the start");
    }
}

/// Links pushed off S³ by ten times `REUNITARISE_TOL` are projected back by the first
/// drift; from there, forward and back returns to the projected field to 1e−10: the
/// projection does not break reversibility.
#[test]
fn reunitarisation_does_not_break_reversibility() {
    let lat = Lattice::square(4);
    let th = Su2::new(lat, 3.0);
    let mut u = hot(lat, 8);
    u.iter_mut().step_by(3).for_each(|x| *x *= 1.0 + 10.0 * REUNITARISE_TOL);
    let p0 = momenta(3 * 32, 9);
    let (mut w, mut p) = (u.clone(), p0.clone());
    Integrator::Omelyan.integrate(&th, &mut w, &mut p, 1, 1e-9);
    assert!(first_non_unit(&w, REUNITARISE_TOL).is_none(), "projected onto the group");
    let start = w.clone();
    let mut p = p0.clone();
    Integrator::Omelyan.integrate(&th, &mut w, &mut p, 300, 3.0);
    p.iter_mut().for_each(|x| *x = -*x);
    Integrator::Omelyan.integrate(&th, &mut w, &mut p, 300, 3.0);
    let du = w.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(du < 1e-10, "{du:e}");
}

/// ΔH ∝ dt² for both schemes, Omelyan's constant smaller: the force and the drift are the
/// derivative and the flow of the same Hamiltonian on the group.
#[test]
fn energy_error_scales_as_dt_squared() {
    let lat = Lattice::square(4);
    let th = Su2::new(lat, 4.0);
    let rms = |integ: Integrator, n: usize| {
        let mut acc = 0.0;
        for s in 0..10 {
            let mut u = hot(lat, 10 + s);
            let mut p = momenta(3 * 32, 20 + s);
            let h0 = th.action(&u) + Su2Links.kinetic(&p);
            integ.integrate(&th, &mut u, &mut p, n, 1.0);
            acc += (th.action(&u) + Su2Links.kinetic(&p) - h0).powi(2);
        }
        (acc / 10.0).sqrt()
    };
    for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
        let ratio = rms(integ, 40) / rms(integ, 80);
        assert!((ratio - 4.0).abs() < 0.4, "{integ:?}: halving dt reduced ΔH by {ratio}");
    }
    assert!(rms(Integrator::Omelyan, 40) < 0.5 * rms(Integrator::Leapfrog, 40));
}

/// Per chain, the means of (plaquette, W(2×2), e^{−ΔH}) over `measure` trajectories after
/// `therm`, on 4 × 4 at β.
fn run_chains(beta: f64, params: HmcParams, n_chains: usize, therm: usize, measure: usize) -> Vec<[f64; 3]> {
    let lat = Lattice::square(4);
    let setup = HmcSetup {
        theory: Su2::new(lat, beta),
        params,
        cluster_updates: 0,
        seed: 17,
        start: Start::Mixed,
        chains: 0..n_chains,
    };
    let mut engine = CpuHmc::new(&setup);
    engine.advance(therm).unwrap();
    let obs = Su2Observables::new(lat, beta);
    let names = obs.primary_names();
    let w22 = names.iter().position(|n| n == "w_r2_t2").unwrap();
    let mut sums = vec![[0.0; 3]; n_chains];
    let mut out = vec![0.0; names.len()];
    for _ in 0..measure {
        let res = engine.advance(1).unwrap();
        for (c, (chain, r)) in engine.chains.iter().zip(&res).enumerate() {
            obs.primaries(&chain.phi, &mut out);
            sums[c][0] += out[0];
            sums[c][1] += out[w22];
            sums[c][2] += (-r[0].delta_h).exp();
        }
    }
    for c in &engine.chains {
        assert!(first_non_unit(&c.phi, 1e-12).is_none(), "a link left the group");
    }
    sums.iter().map(|s| s.map(|x| x / measure as f64)).collect()
}

/// Mean and standard error over independent chains of component `k`.
fn mean_err(per_chain: &[[f64; 3]], k: usize) -> (f64, f64) {
    let n = per_chain.len() as f64;
    let m = per_chain.iter().map(|c| c[k]).sum::<f64>() / n;
    let var = per_chain.iter().map(|c| (c[k] - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// HMC on 4 × 4 at β = 2 and 8: the plaquette and W(2×2) within 3σ of the exact values on
/// this torus, ⟨e^{−ΔH}⟩ = 1 within 3σ; at β = 8 the plaquette is more than 3σ from the
/// infinite-volume I_2/I_1 (the torus shifts it by 1.06e−3: the test sees the finite volume).
#[test]
fn hmc_matches_the_character_expansion_on_4x4() {
    let params = HmcParams { integrator: Integrator::Omelyan, n_md: 5, tau: 1.0, tau_jitter: 0.2 };
    for beta in [2.0, 8.0] {
        let per_chain = run_chains(beta, params, 32, 50, 1500);
        let what = format!("β = {beta}, 4x4");
        let plaq = mean_err(&per_chain, 0);
        assert_within(&format!("{what}: plaquette"), plaq, su2_exact::plaquette(beta, 16), 3.0);
        assert_within(&format!("{what}: W(2x2)"), mean_err(&per_chain, 1), su2_exact::wilson_loop(beta, 16, 4), 3.0);
        assert_within(&format!("{what}: <exp(-dH)>"), mean_err(&per_chain, 2), 1.0, 3.0);
        if beta == 8.0 {
            // The infinite-volume value I_2/I_1 is excluded: the test sees the torus.
            let dev = (plaq.0 - su2_exact::plaquette_infinite_volume(beta)) / plaq.1;
            assert!(dev > 3.0, "the finite-volume shift is not resolved: {dev:.1} σ from I_2/I_1");
        }
    }
}

/// ⟨e^{−ΔH}⟩ = 1 with ΔH far from zero (a coarse leapfrog, rms ΔH ≈ 1).
#[test]
fn exp_minus_delta_h_is_one_with_large_steps() {
    let params = HmcParams { integrator: Integrator::Leapfrog, n_md: 3, tau: 1.0, tau_jitter: 0.2 };
    let per_chain = run_chains(4.0, params, 32, 50, 400);
    assert_within("coarse leapfrog: <exp(-dH)>", mean_err(&per_chain, 2), 1.0, 3.0);
}

// ---- through the command line ----

fn hmc(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = latdiff().args(["hmc", "--theory", "su2"]).args(extra).arg("--out").arg(&out).output().unwrap();
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

/// /configs [N, 2, L_t, L_x, 4] float32 unit quaternions, the theory and β as attributes,
/// /action = β Σ_P (1 − ½ tr U_P) of the stored links (README's convention); analyze reports
/// the exact values on the torus beside its estimates, and info reads the file.
#[test]
fn file_layout_analyze_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let a = ["--beta", "2", "--lattice", "4x6", "--n-configs", "200", "--n-chains", "4", "--n-therm", "20"];
    let out = hmc(dir.path(), "su2.h5", &a);
    let e = Ensemble::open(&out).unwrap();
    assert_eq!(e.shape.dims(), &[2, 4, 6, 4]);
    assert_eq!(e.attr_str("theory").as_deref(), Some("su2"));
    assert_eq!(e.attr_f64("beta"), Some(2.0));
    assert!(e.attr_str("config").unwrap().contains("theory = \"su2\""));
    let (lt, lx, v) = (4usize, 6usize, 24usize);
    let configs = e.read_configs(0, e.n).unwrap();
    let action = e.read_f64("action").unwrap();
    for (c, s) in configs.chunks(8 * v).zip(&action).take(20) {
        let u: Vec<f64> = c.iter().map(|&a| f64::from(a)).collect();
        assert!(first_non_unit(&u, 1e-6).is_none());
        let link = |mu: usize, t: usize, x: usize| {
            let i = 4 * (mu * v + (t % lt) * lx + x % lx);
            matrix(&u[i..i + 4])
        };
        let mut sum = 0.0;
        for t in 0..lt {
            for x in 0..lx {
                // U_0(s) U_1(s+t̂) U_0(s+x̂)† U_1(s)†, as matrices.
                let q = mul(mul(link(0, t, x), link(1, t + 1, x)), mul(dag(link(0, t, x + 1)), dag(link(1, t, x))));
                sum += 1.0 - 0.5 * (q[0][0].0 + q[1][1].0);
            }
        }
        assert!((2.0 * sum - s).abs() < 1e-4, "S from the stored links {} vs /action {s}", 2.0 * sum);
    }
    let j = analyze(&out);
    let exact = &j["exact"];
    assert_eq!(exact["plaquette"].as_f64(), Some(su2_exact::plaquette(2.0, 24)));
    assert_eq!(exact["w2x2"].as_f64(), Some(su2_exact::wilson_loop(2.0, 24, 4)));
    let (m, err) = scalar(&j, "plaquette");
    let sigma = exact["plaquette_sigma"].as_f64().unwrap();
    assert!((sigma - (m - su2_exact::plaquette(2.0, 24)) / err).abs() < 1e-9 && sigma.abs() < 5.0, "{sigma}");
    let text = latdiff().args(["analyze"]).arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("exact on this torus: plaquette 0.4"), "{text}");
    let info = latdiff().args(["info"]).arg(&out).output().unwrap();
    let itext = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success() && itext.contains("su2") && itext.contains("beta = 2"), "{itext}");
}

/// Unit quaternions as 2 × 2 matrices a0 + i a·σ, written out independently of the library.
fn matrix(a: &[f64]) -> [[(f64, f64); 2]; 2] {
    [[(a[0], a[3]), (a[2], a[1])], [(-a[2], a[1]), (a[0], -a[3])]]
}

fn mul(a: [[(f64, f64); 2]; 2], b: [[(f64, f64); 2]; 2]) -> [[(f64, f64); 2]; 2] {
    let mut c = [[(0.0, 0.0); 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                c[i][j].0 += a[i][k].0 * b[k][j].0 - a[i][k].1 * b[k][j].1;
                c[i][j].1 += a[i][k].0 * b[k][j].1 + a[i][k].1 * b[k][j].0;
            }
        }
    }
    c
}

fn dag(a: [[(f64, f64); 2]; 2]) -> [[(f64, f64); 2]; 2] {
    [[(a[0][0].0, -a[0][0].1), (a[1][0].0, -a[1][0].1)], [(a[0][1].0, -a[0][1].1), (a[1][1].0, -a[1][1].1)]]
}

/// SIGTERM in production: the checkpoint resumes bit for bit (configurations and /action
/// equal those of an uninterrupted run), and info describes the checkpoint.
#[test]
fn sigterm_and_resume_continue_an_su2_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |out: &str| -> Vec<String> {
        format!(
            "--threads 1 hmc --theory su2 --beta 3 --lattice 16 --n-configs 400 --n-chains 2 --n-therm 10 --n-sep 10 --seed 4 --out {out}"
        )
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    let (child, lines) = common::spawn_until(d, &args("stopped.h5"), "[hmc] ");
    common::sigterm(child.id());
    let err = lines.map(|l| l.unwrap()).collect::<Vec<_>>().join("\n");
    let (out, _) = common::wait_within(child, std::time::Duration::from_secs(30), "su2 hmc");
    assert!(out.status.success() && err.contains("stopped by signal"), "{err}");
    assert!(d.join("stopped.h5.ckpt").exists(), "{err}");
    let info = latdiff().current_dir(d).args(["info", "stopped.h5.ckpt"]).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("run           su2 beta = 3 on 16x16"), "{text}");
    let o = latdiff().current_dir(d).args(args("stopped.h5")).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = latdiff().current_dir(d).args(args("whole.h5")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (Ensemble::open(&d.join("stopped.h5")).unwrap(), Ensemble::open(&d.join("whole.h5")).unwrap());
    assert_eq!(a.n, 400);
    assert!(a.read_configs(0, 400).unwrap() == b.read_configs(0, 400).unwrap(), "the configurations differ");
    assert_eq!(a.read_f64("action").unwrap(), b.read_f64("action").unwrap());
}

/// Bad input, one clear line, exit code 2, nothing written: β ≤ 0, another theory's
/// couplings, flux moves, the GPU; a file whose links are not unit quaternions (analyze
/// names the configuration and link); diffusion, which is not built for SU(2) yet.
#[test]
fn bad_input_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("x.h5");
    for (args, needle) in [
        (vec!["--beta", "0"], "beta: 0 is not positive"),
        (vec!["--beta", "-1.5"], "beta: -1.5 is not positive"),
        (vec![], "beta: required with theory su2"),
        (vec!["--beta", "2", "--lambda", "0.1"], "theory su2 takes only beta"),
        (vec!["--beta", "2", "--cluster-updates", "2"], "theory su2 has no updates besides HMC"),
    ] {
        let o = latdiff().args(["hmc", "--theory", "su2"]).args(&args).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!out.exists());
    }
    let o = latdiff()
        .args(["--device", "cuda", "hmc", "--theory", "su2", "--beta", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!out.exists());
    // A file whose links are not unit quaternions.
    let good =
        hmc(d, "good.h5", &["--beta", "2", "--lattice", "4", "--n-configs", "8", "--n-chains", "2", "--n-therm", "10"]);
    let bad = d.join("bad.h5");
    std::fs::copy(&good, &bad).unwrap();
    {
        let f = hdf5::File::open_rw(&bad).unwrap();
        let ds = f.dataset("configs").unwrap();
        let mut all: Vec<f32> = ds.read_raw().unwrap();
        all[8 * 16 * 3 + 4 * 5] = 0.5;
        ds.write_raw(&all).unwrap();
    }
    let o = latdiff().args(["analyze"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("configuration 3: link 5") && err.contains("not a unit quaternion"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let o = latdiff()
        .args(["train", "--steps", "2", "--data"])
        .arg(&good)
        .arg("--out")
        .arg(d.join("m.h5"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("diffusion for su2 is not built yet"), "{err}");
    assert!(!d.join("m.h5").exists());
}
