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
        let mut field = CpuField { theory, phi, mom, dt: tau / n_md as f64 };
        match self.run(&mut field, n_md, stop) {
            Ok(done) => done,
            Err(never) => match never {},
        }
    }

    /// The integrator's schedule, written once for every engine: `n_md` steps of
    /// (kick, drift) pairs in units of the step size, then the closing kick. A step's
    /// opening kick carries the previous step's closing one. `stop()` is asked before each
    /// step; false means the trajectory was abandoned mid-way.
    pub fn run<F: MdField + ?Sized>(
        &self,
        field: &mut F,
        n_md: usize,
        stop: &impl Fn() -> bool,
    ) -> Result<bool, F::Error> {
        let l = OMELYAN_LAMBDA;
        for step in 0..n_md {
            if stop() {
                return Ok(false);
            }
            match self {
                Integrator::Leapfrog => field.kick_drift(if step == 0 { 0.5 } else { 1.0 }, 1.0)?,
                Integrator::Omelyan => {
                    field.kick_drift(if step == 0 { l } else { 2.0 * l }, 0.5)?;
                    field.kick_drift(1.0 - 2.0 * l, 0.5)?;
                }
            }
        }
        field.kick(match self {
            Integrator::Leapfrog => 0.5,
            Integrator::Omelyan => l,
        })?;
        Ok(true)
    }
}

/// What an HMC engine supplies to the integrators: the two MD updates of its fields (one
/// chain's on the CPU, every chain's at once on a device, each chain with its own step
/// size dt). Coefficients are in units of dt.
pub trait MdField {
    type Error;
    /// p += kick·dt·F(φ), then φ moves along p for drift·dt (on the theory's manifold).
    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<(), Self::Error>;
    /// p += kick·dt·F(φ).
    fn kick(&mut self, kick: f64) -> Result<(), Self::Error>;
}

/// One chain's field and momenta on the CPU.
struct CpuField<'a, T: Theory> {
    theory: &'a T,
    phi: &'a mut [f64],
    mom: &'a mut [f64],
    dt: f64,
}

impl<T: Theory> MdField for CpuField<'_, T> {
    type Error = std::convert::Infallible;
    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<(), Self::Error> {
        self.theory.kick(self.phi, self.mom, kick * self.dt);
        self.theory.manifold().drift(self.phi, self.mom, drift * self.dt);
        Ok(())
    }
    fn kick(&mut self, kick: f64) -> Result<(), Self::Error> {
        self.theory.kick(self.phi, self.mom, kick * self.dt);
        Ok(())
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
