//! φ⁴'s levels in the one SMC replica loop ([`crate::diffusion::smc`]): analytic targets
//! (S_prior, the cumulant action, S) evaluated per particle, learnt ones in batches by the
//! model, the magnetisation's exact redraw, and MALA preconditioned with the level's
//! Gaussian covariance.

use rayon::prelude::*;

use crate::diffusion::phi4::levels::{Level, Levels};
use crate::diffusion::phi4::magnetisation;
use crate::diffusion::phi4::mala::{self, Particles, Preconditioner};
use crate::diffusion::sample::kernel::ReverseKernel;
use crate::diffusion::smc::adapt::Rejuvenation;
use crate::diffusion::smc::spread::Spread;
use crate::diffusion::smc::{learnt_in_chunks, SmcLevels, SmcSettings};
use crate::diffusion::ScoreModel;
use crate::rng::Stream;

impl SmcLevels for Levels {
    fn describe(&self) -> String {
        Levels::describe(self)
    }

    fn check(&self, settings: &SmcSettings) -> Result<(), String> {
        Levels::check(self, settings)
    }

    fn own_score(&self, k: usize, settings: &SmcSettings, phi: &[f64], out: &mut [f64]) -> bool {
        // A learnt level's own score is the network's.
        if self.sigma(k) > settings.network_below && !self.is_learnt(k) {
            self.surrogate_score(k, phi, out);
            return true;
        }
        false
    }

    fn reverse_step(
        &self,
        kernel: &ReverseKernel,
        k: usize,
        settings: &SmcSettings,
        phi: &mut [f64],
        score: &[f64],
        rngs: &mut [Stream],
        path: &mut [f64],
    ) {
        let v = self.lattice().volume();
        let before = settings.exact_magnetisation.then(|| magnetisation::before(phi, score, v));
        kernel.step(k, phi, score, rngs, path);
        if let Some(b) = before {
            let (delta, cov0) = kernel.zero_mode_step(k);
            let pot = self.potential(k - 1);
            magnetisation::redraw(pot, delta, cov0, &b, phi, path, rngs, || self.work());
        }
    }

    fn energies(
        &self,
        model: &dyn ScoreModel,
        k: usize,
        phi: &[f64],
        energy: &mut [f64],
        batch: usize,
    ) -> Result<(), String> {
        let v = self.lattice().volume();
        match self.level(k) {
            Level::Analytic(pot) => {
                energy
                    .par_iter_mut()
                    .zip(phi.par_chunks(v))
                    .for_each_init(|| self.work(), |ws, (u, p)| *u = pot.energy(p, ws));
                Ok(())
            }
            Level::Learnt { sigma } => learnt_in_chunks(model, self.lattice(), phi, sigma, energy, None, batch),
        }
    }

    fn rejuvenate(
        &self,
        model: &dyn ScoreModel,
        k: usize,
        step: f64,
        settings: &SmcSettings,
        (phi, energy, rngs): (&mut [f64], &mut [f64], &mut [Stream]),
        spread: &Spread,
    ) -> Result<Rejuvenation, String> {
        let mut grad = vec![0.0; phi.len()];
        let pre = Preconditioner::new(self.preconditioner(k));
        let particles = Particles { phi, energy, grad: &mut grad, rngs };
        let (fft, sweeps) = (self.fft(), settings.rejuvenate);
        Ok(match self.level(k) {
            Level::Analytic(pot) => mala::rejuvenate(pot, &pre, fft, step, sweeps, || self.work(), particles, spread),
            Level::Learnt { sigma } => {
                let lat = self.lattice();
                // ∇U = −s: the model's action and score come from one pass.
                let mut eval = |phi: &[f64], u: &mut [f64], grad: &mut [f64]| {
                    learnt_in_chunks(model, lat, phi, sigma, u, Some(&mut *grad), settings.batch)?;
                    grad.iter_mut().for_each(|g| *g = -*g);
                    Ok(())
                };
                mala::rejuvenate_batched(&mut eval, &pre, fft, step, sweeps, particles, spread)?
            }
        })
    }
}

#[cfg(test)]
#[path = "smc_tests.rs"]
mod tests;
