//! SMC against the free theory, where ⟨φ²⟩, χ and log Z are known exactly. Fixed seeds
//! throughout: every statistical check is deterministic, and each can fail (tolerances
//! are stated where they are checked).

use super::*;
use crate::config::SmcTarget;
use crate::diffusion::phi4::free::FreeScoreModel;
use crate::diffusion::phi4::levels::{LevelPotential, Levels};
use crate::diffusion::phi4::mala::{self, Particles, Preconditioner};
use crate::diffusion::phi4::prior::PhysicsPrior;
use crate::diffusion::sample::kernel::{normals, LN_2PI};
use crate::diffusion::sample::sampler::{sample_batch, Kernel, SamplerKind, SamplerSettings};
use crate::diffusion::smc::*;
use crate::diffusion::ScoreModel;
use crate::lattice::fft;
use crate::lattice::Lattice;
use crate::rng::{self, Domain, Stream};
use crate::theory::{free as exact, Parametrisation, Phi4};

fn hopping(kappa: f64) -> Parametrisation {
    Parametrisation::Hopping { kappa, lambda: 0.0 }
}

fn model(kappa: f64) -> FreeScoreModel {
    FreeScoreModel::new(hopping(kappa)).unwrap()
}

fn sampler(kernel: Kernel, n_steps: usize) -> SamplerSettings {
    SamplerSettings { kernel, ..SamplerSettings::new(SamplerKind::Em, n_steps, 0.01, 20.0) }
}

/// log Z of S = ½ φ·K·φ: (V/2) log 2π − ½ Σ_p log K(p).
fn free_log_z(param: &Parametrisation, lat: Lattice) -> f64 {
    let mut s = 0.5 * lat.volume() as f64 * LN_2PI;
    for nt in 0..lat.lt {
        for nx in 0..lat.lx {
            s -= 0.5 * exact::kernel(param, &lat, nt, nx).ln();
        }
    }
    s
}

/// An SMC run of `n_replicas` replicas of the free `model_kappa` model on the free target.
struct Run {
    replicas: Vec<Replica>,
    lat: Lattice,
}

fn run(
    model_kappa: f64,
    target_kappa: f64,
    lat: Lattice,
    kernel: Kernel,
    n_steps: usize,
    smc: SmcSettings,
    n_replicas: usize,
) -> Run {
    run_to(SmcTarget::Prior, model_kappa, target_kappa, lat, kernel, n_steps, smc, n_replicas)
}

/// [`run`] with the intermediate targets `form`.
#[allow(clippy::too_many_arguments)]
fn run_to(
    form: SmcTarget,
    model_kappa: f64,
    target_kappa: f64,
    lat: Lattice,
    kernel: Kernel,
    n_steps: usize,
    smc: SmcSettings,
    n_replicas: usize,
) -> Run {
    let m = model(model_kappa);
    let s = sampler(kernel, n_steps);
    let k = ReverseKernel::new(&m, lat, &s).unwrap();
    let levels = Levels::new(&m, Phi4::new(lat, hopping(target_kappa)), s.sigma_ladder(), form).unwrap();
    let replicas = (0..n_replicas).map(|r| run_replica(&m, &k, &levels, &smc, 11, r, &|| false).unwrap()).collect();
    Run { replicas, lat }
}

fn smc(n_particles: usize, resample_ess: f64, rejuvenate: usize) -> SmcSettings {
    SmcSettings {
        n_particles,
        resample_ess,
        rejuvenate,
        batch: 64,
        network_below: f64::INFINITY,
        exact_magnetisation: false,
        rejuvenate_always: false,
    }
}

/// (mean, error) over replicas of each replica's weighted mean of f(config): the replicas
/// are independent, so the error is their spread over √R.
fn replica_estimate(r: &Run, f: impl Fn(&[f64]) -> f64) -> (f64, f64) {
    let v = r.lat.volume();
    let per: Vec<f64> = r
        .replicas
        .iter()
        .map(|rep| {
            let w: Vec<f64> = rep.normalised_log_weights().iter().map(|x| x.exp()).collect();
            let sum: f64 = w.iter().sum();
            rep.configs.chunks(v).zip(&w).map(|(c, w)| w * f(c)).sum::<f64>() / sum
        })
        .collect();
    mean_err(&per)
}

fn mean_err(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, (x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n * (n - 1.0))).sqrt())
}

fn phi2(c: &[f64]) -> f64 {
    c.iter().map(|x| x * x).sum::<f64>() / c.len() as f64
}

/// χ = V ⟨M²⟩ with M the mean field (free theory: ⟨M⟩ = 0).
fn chi(c: &[f64]) -> f64 {
    let m = c.iter().sum::<f64>() / c.len() as f64;
    c.len() as f64 * m * m
}

fn within(what: &str, got: (f64, f64), want: f64, n_sigma: f64) {
    let pull = (got.0 - want) / got.1;
    println!("{what}: {:.5} ± {:.5}, exact {want:.5} ({pull:+.2} σ)", got.0, got.1);
    assert!(got.1 > 0.0 && pull.abs() <= n_sigma, "{what}: {} ± {} vs exact {want} ({pull:.2} σ)", got.0, got.1);
}

/// With resampling off, replica r's particles are the em sampler's samples r n … (r + 1) n − 1
/// (same seed, same streams) and their log-weights its path weights, bit for bit; log Z is
/// the log of their mean weight. Checked with both kernels and a wrong model (weights vary).
#[test]
fn resampling_off_reproduces_the_em_path_weights_exactly() {
    let lat = Lattice::new(6, 8);
    let n = 40;
    for kernel in [Kernel::Matched, Kernel::Em] {
        let r = run(0.17, 0.2, lat, kernel, 25, smc(n, 0.0, 3), 2);
        let target = Phi4::new(lat, hopping(0.2));
        let b = sample_batch(&model(0.17), Some(&target), lat, &sampler(kernel, 25), 11, 0, 2 * n).unwrap();
        let lw = b.log_weight.unwrap();
        for (i, rep) in r.replicas.iter().enumerate() {
            assert_eq!(rep.resamplings, 0);
            assert_eq!(rep.configs, b.configs[i * n * lat.volume()..][..n * lat.volume()], "{kernel:?} replica {i}");
            assert_eq!(rep.log_weight, lw[i * n..][..n], "{kernel:?} replica {i}: weights differ");
            let want = resample::log_mean_exp(&lw[i * n..][..n]);
            assert_eq!(rep.log_z, want);
            let spread = lw.iter().fold(0.0f64, |a, w| a.max((w - lw[0]).abs()));
            assert!(spread > 0.1, "the wrong model should give varying weights ({spread})");
        }
    }
}

/// The exact model with the matched kernel is the exact reverse process and S_prior the
/// exact noised log-density: every weight is log Z at every level, so nothing is resampled,
/// log Z is exact to rounding in every replica, and ⟨φ²⟩ and χ agree with the exact values
/// within 4 replica errors (8 replicas) at L = 16 and L = 64.
#[test]
fn exact_free_model_with_matched_kernel_is_exact() {
    let p = hopping(0.2);
    for (l, n_particles) in [(16, 64), (64, 32)] {
        let lat = Lattice::square(l);
        let r = run(0.2, 0.2, lat, Kernel::Matched, 40, smc(n_particles, 0.5, 2), 8);
        let exact_z = free_log_z(&p, lat);
        for rep in &r.replicas {
            assert_eq!(rep.resamplings, 0, "L = {l}");
            assert!(rep.levels.iter().all(|x| x.ess_fraction > 1.0 - 1e-9), "L = {l}: ESS below N");
            assert!(
                (rep.log_z - exact_z).abs() < 1e-9 * lat.volume() as f64,
                "L = {l}: log Z {} vs {exact_z}",
                rep.log_z
            );
        }
        within(&format!("L = {l} <phi^2>"), replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
        within(&format!("L = {l} chi"), replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    }
}

/// MALA after every level with resampling off (the pc sampler with a Metropolis-adjusted
/// corrector, weighted): the exact model keeps every weight equal and log Z exact to
/// rounding, although every level moves the particles (acceptance recorded at each). A
/// rejuvenation that reset the weights (P = U) would lose log Z.
#[test]
fn mala_at_every_level_keeps_the_exact_model_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let settings = SmcSettings { rejuvenate_always: true, ..smc(64, 0.0, 2) };
    let r = run_to(SmcTarget::Cumulant, 0.2, 0.2, lat, Kernel::Matched, 30, settings, 4);
    let exact_z = free_log_z(&p, lat);
    for rep in &r.replicas {
        assert_eq!(rep.resamplings, 0);
        assert!(rep.levels.iter().all(|x| x.acceptance > 0.2), "a level without its MALA moves");
        assert!(rep.levels.iter().all(|x| x.ess_fraction > 1.0 - 1e-9), "ESS below N");
        assert!((rep.log_z - exact_z).abs() < 1e-9 * lat.volume() as f64, "log Z {} vs {exact_z}", rep.log_z);
    }
}

/// The same with a wrong model (κ 0.17 for a κ = 0.2 target) under the em kernel, so the
/// weights vary: MALA at every level leaves them exact importance weights. ⟨φ²⟩, χ and
/// log Z within 4 replica errors (16 replicas × 64, 2 sweeps, L = 8). With the weights
/// reset by each rejuvenation (P = U) log Z collapses to 0 and both tests fail.
#[test]
fn mala_at_every_level_with_a_wrong_model_stays_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(8);
    let settings = SmcSettings { rejuvenate_always: true, ..smc(64, 0.0, 2) };
    let r = run_to(SmcTarget::Cumulant, 0.17, 0.2, lat, Kernel::Em, 60, settings, 16);
    let moved: usize = r.replicas.iter().map(|rep| rep.levels.iter().filter(|x| x.acceptance > 0.0).count()).sum();
    assert_eq!(moved, 16 * 60, "every level of every replica rejuvenates");
    within("<phi^2>", replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
    within("chi", replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    let log_z: Vec<f64> = r.replicas.iter().map(|x| x.log_z).collect();
    within("log Z", crate::diffusion::smc::resample::combined_log_z(&log_z), free_log_z(&p, lat), 4.0);
}

/// The cumulant targets are the exact noised actions of the free theory up to constants:
/// with the exact model nothing is resampled and log Z is exact, as with S_prior.
#[test]
fn exact_free_model_with_cumulant_targets_is_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let r = run_to(SmcTarget::Cumulant, 0.2, 0.2, lat, Kernel::Matched, 40, smc(64, 0.5, 2), 4);
    let exact_z = free_log_z(&p, lat);
    for rep in &r.replicas {
        assert_eq!(rep.resamplings, 0);
        assert!(rep.levels.iter().all(|x| x.ess_fraction > 1.0 - 1e-9), "ESS below N");
        assert!((rep.log_z - exact_z).abs() < 1e-9 * lat.volume() as f64, "log Z {} vs {exact_z}", rep.log_z);
    }
}

/// The magnetisation redraw with the exact free model: the redraw samples the exact
/// reverse transition's conditional of m (up to the grid's piecewise-constant density), so
/// the weights stay even (ESS/n > 0.99 at every level, so var W < 0.01) and log Z exact
/// within 0.05 (4 standard errors of a mean of 64 such weights);
/// a sign or Jacobian slip in the swapped log-densities makes them uneven at once.
#[test]
fn exact_magnetisation_keeps_the_exact_model_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let settings = SmcSettings { exact_magnetisation: true, ..smc(64, 0.5, 2) };
    for form in [SmcTarget::Prior, SmcTarget::Cumulant] {
        let r = run_to(form, 0.2, 0.2, lat, Kernel::Matched, 40, settings, 2);
        let exact_z = free_log_z(&p, lat);
        for rep in &r.replicas {
            let worst = rep.levels.iter().map(|x| x.ess_fraction).fold(1.0, f64::min);
            assert!(worst > 0.99, "{form:?}: ESS/n fell to {worst}");
            assert_eq!(rep.resamplings, 0);
            assert!((rep.log_z - exact_z).abs() < 0.05, "{form:?}: log Z {} vs {exact_z}", rep.log_z);
        }
    }
}

/// A wrong model (κ_model = 0.17 for κ = 0.2) with the magnetisation redrawn: ⟨φ²⟩, χ (the
/// magnetisation's own moment) and log Z within 4 replica errors (16 replicas of 128, L = 16).
#[test]
fn exact_magnetisation_with_a_wrong_model_stays_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let settings = SmcSettings { exact_magnetisation: true, ..smc(128, 0.5, 2) };
    let r = run_to(SmcTarget::Cumulant, 0.17, 0.2, lat, Kernel::Matched, 30, settings, 16);
    within("<phi^2>", replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
    within("chi", replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    let log_z: Vec<f64> = r.replicas.iter().map(|x| x.log_z).collect();
    within("log Z", crate::diffusion::smc::resample::combined_log_z(&log_z), free_log_z(&p, lat), 4.0);
}

/// The exact score with the plain em kernel (Σ = Δ I): its discretisation error makes the
/// weights uneven at every step, SMC resamples and rejuvenates, and ⟨φ²⟩, χ and log Z agree
/// with the exact values within 4 replica errors (16 replicas of 128) at L = 16.
#[test]
fn exact_free_model_em_kernel_smc_matches_exact_values() {
    let lat = Lattice::square(16);
    let p = hopping(0.2);
    let r = run(0.2, 0.2, lat, Kernel::Em, 100, smc(128, 0.5, 2), 16);
    let resamplings: usize = r.replicas.iter().map(|x| x.resamplings).sum();
    println!("{resamplings} resamplings over 16 replicas");
    assert!(resamplings > 16, "the em kernel's weights should force resampling");
    within("<phi^2>", replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
    within("chi", replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    let log_z: Vec<f64> = r.replicas.iter().map(|x| x.log_z).collect();
    within("log Z", crate::diffusion::smc::resample::combined_log_z(&log_z), free_log_z(&p, lat), 4.0);
}

/// A wrong analytic model (κ_model = 0.17 for the target κ = 0.2, λ = 0) at L = 32: the
/// whole-path weights of the em sampler collapse (ESS/N < 0.01), while SMC (16 replicas of
/// 512, 5 MALA steps) gets ⟨φ²⟩, χ and log Z within 4 replica errors and keeps many
/// distinct ancestors. SMC estimates carry an O(1/n) bias towards the proposal: with 128
/// particles ⟨φ²⟩ came out 0.4 % low, 2.7 errors of 64 replicas (README, "SMC").
#[test]
fn wrong_model_at_l32_whole_path_collapses_smc_stays_exact() {
    let lat = Lattice::square(32);
    let p = hopping(0.2);
    let (n, n_replicas, steps) = (512, 16, 50);
    let target = Phi4::new(lat, p);
    let b = sample_batch(&model(0.17), Some(&target), lat, &sampler(Kernel::Matched, steps), 11, 0, n * n_replicas)
        .unwrap();
    let whole_path = resample::ess_fraction(&b.log_weight.unwrap());
    let r = run(0.17, 0.2, lat, Kernel::Matched, steps, smc(n, 0.5, 5), n_replicas);
    let min_distinct = r.replicas.iter().map(|x| x.distinct_ancestors()).min().unwrap();
    let final_ess: Vec<f64> = r.replicas.iter().map(|x| resample::ess_fraction(&x.log_weight)).collect();
    println!(
        "L = 32, kappa_model 0.17: whole-path ESS/N {whole_path:.2e}; SMC: fewest distinct ancestors {min_distinct} of {n}, final ESS/N {:.3}",
        final_ess.iter().sum::<f64>() / n_replicas as f64
    );
    assert!(whole_path < 0.01, "whole-path ESS/N {whole_path} is not collapsed");
    within("SMC <phi^2>", replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
    within("SMC chi", replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    let log_z: Vec<f64> = r.replicas.iter().map(|x| x.log_z).collect();
    within("SMC log Z", crate::diffusion::smc::resample::combined_log_z(&log_z), free_log_z(&p, lat), 4.0);
    assert!(min_distinct > n / 8, "replicas collapsed onto {min_distinct} of {n} ancestors");
}

/// MALA leaves a Gaussian surrogate invariant although its preconditioner is not the
/// Gaussian's covariance: S_prior of the free target κ = 0.2 with the G(p) of κ = 0.15 at
/// σ = 0.5 is N(0, D⁻¹) with D = 1/(G + σ²) + w(σ)(K − 1/G). 2000 exact draws, 20 sweeps at
/// a step (ε = 0.6) that rejects ~70 % of the proposals: every mode's ⟨|φ̃_p|²⟩/V within 4.5 errors of 1/D(p)
/// (Bonferroni over the modes), ⟨φ²⟩ within 4.
#[test]
fn mala_leaves_a_gaussian_surrogate_invariant() {
    let lat = Lattice::new(8, 6);
    let v = lat.volume();
    let g = model(0.15).two_point(lat);
    let sigma = 0.5;
    let target = Phi4::new(lat, hopping(0.2));
    let prior = PhysicsPrior::new(target, g.clone()).unwrap();
    let w = prior.weight(sigma);
    let mut d = vec![0.0; v];
    for nt in 0..lat.lt {
        for nx in 0..lat.lx {
            let i = nt * lat.lx + nx;
            d[i] = 1.0 / (g[i] + sigma * sigma) + w * (exact::kernel(&hopping(0.2), &lat, nt, nx) - 1.0 / g[i]);
        }
    }
    assert!(d.iter().all(|x| *x > 0.0));
    let n = 2000;
    let f = fft::plan(lat);
    let mut ws = f.work();
    let sqrt_cov: Vec<f64> = d.iter().map(|x| x.powf(-0.5)).collect();
    let mut rngs: Vec<Stream> = (0..n).map(|i| rng::stream(5, Domain::Sample, i as u64)).collect();
    let mut phi = vec![0.0; n * v];
    let mut z = vec![0.0; v];
    for (p, r) in phi.chunks_mut(v).zip(rngs.iter_mut()) {
        normals(r, &mut z);
        f.color_noise(&sqrt_cov, &z, p, &mut ws);
    }
    let pot = LevelPotential::Prior { prior: &prior, sigma };
    let mut energy: Vec<f64> = phi.chunks(v).map(|p| pot.energy(p, &mut prior.work())).collect();
    let mut grad = vec![0.0; n * v];
    let pre = Preconditioner::new(g.iter().map(|g| g + sigma * sigma).collect());
    mala::gradients(pot, v, || prior.work(), &phi, &mut grad);
    let mut acc = 0.0;
    for _ in 0..20 {
        let p = Particles { phi: &mut phi, energy: &mut energy, grad: &mut grad, rngs: &mut rngs };
        let probs = mala::sweep(pot, &pre, &f, 0.6, || prior.work(), p);
        acc += probs.iter().sum::<f64>() / n as f64 / 20.0;
    }
    println!("MALA acceptance {acc:.3}");
    assert!(acc > 0.2 && acc < 0.9, "acceptance {acc}: the test needs a step that rejects often");
    let mut ps = vec![0.0; v];
    let (mut s1, mut s2) = (vec![0.0; v], vec![0.0; v]);
    for c in phi.chunks(v) {
        f.power_spectrum(c, &mut ps, &mut ws);
        for p in 0..v {
            s1[p] += ps[p];
            s2[p] += ps[p] * ps[p];
        }
    }
    for p in 0..v {
        let m = s1[p] / n as f64;
        let err = ((s2[p] / n as f64 - m * m) / (n as f64 - 1.0)).sqrt();
        assert!(((m - 1.0 / d[p]) / err).abs() < 4.5, "mode {p}: {m} ± {err} vs {}", 1.0 / d[p]);
    }
    let p2: Vec<f64> = phi.chunks(v).map(phi2).collect();
    within("MALA <phi^2>", mean_err(&p2), d.iter().map(|x| 1.0 / x).sum::<f64>() / v as f64, 4.0);
}

/// The free model with its exact noised action as the learnt one:
/// U(φ; σ) = ½ φᵀ (C + σ²)⁻¹ φ, whose gradient is minus the free score.
struct FreeWithAction(FreeScoreModel);

impl ScoreModel for FreeWithAction {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        self.0.check_lattice(lat)
    }
    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        self.0.score(lat, phi, sigma, out)
    }
    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        self.0.two_point(lat)
    }
    fn describe(&self) -> String {
        format!("{} with its exact noised action", self.0.describe())
    }
    fn has_action(&self) -> bool {
        true
    }
    fn action_values(
        &self,
        lat: Lattice,
        phi: &[f64],
        sigma: &[f64],
        action: &mut [f64],
        score: Option<&mut [f64]>,
    ) -> Result<(), String> {
        let (v, f, c) = (lat.volume(), fft::plan(lat), self.two_point(lat));
        let mut ws = f.work();
        for ((u, p), s) in action.iter_mut().zip(phi.chunks(v)).zip(sigma) {
            let cov: Vec<f64> = c.iter().map(|c| c + s * s).collect();
            *u = 0.5 * f.inv_quad_form(&cov, p, &mut ws);
        }
        score.map_or(Ok(()), |out| self.score(lat, phi, sigma, out))
    }
}

/// An SMC run with learnt targets from `m`, the em sampler's settings of `kernel`.
fn run_learnt(
    m: &dyn ScoreModel,
    target_kappa: f64,
    lat: Lattice,
    kernel: Kernel,
    n_steps: usize,
    smc: SmcSettings,
    n_replicas: usize,
) -> Run {
    run_hybrid(m, target_kappa, lat, (kernel, n_steps), smc, n_replicas, 0.0)
}

/// [`run_learnt`] on the hybrid ladder: learnt above `sigma_c`, cumulant at and below.
fn run_hybrid(
    m: &dyn ScoreModel,
    target_kappa: f64,
    lat: Lattice,
    (kernel, n_steps): (Kernel, usize),
    smc: SmcSettings,
    n_replicas: usize,
    sigma_c: f64,
) -> Run {
    let s = sampler(kernel, n_steps);
    let k = ReverseKernel::new(m, lat, &s).unwrap();
    let target = Phi4::new(lat, hopping(target_kappa));
    let levels = Levels::new(m, target, s.sigma_ladder(), SmcTarget::Learnt).unwrap().learnt_above(sigma_c);
    let replicas = (0..n_replicas).map(|r| run_replica(m, &k, &levels, &smc, 11, r, &|| false).unwrap()).collect();
    Run { replicas, lat }
}

/// The exact free model's own action as the learnt targets, with the matched kernel: every
/// weight is log Z at every level (ESS/n = 1, nothing resampled, log Z exact to rounding).
/// A learnt level evaluated at the wrong σ, or with the wrong sign, makes them uneven.
#[test]
fn exact_free_action_as_learnt_targets_is_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let m = FreeWithAction(model(0.2));
    let r = run_learnt(&m, 0.2, lat, Kernel::Matched, 40, smc(64, 0.5, 2), 4);
    let exact_z = free_log_z(&p, lat);
    for rep in &r.replicas {
        assert_eq!(rep.resamplings, 0);
        assert!(rep.levels.iter().all(|x| x.ess_fraction > 1.0 - 1e-9), "ESS below N");
        assert!((rep.log_z - exact_z).abs() < 1e-9 * lat.volume() as f64, "log Z {} vs {exact_z}", rep.log_z);
    }
}

/// The hybrid ladder switches family at its crossover: learnt levels strictly above σ_c,
/// the cumulant action at and below, the target S at σ = 0.
#[test]
fn hybrid_ladder_is_learnt_above_the_crossover_and_cumulant_below() {
    let lat = Lattice::new(4, 4);
    let s = sampler(Kernel::Matched, 20);
    let sigma = s.sigma_ladder();
    let sigma_c = sigma[10];
    let m = FreeWithAction(model(0.2));
    let levels =
        Levels::new(&m, Phi4::new(lat, hopping(0.2)), sigma.clone(), SmcTarget::Learnt).unwrap().learnt_above(sigma_c);
    assert!(matches!(levels.level(0), Level::Analytic(LevelPotential::Target(_))));
    for k in 1..sigma.len() - 1 {
        match (levels.level(k), k > 10) {
            (Level::Learnt { sigma: s }, true) => assert_eq!(s, sigma[k]),
            (Level::Analytic(LevelPotential::Cumulant { sigma: s, .. }), false) => assert_eq!(s, sigma[k]),
            _ => panic!("level {k} (sigma {}) has the wrong family for the crossover {sigma_c}", sigma[k]),
        }
    }
    assert!(levels.describe().contains("above sigma"), "{}", levels.describe());
    // network_below must lie under the crossover: above it the targets' own score is the network's.
    assert!(levels.check(&SmcSettings { network_below: sigma_c, ..smc(8, 0.5, 1) }).is_err());
    assert!(levels.check(&SmcSettings { network_below: sigma[5], ..smc(8, 0.5, 1) }).is_ok());
}

/// The exact free action above the crossover and the cumulant action below it (exact for
/// the free theory with its exact G, up to a constant per level): every level arrives with
/// ESS/n = 1 and log Z is exact, also when the cumulant levels' own score drives their
/// steps (`network_below` 0). A cumulant part evaluated at the wrong σ, or a learnt level
/// driven by a surrogate's score, would make the weights uneven.
#[test]
fn hybrid_ladder_of_exact_free_actions_is_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let m = FreeWithAction(model(0.2));
    let exact_z = free_log_z(&p, lat);
    for network_below in [f64::INFINITY, 0.0] {
        let settings = SmcSettings { network_below, ..smc(64, 0.5, 2) };
        let r = run_hybrid(&m, 0.2, lat, (Kernel::Matched, 40), settings, 4, 1.0);
        for rep in &r.replicas {
            assert_eq!(rep.resamplings, 0);
            assert!(rep.levels.iter().all(|x| x.ess_fraction > 1.0 - 1e-9), "ESS below N");
            let dz = rep.log_z - exact_z;
            assert!(dz.abs() < 1e-9 * lat.volume() as f64, "log Z off by {dz} (network_below {network_below})");
        }
    }
}

/// The exact free action as the learnt targets under the plain em kernel: its
/// discretisation error forces resampling at the learnt levels, where MALA then runs on the
/// model's action in batches (batch 48 of 128 particles). ⟨φ²⟩, χ and log Z within 4
/// replica errors (16 replicas of 128, 2 MALA steps, L = 16, 100 steps; at 60 steps log Z
/// came out −3.6σ for every target family alike: the em kernel's bias). These
/// targets are S_prior's up to a constant per level, so the run is the prior targets' run
/// to rounding: the same resamplings, and log Z and the configurations equal to 1e-9.
#[test]
fn learnt_targets_under_the_em_kernel_stay_exact() {
    let p = hopping(0.2);
    let lat = Lattice::square(16);
    let settings = SmcSettings { batch: 48, ..smc(128, 0.5, 2) };
    let r = run_learnt(&FreeWithAction(model(0.2)), 0.2, lat, Kernel::Em, 100, settings, 16);
    let learnt_levels = |rep: &Replica| rep.levels.iter().filter(|l| l.sigma > 0.0 && l.resampled).count();
    let rejuvenations: usize = r.replicas.iter().map(learnt_levels).sum();
    println!("{rejuvenations} rejuvenations at learnt levels over 16 replicas");
    assert!(rejuvenations > 16, "the em kernel should force resampling at learnt levels");
    within("<phi^2>", replica_estimate(&r, phi2), exact::phi2(&p, &lat), 4.0);
    within("chi", replica_estimate(&r, chi), exact::chi(&p, &lat), 4.0);
    let log_z: Vec<f64> = r.replicas.iter().map(|x| x.log_z).collect();
    within("log Z", crate::diffusion::smc::resample::combined_log_z(&log_z), free_log_z(&p, lat), 4.0);
    let prior = run_to(SmcTarget::Prior, 0.2, 0.2, lat, Kernel::Em, 100, settings, 16);
    for (a, b) in r.replicas.iter().zip(&prior.replicas) {
        assert_eq!(a.resamplings, b.resamplings);
        assert!((a.log_z - b.log_z).abs() < 1e-9, "log Z {} vs the prior targets' {}", a.log_z, b.log_z);
        let worst = a.configs.iter().zip(&b.configs).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst < 1e-9, "configurations differ from the prior targets' run by {worst}");
    }
}

/// The batched MALA sweep (a learnt level's) is the per-particle sweep in another order:
/// from the same particles and streams, with U and ∇U of S_prior given in batches of 7, the
/// particles, energies, gradients and acceptance probabilities agree bit for bit.
#[test]
fn batched_mala_is_the_per_particle_sweep_bit_for_bit() {
    let lat = Lattice::new(8, 6);
    let v = lat.volume();
    let g = model(0.15).two_point(lat);
    let prior = PhysicsPrior::new(Phi4::new(lat, hopping(0.2)), g.clone()).unwrap();
    let pot = LevelPotential::Prior { prior: &prior, sigma: 0.5 };
    let n = 30;
    let f = fft::plan(lat);
    let pre = Preconditioner::new(g.iter().map(|g| g + 0.25).collect());
    let start: Vec<f64> = {
        let mut r = rng::stream(3, Domain::Sample, 0);
        let mut z = vec![0.0; n * v];
        normals(&mut r, &mut z);
        z
    };
    let energies = |phi: &[f64]| -> Vec<f64> { phi.chunks(v).map(|p| pot.energy(p, &mut prior.work())).collect() };
    let run = |batched: bool| {
        let mut phi = start.clone();
        let mut energy = energies(&phi);
        let mut grad = vec![0.0; n * v];
        let mut rngs: Vec<Stream> = (0..n).map(|i| rng::stream(5, Domain::Sample, i as u64)).collect();
        let p = Particles { phi: &mut phi, energy: &mut energy, grad: &mut grad, rngs: &mut rngs };
        let r = if batched {
            let mut eval = |phi: &[f64], u: &mut [f64], gr: &mut [f64]| {
                for ((c, u), gr) in phi.chunks(7 * v).zip(u.chunks_mut(7)).zip(gr.chunks_mut(7 * v)) {
                    for ((c, u), gr) in c.chunks(v).zip(u.iter_mut()).zip(gr.chunks_mut(v)) {
                        *u = pot.energy(c, &mut prior.work());
                        pot.gradient(c, gr, &mut prior.work());
                    }
                }
                Ok(())
            };
            mala::rejuvenate_batched(&mut eval, &pre, &f, 0.6, 4, p, &Spread::local(n)).unwrap()
        } else {
            mala::rejuvenate(pot, &pre, &f, 0.6, 4, || prior.work(), p, &Spread::local(n))
        };
        (phi, energy, grad, r)
    };
    let (a, b) = (run(false), run(true));
    assert!(a.3.acceptance > 0.1 && a.3.acceptance < 0.95, "acceptance {}: the test needs rejections", a.3.acceptance);
    assert_eq!(a.3, b.3, "acceptance and adapted step");
    assert_eq!(a.1, b.1, "energies");
    assert_eq!(a.0, b.0, "configurations");
    assert_eq!(a.2, b.2, "gradients");
}

/// A model without an action cannot give the learnt targets: one line naming the value.
#[test]
fn learnt_targets_need_a_model_with_an_action() {
    let lat = Lattice::new(4, 4);
    let s = sampler(Kernel::Matched, 5);
    let e = Levels::new(&model(0.2), Phi4::new(lat, hopping(0.2)), s.sigma_ladder(), SmcTarget::Learnt).err().unwrap();
    assert!(e.contains("smc_target: 'learnt'") && !e.contains('\n'), "{e}");
    let levels =
        Levels::new(&FreeWithAction(model(0.2)), Phi4::new(lat, hopping(0.2)), s.sigma_ladder(), SmcTarget::Learnt)
            .unwrap();
    let e = levels.check(&SmcSettings { network_below: 1.0, ..smc(8, 0.5, 1) }).unwrap_err();
    assert!(e.contains("network_below"), "{e}");
}
