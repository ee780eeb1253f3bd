//! Rejuvenation: preconditioned Metropolis-adjusted Langevin (MALA) moves that leave one
//! level's target π ∝ exp(−U) invariant, so that particles duplicated by resampling separate.
//!
//! Proposal with the diagonal (momentum-space) preconditioner C and step ε:
//!   φ' = φ − ε C ∇U(φ) + √(2ε) C^{1/2} ξ,   ξ ~ N(0, I),
//! accepted with probability min(1, α),
//!   log α = U(φ) − U(φ') + log q(φ | φ') − log q(φ' | φ),
//!   log q(y | x) = −(1/4ε) ‖y − x + ε C ∇U(x)‖²_{C⁻¹}  (+ a constant that cancels),
//! where the forward term is exactly ½ ξᵀξ (C^{1/2} is symmetric). With C the Gaussian
//! covariance of π, every momentum mode moves at the same rate.
//!
//! Each particle draws its ξ and its uniform from its own stream, so a sweep does not depend
//! on threads or batching. A learnt level's U comes from the model in batches
//! ([`rejuvenate_batched`]): every particle proposes, the proposals are evaluated together,
//! then each is tested, with each particle's arithmetic and draws those of [`sweep`]. The step size is shared by the particles of a replica and adapted
//! between sweeps towards [`TARGET_ACCEPTANCE`] from their mean acceptance probability
//! (summed in particle order): a population adaptation, standard in SMC.

use rand::RngExt;
use rayon::prelude::*;

use crate::diffusion::phi4::levels::LevelPotential;
use crate::diffusion::phi4::prior::PriorWork;
use crate::diffusion::sample::kernel::normals;
use crate::diffusion::smc::adapt::{adapted, Rejuvenation};
use crate::diffusion::smc::spread::Spread;
use crate::lattice::fft::{Fft2, Fft2Work};
use crate::rng::Stream;

/// The preconditioner C(p) and its square root.
pub struct Preconditioner {
    c: Vec<f64>,
    sqrt_c: Vec<f64>,
}

impl Preconditioner {
    pub fn new(c: Vec<f64>) -> Self {
        let sqrt_c = c.iter().map(|x| x.sqrt()).collect();
        Preconditioner { c, sqrt_c }
    }
}

/// Particles at one level: configurations, U of each, ∇U of each.
pub struct Particles<'a> {
    pub phi: &'a mut [f64],
    pub energy: &'a mut [f64],
    pub grad: &'a mut [f64],
    pub rngs: &'a mut [Stream],
}

/// Per-thread buffers of one particle's step besides its potential's.
struct Scratch {
    fft: Fft2Work,
    z: Vec<f64>,
    noise: Vec<f64>,
    r: Vec<f64>,
}

impl Scratch {
    fn new(fft: &Fft2, v: usize) -> Self {
        Scratch { fft: fft.work(), z: vec![0.0; v], noise: vec![0.0; v], r: vec![0.0; v] }
    }
}

struct Work {
    prior: PriorWork,
    scratch: Scratch,
    proposal: Vec<f64>,
    grad: Vec<f64>,
}

/// One MALA step of every particle with step `eps`; returns each one's acceptance
/// probability min(1, α) (0 for a NaN α).
pub fn sweep(
    pot: LevelPotential<'_>,
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    new_prior_work: impl Fn() -> PriorWork + Sync + Send,
    p: Particles<'_>,
) -> Vec<f64> {
    let v = pre.c.len();
    let new_work =
        || Work { prior: new_prior_work(), scratch: Scratch::new(fft, v), proposal: vec![0.0; v], grad: vec![0.0; v] };
    let mut accept = vec![0.0; p.energy.len()];
    p.phi
        .par_chunks_mut(v)
        .zip(p.grad.par_chunks_mut(v))
        .zip(p.energy.par_iter_mut())
        .zip(p.rngs.par_iter_mut())
        .zip(accept.par_iter_mut())
        .for_each_init(new_work, |w, ((((phi, grad), u), rng), a)| {
            *a = step(pot, pre, fft, eps, phi, grad, u, rng, w);
        });
    accept
}

/// One MALA step of one particle (module docs); returns min(1, α).
#[allow(clippy::too_many_arguments)]
fn step(
    pot: LevelPotential<'_>,
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    phi: &mut [f64],
    grad: &mut [f64],
    u: &mut f64,
    rng: &mut Stream,
    w: &mut Work,
) -> f64 {
    let zz = propose(pre, fft, eps, phi, grad, &mut w.proposal, rng, &mut w.scratch);
    let u_new = pot.energy(&w.proposal, &mut w.prior);
    pot.gradient(&w.proposal, &mut w.grad, &mut w.prior);
    let to = Proposal { phi: &w.proposal, grad: &w.grad, energy: u_new, zz };
    accept(pre, fft, eps, &to, phi, grad, u, rng, &mut w.scratch)
}

/// proposal = φ − ε C ∇U(φ) + √(2ε) C^{1/2} ξ with ξ from `rng`; returns ξᵀξ.
#[allow(clippy::too_many_arguments)]
fn propose(
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    phi: &[f64],
    grad: &[f64],
    proposal: &mut [f64],
    rng: &mut Stream,
    w: &mut Scratch,
) -> f64 {
    let zz = normals(rng, &mut w.z);
    fft.color_noise(&pre.sqrt_c, &w.z, &mut w.noise, &mut w.fft);
    fft.apply_diag(&pre.c, grad, proposal, &mut w.fft);
    let a = (2.0 * eps).sqrt();
    for ((y, x), n) in proposal.iter_mut().zip(phi.iter()).zip(&w.noise) {
        *y = x - eps * *y + a * n;
    }
    zz
}

/// A particle's proposal with U, ∇U there and the ξᵀξ that drew it.
struct Proposal<'a> {
    phi: &'a [f64],
    grad: &'a [f64],
    energy: f64,
    zz: f64,
}

/// The Metropolis–Hastings test of `to` (module docs): on acceptance φ, ∇U and U become the
/// proposal's. One uniform per step whatever happens: the stream's position never depends
/// on α. Returns min(1, α) (0 for a NaN α).
#[allow(clippy::too_many_arguments)]
fn accept(
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    to: &Proposal<'_>,
    phi: &mut [f64],
    grad: &mut [f64],
    u: &mut f64,
    rng: &mut Stream,
    w: &mut Scratch,
) -> f64 {
    // r = φ − φ' + ε C ∇U(φ'): the reverse move's noise, scaled by √(2ε) C^{1/2}.
    fft.apply_diag(&pre.c, to.grad, &mut w.r, &mut w.fft);
    for ((r, x), y) in w.r.iter_mut().zip(phi.iter()).zip(to.phi) {
        *r = x - y + eps * *r;
    }
    let reverse = fft.inv_quad_form(&pre.c, &w.r, &mut w.fft) / (4.0 * eps);
    let log_alpha = *u - to.energy - reverse + 0.5 * to.zz;
    let prob = if log_alpha.is_nan() { 0.0 } else { log_alpha.min(0.0).exp() };
    let uniform: f64 = rng.random();
    if uniform < prob {
        phi.copy_from_slice(to.phi);
        grad.copy_from_slice(to.grad);
        *u = to.energy;
    }
    prob
}

/// ∇U of every particle (before the first sweep of a level).
pub fn gradients(
    pot: LevelPotential<'_>,
    v: usize,
    new_prior_work: impl Fn() -> PriorWork + Sync + Send,
    phi: &[f64],
    grad: &mut [f64],
) {
    grad.par_chunks_mut(v).zip(phi.par_chunks(v)).for_each_init(new_prior_work, |ws, (g, p)| pot.gradient(p, g, ws));
}

/// `sweeps` MALA steps of every particle, the step size `eps` adapted after each.
/// `p.energy` must hold U of each particle on entry; `p.grad` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn rejuvenate(
    pot: LevelPotential<'_>,
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    sweeps: usize,
    new_prior_work: impl Fn() -> PriorWork + Sync + Send + Copy,
    p: Particles<'_>,
    spread: &Spread,
) -> Rejuvenation {
    let v = pre.c.len();
    gradients(pot, v, new_prior_work, p.phi, p.grad);
    let one = |eps: f64| {
        let here = Particles { phi: &mut *p.phi, energy: &mut *p.energy, grad: &mut *p.grad, rngs: &mut *p.rngs };
        Ok(sweep(pot, pre, fft, eps, new_prior_work, here))
    };
    adapted(eps, sweeps, spread, one).unwrap_or_else(|e: std::convert::Infallible| match e {})
}

/// U and ∇U of a set of configurations ([B, L_t, L_x] → [B], [B, L_t, L_x]), evaluated
/// together: a learnt action, which the model evaluates in batches.
pub type BatchPotential<'a> = dyn FnMut(&[f64], &mut [f64], &mut [f64]) -> Result<(), String> + 'a;

/// [`rejuvenate`] on a level whose U comes in batches (`eval`): each sweep proposes for
/// every particle, evaluates all proposals at once, then tests each. A particle's
/// arithmetic and draws are those of [`sweep`]'s step.
pub fn rejuvenate_batched(
    eval: &mut BatchPotential<'_>,
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    sweeps: usize,
    p: Particles<'_>,
    spread: &Spread,
) -> Result<Rejuvenation, String> {
    let (n, v) = (p.energy.len(), pre.c.len());
    // U of the particles is known; their ∇U comes with a fresh U, which is the same.
    eval(p.phi, &mut vec![0.0; n], p.grad)?;
    let mut proposed =
        Proposals { phi: vec![0.0; n * v], grad: vec![0.0; n * v], energy: vec![0.0; n], zz: vec![0.0; n] };
    let one = |eps: f64| {
        let here = Particles { phi: &mut *p.phi, energy: &mut *p.energy, grad: &mut *p.grad, rngs: &mut *p.rngs };
        batched_sweep(eval, pre, fft, eps, &mut proposed, here)
    };
    adapted(eps, sweeps, spread, one)
}

/// Every particle's proposal of one batched sweep.
struct Proposals {
    phi: Vec<f64>,
    grad: Vec<f64>,
    energy: Vec<f64>,
    zz: Vec<f64>,
}

fn batched_sweep(
    eval: &mut BatchPotential<'_>,
    pre: &Preconditioner,
    fft: &Fft2,
    eps: f64,
    to: &mut Proposals,
    p: Particles<'_>,
) -> Result<Vec<f64>, String> {
    let v = pre.c.len();
    let scratch = || Scratch::new(fft, v);
    to.phi
        .par_chunks_mut(v)
        .zip(p.phi.par_chunks(v))
        .zip(p.grad.par_chunks(v))
        .zip(p.rngs.par_iter_mut())
        .zip(to.zz.par_iter_mut())
        .for_each_init(scratch, |w, ((((y, phi), grad), rng), zz)| {
            *zz = propose(pre, fft, eps, phi, grad, y, rng, w);
        });
    eval(&to.phi, &mut to.energy, &mut to.grad)?;
    let mut accepted = vec![0.0; p.energy.len()];
    p.phi
        .par_chunks_mut(v)
        .zip(p.grad.par_chunks_mut(v))
        .zip(p.energy.par_iter_mut())
        .zip(p.rngs.par_iter_mut())
        .zip(accepted.par_iter_mut())
        .enumerate()
        .for_each_init(scratch, |w, (i, ((((phi, grad), u), rng), a))| {
            let prop = Proposal {
                phi: &to.phi[i * v..][..v],
                grad: &to.grad[i * v..][..v],
                energy: to.energy[i],
                zz: to.zz[i],
            };
            *a = accept(pre, fft, eps, &prop, phi, grad, u, rng, w);
        });
    Ok(accepted)
}
