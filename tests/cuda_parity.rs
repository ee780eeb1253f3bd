//! GPU kernels against the CPU reference: every test prints "skipped: no CUDA device" and
//! returns when no GPU is usable. f32 layers: relative error (max |gpu − cpu| / max |cpu|)
//! below 1e-5; f64 HMC: below 1e-12 for forces and energies, 1e-10 for whole MD
//! trajectories (φ⁴ and U(1); U(1) angles compared modulo 2π).

mod common;

use cudarc::driver::CudaSlice;
use latdiff::backend::cuda::CudaBackend;
use latdiff::backend::{cuda_nn as g, cuda_usable, philox};
use latdiff::lattice::Lattice;
use latdiff::mc::cuda_hmc::{reference_trajectory, CudaHmc};
use latdiff::mc::cuda_theory::CudaTheory;
use latdiff::mc::engine::HmcSetup;
use latdiff::mc::hmc::{Chain, HmcParams, Start};
use latdiff::mc::Integrator;
use latdiff::nn::conv::{conv2d_backward, conv2d_forward, ConvScratch, ConvShape};
use latdiff::nn::optim::{AdamW, AdamWConfig};
use latdiff::nn::{activation as act, groupnorm as gn, sample, ParamLayout};
use latdiff::theory::manifold::wrap_angle;
use latdiff::theory::{u1_exact, Action, Manifold, Parametrisation, Phi4, Theory, U1};
use rand::{RngExt, SeedableRng};

fn gpu() -> Option<CudaBackend> {
    match cuda_usable() {
        Ok(_) => Some(CudaBackend::new(0).expect("a GPU is present but the CUDA backend failed to start")),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn rand_f64(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.5..1.5)).collect()
}

fn rel_err<T: Copy + Into<f64>>(gpu: &[T], cpu: &[T]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let scale = cpu.iter().map(|&x| x.into().abs()).fold(1e-30, f64::max);
    gpu.iter().zip(cpu).map(|(&a, &b)| (a.into() - b.into()).abs()).fold(0.0, f64::max) / scale
}

fn assert_close<T: Copy + Into<f64>>(what: &str, gpu: &[T], cpu: &[T], tol: f64) {
    let e = rel_err(gpu, cpu);
    assert!(e < tol, "{what}: relative error {e:.3e} >= {tol:.0e}");
    eprintln!("ok: {what}: relative error {e:.2e}");
}

fn up(be: &CudaBackend, x: &[f32]) -> CudaSlice<f32> {
    be.stream.clone_htod(x).unwrap()
}
fn up64(be: &CudaBackend, x: &[f64]) -> CudaSlice<f64> {
    be.stream.clone_htod(x).unwrap()
}
fn down<T: cudarc::driver::DeviceRepr + Default + Clone>(be: &CudaBackend, x: &CudaSlice<T>) -> Vec<T> {
    be.stream.clone_dtoh(x).unwrap()
}

// ---------------------------------------------------------------- HMC (f64)

fn phi4(lt: usize, lx: usize) -> Phi4 {
    Phi4::new(Lattice::new(lt, lx), Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 })
}

fn engine<T: CudaTheory>(th: T, integ: Integrator, n_chains: usize, jitter: f64) -> CudaHmc<T> {
    let params = HmcParams { integrator: integ, n_md: 7, tau: 1.0, tau_jitter: jitter };
    let setup = HmcSetup { theory: th, params, cluster_updates: 0, seed: 42, start: Start::Hot, chains: 0..n_chains };
    CudaHmc::new(0, &setup).unwrap()
}

#[test]
fn hmc_md_integration_matches_cpu() {
    let Some(_) = gpu() else { return };
    for (lt, lx) in [(8, 12), (2, 3), (16, 16)] {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let th = phi4(lt, lx);
            let nc = 3;
            let mut e = engine(th, integ, nc, 0.0);
            let v = lt * lx;
            let phi = rand_f64(nc * v, 1);
            let mom = rand_f64(nc * v, 2);
            let (gp, gm) = e.integrate_given(&phi, &mom, 0.9).unwrap();
            let (cp, cm) = cpu_trajectories(&th, integ, &phi, &mom, v);
            assert_close(&format!("hmc phi {integ:?} {lt}x{lx}"), &gp, &cp, 1e-10);
            assert_close(&format!("hmc mom {integ:?} {lt}x{lx}"), &gm, &cm, 1e-10);
        }
    }
}

/// The CPU reference of `integrate_given`: 7 steps over τ = 0.9 of each chain's `dof`
/// values, chain by chain.
fn cpu_trajectories<T: Theory>(
    th: &T,
    integ: Integrator,
    field: &[f64],
    mom: &[f64],
    dof: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut f, mut m) = (field.to_vec(), mom.to_vec());
    for (fc, mc) in f.chunks_mut(dof).zip(m.chunks_mut(dof)) {
        integ.integrate(th, fc, mc, 7, 0.9);
    }
    (f, m)
}

#[test]
fn hmc_energies_match_cpu() {
    let Some(_) = gpu() else { return };
    let th = phi4(6, 10);
    let nc = 4;
    let mut e = engine(th, Integrator::Leapfrog, nc, 0.0);
    let v = 60;
    let phi = rand_f64(nc * v, 3);
    let mom = rand_f64(nc * v, 4);
    let got = e.energies_given(&phi, &mom).unwrap();
    let mut want = Vec::new();
    for c in 0..nc {
        let (s, m) = th.action_and_sum(&phi[c * v..][..v]);
        let k = 0.5 * mom[c * v..][..v].iter().map(|p| p * p).sum::<f64>();
        want.extend([s, m, k]);
    }
    assert_close("hmc energies", &got, &want, 1e-12);
    let _ = th.action(&phi[..v]);
}

#[test]
fn hmc_momenta_match_host_philox() {
    let Some(_) = gpu() else { return };
    let th = phi4(5, 7); // odd volume: the last pair is half used
    let mut e = engine(th, Integrator::Leapfrog, 3, 0.0);
    let got = e.momenta().unwrap();
    let v = 35;
    let mut want = Vec::new();
    for c in 0..3u32 {
        want.extend(philox::normals(42, c, 0, philox::HMC_MOMENTA, v));
    }
    assert_close("philox momenta", &got, &want, 1e-13);
}

#[test]
fn hmc_trajectories_match_philox_reference() {
    let Some(_) = gpu() else { return };
    for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
        let th = phi4(8, 8);
        let nc = 4;
        let mut e = engine(th, integ, nc, 0.2);
        let params = e.params;
        let mut cpu: Vec<Vec<f64>> = (0..nc).map(|c| Chain::new(&th, 42, c as u64, Start::Hot).phi).collect();
        for traj in 0..5u32 {
            let res = e.trajectory_all().unwrap();
            for (c, r) in res.iter().enumerate() {
                let want = reference_trajectory(&th, &params, 42, c as u32, traj, &mut cpu[c]);
                assert_eq!(r.accepted, want.accepted, "{integ:?} chain {c} traj {traj}: accept differs");
                assert!(
                    (r.delta_h - want.delta_h).abs() < 1e-8 * (1.0 + want.delta_h.abs()),
                    "{integ:?} chain {c} traj {traj}: dH {} vs {}",
                    r.delta_h,
                    want.delta_h
                );
            }
        }
        let got = e.fields().unwrap();
        assert_close(&format!("hmc 5 trajectories {integ:?}"), &got, &cpu.concat(), 1e-9);
    }
}

/// The GPU's φ⁴ force (one kick of zero momenta) is −∂S/∂φ of the CPU's `Phi4`.
#[test]
fn hmc_phi4_force_matches_cpu() {
    let Some(_) = gpu() else { return };
    let (th, nc, v) = (phi4(6, 10), 3, 60);
    let phi = rand_f64(nc * v, 5);
    let got = engine(th, Integrator::Leapfrog, nc, 0.0).force_given(&phi).unwrap();
    assert_close("phi4 force", &got, &cpu_forces(&th, &phi, v), 1e-12);
}

/// −∂S/∂φ of every chain (chain-major, `dof` values each) on the CPU.
fn cpu_forces(th: &impl Action, fields: &[f64], dof: usize) -> Vec<f64> {
    let mut out = vec![0.0; fields.len()];
    for (f, d) in fields.chunks(dof).zip(out.chunks_mut(dof)) {
        th.deriv(f, d);
    }
    out.iter().map(|d| -d).collect()
}

// ---------------------------------------------------------------- U(1) HMC (f64)

fn u1(lt: usize, lx: usize, beta: f64) -> U1 {
    U1::new(Lattice::new(lt, lx), beta)
}

/// Uniform link angles in (−π, π): any plaquette angle, so every branch of sin and wrap.
fn rand_angles(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-std::f64::consts::PI..std::f64::consts::PI)).collect()
}

/// Angles agree modulo 2π: max |wrap(gpu − cpu)| / π below `tol` (a link on either side of
/// ±π is the same link).
fn assert_angles_close(what: &str, gpu: &[f64], cpu: &[f64], tol: f64) {
    assert_eq!(gpu.len(), cpu.len());
    assert!(gpu.iter().all(|a| -std::f64::consts::PI < *a && *a <= std::f64::consts::PI), "{what}: not wrapped");
    let e = gpu.iter().zip(cpu).map(|(a, b)| wrap_angle(a - b).abs()).fold(0.0, f64::max) / std::f64::consts::PI;
    assert!(e < tol, "{what}: relative angle error {e:.3e} >= {tol:.0e}");
    eprintln!("ok: {what}: relative angle error {e:.2e}");
}

/// Same links -> the GPU's Wilson force −β Σ sin θ_P contributions equal the CPU's
/// `U1::deriv`, on square, rectangular and the smallest lattices, to 1e-12.
#[test]
fn hmc_u1_force_matches_cpu() {
    let Some(_) = gpu() else { return };
    for (lt, lx, beta) in [(8, 12, 3.0), (2, 3, 0.7), (16, 16, 9.0), (2, 2, 1.3)] {
        let (th, nc) = (u1(lt, lx, beta), 3);
        let dof = 2 * lt * lx;
        let theta = rand_angles(nc * dof, 11);
        let got = engine(th, Integrator::Leapfrog, nc, 0.0).force_given(&theta).unwrap();
        assert_close(&format!("u1 force {lt}x{lx} beta {beta}"), &got, &cpu_forces(&th, &theta, dof), 1e-12);
    }
}

/// (S, Q, ½p²) per chain equal the CPU's `U1::action_and_monitor` and kinetic energy: S and
/// ½p² to 1e-12 relative, Q to 1e-9 absolute and the same integer.
#[test]
fn hmc_u1_energies_match_cpu() {
    let Some(_) = gpu() else { return };
    for (lt, lx) in [(6, 10), (16, 16), (3, 2)] {
        let (th, nc) = (u1(lt, lx, 2.5), 4);
        let dof = 2 * lt * lx;
        let theta = rand_angles(nc * dof, 12);
        let mom = rand_f64(nc * dof, 13);
        let got = engine(th, Integrator::Leapfrog, nc, 0.0).energies_given(&theta, &mom).unwrap();
        let (mut s_k, mut s_k_gpu) = (Vec::new(), Vec::new());
        for c in 0..nc {
            let (s, q) = th.action_and_monitor(&theta[c * dof..][..dof]);
            let k = th.manifold().kinetic(&mom[c * dof..][..dof]);
            s_k.extend([s, k]);
            s_k_gpu.extend([got[3 * c], got[3 * c + 2]]);
            let q_gpu = got[3 * c + 1];
            assert!((q_gpu - q).abs() < 1e-9, "{lt}x{lx} chain {c}: Q {q_gpu} vs {q}");
            assert_eq!(q_gpu.round(), q.round(), "{lt}x{lx} chain {c}: charge");
        }
        assert_close(&format!("u1 energies {lt}x{lx}"), &s_k_gpu, &s_k, 1e-12);
    }
}

/// Same links, same momenta -> the same MD trajectory as `Integrator::integrate` on the CPU
/// (the drift wrapping into (−π, π] as `Torus::drift`), both integrators.
#[test]
fn hmc_u1_md_integration_matches_cpu() {
    let Some(_) = gpu() else { return };
    for (lt, lx) in [(8, 12), (2, 3), (16, 16)] {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let (th, nc) = (u1(lt, lx, 3.0), 3);
            let dof = 2 * lt * lx;
            let mut e = engine(th, integ, nc, 0.0);
            let theta = rand_angles(nc * dof, 14);
            let mom = rand_f64(nc * dof, 15);
            let (gt, gm) = e.integrate_given(&theta, &mom, 0.9).unwrap();
            let (ct, cm) = cpu_trajectories(&th, integ, &theta, &mom, dof);
            assert_angles_close(&format!("u1 theta {integ:?} {lt}x{lx}"), &gt, &ct, 1e-10);
            assert_close(&format!("u1 mom {integ:?} {lt}x{lx}"), &gm, &cm, 1e-10);
        }
    }
}

/// The GPU draws 2V momenta per chain, the host's Philox normals of the same key.
#[test]
fn hmc_u1_momenta_match_host_philox() {
    let Some(_) = gpu() else { return };
    let (th, nc) = (u1(5, 7, 3.0), 3);
    let got = engine(th, Integrator::Leapfrog, nc, 0.0).momenta().unwrap();
    let want: Vec<f64> = (0..nc as u32).flat_map(|c| philox::normals(42, c, 0, philox::HMC_MOMENTA, 70)).collect();
    assert_close("u1 philox momenta", &got, &want, 1e-13);
}

/// Whole U(1) trajectories (momenta, MD, Metropolis, restore) against the same algorithm on
/// the CPU (`reference_trajectory`), from the CPU's hot starts.
#[test]
fn hmc_u1_trajectories_match_philox_reference() {
    let Some(_) = gpu() else { return };
    for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
        let (th, nc) = (u1(8, 8, 3.0), 4);
        let mut e = engine(th, integ, nc, 0.2);
        let params = e.params;
        let mut cpu: Vec<Vec<f64>> = (0..nc).map(|c| Chain::new(&th, 42, c as u64, Start::Hot).phi).collect();
        for traj in 0..5u32 {
            let res = e.trajectory_all().unwrap();
            for (c, r) in res.iter().enumerate() {
                let want = reference_trajectory(&th, &params, 42, c as u32, traj, &mut cpu[c]);
                assert_eq!(r.accepted, want.accepted, "{integ:?} chain {c} traj {traj}: accept differs");
                assert!(
                    (r.delta_h - want.delta_h).abs() < 1e-8 * (1.0 + want.delta_h.abs()),
                    "{integ:?} chain {c} traj {traj}: dH {} vs {}",
                    r.delta_h,
                    want.delta_h
                );
                assert_eq!(r.monitor.round(), want.monitor.round(), "{integ:?} chain {c} traj {traj}: Q differs");
            }
        }
        let got = e.fields().unwrap();
        assert_angles_close(&format!("u1 5 trajectories {integ:?}"), &got, &cpu.concat(), 1e-9);
    }
}

/// `latdiff --device auto hmc --theory u1` runs on the GPU when one is present, and its
/// ensemble at β = 3, L = 16 has the exact plaquette (and χ_t) of the torus within 4 errors
/// of analyze's binned jackknife; flux moves are refused on the GPU in one line.
#[test]
fn hmc_u1_gpu_ensemble_matches_exact_plaquette() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("u1_gpu.h5");
    let args = ["hmc", "--theory", "u1", "--beta", "3", "--lattice", "16", "--n-configs", "4096", "--n-chains", "64"];
    let o = common::latdiff()
        .args(["--device", "auto"])
        .args(args)
        .args(["--n-sep", "2", "--start", "mixed", "--cluster-updates", "0", "--seed", "5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "hmc failed: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("device: cuda:")), "auto did not pick the GPU: {stderr}");
    let a = common::latdiff().args(["analyze", "--json"]).arg(&out).output().unwrap();
    assert!(a.status.success(), "analyze failed: {}", String::from_utf8_lossy(&a.stderr));
    let j: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let scalar = |k: &str| {
        let o = &j["observables"][k];
        (o["mean"].as_f64().unwrap(), o["err"].as_f64().unwrap())
    };
    let v = 256;
    common::assert_within("GPU u1 β = 3, L = 16: plaquette", scalar("plaquette"), u1_exact::plaquette(3.0, v), 4.0);
    let chi = u1_exact::topological_susceptibility(3.0, v);
    common::assert_within("GPU u1 β = 3, L = 16: χ_t", scalar("chi_t"), chi, 4.0);

    let flux = common::latdiff()
        .args(["--device", "cuda"])
        .args(args)
        .args(["--cluster-updates", "2", "--out"])
        .arg(dir.path().join("flux.h5"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&flux.stderr);
    assert_eq!(flux.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{err}");
    assert!(err.contains("flux moves run on the CPU only"), "{err}");
}

// ---------------------------------------------------------------- layers (f32)

#[test]
fn conv_forward_backward_match_cpu() {
    let Some(be) = gpu() else { return };
    let shapes = [
        ConvShape { b: 2, cin: 3, cout: 4, h: 6, w: 4, k: 3 },
        ConvShape { b: 3, cin: 5, cout: 2, h: 4, w: 8, k: 1 },
        ConvShape { b: 2, cin: 2, cout: 3, h: 1, w: 1, k: 1 },
        ConvShape { b: 1, cin: 2, cout: 2, h: 2, w: 2, k: 3 },
        ConvShape { b: 4, cin: 32, cout: 64, h: 16, w: 16, k: 3 },
    ];
    let mut gs = g::GpuConvScratch::new(&be).unwrap();
    for (i, s) in shapes.iter().enumerate() {
        let seed = 10 * i as u64;
        let (nin, nout) = (s.b * s.cin * s.h * s.w, s.b * s.cout * s.h * s.w);
        let inp = rand_f32(nin, seed);
        let wt = rand_f32(s.cout * s.kdim(), seed + 1);
        let bias = rand_f32(s.cout, seed + 2);
        let dout = rand_f32(nout, seed + 3);
        let mut sc = ConvScratch::default();
        let mut out = vec![0f32; nout];
        conv2d_forward(&mut out, &inp, &wt, &bias, s, &mut sc);
        let (mut dinp, mut dw, mut db) = (rand_f32(nin, seed + 4), rand_f32(wt.len(), seed + 5), rand_f32(s.cout, 6));
        let (gdi0, gdw0, gdb0) = (dinp.clone(), dw.clone(), db.clone());
        conv2d_backward(Some(&mut dinp), &mut dw, &mut db, &dout, &inp, &wt, s, &mut sc);

        let (ginp, gwt, gbias, gdout) = (up(&be, &inp), up(&be, &wt), up(&be, &bias), up(&be, &dout));
        let mut gout = up(&be, &vec![0.0; nout]);
        g::conv2d_forward(&be, &mut gout.as_view_mut(), &ginp.as_view(), &gwt.as_view(), &gbias.as_view(), s, &mut gs)
            .unwrap();
        assert_close(&format!("conv fwd {s:?}"), &down(&be, &gout), &out, 1e-5);
        let (mut gdi, mut gdw, mut gdb) = (up(&be, &gdi0), up(&be, &gdw0), up(&be, &gdb0));
        g::conv2d_backward(
            &be,
            Some(&mut gdi.as_view_mut()),
            &mut gdw.as_view_mut(),
            &mut gdb.as_view_mut(),
            &gdout.as_view(),
            &ginp.as_view(),
            &gwt.as_view(),
            s,
            &mut gs,
        )
        .unwrap();
        assert_close(&format!("conv dinp {s:?}"), &down(&be, &gdi), &dinp, 1e-5);
        assert_close(&format!("conv dweight {s:?}"), &down(&be, &gdw), &dw, 1e-5);
        assert_close(&format!("conv dbias {s:?}"), &down(&be, &gdb), &db, 1e-5);
    }
}

#[test]
fn elementwise_layers_match_cpu() {
    let Some(be) = gpu() else { return };
    let (b, c, hw) = (3, 8, 20);
    let n = b * c * hw;
    let x: Vec<f32> = rand_f32(n, 1).iter().map(|v| 4.0 * v).collect();
    let dy = rand_f32(n, 2);
    let (gx, gdy) = (up(&be, &x), up(&be, &dy));
    // SiLU
    let mut o = vec![0f32; n];
    act::silu_forward(&mut o, &x);
    let mut go = up(&be, &vec![0.0; n]);
    g::silu_forward(&be, &mut go.as_view_mut(), &gx.as_view()).unwrap();
    assert_close("silu fwd", &down(&be, &go), &o, 1e-5);
    let mut dx = rand_f32(n, 3);
    let mut gdx = up(&be, &dx);
    act::silu_backward(&mut dx, &dy, &x);
    g::silu_backward(&be, &mut gdx.as_view_mut(), &gdy.as_view(), &gx.as_view()).unwrap();
    assert_close("silu bwd", &down(&be, &gdx), &dx, 1e-5);
    // FiLM
    let ss = rand_f32(b * 2 * c, 4);
    let gss = up(&be, &ss);
    act::film_forward(&mut o, &x, &ss, b, c, hw);
    g::film_forward(&be, &mut go.as_view_mut(), &gx.as_view(), &gss.as_view(), b, c, hw).unwrap();
    assert_close("film fwd", &down(&be, &go), &o, 1e-5);
    let (mut dx, mut dss) = (rand_f32(n, 5), rand_f32(2 * b * c, 6));
    let (mut gdx, mut gdss) = (up(&be, &dx), up(&be, &dss));
    act::film_backward(&mut dx, &mut dss, &dy, &x, &ss, b, c, hw);
    g::film_backward(
        &be,
        &mut gdx.as_view_mut(),
        &mut gdss.as_view_mut(),
        &gdy.as_view(),
        &gx.as_view(),
        &gss.as_view(),
        b,
        c,
        hw,
    )
    .unwrap();
    assert_close("film bwd dinp", &down(&be, &gdx), &dx, 1e-5);
    assert_close("film bwd dss", &down(&be, &gdss), &dss, 1e-5);
    // add, accumulate
    act::add_forward(&mut o, &x, &dy);
    g::add_forward(&be, &mut go.as_view_mut(), &gx.as_view(), &gdy.as_view()).unwrap();
    assert_close("add", &down(&be, &go), &o, 1e-6);
    // concat
    let (ca, cb) = (3, 5);
    let a = rand_f32(b * ca * hw, 7);
    let cc = rand_f32(b * cb * hw, 8);
    let mut o = vec![0f32; b * (ca + cb) * hw];
    act::concat_forward(&mut o, &a, ca, &cc, cb, b, hw);
    let (ga, gc) = (up(&be, &a), up(&be, &cc));
    let mut go = up(&be, &vec![0.0; o.len()]);
    g::concat_forward(&be, &mut go.as_view_mut(), &ga.as_view(), ca, &gc.as_view(), cb, b, hw).unwrap();
    assert_close("concat fwd", &down(&be, &go), &o, 1e-7);
    let (mut da, mut dc) = (rand_f32(a.len(), 9), rand_f32(cc.len(), 10));
    let (mut gda, mut gdc) = (up(&be, &da), up(&be, &dc));
    act::concat_backward(&mut da, &mut dc, &o, ca, cb, b, hw);
    g::concat_backward(&be, &mut gda.as_view_mut(), &mut gdc.as_view_mut(), &go.as_view(), ca, cb, b, hw).unwrap();
    assert_close("concat bwd a", &down(&be, &gda), &da, 1e-6);
    assert_close("concat bwd c", &down(&be, &gdc), &dc, 1e-6);
}

#[test]
fn groupnorm_matches_cpu() {
    let Some(be) = gpu() else { return };
    for (b, c, hw, groups) in [(2, 6, 12, 3), (4, 64, 256, 8), (1, 8, 1, 4)] {
        let n = b * c * hw;
        let x: Vec<f32> = rand_f32(n, 1).iter().map(|v| 3.0 * v + 0.5).collect();
        let (gamma, beta, dy) = (rand_f32(c, 2), rand_f32(c, 3), rand_f32(n, 4));
        let mut o = vec![0f32; n];
        let mut st = vec![0f32; 2 * b * groups];
        gn::groupnorm_forward(&mut o, &mut st, &x, &gamma, &beta, b, c, hw, groups);
        let (gx, gg, gb, gdy) = (up(&be, &x), up(&be, &gamma), up(&be, &beta), up(&be, &dy));
        let mut go = up(&be, &vec![0.0; n]);
        let mut gst = up(&be, &vec![0.0; st.len()]);
        g::groupnorm_forward(
            &be,
            &mut go.as_view_mut(),
            &mut gst.as_view_mut(),
            &gx.as_view(),
            &gg.as_view(),
            &gb.as_view(),
            b,
            c,
            hw,
            groups,
        )
        .unwrap();
        assert_close(&format!("groupnorm fwd {b}x{c}x{hw}"), &down(&be, &go), &o, 1e-5);
        assert_close(&format!("groupnorm stats {b}x{c}x{hw}"), &down(&be, &gst), &st, 1e-5);
        let (mut dx, mut dg, mut db) = (rand_f32(n, 5), rand_f32(c, 6), rand_f32(c, 7));
        let (mut gdx, mut gdg, mut gdb) = (up(&be, &dx), up(&be, &dg), up(&be, &db));
        gn::groupnorm_backward(&mut dx, &mut dg, &mut db, &dy, &x, &st, &gamma, b, c, hw, groups);
        g::groupnorm_backward(
            &be,
            &mut gdx.as_view_mut(),
            &mut gdg.as_view_mut(),
            &mut gdb.as_view_mut(),
            &gdy.as_view(),
            &gx.as_view(),
            &gst.as_view(),
            &gg.as_view(),
            b,
            c,
            hw,
            groups,
        )
        .unwrap();
        assert_close(&format!("groupnorm dinp {b}x{c}x{hw}"), &down(&be, &gdx), &dx, 1e-5);
        assert_close(&format!("groupnorm dgamma {b}x{c}x{hw}"), &down(&be, &gdg), &dg, 1e-5);
        assert_close(&format!("groupnorm dbeta {b}x{c}x{hw}"), &down(&be, &gdb), &db, 1e-5);
    }
}

#[test]
fn resample_matches_cpu() {
    let Some(be) = gpu() else { return };
    let (bc, h, w) = (6, 8, 12);
    let x = rand_f32(bc * h * w, 1);
    let gx = up(&be, &x);
    let mut o = vec![0f32; bc * h * w / 4];
    sample::down_forward(&mut o, &x, bc, h, w);
    let mut go = up(&be, &vec![0.0; o.len()]);
    g::down_forward(&be, &mut go.as_view_mut(), &gx.as_view(), bc, h, w).unwrap();
    assert_close("down fwd", &down(&be, &go), &o, 1e-6);
    let mut dx = rand_f32(x.len(), 2);
    let mut gdx = up(&be, &dx);
    sample::down_backward(&mut dx, &o, bc, h, w);
    g::down_backward(&be, &mut gdx.as_view_mut(), &go.as_view(), bc, h, w).unwrap();
    assert_close("down bwd", &down(&be, &gdx), &dx, 1e-6);
    let mut o = vec![0f32; bc * h * w * 4];
    sample::up_forward(&mut o, &x, bc, h, w);
    let mut go = up(&be, &vec![0.0; o.len()]);
    g::up_forward(&be, &mut go.as_view_mut(), &gx.as_view(), bc, h, w).unwrap();
    assert_close("up fwd", &down(&be, &go), &o, 1e-7);
    let mut dx = rand_f32(x.len(), 3);
    let mut gdx = up(&be, &dx);
    sample::up_backward(&mut dx, &o, bc, h, w);
    g::up_backward(&be, &mut gdx.as_view_mut(), &go.as_view(), bc, h, w).unwrap();
    assert_close("up bwd", &down(&be, &gdx), &dx, 1e-6);
}

#[test]
fn dsm_objective_kernels_match_cpu_formulas() {
    let Some(be) = gpu() else { return };
    let (bsz, v) = (3, 64);
    let phi0 = rand_f32(bsz * v, 1);
    let z = rand_f32(bsz * v, 2);
    let f = rand_f32(bsz * v, 3);
    let sigma = [0.05f32, 0.7, 4.0];
    let sd = 1.3;
    let mut want = vec![0f32; bsz * v];
    for (b, s) in sigma.iter().enumerate() {
        let c = latdiff::diffusion::objective::c_in(sd, *s as f64) as f32;
        for i in b * v..(b + 1) * v {
            want[i] = (phi0[i] + s * z[i]) * c;
        }
    }
    let (gp, gz, gs, gf) = (up(&be, &phi0), up(&be, &z), up(&be, &sigma), up(&be, &f));
    let mut gx = up(&be, &vec![0.0; bsz * v]);
    g::dsm_input(&be, &mut gx.as_view_mut(), &gp.as_view(), &gz.as_view(), &gs.as_view(), v, sd).unwrap();
    assert_close("dsm input", &down(&be, &gx), &want, 1e-6);
    let (mut gr, mut gd) = (up(&be, &vec![0.0; bsz * v]), up(&be, &vec![0.0; bsz * v]));
    let mut gl = up(&be, &[0.0; 3]);
    let loss =
        g::dsm_residual(&be, &mut gr.as_view_mut(), &mut gd.as_view_mut(), &mut gl, &gf.as_view(), &gz.as_view(), v)
            .unwrap();
    let r: Vec<f32> = f.iter().zip(&z).map(|(a, b)| a + b).collect();
    let ls: Vec<f32> = r.chunks(v).map(|c| c.iter().map(|x| x * x).sum()).collect();
    assert_close("dsm residual", &down(&be, &gr), &r, 1e-6);
    assert_close("dsm dout", &down(&be, &gd), &r.iter().map(|x| 2.0 / 3.0 * x).collect::<Vec<f32>>(), 1e-6);
    assert_close("dsm per-sample loss", &down(&be, &gl), &ls, 1e-5);
    assert!(((loss - ls.iter().sum::<f32>() / 3.0) / loss).abs() < 1e-5);
}

#[test]
fn sde_em_step_matches_host_philox() {
    let Some(be) = gpu() else { return };
    let (bsz, v) = (3, 45);
    let phi = rand_f64(bsz * v, 1);
    let score = rand_f64(bsz * v, 2);
    let lw0 = rand_f64(bsz, 3);
    let (delta, step_const, seed, first, step) = (0.37, -1.25, 0xdead_beef_1234u64, 5u32, 17u32);
    let (mut gphi, mut glw, gs) = (up64(&be, &phi), up64(&be, &lw0), up64(&be, &score));
    g::sde_em_step(&be, &mut gphi, &mut glw, &gs, v, delta, step_const, seed, first, step, true).unwrap();
    let (mut p, mut lw) = (phi.clone(), lw0.clone());
    for b in 0..bsz {
        let z = philox::normals(seed, first + b as u32, step, philox::SDE_NOISE, v);
        let (mut dd, mut zz) = (0.0, 0.0);
        for i in 0..v {
            let d = delta * score[b * v + i] + delta.sqrt() * z[i];
            p[b * v + i] += d;
            dd += d * d;
            zz += z[i] * z[i];
        }
        lw[b] += -0.5 * dd / delta + 0.5 * zz + step_const;
    }
    assert_close("sde em step phi", &down(&be, &gphi), &p, 1e-12);
    assert_close("sde em step log w", &down(&be, &glw), &lw, 1e-12);
}

#[test]
fn adamw_matches_cpu() {
    let Some(be) = gpu() else { return };
    let mut layout = ParamLayout::default();
    layout.push("w", &[40, 25]);
    layout.push("b", &[40]);
    let n = layout.len();
    let cfg = AdamWConfig { warmup_steps: 2, total_steps: 10, weight_decay: 0.1, clip_norm: 5.0, ..Default::default() };
    let p0 = rand_f32(n, 1);
    let mut cpu = AdamW::<f32>::new(cfg.clone(), &layout, &p0);
    let mut gp = up(&be, &p0);
    let mut gpu = g::CudaAdamW::new(&be, cfg, &layout, &gp).unwrap();
    let mut p = p0.clone();
    for step in 0..4 {
        let grads: Vec<f32> = rand_f32(n, 10 + step).iter().map(|x| x * 0.3).collect();
        let a = cpu.update(&mut p, &grads);
        let b = gpu.update(&be, &mut gp, &up(&be, &grads)).unwrap();
        assert!((a.grad_norm - b.grad_norm).abs() < 1e-9 * a.grad_norm, "grad norm {} vs {}", a.grad_norm, b.grad_norm);
        assert_eq!(a.lr, b.lr);
    }
    assert_close("adamw params", &down(&be, &gp), &p, 1e-5);
    assert_close("adamw m", &down(&be, &gpu.m), &cpu.m, 1e-5);
    assert_close("adamw v", &down(&be, &gpu.v), &cpu.v, 1e-5);
    assert_close("adamw ema", &down(&be, &gpu.ema), &cpu.ema, 1e-5);
}

// ------------------------------------------- whole network, training step, sampled batch
//
// Composites of many f32 kernels: cuBLAS and the CPU GEMM sum in different orders, so the
// tolerance is 1e-4 relative (a layer alone is held to 1e-5 above).

mod whole {
    use super::*;
    use latdiff::backend::cuda_nn::CudaOps;
    use latdiff::backend::Device;
    use latdiff::diffusion::form::ScoreForm;
    use latdiff::diffusion::net::model::NetworkScoreModel;
    use latdiff::diffusion::net::{build, engine::Weights};
    use latdiff::diffusion::objective::plain_dsm_inputs;
    use latdiff::diffusion::sample::sampler::{sample_batch, SamplerKind, SamplerSettings};
    use latdiff::nn::{Arch, CpuOps, NetOps, Network, Workspace};

    const TOL: f64 = 1e-4;

    #[test]
    fn network_forward_backward_matches_cpu() {
        let Some(_) = gpu() else { return };
        for (arch, b, h, w) in [(Arch::tiny(), 3, 8, 6), (Arch::small(), 2, 16, 8)] {
            let net = Network::new(arch);
            let p = net.init_params::<f32>(11);
            let x = rand_f32(b * h * w, 12);
            let sigma: Vec<f32> = (0..b).map(|i| 0.05 * 7.0f32.powi(i as i32)).collect();
            let dout = rand_f32(b * h * w, 13);
            let run = |dev_is_gpu: bool| -> (Vec<f32>, Vec<f32>, Vec<f32>) {
                fn go<B: NetOps<Elem = f32>>(
                    mut dev: B,
                    net: &Network,
                    p: &[f32],
                    x: &[f32],
                    sigma: &[f32],
                    dout: &[f32],
                    (b, h, w): (usize, usize, usize),
                ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
                    let pb = dev.upload_params(p).unwrap();
                    let mut gb = dev.upload_params(&vec![0.0; p.len()]).unwrap();
                    let mut ws = Workspace::on(dev, net, b, h, w).unwrap();
                    ws.set_input(x).unwrap();
                    net.forward_on(std::borrow::Borrow::borrow(&pb), sigma, &mut ws).unwrap();
                    let mut y = vec![0.0; x.len()];
                    ws.get_output(&mut y).unwrap();
                    let gp: &mut B::Params = std::borrow::BorrowMut::borrow_mut(&mut gb);
                    net.backward_on(std::borrow::Borrow::borrow(&pb), gp, true, dout, &mut ws).unwrap();
                    let mut dx = vec![0.0; x.len()];
                    ws.get_dinput(&mut dx).unwrap();
                    let mut g = vec![0.0; p.len()];
                    ws.dev.download_params(std::borrow::Borrow::borrow(&gb), &mut g).unwrap();
                    (y, g, dx)
                }
                if dev_is_gpu {
                    go(CudaOps::new(0).unwrap(), &net, &p, &x, &sigma, &dout, (b, h, w))
                } else {
                    go(CpuOps::<f32>::default(), &net, &p, &x, &sigma, &dout, (b, h, w))
                }
            };
            let (yc, gc, dxc) = run(false);
            let (yg, gg, dxg) = run(true);
            assert_close("network forward", &yg, &yc, TOL);
            assert_close("network dparams", &gg, &gc, TOL);
            assert_close("network dx", &dxg, &dxc, TOL);
            // per tensor, so that a wrong layer is named
            for e in &net.layout.entries {
                assert_close(&format!("d{}", e.name), &gg[e.range()], &gc[e.range()], TOL);
            }
        }
    }

    /// Three steps of `latdiff train`'s engine (loss, gradient, AdamW + EMA) on both devices,
    /// each fed the CPU's gradient so that the two parameter trajectories stay comparable.
    #[test]
    fn training_step_matches_cpu() {
        let Some(_) = gpu() else { return };
        let arch = Arch::tiny();
        let (b, lat) = (4, Lattice::new(8, 8));
        let n = b * lat.volume();
        let p0 = Network::new(arch.clone()).init_params::<f32>(5);
        let cfg =
            AdamWConfig { warmup_steps: 2, total_steps: 10, weight_decay: 0.1, clip_norm: 1.0, ..Default::default() };
        let mut cpu = build::unet(Device::Cpu, arch.clone(), &p0, Some((cfg.clone(), None))).unwrap();
        let mut gpu = build::unet(Device::Cuda { ordinal: 0 }, arch, &p0, Some((cfg, None))).unwrap();
        eprintln!("engine: {}", gpu.describe());
        for step in 0..3u64 {
            let phi0 = rand_f32(n, 20 + step);
            let z = rand_f32(n, 30 + step);
            let sigma: Vec<f32> = (0..b).map(|i| 0.02 * 10.0f32.powi(i as i32)).collect();
            let (mut lc, mut lg) = (vec![0.0; b], vec![0.0; b]);
            let (mut gc, mut gg) = (vec![0.0; p0.len()], vec![0.0; p0.len()]);
            let (x, a, e) = plain_dsm_inputs(&phi0, &z, &sigma);
            cpu.loss_and_grad(lat, &x, &sigma, &a, &e, &mut lc, &mut gc).unwrap();
            gpu.loss_and_grad(lat, &x, &sigma, &a, &e, &mut lg, &mut gg).unwrap();
            assert_close(&format!("step {step} per-sample loss"), &lg, &lc, TOL);
            assert_close(&format!("step {step} gradient"), &gg, &gc, TOL);
            let (ic, ig) = (cpu.update(&gc).unwrap(), gpu.update(&gc).unwrap());
            assert!((ic.grad_norm - ig.grad_norm).abs() <= 1e-5 * ic.grad_norm, "gradient norm {ic:?} vs {ig:?}");
            assert_eq!((ic.lr, ic.clip_scale > 0.0), (ig.lr, ig.clip_scale > 0.0));
        }
        let ((pc, oc), (pg, og)) = (cpu.state().unwrap(), gpu.state().unwrap());
        assert_close("params after 3 steps", &pg, &pc, TOL);
        assert_close("EMA after 3 steps", &og.ema, &oc.ema, TOL);
        assert_close("Adam m after 3 steps", &og.m, &oc.m, TOL);
        assert_close("Adam v after 3 steps", &og.v, &oc.v, TOL);
        assert_eq!(og.step, 3);
        // validation path (EMA weights)
        let phi0 = rand_f32(n, 40);
        let z = rand_f32(n, 41);
        let sigma = vec![0.3f32; b];
        let (mut lc, mut lg) = (vec![0.0; b], vec![0.0; b]);
        let (x, a, e) = plain_dsm_inputs(&phi0, &z, &sigma);
        cpu.losses(Weights::Ema, lat, &x, &sigma, &a, &e, &mut lc).unwrap();
        gpu.losses(Weights::Ema, lat, &x, &sigma, &a, &e, &mut lg).unwrap();
        assert_close("EMA validation loss", &lg, &lc, TOL);
    }

    /// `latdiff sample`'s batch (em sampler, path log-weights against a φ⁴ target) with the
    /// network on the GPU against the CPU: same seeds, so the same noise.
    #[test]
    fn sampled_batch_matches_cpu() {
        let Some(_) = gpu() else { return };
        let arch = Arch::tiny();
        let lat = Lattice::new(8, 8);
        let params = Network::new(arch.clone()).init_params::<f32>(9);
        let g: Vec<f64> = (0..lat.volume()).map(|i| 1.0 / (1.0 + lat.phat2(i / 8, i % 8))).collect();
        let target = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.2, lambda: 0.02 });
        let settings = SamplerSettings::new(SamplerKind::Em, 12, 0.05, 5.0);
        let mut out = vec![];
        for dev in [Device::Cpu, Device::Cuda { ordinal: 0 }] {
            // The physics form: the prior is host arithmetic, the network runs on `dev`.
            let (form, theory) = (ScoreForm::Physics, target.param);
            let m = NetworkScoreModel::from_parts(
                arch.clone(),
                form,
                latdiff::theory::Couplings::Phi4(theory),
                &params,
                g.clone(),
                lat,
                "parity".into(),
                dev,
            );
            out.push(sample_batch(&m, Some(&target), lat, &settings, 3, 0, 5).unwrap());
        }
        assert_close("sampled configurations", &out[1].configs, &out[0].configs, TOL);
        let (wc, wg) = (out[0].log_weight.clone().unwrap(), out[1].log_weight.clone().unwrap());
        let spread = wc.iter().fold(0.0f64, |a, &w| a.max((w - wc[0]).abs())).max(1.0);
        let dev = wc.iter().zip(&wg).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(dev < TOL * spread.max(wc.iter().map(|w| w.abs()).fold(0.0, f64::max)), "log-weights differ by {dev}");
        eprintln!("ok: log-weights differ by at most {dev:.2e}");
    }
}
