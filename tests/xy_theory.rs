//! A second theory through the generic HMC, using only the `Theory` and `Manifold`
//! interfaces: the 2-D XY (O(2)) model, one angle per site on the torus,
//!   S = −Σ_x [β_t cos(θ_x − θ_{x+t̂}) + β_x cos(θ_x − θ_{x+x̂})].
//! Physics checks with fixed seeds, errors from the spread of independent chains:
//! - with β_t = 0 the lattice is L_t independent periodic rings of L_x sites, where
//!   ⟨cos(θ_x − θ_{x+x̂})⟩ = Σ_n I_n^{L−1} I_n' / Σ_n I_n^L (character expansion, exact);
//! - with both couplings, ⟨exp(−ΔH)⟩ = 1 (exact for any reversible, area-preserving MD).

use latdiff::lattice::Lattice;
use latdiff::mc::engine::{CpuHmc, HmcEngine, HmcSetup};
use latdiff::mc::hmc::{HmcParams, Start};
use latdiff::mc::Integrator;
use latdiff::rng::Stream;
use latdiff::theory::{Action, Theory, TheoryAttrs, Torus};
use rand::RngExt;
use std::f64::consts::PI;

#[derive(Clone, Debug)]
struct Xy {
    lattice: Lattice,
    beta_t: f64,
    beta_x: f64,
}

impl Xy {
    /// (site, forward neighbour, coupling) for every link.
    fn links(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        let (lt, lx) = (self.lattice.lt, self.lattice.lx);
        (0..lt * lx).flat_map(move |s| {
            let (t, x) = (s / lx, s % lx);
            [(s, ((t + 1) % lt) * lx + x, self.beta_t), (s, t * lx + (x + 1) % lx, self.beta_x)]
        })
    }
}

impl Action for Xy {
    fn lattice(&self) -> Lattice {
        self.lattice
    }

    fn action(&self, theta: &[f64]) -> f64 {
        -self.links().map(|(a, b, beta)| beta * (theta[a] - theta[b]).cos()).sum::<f64>()
    }

    fn deriv(&self, theta: &[f64], d: &mut [f64]) {
        d.iter_mut().for_each(|x| *x = 0.0);
        for (a, b, beta) in self.links() {
            let f = beta * (theta[a] - theta[b]).sin();
            d[a] += f;
            d[b] -= f;
        }
    }
}

impl Theory for Xy {
    type Manifold = Torus;

    fn manifold(&self) -> Torus {
        Torus
    }

    fn name(&self) -> &'static str {
        "xy"
    }

    fn dof_shape(&self, lattice: Lattice) -> Vec<usize> {
        vec![lattice.lt, lattice.lx]
    }

    /// All spins along one random direction.
    fn cold_start(&self, rng: &mut Stream) -> Vec<f64> {
        vec![PI * (2.0 * rng.random::<f64>() - 1.0); self.lattice.volume()]
    }

    fn hot_start(&self, rng: &mut Stream) -> Vec<f64> {
        (0..self.lattice.volume()).map(|_| PI * (2.0 * rng.random::<f64>() - 1.0)).collect()
    }

    /// S and |Σ_x (cos θ_x, sin θ_x)|.
    fn action_and_monitor(&self, theta: &[f64]) -> (f64, f64) {
        let (c, s) = theta.iter().fold((0.0, 0.0), |(c, s), t| (c + t.cos(), s + t.sin()));
        (self.action(theta), c.hypot(s))
    }

    fn monitor_name(&self) -> &'static str {
        "abs_m"
    }

    fn reflect(&self, value: f32) -> f32 {
        -value
    }

    fn attrs(&self) -> TheoryAttrs {
        TheoryAttrs {
            labels: vec![("theory", "xy".into())],
            couplings: vec![("beta_t", self.beta_t), ("beta_x", self.beta_x)],
        }
    }
}

/// Modified Bessel functions I_0 … I_{n_max+1} at β from their power series.
fn bessel_i(beta: f64, n_max: usize) -> Vec<f64> {
    (0..=n_max + 1)
        .map(|n| {
            let mut term = (0.5 * beta).powi(n as i32) / (1..=n).map(|k| k as f64).product::<f64>();
            let mut sum = term;
            for k in 1..60 {
                term *= (0.25 * beta * beta) / (k as f64 * (k + n) as f64);
                sum += term;
            }
            sum
        })
        .collect()
}

/// ⟨cos(θ_x − θ_{x+1})⟩ on a periodic ring of `l` sites: (1/L) d ln Z/dβ with
/// Z ∝ Σ_{n∈Z} I_n(β)^L and I_n' = (I_{n−1} + I_{n+1})/2.
fn ring_link_energy(beta: f64, l: usize) -> f64 {
    let n_max = 20;
    let i = bessel_i(beta, n_max);
    let deriv = |n: usize| if n == 0 { i[1] } else { 0.5 * (i[n - 1] + i[n + 1]) };
    let weight = |n: usize| if n == 0 { 1.0 } else { 2.0 };
    let z: f64 = (0..=n_max).map(|n| weight(n) * i[n].powi(l as i32)).sum();
    let dz: f64 = (0..=n_max).map(|n| weight(n) * i[n].powi(l as i32 - 1) * deriv(n)).sum();
    dz / z
}

/// Per chain, the means over `measure` trajectories (after `therm`) of
/// (−S/(β_x V), exp(−ΔH)); every angle stays in (−π, π].
fn run(theory: Xy, params: HmcParams, n_chains: usize, therm: usize, measure: usize) -> Vec<[f64; 2]> {
    let setup = HmcSetup {
        theory: theory.clone(),
        params,
        cluster_updates: 0,
        seed: 11,
        start: Start::Mixed,
        chains: 0..n_chains,
    };
    let mut engine = CpuHmc::new(&setup);
    engine.advance(therm).unwrap();
    let res = engine.advance(measure).unwrap();
    for c in &engine.chains {
        assert!(c.phi.iter().all(|t| -PI < *t && *t <= PI), "an angle left (−π, π]");
    }
    let vb = theory.lattice.volume() as f64 * theory.beta_x;
    res.iter()
        .map(|rs| {
            let n = rs.len() as f64;
            [rs.iter().map(|r| -r.action / vb).sum::<f64>() / n, rs.iter().map(|r| (-r.delta_h).exp()).sum::<f64>() / n]
        })
        .collect()
}

/// Mean and standard error over independent chains of component `k`.
fn mean_err(per_chain: &[[f64; 2]], k: usize) -> (f64, f64) {
    let n = per_chain.len() as f64;
    let m = per_chain.iter().map(|c| c[k]).sum::<f64>() / n;
    let var = per_chain.iter().map(|c| (c[k] - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

const PARAMS: HmcParams = HmcParams { integrator: Integrator::Omelyan, n_md: 6, tau: 1.0, tau_jitter: 0.2 };

#[test]
fn force_is_minus_the_action_gradient() {
    let th = Xy { lattice: Lattice::new(4, 6), beta_t: 0.7, beta_x: 1.3 };
    let mut rng = latdiff::rng::stream(1, latdiff::rng::Domain::Misc, 0);
    let theta = th.hot_start(&mut rng);
    let mut d = vec![0.0; theta.len()];
    th.deriv(&theta, &mut d);
    for x in 0..theta.len() {
        let mut p = theta.clone();
        p[x] += 1e-6;
        let sp = th.action(&p);
        p[x] -= 2e-6;
        let fd = (sp - th.action(&p)) / 2e-6;
        assert!((fd - d[x]).abs() < 1e-7, "site {x}: {fd} vs {}", d[x]);
    }
}

/// Decoupled rings: the link energy is known exactly at every β; 4 standard errors.
#[test]
fn ring_link_energy_is_exact() {
    let beta = 1.0;
    let exact = ring_link_energy(beta, 8);
    // Against the infinite chain's I_1/I_0 = 0.44639: the ring's winding correction is visible.
    assert!((exact - 0.446_390_8).abs() > 1e-3 && (exact - 0.446_390_8).abs() < 0.01, "{exact}");
    let per_chain = run(Xy { lattice: Lattice::new(8, 8), beta_t: 0.0, beta_x: beta }, PARAMS, 16, 100, 400);
    let (m, e) = mean_err(&per_chain, 0);
    eprintln!("XY rings beta = {beta}: <cos> = {m:.5} ± {e:.5}, exact {exact:.5} ({:+.2} σ)", (m - exact) / e);
    assert!(e < 0.01, "error {e} too large for a meaningful check");
    assert!((m - exact).abs() < 4.0 * e, "<cos> = {m} ± {e}, exact {exact}");
}

/// The 2-D model: ⟨exp(−ΔH)⟩ = 1 within 4 standard errors, with ΔH far from zero.
#[test]
fn exp_minus_delta_h_is_one() {
    let params = HmcParams { integrator: Integrator::Leapfrog, n_md: 4, ..PARAMS };
    let per_chain = run(Xy { lattice: Lattice::new(8, 8), beta_t: 1.0, beta_x: 1.0 }, params, 16, 50, 300);
    let (m, e) = mean_err(&per_chain, 1);
    eprintln!("XY 8x8 beta = 1: <exp(-dH)> = {m:.5} ± {e:.5}");
    assert!(e > 1e-3, "ΔH too small for a meaningful check ({e})");
    assert!((m - 1.0).abs() < 4.0 * e, "<exp(-dH)> = {m} ± {e}");
}
