//! The multilevel sampler against exact results: the free field's ⟨φ²⟩, χ and log Z on a
//! three-level ladder, interacting φ⁴ against a long HMC + Wolff chain, and the ladder's
//! gradients against finite differences.

use super::Phi4Ladder;
use crate::diffusion::multilevel::*;
use crate::lattice::Lattice;
use crate::rng::{self, Domain};
use crate::theory::{free, Parametrisation, Phi4};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

fn settings(n: usize) -> MultilevelSettings {
    MultilevelSettings { n_particles: n, cess: 0.8, resample_ess: 0.5, rejuvenate: 3, max_steps: 500 }
}

/// Per replica: the self-normalised weighted mean of `f` over its particles.
fn replica_means(reps: &[Replica], v: usize, f: &dyn Fn(&[f64]) -> f64) -> Vec<f64> {
    reps.iter()
        .map(|r| {
            let w: Vec<f64> = r.normalised_log_weights().iter().map(|x| x.exp()).collect();
            let num: f64 = r.configs.chunks(v).zip(&w).map(|(c, w)| w * f(c)).sum();
            num / w.iter().sum::<f64>()
        })
        .collect()
}

/// (mean, standard error) over replicas.
fn mean_err(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn run(ladder: &Phi4Ladder, n: usize, replicas: usize, seed: u64) -> Vec<Replica> {
    (0..replicas).map(|r| run_replica(ladder, &settings(n), seed, r, &|| false).expect("runs")).collect()
}

#[test]
fn free_field_phi2_chi_and_log_z_are_exact_on_a_three_level_ladder() {
    let param = Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 };
    let lat = Lattice::square(16);
    let ladder = Phi4Ladder::new(param, lat, 4, (2, 0)).expect("ladder");
    assert_eq!(ladder.lattices().len(), 3);
    let reps = run(&ladder, 64, 12, 11);
    let v = lat.volume();
    let (phi2, e_phi2) = mean_err(&replica_means(&reps, v, &|c| c.iter().map(|x| x * x).sum::<f64>() / v as f64));
    let (chi, e_chi) = mean_err(&replica_means(&reps, v, &|c| c.iter().sum::<f64>().powi(2) / v as f64));
    let exact_log_z = 0.5 * v as f64 * (2.0 * std::f64::consts::PI).ln()
        - 0.5
            * (0..lat.lt)
                .flat_map(|t| (0..lat.lx).map(move |x| (t, x)))
                .map(|(t, x)| free::kernel(&param, &lat, t, x).ln())
                .sum::<f64>();
    let log_z: Vec<f64> = reps.iter().map(|r| r.log_z).collect();
    let (lz, e_lz) = crate::diffusion::smc::resample::combined_log_z(&log_z);
    let tol = 4.0;
    for (name, got, err, exact) in [
        ("phi2", phi2, e_phi2, free::phi2(&param, &lat)),
        ("chi", chi, e_chi, free::chi(&param, &lat)),
        ("log Z", lz, e_lz, exact_log_z),
    ] {
        assert!(err > 0.0 && err < 0.1 * exact.abs().max(1.0), "{name}: error {err} not resolved");
        assert!((got - exact).abs() < tol * err, "{name}: {got} ± {err} against exact {exact}");
    }
}

#[test]
fn interacting_phi4_agrees_with_a_long_hmc_wolff_chain() {
    let param = Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 };
    let lat = Lattice::square(16);
    let ladder = Phi4Ladder::new(param, lat, 4, (3, 2)).expect("ladder");
    let reps = run(&ladder, 64, 12, 5);
    let v = lat.volume() as f64;
    let abs_m = |c: &[f64]| (c.iter().sum::<f64>() / v).abs();
    let (m, e_m) = mean_err(&replica_means(&reps, lat.volume(), &abs_m));
    // Reference: 24 HMC + Wolff chains of 1000 measurements each, chain means' spread.
    let th = Phi4::new(lat, param);
    let chains: Vec<f64> = (0..24u64)
        .into_par_iter()
        .map(|c| {
            let mut ch = crate::mc::hmc::Chain::new(&th, 77, c, crate::mc::hmc::Start::Hot);
            let params = crate::diffusion::sample::refine::REFINE;
            let mut sum = 0.0;
            for i in 0..1200 {
                ch.trajectory(&th, &params);
                ch.cluster_flips(&th, 2);
                if i >= 200 {
                    sum += abs_m(&ch.phi);
                }
            }
            sum / 1000.0
        })
        .collect();
    let (m_ref, e_ref) = mean_err(&chains);
    let sigma = (e_m * e_m + e_ref * e_ref).sqrt();
    assert!(e_m < 0.05 * m_ref, "<|M|> error {e_m} not resolved");
    assert!((m - m_ref).abs() < 4.0 * sigma, "<|M|> multilevel {m} ± {e_m} against HMC+Wolff {m_ref} ± {e_ref}");
}

#[test]
fn ladder_gradients_match_finite_differences() {
    let param = Parametrisation::Hopping { kappa: 0.25, lambda: 0.05 };
    let lat = Lattice::new(8, 12);
    let ladder = Phi4Ladder::new(param, lat, 4, (1, 0)).expect("ladder");
    let mut rng = rng::stream(3, Domain::Misc, 0);
    let coarse: Vec<f64> = (0..ladder.lattices()[0].volume()).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut phi = vec![0.0; lat.volume()];
    let prop = ladder.proposal_guess(1);
    ladder.propose(1, &prop, &coarse, &mut rng, &mut phi);
    for k in [0usize, 1] {
        let f = |x: &[f64]| ladder.start_log_density(k, &prop, x, None);
        let x0: Vec<f64> = if k == 0 { coarse.clone() } else { phi.clone() };
        let mut g = vec![0.0; x0.len()];
        ladder.start_log_density(k, &prop, &x0, Some(&mut g));
        let mut ds = vec![0.0; x0.len()];
        ladder.action(k, &x0, Some(&mut ds));
        let h = 1e-6;
        for i in (0..x0.len()).step_by(5) {
            let (mut up, mut dn) = (x0.clone(), x0.clone());
            up[i] += h;
            dn[i] -= h;
            let num = (f(&up) - f(&dn)) / (2.0 * h);
            assert!((num - g[i]).abs() < 1e-5 * (1.0 + num.abs()), "level {k} site {i}: d log q {} vs {num}", g[i]);
            let num_s = (ladder.action(k, &up, None) - ladder.action(k, &dn, None)) / (2.0 * h);
            assert!((num_s - ds[i]).abs() < 1e-5 * (1.0 + num_s.abs()), "level {k} site {i}: dS {} vs {num_s}", ds[i]);
        }
    }
}

#[test]
fn tempering_takes_the_whole_step_when_the_weights_allow_and_hits_the_target_otherwise() {
    let w = vec![0.0; 100];
    let flat = vec![1.5; 100];
    assert_eq!(next_beta(&w, &flat, 0.25, 0.9), 1.0, "a constant increment changes no weight");
    let spread: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let b = next_beta(&w, &spread, 0.0, 0.9);
    assert!(b > 0.0 && b < 1.0);
    assert!((conditional_ess(&w, &spread, b) - 0.9).abs() < 1e-9, "cess {}", conditional_ess(&w, &spread, b));
}

#[test]
fn a_replica_is_reproducible_and_independent_of_threads() {
    let param = Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 };
    let ladder = Phi4Ladder::new(param, Lattice::square(8), 4, (1, 1)).expect("ladder");
    let a = run_replica(&ladder, &settings(16), 9, 2, &|| false).expect("runs");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let ladder1 = Phi4Ladder::new(param, Lattice::square(8), 4, (1, 1)).expect("ladder");
    let b = pool.install(|| run_replica(&ladder1, &settings(16), 9, 2, &|| false).expect("runs"));
    assert_eq!(a.configs, b.configs);
    assert_eq!(a.log_z.to_bits(), b.log_z.to_bits());
}
