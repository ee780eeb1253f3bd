//! The MALA step size of a replica's rejuvenation, shared by every theory's moves: one step
//! for all particles of a replica, adapted between sweeps towards [`TARGET_ACCEPTANCE`]
//! from their mean acceptance probability (summed in particle order): a population
//! adaptation, standard in SMC.

use crate::diffusion::smc::spread::Spread;

/// The mean acceptance probability the step size is steered to (about the optimum of MALA
/// in many dimensions, 0.574).
pub const TARGET_ACCEPTANCE: f64 = 0.6;
/// ε never exceeds this: at ε = 1 the preconditioned drift lands on the Gaussian's mean.
pub const MAX_STEP: f64 = 1.0;
const MIN_STEP: f64 = 1e-6;
/// ε ← ε exp(ADAPT_RATE (acceptance − target)) after each sweep.
const ADAPT_RATE: f64 = 2.0;

/// The first step size of a replica: MALA's optimal step falls like V^{−1/3}.
pub fn initial_step(volume: usize) -> f64 {
    (volume as f64).powf(-1.0 / 3.0).min(MAX_STEP)
}

/// The step after a sweep with mean acceptance probability `acceptance`.
pub fn adapt_step(eps: f64, acceptance: f64) -> f64 {
    if !acceptance.is_finite() {
        return (eps * 0.1).max(MIN_STEP);
    }
    (eps * (ADAPT_RATE * (acceptance - TARGET_ACCEPTANCE)).exp()).clamp(MIN_STEP, MAX_STEP)
}

/// Result of a rejuvenation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rejuvenation {
    /// Mean acceptance probability over the particles and sweeps.
    pub acceptance: f64,
    /// The step size after the last adaptation (what the next level starts from).
    pub step: f64,
}

/// `sweeps` calls of `sweep(ε)` (each returning this rank's particles' acceptance
/// probabilities), ε adapted after each from their mean over the whole replica. Shared by
/// φ⁴'s and the torus's rejuvenation.
pub fn adapted<E>(
    eps: f64,
    sweeps: usize,
    spread: &Spread,
    mut sweep: impl FnMut(f64) -> Result<Vec<f64>, E>,
) -> Result<Rejuvenation, E> {
    let (mut eps, mut total) = (eps, 0.0);
    for _ in 0..sweeps {
        let probs = sweep(eps)?;
        // In particle order: the same sum on any number of threads and ranks.
        let mean = spread.mean(&probs);
        total += mean;
        eps = adapt_step(eps, mean);
    }
    let acceptance = if sweeps == 0 { f64::NAN } else { total / sweeps as f64 };
    Ok(Rejuvenation { acceptance, step: eps })
}
