//! Symplectic, reversible integrators for H = p²/2 + S(φ).
//!
//! They only know a theory's `kick` and its manifold's `drift`; any theory (φ⁴ now, gauge
//! fields later) can be integrated by any of them.

use crate::theory::{Manifold, Theory};

/// The integrator is named in the options, so its enum is config's (plain data); its
/// algorithm is here.
pub use crate::config::Integrator;

/// Omelyan, Mryglod, Folk (2003) 2MN parameter, minimising the norm of the leading error.
pub const OMELYAN_LAMBDA: f64 = 0.193_183_327_503_783_6;

impl Integrator {
    /// Force evaluations per trajectory of `n_md` steps (for cost accounting).
    pub fn force_evals(&self, n_md: usize) -> usize {
        match self {
            Integrator::Leapfrog => n_md + 1,
            Integrator::Omelyan => 2 * n_md + 1,
        }
    }

    /// Integrates (φ, p) over time `tau` in `n_md` steps. Consecutive steps' boundary kicks
    /// are merged, so leapfrog costs n_md + 1 force evaluations and Omelyan 2 n_md + 1.
    pub fn integrate<T: Theory>(&self, theory: &T, phi: &mut [f64], mom: &mut [f64], n_md: usize, tau: f64) {
        self.integrate_until(theory, phi, mom, n_md, tau, &|| false);
    }

    /// As `integrate`, but gives up (returning false, with φ and p mid-trajectory) as soon
    /// as `stop()` says so, checked every step: one trajectory of a huge lattice or of very
    /// many steps must not hold a stop signal for minutes.
    pub fn integrate_until<T: Theory>(
        &self,
        theory: &T,
        phi: &mut [f64],
        mom: &mut [f64],
        n_md: usize,
        tau: f64,
        stop: &impl Fn() -> bool,
    ) -> bool {
        let dt = tau / n_md as f64;
        let m = theory.manifold();
        let drift = |phi: &mut [f64], mom: &[f64], dt: f64| m.drift(phi, mom, dt);
        match self {
            Integrator::Leapfrog => {
                theory.kick(phi, mom, 0.5 * dt);
                for step in 0..n_md {
                    if stop() {
                        return false;
                    }
                    drift(phi, mom, dt);
                    let eps = if step + 1 == n_md { 0.5 * dt } else { dt };
                    theory.kick(phi, mom, eps);
                }
            }
            Integrator::Omelyan => {
                let l = OMELYAN_LAMBDA;
                theory.kick(phi, mom, l * dt);
                for step in 0..n_md {
                    if stop() {
                        return false;
                    }
                    drift(phi, mom, 0.5 * dt);
                    theory.kick(phi, mom, (1.0 - 2.0 * l) * dt);
                    drift(phi, mom, 0.5 * dt);
                    let eps = if step + 1 == n_md { l * dt } else { 2.0 * l * dt };
                    theory.kick(phi, mom, eps);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::Lattice;
    use crate::theory::{Action, Parametrisation, Phi4};
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn setup(seed: u64) -> (Phi4, Vec<f64>, Vec<f64>) {
        let lat = Lattice::new(8, 12);
        let th = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 });
        let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let phi = (0..lat.volume()).map(|_| StandardNormal.sample(&mut r)).collect();
        let mom = (0..lat.volume()).map(|_| StandardNormal.sample(&mut r)).collect();
        (th, phi, mom)
    }

    fn hamiltonian(th: &Phi4, phi: &[f64], mom: &[f64]) -> f64 {
        th.action(phi) + 0.5 * mom.iter().map(|p| p * p).sum::<f64>()
    }

    /// Forward, flip momenta, forward again must return to the start: the property
    /// that makes the HMC proposal symmetric.
    #[test]
    fn reversible() {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let (th, phi0, mom0) = setup(11);
            let (mut phi, mut mom) = (phi0.clone(), mom0.clone());
            integ.integrate(&th, &mut phi, &mut mom, 17, 1.3);
            assert!(phi.iter().zip(&phi0).any(|(a, b)| (a - b).abs() > 1e-3), "trajectory moved");
            mom.iter_mut().for_each(|p| *p = -*p);
            integ.integrate(&th, &mut phi, &mut mom, 17, 1.3);
            for (a, b) in phi.iter().zip(&phi0) {
                assert!((a - b).abs() < 1e-10, "{integ:?}: {a} vs {b}");
            }
            for (a, b) in mom.iter().zip(&mom0) {
                assert!((a + b).abs() < 1e-10, "{integ:?}: momentum {a} vs {b}");
            }
        }
    }

    fn rms_dh(integ: Integrator, n_md: usize) -> f64 {
        let mut acc = 0.0;
        let n = 20;
        for s in 0..n {
            let (th, mut phi, mut mom) = setup(100 + s);
            let h0 = hamiltonian(&th, &phi, &mom);
            integ.integrate(&th, &mut phi, &mut mom, n_md, 1.0);
            acc += (hamiltonian(&th, &phi, &mom) - h0).powi(2);
        }
        (acc / n as f64).sqrt()
    }

    /// A raised stop gives up within one step; an unraised one changes nothing.
    #[test]
    fn stop_is_checked_every_step() {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let (th, phi0, mom0) = setup(5);
            let (mut a, mut pa) = (phi0.clone(), mom0.clone());
            integ.integrate(&th, &mut a, &mut pa, 13, 0.7);
            let (mut b, mut pb) = (phi0.clone(), mom0.clone());
            assert!(integ.integrate_until(&th, &mut b, &mut pb, 13, 0.7, &|| false));
            assert_eq!((a, pa), (b, pb));
            let steps = std::cell::Cell::new(0);
            let stop = || {
                steps.set(steps.get() + 1);
                steps.get() > 3
            };
            let (mut c, mut pc) = (phi0.clone(), mom0.clone());
            assert!(!integ.integrate_until(&th, &mut c, &mut pc, usize::MAX, 0.7, &stop));
            assert_eq!(steps.get(), 4, "{integ:?}");
        }
    }

    /// ⟨ΔH²⟩^{1/2} ∝ dt² for both second-order schemes, with a smaller constant for Omelyan.
    #[test]
    fn energy_error_scales_as_dt_squared() {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let (e1, e2) = (rms_dh(integ, 20), rms_dh(integ, 40));
            let ratio = e1 / e2;
            assert!((ratio - 4.0).abs() < 0.4, "{integ:?}: halving dt reduced ΔH by {ratio}, not 4");
        }
        let (lf, om) = (rms_dh(Integrator::Leapfrog, 40), rms_dh(Integrator::Omelyan, 40));
        assert!(om < 0.5 * lf, "omelyan {om} not clearly better than leapfrog {lf}");
    }
}
