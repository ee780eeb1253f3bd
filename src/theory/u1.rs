//! Compact U(1) lattice gauge theory in two dimensions (Wilson action).
//!
//! Links U_μ(t, x) = e^{iθ_μ(t, x)}, angles in (−π, π], stored [2, L_t, L_x]: component
//! μ = 0 is the link in the t direction, μ = 1 the link in the x direction. The plaquette
//! angle at (t, x) is
//!   θ_P(t, x) = θ_0(t, x) + θ_1(t+1, x) − θ_0(t, x+1) − θ_1(t, x),
//! and S = −β Σ_P cos θ_P. The topological charge Q = (1/2π) Σ_P wrap(θ_P) is an integer
//! on the torus (the wrapped plaquette angles sum to 2π times the winding).

use super::manifold::wrap_angle;
use super::{Action, Theory, TheoryAttrs, Torus};
use crate::lattice::Lattice;
use crate::rng::Stream;
use rand::RngExt;
use std::f64::consts::PI;

#[derive(Clone, Copy, Debug)]
pub struct U1 {
    pub lattice: Lattice,
    pub beta: f64,
}

impl U1 {
    pub fn new(lattice: Lattice, beta: f64) -> Self {
        U1 { lattice, beta }
    }

    fn volume(&self) -> usize {
        self.lattice.volume()
    }

    /// Calls `f(site, θ_P)` for every plaquette, site = t·L_x + x, θ_P unwrapped.
    #[inline(always)]
    fn for_each_plaquette(&self, theta: &[f64], mut f: impl FnMut(usize, f64)) {
        let (lt, lx, v) = (self.lattice.lt, self.lattice.lx, self.volume());
        let (time, space) = theta.split_at(v);
        for t in 0..lt {
            let up = ((t + 1) % lt) * lx;
            for x in 0..lx {
                let s = t * lx + x;
                let right = t * lx + (x + 1) % lx;
                f(s, time[s] + space[up + x] - time[right] - space[s]);
            }
        }
    }

    /// Every plaquette angle, unwrapped, in site order.
    pub fn plaquette_angles(&self, theta: &[f64]) -> Vec<f64> {
        let mut p = vec![0.0; self.volume()];
        self.for_each_plaquette(theta, |s, a| p[s] = a);
        p
    }

    /// Q = (1/2π) Σ_P wrap(θ_P), before rounding (an integer up to rounding errors).
    pub fn topological_charge(&self, theta: &[f64]) -> f64 {
        let mut q = 0.0;
        self.for_each_plaquette(theta, |_, a| q += wrap_angle(a));
        q / (2.0 * PI)
    }

    /// (1/V) Σ_P cos θ_P.
    pub fn mean_plaquette(&self, theta: &[f64]) -> f64 {
        let mut c = 0.0;
        self.for_each_plaquette(theta, |_, a| c += a.cos());
        c / self.volume() as f64
    }

    /// A gauge transformation θ_μ(x) → θ_μ(x) + α(x) − α(x + μ̂), wrapped: every plaquette
    /// angle, and so every observable, is unchanged up to 2π.
    pub fn gauge_transform(&self, theta: &mut [f64], alpha: &[f64]) {
        let (lt, lx, v) = (self.lattice.lt, self.lattice.lx, self.volume());
        for t in 0..lt {
            for x in 0..lx {
                let s = t * lx + x;
                let up = ((t + 1) % lt) * lx + x;
                let right = t * lx + (x + 1) % lx;
                theta[s] = wrap_angle(theta[s] + alpha[s] - alpha[up]);
                theta[v + s] = wrap_angle(theta[v + s] + alpha[s] - alpha[right]);
            }
        }
    }
}

/// One unit of flux spread evenly, Q = 1: θ_1(t, x) = f t with f = 2π/V gives f on every
/// plaquette but the last row's, which the time links θ_0(L_t−1, x) = −f L_t x close.
pub fn one_flux(lat: Lattice) -> Vec<f64> {
    let (lt, lx, v) = (lat.lt, lat.lx, lat.volume());
    let mut theta = vec![0.0; 2 * v];
    let f = 2.0 * PI / v as f64;
    for t in 0..lt {
        for x in 0..lx {
            theta[v + t * lx + x] = wrap_angle(f * t as f64);
            if t == lt - 1 {
                theta[t * lx + x] = wrap_angle(-f * (lt * x) as f64);
            }
        }
    }
    theta
}

/// A flux move: θ → wrap(θ ± F) with F = [`one_flux`] (the sign from one uniform), accepted
/// with probability min(1, e^{U(θ) − U(θ')}) (a second uniform, always drawn). Adding F
/// adds 2π/V to every plaquette angle, so Q changes by ±1 (unless a plaquette wraps) at an
/// action cost of about β (2π)²/(2V) ⟨cos θ_P⟩: O(1) at any β once V is large, where
/// local updates need an improbable dislocation to change Q. The proposal is a torus
/// translation chosen with a symmetric sign, so the move leaves e^{−U} invariant for any
/// U on the torus. `u` holds U(θ) on entry and U of the result on exit; returns whether
/// the move was accepted.
pub fn flux_move(
    theta: &mut [f64],
    u: &mut f64,
    flux: &[f64],
    action: &dyn Fn(&[f64]) -> f64,
    rng: &mut Stream,
) -> bool {
    let sign = if rng.random::<f64>() < 0.5 { 1.0 } else { -1.0 };
    let proposal: Vec<f64> = theta.iter().zip(flux).map(|(t, f)| wrap_angle(t + sign * f)).collect();
    let u_new = action(&proposal);
    let log_alpha = *u - u_new;
    let prob = if log_alpha.is_nan() { 0.0 } else { log_alpha.min(0.0).exp() };
    let uniform: f64 = rng.random();
    let accepted = uniform < prob;
    if accepted {
        theta.copy_from_slice(&proposal);
        *u = u_new;
    }
    accepted
}

impl Action for U1 {
    fn lattice(&self) -> Lattice {
        self.lattice
    }

    fn action(&self, theta: &[f64]) -> f64 {
        -self.beta * self.mean_plaquette(theta) * self.volume() as f64
    }

    fn deriv(&self, theta: &[f64], dsdtheta: &mut [f64]) {
        self.for_each_link_deriv(theta, |i, d| dsdtheta[i] = d);
    }

    /// Fused: no ∂S/∂θ buffer, one pass over the links after the plaquettes.
    fn kick(&self, theta: &[f64], mom: &mut [f64], eps: f64) {
        self.for_each_link_deriv(theta, |i, d| mom[i] -= eps * d);
    }
}

impl U1 {
    /// Calls `f(link, ∂S/∂θ_link)` for every link, with
    /// ∂S/∂θ_0(t, x) = β[sin θ_P(t, x) − sin θ_P(t, x−1)] and
    /// ∂S/∂θ_1(t, x) = β[sin θ_P(t−1, x) − sin θ_P(t, x)]:
    /// each link enters two plaquettes, with opposite orientation.
    #[inline(always)]
    fn for_each_link_deriv(&self, theta: &[f64], mut f: impl FnMut(usize, f64)) {
        let (lt, lx, v) = (self.lattice.lt, self.lattice.lx, self.volume());
        let mut sin_p = vec![0.0; v];
        self.for_each_plaquette(theta, |s, a| sin_p[s] = self.beta * a.sin());
        for t in 0..lt {
            let down = ((t + lt - 1) % lt) * lx;
            for x in 0..lx {
                let s = t * lx + x;
                let left = t * lx + (x + lx - 1) % lx;
                f(s, sin_p[s] - sin_p[left]);
                f(v + s, sin_p[down + x] - sin_p[s]);
            }
        }
    }
}

impl Theory for U1 {
    type Manifold = Torus;

    fn manifold(&self) -> Torus {
        Torus
    }

    fn name(&self) -> &'static str {
        "u1"
    }

    fn dof_shape(&self, lattice: Lattice) -> Vec<usize> {
        vec![2, lattice.lt, lattice.lx]
    }

    /// The unit configuration (every θ = 0): Q = 0, S minimal.
    fn cold_start(&self, _rng: &mut Stream) -> Vec<f64> {
        vec![0.0; 2 * self.volume()]
    }

    /// Uniform angles: the Haar measure, β = 0.
    fn hot_start(&self, rng: &mut Stream) -> Vec<f64> {
        (0..2 * self.volume()).map(|_| wrap_angle(PI * (2.0 * rng.random::<f64>() - 1.0))).collect()
    }

    /// S and Q: the thermalisation check watches |Q|/V, so chains stuck in different
    /// topological sectors (ordered and random starts at large β) are reported.
    fn action_and_monitor(&self, theta: &[f64]) -> (f64, f64) {
        let (mut c, mut q) = (0.0, 0.0);
        self.for_each_plaquette(theta, |_, a| {
            c += a.cos();
            q += wrap_angle(a);
        });
        (-self.beta * c, q / (2.0 * PI))
    }

    fn monitor_name(&self) -> &'static str {
        "abs_q_density"
    }

    /// `n` flux moves ([`flux_move`]) against S: the topology changes that HMC's local
    /// dynamics make ever rarer as β grows. Returns the number accepted.
    fn cluster_flips(&self, field: &mut [f64], rng: &mut Stream, n: usize) -> Option<usize> {
        let flux = one_flux(self.lattice);
        let mut s = self.action(field);
        let action = |t: &[f64]| self.action(t);
        Some((0..n).filter(|_| flux_move(field, &mut s, &flux, &action, rng)).count())
    }

    fn integer_monitor_column(&self) -> Option<&'static str> {
        Some("topological_charge")
    }

    /// Charge conjugation θ → −θ leaves S invariant (and maps Q to −Q).
    fn reflect(&self, value: f32) -> f32 {
        -value
    }

    fn attrs(&self) -> TheoryAttrs {
        TheoryAttrs { labels: vec![("theory", "u1".into())], couplings: vec![("beta", self.beta)] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_links(lat: Lattice, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::stream(seed, crate::rng::Domain::Misc, 0);
        U1::new(lat, 1.0).hot_start(&mut rng)
    }

    /// deriv is ∂S/∂θ by central differences, on square and rectangular lattices.
    #[test]
    fn deriv_matches_finite_differences() {
        for (lat, beta) in [(Lattice::square(4), 2.5), (Lattice::new(3, 5), 0.7), (Lattice::new(2, 2), 1.3)] {
            let th = U1::new(lat, beta);
            let theta = random_links(lat, 5);
            let mut d = vec![0.0; theta.len()];
            th.deriv(&theta, &mut d);
            let h = 1e-5;
            for i in 0..theta.len() {
                let mut p = theta.clone();
                p[i] += h;
                let sp = th.action(&p);
                p[i] -= 2.0 * h;
                let fd = (sp - th.action(&p)) / (2.0 * h);
                assert!((fd - d[i]).abs() < 1e-7 * (1.0 + fd.abs()), "{lat} link {i}: fd {fd} vs {}", d[i]);
            }
            // The fused kick is mom − ε ∂S/∂θ.
            let mut mom: Vec<f64> = (0..theta.len()).map(|i| i as f64 * 0.1).collect();
            th.kick(&theta, &mut mom, 0.3);
            for (i, (m, di)) in mom.iter().zip(&d).enumerate() {
                assert!((m - (i as f64 * 0.1 - 0.3 * di)).abs() < 1e-14, "kick, link {i}");
            }
        }
    }

    /// Q is an integer for any configuration, S and Q are gauge invariant, and a
    /// configuration built to carry one unit of flux has Q = 1.
    #[test]
    fn charge_is_integer_and_gauge_invariant() {
        let lat = Lattice::new(6, 8);
        let th = U1::new(lat, 1.7);
        let mut rng = crate::rng::stream(3, crate::rng::Domain::Misc, 1);
        for seed in 0..20 {
            let mut theta = random_links(lat, seed);
            let (s, q) = th.action_and_monitor(&theta);
            assert!((q - q.round()).abs() < 1e-9, "Q = {q}");
            let alpha = th.hot_start(&mut rng);
            th.gauge_transform(&mut theta, &alpha[..lat.volume()]);
            let (s2, q2) = th.action_and_monitor(&theta);
            assert!((s - s2).abs() < 1e-9 * s.abs().max(1.0), "S {s} vs {s2}");
            assert_eq!(q.round(), q2.round());
        }
        // Constant field strength f = 2π/V (`one_flux`).
        let theta = one_flux(lat);
        let f = 2.0 * PI / lat.volume() as f64;
        let q = th.topological_charge(&theta);
        assert!((q - 1.0).abs() < 1e-9, "one unit of flux: Q = {q}");
        let plaq = th.plaquette_angles(&theta);
        assert!(plaq.iter().all(|&a| (wrap_angle(a) - f).abs() < 1e-9), "{plaq:?}");
    }

    #[test]
    fn cold_start_is_the_minimum_and_hot_start_wraps() {
        let lat = Lattice::square(4);
        let th = U1::new(lat, 3.0);
        let mut rng = crate::rng::stream(1, crate::rng::Domain::Misc, 2);
        assert_eq!(th.action(&th.cold_start(&mut rng)), -3.0 * 16.0);
        let hot = th.hot_start(&mut rng);
        assert_eq!(hot.len(), 32);
        assert!(hot.iter().all(|a| -PI < *a && *a <= PI));
    }

    #[test]
    fn attributes_round_trip() {
        use super::super::Couplings;
        let a = U1::new(Lattice::square(4), 2.25).attrs();
        let text = |k: &str| a.labels.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let number = |k: &str| a.couplings.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(Couplings::from_attrs(&text, &number), Ok(Couplings::U1 { beta: 2.25 }));
        assert!(Couplings::from_attrs(&text, &|_| None).unwrap_err().contains("'beta' missing"));
    }
}
