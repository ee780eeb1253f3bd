//! Where a field lives, and how molecular dynamics and the forward noise move on it.
//!
//! HMC and the integrators are written against [`Manifold`]: momenta, kinetic energy and
//! the drift (field += momenta · dt, followed by whatever keeps the field on the manifold).
//! `Flat` is R^n (φ⁴); `Torus` holds angles in (−π, π] (XY / O(2) spins now, U(1) link
//! angles). A Lie group updates by the exponential map instead (`su2::Su2Links`: SU(2)
//! links, momenta in su(2)).

use crate::rng::Stream;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

pub trait Manifold: Copy + Send + Sync {
    /// Momenta for a field of `field_len` stored values: as many on R^n and the torus; a
    /// group stored in more coordinates than its dimension (SU(2): 4 per link, 3 momenta)
    /// has fewer. `Action::kick` and `drift` use this layout.
    fn momentum_len(&self, field_len: usize) -> usize {
        field_len
    }

    /// Fresh momenta from the kinetic term's Gaussian, one draw per entry in order.
    fn sample_momenta(&self, rng: &mut Stream, mom: &mut [f64]) {
        for p in mom.iter_mut() {
            *p = StandardNormal.sample(rng);
        }
    }

    /// ½ Σ p² (the metric is the identity on R^n and on the flat torus).
    fn kinetic(&self, mom: &[f64]) -> f64 {
        0.5 * mom.iter().map(|p| p * p).sum::<f64>()
    }

    /// Moves the field along the momenta for time `dt`.
    fn drift(&self, field: &mut [f64], mom: &[f64], dt: f64);

    /// log p(x | x0, σ): the forward-noise kernel's density (a Gaussian of width σ per
    /// coordinate, wrapped on the torus), which the diffusion objective's weights need.
    fn noise_log_density(&self, x: &[f64], x0: &[f64], sigma: f64) -> f64;
}

/// R^n: φ += p · dt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flat;

/// Angles in (−π, π]: additive drift, then wrapped back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Torus;

fn gaussian_log_density(d: f64, sigma: f64) -> f64 {
    -0.5 * (d / sigma).powi(2) - (sigma * (2.0 * PI).sqrt()).ln()
}

impl Manifold for Flat {
    #[inline]
    fn drift(&self, field: &mut [f64], mom: &[f64], dt: f64) {
        for (f, p) in field.iter_mut().zip(mom) {
            *f += dt * p;
        }
    }

    fn noise_log_density(&self, x: &[f64], x0: &[f64], sigma: f64) -> f64 {
        x.iter().zip(x0).map(|(a, b)| gaussian_log_density(a - b, sigma)).sum()
    }
}

/// The representative of `theta` in (−π, π].
pub fn wrap_angle(theta: f64) -> f64 {
    let r = theta - 2.0 * PI * (theta / (2.0 * PI)).round();
    if r <= -PI {
        r + 2.0 * PI
    } else if r > PI {
        r - 2.0 * PI
    } else {
        r
    }
}

/// The wrapped Gaussian of width σ at angle difference d: a sum over images for narrow
/// kernels, its Fourier series (1 + 2 Σ_n e^{−n²σ²/2} cos nd)/2π for wide ones. At the
/// switch σ = 1.5 the neglected terms of either are below e^{−100}.
pub fn wrapped_gaussian(d: f64, sigma: f64) -> f64 {
    if sigma < 1.5 {
        (-4..=4).map(|k| gaussian_log_density(d + 2.0 * PI * k as f64, sigma).exp()).sum()
    } else {
        let modes: f64 = (1..=10).map(|n| (-0.5 * (n as f64 * sigma).powi(2)).exp() * (n as f64 * d).cos()).sum();
        (1.0 + 2.0 * modes) / (2.0 * PI)
    }
}

/// d/dd log of [`wrapped_gaussian`]: the score of the wrapped forward-noise kernel at angle
/// difference d (the denoising target on the torus). The same two series, differentiated
/// term by term; it is odd in d, vanishes at d = ±π and tends to −d/σ² for σ ≪ π.
pub fn wrapped_gaussian_score(d: f64, sigma: f64) -> f64 {
    if sigma < 1.5 {
        let (mut num, mut den) = (0.0, 0.0);
        // Relative to the nearest image, so that narrow kernels do not underflow.
        for k in -4..=4 {
            let a = d + 2.0 * PI * k as f64;
            let g = (-0.5 * (a * a - d * d) / (sigma * sigma)).exp();
            num -= a / (sigma * sigma) * g;
            den += g;
        }
        num / den
    } else {
        let (mut num, mut den) = (0.0, 1.0);
        for n in 1..=10 {
            let (n, q) = (n as f64, (-0.5 * (n as f64 * sigma).powi(2)).exp());
            let (s, c) = (n * d).sin_cos();
            num -= 2.0 * n * q * s;
            den += 2.0 * q * c;
        }
        num / den
    }
}

/// log of [`wrapped_gaussian`], without underflow for |d| ≫ σ (the narrow series summed
/// relative to its largest term).
pub fn wrapped_gaussian_log(d: f64, sigma: f64) -> f64 {
    if sigma < 1.5 {
        let l: Vec<f64> = (-4..=4).map(|k| gaussian_log_density(d + 2.0 * PI * k as f64, sigma)).collect();
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    } else {
        wrapped_gaussian(d, sigma).ln()
    }
}

impl Manifold for Torus {
    #[inline]
    fn drift(&self, field: &mut [f64], mom: &[f64], dt: f64) {
        for (f, p) in field.iter_mut().zip(mom) {
            *f = wrap_angle(*f + dt * p);
        }
    }

    fn noise_log_density(&self, x: &[f64], x0: &[f64], sigma: f64) -> f64 {
        x.iter().zip(x0).map(|(a, b)| wrapped_gaussian_log(wrap_angle(a - b), sigma)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torus_drift_wraps_into_the_half_open_interval() {
        let mut theta = vec![3.0, -3.0, 0.5, PI];
        Torus.drift(&mut theta, &[1.0, -1.0, 0.25, 0.0], 0.5);
        let expect = [3.5 - 2.0 * PI, -3.5 + 2.0 * PI, 0.625, PI];
        for (a, b) in theta.iter().zip(expect) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
        assert_eq!(wrap_angle(-PI), PI);
        assert!((wrap_angle(7.0 * PI + 0.1) - (-PI + 0.1)).abs() < 1e-12);
        // A long drift lands where the unwrapped one does, modulo 2π.
        let mut t = vec![0.3];
        for _ in 0..1000 {
            Torus.drift(&mut t, &[1.7], 0.01);
        }
        assert!((t[0] - wrap_angle(0.3 + 17.0)).abs() < 1e-11, "{}", t[0]);
    }

    /// The score is the derivative of the log-density (central differences), on both
    /// branches and at the switch.
    #[test]
    fn wrapped_score_is_the_log_density_derivative() {
        for sigma in [0.05f64, 0.3, 1.0, 1.5 - 1e-9, 1.5, 2.5] {
            for d in [-3.1, -2.0, -0.4, 0.0, 0.01, 1.3, 3.0] {
                let h = 1e-5 * sigma.min(1.0);
                let fd = (wrapped_gaussian(d + h, sigma).ln() - wrapped_gaussian(d - h, sigma).ln()) / (2.0 * h);
                if !fd.is_finite() {
                    // The density underflows there (σ ≪ |d|); the score does not.
                    assert!(sigma < 0.1 && wrapped_gaussian_score(d, sigma).is_finite());
                    continue;
                }
                let s = wrapped_gaussian_score(d, sigma);
                assert!((s - fd).abs() < 1e-6 * (1.0 + fd.abs()), "σ = {sigma}, d = {d}: {s} vs {fd}");
            }
        }
        assert!((wrapped_gaussian_score(0.01, 0.05) + 0.01 / 0.0025).abs() < 1e-9);
        assert!(wrapped_gaussian_score(PI, 0.7).abs() < 1e-12);
    }

    #[test]
    fn flat_drift_is_additive() {
        let mut phi = vec![1.0, -2.0];
        Flat.drift(&mut phi, &[4.0, 1.0], 0.25);
        assert_eq!(phi, vec![2.0, -1.75]);
    }

    /// Momenta are unit Gaussians: ⟨p⟩ = 0, ⟨p²⟩ = 1, ⟨p⁴⟩ = 3 within 4 standard errors,
    /// and ⟨kinetic⟩ = n/2.
    #[test]
    fn momenta_are_unit_gaussians() {
        let mut rng = crate::rng::stream(7, crate::rng::Domain::Misc, 0);
        let n = 200_000;
        let mut p = vec![0.0; n];
        Torus.sample_momenta(&mut rng, &mut p);
        let m = |k: i32| p.iter().map(|x| x.powi(k)).sum::<f64>() / n as f64;
        let se = |var: f64| (var / n as f64).sqrt();
        assert!(m(1).abs() < 4.0 * se(1.0), "<p> = {}", m(1));
        assert!((m(2) - 1.0).abs() < 4.0 * se(2.0), "<p²> = {}", m(2));
        assert!((m(4) - 3.0).abs() < 4.0 * se(96.0), "<p⁴> = {}", m(4));
        let k = Flat.kinetic(&p);
        assert!((k - 0.5 * n as f64).abs() < 4.0 * (0.5 * n as f64).sqrt(), "kinetic {k}");
    }

    /// Both densities integrate to one over their space (trapezoid rule, one coordinate);
    /// the wrapped one is the flat one for σ ≪ π and uniform for σ ≫ π.
    #[test]
    fn noise_densities_are_normalised() {
        let integrate = |m: &dyn Fn(f64) -> f64, a: f64, b: f64| {
            let n = 20_000;
            let h = (b - a) / n as f64;
            (0..=n).map(|i| m(a + i as f64 * h) * if i == 0 || i == n { 0.5 } else { 1.0 }).sum::<f64>() * h
        };
        for sigma in [0.1, 1.0, 1.5 - 1e-9, 1.5, 3.0] {
            let t = |x: f64| Torus.noise_log_density(&[x], &[2.9], sigma).exp();
            assert!((integrate(&t, -PI, PI) - 1.0).abs() < 1e-9, "torus σ = {sigma}");
            let f = |x: f64| Flat.noise_log_density(&[x], &[2.9], sigma).exp();
            assert!((integrate(&f, 2.9 - 12.0 * sigma, 2.9 + 12.0 * sigma) - 1.0).abs() < 1e-9, "flat σ = {sigma}");
        }
        let (a, b) = (Torus.noise_log_density(&[0.1], &[0.0], 0.05), Flat.noise_log_density(&[0.1], &[0.0], 0.05));
        assert!((a - b).abs() < 1e-12);
        // The log form agrees where the density does not underflow, and is finite where it does.
        for (d, s) in [(0.3, 0.2), (-2.9, 1.0), (3.1, 1.49)] {
            assert!((wrapped_gaussian_log(d, s) - wrapped_gaussian(d, s).ln()).abs() < 1e-12);
        }
        let far = wrapped_gaussian_log(3.0, 0.01);
        assert!((far - gaussian_log_density(3.0, 0.01)).abs() < 1e-9 * far.abs(), "{far}");
        let (below, above) = (wrapped_gaussian(2.0, 1.5 - 1e-12), wrapped_gaussian(2.0, 1.5));
        assert!((below - above).abs() < 1e-12, "the two series disagree at the switch: {below} vs {above}");
        let u = Torus.noise_log_density(&[2.0], &[-1.0], 20.0);
        assert!((u + (2.0 * PI).ln()).abs() < 1e-9, "{u}");
    }
}
