//! Training: learning against the exact free-field score, MPI equivalence, bit-for-bit
//! resume, signals, bad input.

mod common;
use common::*;
use latdiff::backend::Device;
use latdiff::cli::train::resolve;
use latdiff::config::TrainOptions;
use latdiff::diffusion::form::{ScoreForm, ScoreParts};
use latdiff::diffusion::net::model_file::ModelFile;
use latdiff::diffusion::net::{build, engine::Weights};
use latdiff::diffusion::objective::SigmaSchedule;
use latdiff::diffusion::phi4::free::FreeScoreModel;
use latdiff::diffusion::train::{train, Validation};
use latdiff::diffusion::ScoreModel;
use latdiff::dist::Comm;
use latdiff::io::Ensemble;
use latdiff::lattice::Lattice;
use latdiff::nn::Network;
use latdiff::util::StopFlag;
use std::path::{Path, PathBuf};

/// A free-field (κ = 0.2, λ = 0) HMC ensemble on L×L.
fn free_ensemble(dir: &Path, l: usize, n: usize) -> PathBuf {
    let run = HmcRun {
        lattice: Lattice::square(l),
        kappa: Some(0.2),
        lambda: 0.0,
        n_chains: 16,
        per_chain: n / 16,
        n_therm: 100,
        n_sep: 3,
        ..Default::default()
    };
    let path = dir.join(format!("free{l}.h5"));
    latdiff::mc::ensemble::run(&run.config(&path), &Comm::single(), &StopFlag::none()).unwrap();
    path
}

fn opts(data: &Path, out: &Path, steps: u64, batch: usize) -> TrainOptions {
    TrainOptions {
        data: Some(data.to_path_buf()),
        out: Some(out.to_path_buf()),
        preset: Some("tiny".into()),
        score_form: Some("plain".into()),
        steps: Some(steps),
        batch: Some(batch),
        seed: Some(5),
        force: Some(true),
        ..Default::default()
    }
}

/// The trained tiny network must close at least 80 % of the gap between the zero-output loss
/// and the loss of the exact score, on the same held-out noise draws.
#[test]
fn tiny_network_learns_the_free_field_score() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 2048);
    let out = dir.path().join("m.h5");
    let mut o = opts(&data, &out, 1500, 32);
    o.sigma_min = Some(0.01);
    o.sigma_max = Some(9.0);
    o.lr = Some(3e-3);
    o.val_fraction = Some(0.1);
    let cfg = resolve(&o).unwrap();
    train(&cfg, &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();

    let m = ModelFile::read(&out).unwrap();
    let e = Ensemble::open(&data).unwrap();
    let lat = e.lattice;
    let v = lat.volume();
    let chain = e.read_i64("chain").unwrap();
    let split = latdiff::diffusion::data::split(Some(&chain), e.n, 0.1);
    assert_eq!(split.val_chains, vec![14, 15], "whole chains held out");
    let sched = SigmaSchedule { sigma_min: 0.01, sigma_max: 9.0, t_eps: 1e-5 };
    assert_eq!(m.schedule, sched);
    let phi0 = latdiff::diffusion::data::read_rows(&e, &split.val).unwrap();
    let val = Validation::new(phi0.clone(), v, &sched, 5, &ScoreParts::Plain);
    let mut current = build::unet(Device::Cpu, m.arch.clone(), &m.params, None).unwrap();
    let (learnt, _) = val.loss(current.as_mut(), Weights::Current, lat, 64, &sched).unwrap();
    let mut ema = build::unet(Device::Cpu, m.arch.clone(), &m.ema, None).unwrap();

    // The validation's noise: z = (φ_σ − φ_0)/σ from its network inputs.
    let (x, _, _) = val.inputs();
    // Zero output: Σ z². Exact score of the free theory: s = −(C + σ²)⁻¹ φ_σ.
    let free = FreeScoreModel::parse("free:kappa=0.2").unwrap();
    let (mut zero, mut exact) = (0.0, 0.0);
    let mut band_err = [(0.0, 0.0); 3];
    for b in 0..val.len() {
        let s = val.sigma[b] as f64;
        let phi: Vec<f64> = x[b * v..][..v].iter().map(|&x| x as f64).collect();
        let z: Vec<f64> = (0..v).map(|i| (phi[i] - phi0[b * v + i] as f64) / s).collect();
        let mut sc = vec![0.0; v];
        free.score(lat, &phi, &[s], &mut sc).unwrap();
        zero += z.iter().map(|x| x * x).sum::<f64>();
        exact += (0..v).map(|x| (s * sc[x] + z[x]).powi(2)).sum::<f64>();
        // learnt score (plain form: F/σ) against the exact one, per σ band
        let phi32: Vec<f32> = phi.iter().map(|&x| x as f32).collect();
        let mut f = vec![0.0f32; v];
        ema.output(Weights::Current, lat, &phi32, &[s as f32], &mut f).unwrap();
        let t = (s / 0.01).ln() / (900.0f64).ln();
        let bd = ((t * 3.0) as usize).min(2);
        band_err[bd].0 += (0..v).map(|x| (f[x] as f64 / s - sc[x]).powi(2)).sum::<f64>();
        band_err[bd].1 += sc.iter().map(|x| x * x).sum::<f64>();
    }
    let nv = val.len() as f64;
    let (zero, exact) = (zero / nv, exact / nv);
    let closed = (zero - learnt) / (zero - exact);
    eprintln!(
        "validation: zero-output {zero:.2}, exact score {exact:.2}, trained tiny {learnt:.2}: {:.0}% of the gap closed",
        100.0 * closed
    );
    for (i, (a, b)) in band_err.iter().enumerate() {
        eprintln!("  learnt vs exact score, sigma band {i}: relative error {:.3}", (a / b).sqrt());
    }
    assert!(closed >= 0.8, "closed only {:.0}% of the gap", 100.0 * closed);
    let dev = m.attr("score_force_rel_dev").and_then(|v| v.as_f64()).unwrap();
    assert!(dev.is_finite() && dev > 0.0, "score diagnostic stored: {dev}");
    eprintln!("stored score-vs-force relative deviation at sigma_min: {dev:.3}");
}

/// The physics form on interacting φ⁴ (κ = 0.26, λ = 0.022, L = 8): the score at σ_min is
/// the exact force by construction (≤ 5 %, the target, whatever the network learnt),
/// and the local network improves on the prior alone on held-out chains.
#[test]
fn physics_form_learns_on_top_of_the_prior() {
    let dir = tempfile::tempdir().unwrap();
    let run = HmcRun {
        lattice: Lattice::square(8),
        kappa: Some(0.26),
        lambda: 0.022,
        n_chains: 16,
        per_chain: 128,
        n_sep: 3,
        cluster_updates: 2,
        ..Default::default()
    };
    let data = dir.path().join("phi4.h5");
    latdiff::mc::ensemble::run(&run.config(&data), &Comm::single(), &StopFlag::none()).unwrap();
    let out = dir.path().join("m.h5");
    let mut o = opts(&data, &out, 800, 32);
    o.preset = Some("tiny-local".into());
    o.score_form = Some("physics".into());
    o.lr = Some(3e-3);
    o.val_fraction = Some(0.1);
    let cfg = resolve(&o).unwrap();
    train(&cfg, &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();

    let m = ModelFile::read(&out).unwrap();
    assert_eq!(m.attr("score_form").and_then(|v| v.as_str().map(str::to_string)).as_deref(), Some("physics"));
    let dev = m.attr("score_force_rel_dev").and_then(|v| v.as_f64()).unwrap();
    eprintln!("physics form: score at sigma_min vs exact force, relative deviation {dev:.2e}");
    assert!(dev <= 0.05, "score at sigma_min deviates from -dS/dphi by {dev}");

    let e = Ensemble::open(&data).unwrap();
    let lat = e.lattice;
    let split = latdiff::diffusion::data::split(Some(&e.read_i64("chain").unwrap()), e.n, 0.1);
    let parts = latdiff::diffusion::theories::score_parts(
        ScoreForm::Physics,
        m.couplings().unwrap(),
        m.arch.sigma_data,
        m.two_point.clone(),
        &m.magnetisation,
        lat,
    )
    .unwrap();
    let val = Validation::new(
        latdiff::diffusion::data::read_rows(&e, &split.val).unwrap(),
        lat.volume(),
        &m.schedule,
        5,
        &parts,
    );
    let mut learnt = build::unet(Device::Cpu, m.arch.clone(), &m.ema, None).unwrap();
    let (l_net, bands) = val.loss(learnt.as_mut(), Weights::Current, lat, 64, &m.schedule).unwrap();
    // All-zero parameters give F = 0: the prior alone.
    let zeros = vec![0.0f32; m.params.len()];
    let mut prior = build::unet(Device::Cpu, m.arch.clone(), &zeros, None).unwrap();
    let (l_prior, prior_bands) = val.loss(prior.as_mut(), Weights::Current, lat, 64, &m.schedule).unwrap();
    eprintln!("held-out loss: prior alone {l_prior:.4} {prior_bands:?}, prior + network {l_net:.4} {bands:?}");
    assert!(l_net < 0.8 * l_prior, "the network does not improve on the prior: {l_net} vs {l_prior}");
}

#[test]
fn resume_is_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 256);
    let straight = dir.path().join("straight.h5");
    let mut o = opts(&data, &straight, 10, 8);
    o.checkpoint_every = Some(5);
    train(&resolve(&o).unwrap(), &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();

    let split = dir.path().join("split.h5");
    let o5 = opts(&data, &split, 10, 8);
    let mut cfg5 = resolve(&o5).unwrap();
    cfg5.checkpoint_every = 5;
    // Stop after 5 steps as a signal would: raise the flag once the first checkpoint exists.
    let stop = StopFlag::none();
    let s2 = stop.clone();
    let watch = split.clone();
    let h = std::thread::spawn(move || {
        while !watch.exists() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        s2.raise();
    });
    let r = train(&cfg5, &Comm::single(), &stop, Device::Cpu).unwrap();
    h.join().unwrap();
    assert!(r.stopped_by_signal && r.steps_done >= 5 && r.steps_done < 10, "{r:?}");
    let mid = ModelFile::read(&split).unwrap();
    assert_eq!(mid.step, r.steps_done);
    let mut orr = opts(&data, &split, 10, 8);
    orr.resume = Some(true);
    orr.force = Some(false);
    let r2 = train(&resolve(&orr).unwrap(), &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();
    assert!(r2.finished);
    let (a, b) = (ModelFile::read(&straight).unwrap(), ModelFile::read(&split).unwrap());
    assert_eq!(a.step, 10);
    assert_eq!(b.step, 10);
    assert!(a.params == b.params, "params differ after resume");
    assert!(a.ema == b.ema && a.adam_m == b.adam_m && a.adam_v == b.adam_v);
    assert_eq!(a.slot_rng, b.slot_rng);
    // The checkpoint fell between two rows of the loss history: its pending sum carried over.
    assert!(!a.loss_history.rows.is_empty());
    assert_eq!(a.loss_history, b.loss_history, "loss history differs after resume");
}

/// The model file's loss history is what the log printed: a row per epoch end (3 steps of
/// 64 of 240 training rows) and the last step, training and validation loss to the
/// printed 4 decimals, the last validation loss the `val_loss` attribute. A run stopped
/// after its first step (a row half begun) and resumed ends with the same history, bit
/// for bit, as the run that was never stopped.
#[test]
fn loss_history_is_the_logged_losses_and_survives_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 256);
    let straight = dir.path().join("straight.h5");
    let o = latdiff()
        .args(["train", "--preset", "tiny", "--score-form", "plain", "--steps", "20", "--batch", "64", "--seed", "5"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&straight)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let m = ModelFile::read(&straight).unwrap();
    let h = &m.loss_history;
    let steps: Vec<f64> = h.rows.iter().map(|r| r[0]).collect();
    assert_eq!(steps, vec![3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 20.0]);
    assert_eq!(h.pending, [0.0, 0.0]);
    let printed: Vec<&str> = log.lines().filter(|l| l.starts_with("step ") && l.contains("train loss")).collect();
    assert_eq!(printed.len(), h.rows.len(), "one printed line per row: {log}");
    for (line, r) in printed.iter().zip(&h.rows) {
        let expect = format!("step {}: train loss {:.4}, validation loss {:.4} ", r[0], r[1], r[2]);
        assert!(line.starts_with(&expect), "printed '{line}', stored '{expect}'");
    }
    let val_loss = m.attr("val_loss").and_then(|v| v.as_f64()).unwrap();
    assert_eq!(h.rows.last().unwrap()[2], val_loss, "the last row's validation loss is val_loss");

    let lib = dir.path().join("lib.h5");
    train(&resolve(&opts(&data, &lib, 20, 64)).unwrap(), &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();
    let m = ModelFile::read(&lib).unwrap();
    let split = dir.path().join("split.h5");
    let o1 = opts(&data, &split, 20, 64);
    let stop = StopFlag::none();
    stop.raise();
    let r = train(&resolve(&o1).unwrap(), &Comm::single(), &stop, Device::Cpu).unwrap();
    assert_eq!(r.steps_done, 1);
    let mid = ModelFile::read(&split).unwrap();
    assert!(mid.loss_history.rows.is_empty() && mid.loss_history.pending[1] == 1.0, "{:?}", mid.loss_history);
    let mut o2 = opts(&data, &split, 20, 64);
    o2.resume = Some(true);
    o2.force = Some(false);
    train(&resolve(&o2).unwrap(), &Comm::single(), &StopFlag::none(), Device::Cpu).unwrap();
    let resumed = ModelFile::read(&split).unwrap();
    assert_eq!(resumed.params, m.params, "the resumed run is the straight one");
    assert_eq!(resumed.loss_history, m.loss_history, "loss history after resume");
}

#[test]
fn two_ranks_equal_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 256);
    let Some(mut mpi) = mpirun() else { return };
    let out2 = dir.path().join("r2.h5");
    let o = mpi
        .args(["-n", "2"])
        .arg(bin())
        .args(["train", "--preset", "tiny", "--steps", "5", "--batch", "16", "--seed", "3"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out1 = dir.path().join("r1.h5");
    let o = latdiff()
        .args(["train", "--preset", "tiny", "--steps", "5", "--batch", "16", "--seed", "3"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (ModelFile::read(&out1).unwrap(), ModelFile::read(&out2).unwrap());
    assert_eq!(b.attr("n_ranks").and_then(|v| v.as_f64()), Some(2.0));
    let init = Network::new(a.arch.clone()).init_params::<f32>(3);
    let (mut num, mut den, mut moved) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..a.params.len() {
        num += ((a.params[i] - b.params[i]) as f64).powi(2);
        den += (a.params[i] as f64).powi(2);
        moved += ((a.params[i] - init[i]) as f64).powi(2);
    }
    let rel = (num / den).sqrt();
    eprintln!(
        "1 rank vs 2 ranks after 5 steps: relative difference {rel:.2e} (update size {:.2e})",
        (moved / den).sqrt()
    );
    assert!(rel < 1e-5, "relative difference {rel}");
    assert!(moved > 0.0);
    // The gradients themselves (AdamW's normalised update hides a sum-vs-mean error).
    let gn = |m: &ModelFile| m.attr("last_grad_norm").and_then(|v| v.as_f64()).unwrap();
    let (g1, g2) = (gn(&a), gn(&b));
    eprintln!("last-step gradient norm: 1 rank {g1:.6e}, 2 ranks {g2:.6e}");
    assert!(g1 > 0.0 && (g1 - g2).abs() <= 1e-5 * g1, "gradient norms {g1} vs {g2}");
    assert_eq!(a.slot_rng, b.slot_rng, "same batch slots, same streams");
}

#[test]
fn sigterm_checkpoints_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 256);
    let out = dir.path().join("m.h5");
    let mut child = latdiff()
        .args(["train", "--preset", "tiny", "--steps", "1000000", "--batch", "8", "--checkpoint-every", "1000000"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    unsafe {
        libc_kill(child.id() as i32, 15);
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stopped by signal"), "{err}");
    let m = ModelFile::read(&out).unwrap();
    assert!(m.step > 0 && m.step < 1_000_000);
    assert_eq!(m.attr("finished").and_then(|v| v.as_f64()), Some(0.0));
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn bad_training_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 64);
    // An ensemble on a lattice the small preset (stride 4) cannot take.
    let odd = dir.path().join("odd.h5");
    let run = HmcRun { lattice: Lattice::new(6, 6), n_chains: 2, per_chain: 8, n_therm: 10, ..Default::default() };
    latdiff::mc::ensemble::run(&run.config(&odd), &Comm::single(), &StopFlag::none()).unwrap();
    let d = data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--data", "missing.h5"], "data"),
        (vec!["--data", odd.to_str().unwrap(), "--preset", "small"], "divisible"),
        (vec!["--data", d, "--batch", "1000"], "batch"),
        (vec!["--data", d, "--preset", "huge"], "preset"),
        (vec!["--data", d, "--steps", "0"], "steps"),
        (vec!["--data", d, "--lr", "nan"], "lr"),
    ];
    for (args, key) in cases {
        let o = latdiff().current_dir(dir.path()).arg("train").args(&args).args(["--out", "x.h5"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(key), "{args:?}: {err}");
        assert!(!dir.path().join("x.h5").exists());
    }
    // batch smaller than the number of ranks
    if let Some(mut mpi) = mpirun() {
        let o = mpi
            .current_dir(dir.path())
            .args(["-n", "2"])
            .arg(bin())
            .args(["train", "--data", d, "--batch", "1", "--out", "y.h5"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("batch: 1 cannot be split"), "{err}");
    }
    // resuming a checkpoint of another architecture
    let o = latdiff()
        .current_dir(dir.path())
        .args(["train", "--data", d, "--preset", "tiny", "--steps", "2", "--batch", "8", "--out", "t.h5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = latdiff()
        .current_dir(dir.path())
        .args(["train", "--data", d, "--preset", "small", "--steps", "4", "--batch", "8", "--out", "t.h5", "--resume"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("was trained with preset = \"tiny\", this run has preset = \"small\""), "{err}");
}

/// A run shorter than ten warm-ups says the warm-up takes much of it, and the physics form's
/// score-vs-force deviation (zero by construction) says so instead of reading as a check.
#[test]
fn short_runs_and_physics_form_say_what_their_numbers_mean() {
    let dir = tempfile::tempdir().unwrap();
    let data = free_ensemble(dir.path(), 8, 256);
    let o = latdiff()
        .args(["train", "--preset", "tiny", "--steps", "5", "--batch", "16", "--seed", "3"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("m.h5"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("note: the learning-rate warm-up (200 steps, --warmup) is 4000 % of the 5 steps"), "{err}");
    assert!(err.contains("by construction: not a check of the network"), "{err}");
}
