//! The pc sampler's corrector for a model with a learnt action: Metropolis-adjusted
//! Langevin (MALA) steps that leave π ∝ exp(−U) exactly invariant, U = S_θ(·, σ_{k−1}).
//!
//! The step size is Song et al.'s (2021) signal-to-noise rule ε = 2 (r ‖z‖/‖s‖)² with ‖z‖²
//! at its mean V, i.e. ε(φ) = 2 r² V/‖s(φ)‖² per configuration: a step that depends on the
//! noise drawn has no tractable reverse density, one that depends on the state only needs
//! ε(φ') in the reverse density. With s = −∇U,
//!   φ' = φ + ε s(φ) + √(2ε) z,  z ~ N(0, I),
//!   log α = U(φ) − U(φ') + log q(φ | φ') − log q(φ' | φ),
//!   log q(y | x) = −‖y − x − ε(x) s(x)‖²/(4ε(x)) − (V/2) log(4π ε(x)),
//! where the forward term is exactly −½ zᵀz − (V/2) log(4π ε(φ)).
//!
//! Each configuration draws its z and then one uniform from its own stream, whatever
//! happens, so the samples do not depend on batching or threads.

use rand::RngExt;
use rayon::prelude::*;

use crate::diffusion::sample::kernel::normals;
use crate::rng::Stream;

/// U and s = −∇U of a set of configurations ([B, V] → [B], [B, V]), evaluated together: a
/// learnt action, which the model evaluates in batches.
pub type Energies<'a> = dyn FnMut(&[f64], &mut [f64], &mut [f64]) -> Result<(), String> + 'a;

/// `steps` MALA steps of every configuration of `phi` ([B, V], B = `rngs.len()`) against U
/// from `eval`, with the signal-to-noise ratio `snr`. Returns the mean acceptance
/// probability min(1, α) over configurations and steps (NaN for no steps; then `eval` is
/// not called).
pub fn mala(
    eval: &mut Energies<'_>,
    snr: f64,
    steps: usize,
    phi: &mut [f64],
    rngs: &mut [Stream],
) -> Result<f64, String> {
    let n = rngs.len();
    if steps == 0 || n == 0 {
        return Ok(f64::NAN);
    }
    let v = phi.len() / n;
    let mut here = Point { u: vec![0.0; n], s: vec![0.0; n * v] };
    eval(phi, &mut here.u, &mut here.s)?;
    let mut there = Point { u: vec![0.0; n], s: vec![0.0; n * v] };
    let mut proposal = vec![0.0; n * v];
    let mut zz = vec![0.0; n];
    let mut total = 0.0;
    for _ in 0..steps {
        proposal
            .par_chunks_mut(v)
            .zip(phi.par_chunks(v))
            .zip(here.s.par_chunks(v))
            .zip(rngs.par_iter_mut())
            .zip(zz.par_iter_mut())
            .for_each_init(
                || vec![0.0; v],
                |z, ((((y, x), s), rng), zz)| {
                    *zz = normals(rng, z);
                    propose(snr, x, s, z, y);
                },
            );
        eval(&proposal, &mut there.u, &mut there.s)?;
        let mut probs = vec![0.0; n];
        phi.par_chunks_mut(v)
            .zip(here.s.par_chunks_mut(v))
            .zip(here.u.par_iter_mut())
            .zip(rngs.par_iter_mut())
            .zip(probs.par_iter_mut())
            .enumerate()
            .for_each(|(i, ((((x, s), u), rng), p))| {
                let to = (&proposal[i * v..][..v], there.u[i], &there.s[i * v..][..v]);
                *p = accept(snr, zz[i], (x, u, s), to, rng);
            });
        // In configuration order: the same sum on any number of threads.
        total += probs.iter().sum::<f64>() / n as f64;
    }
    Ok(total / steps as f64)
}

/// U and s at the configurations of a batch.
struct Point {
    u: Vec<f64>,
    s: Vec<f64>,
}

/// ε(φ) = 2 r² V/‖s(φ)‖² (module docs); not finite where the score vanishes.
fn step_size(snr: f64, s: &[f64]) -> f64 {
    2.0 * snr * snr * s.len() as f64 / s.iter().map(|a| a * a).sum::<f64>()
}

/// y = x + ε s + √(2ε) z (y = x where ε is not a step: that proposal is rejected).
fn propose(snr: f64, x: &[f64], s: &[f64], z: &[f64], y: &mut [f64]) {
    let eps = step_size(snr, s);
    if !(eps.is_finite() && eps > 0.0) {
        y.copy_from_slice(x);
        return;
    }
    let a = (2.0 * eps).sqrt();
    for (((y, x), s), z) in y.iter_mut().zip(x).zip(s).zip(z) {
        *y = x + eps * s + a * z;
    }
}

/// The Metropolis–Hastings test of the proposal `to` = (φ', U(φ'), s(φ')) drawn with zᵀz =
/// `zz` from `from` = (φ, U, s), which becomes `to` on acceptance; one uniform whatever
/// happens. Returns min(1, α) (0 for a NaN α or a step that is not one).
fn accept(
    snr: f64,
    zz: f64,
    from: (&mut [f64], &mut f64, &mut [f64]),
    to: (&[f64], f64, &[f64]),
    rng: &mut Stream,
) -> f64 {
    let (x, u, s) = from;
    let (y, u_y, s_y) = to;
    let (eps_x, eps_y) = (step_size(snr, s), step_size(snr, s_y));
    let reverse = x.iter().zip(y).zip(s_y).map(|((x, y), s)| (x - y - eps_y * s).powi(2)).sum::<f64>() / (4.0 * eps_y);
    let log_alpha = *u - u_y - reverse + 0.5 * zz + 0.5 * x.len() as f64 * (eps_x / eps_y).ln();
    let valid = eps_x.is_finite() && eps_x > 0.0 && eps_y.is_finite() && eps_y > 0.0;
    let prob = if !valid || log_alpha.is_nan() { 0.0 } else { log_alpha.min(0.0).exp() };
    let uniform: f64 = rng.random();
    if uniform < prob {
        x.copy_from_slice(y);
        s.copy_from_slice(s_y);
        *u = u_y;
    }
    prob
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{self, Domain};

    /// MALA with the snr rule leaves N(0, A⁻¹) invariant, A diagonal with curvatures from 0.5
    /// to 6 (so the unpreconditioned step rejects often). 4000 exact draws of V = 12 sites,
    /// 25 steps at r = 0.5: every site's ⟨φ²⟩ within 4.5 errors of 1/a (Bonferroni over the
    /// sites), ⟨φ_x⁴⟩ summed over sites within 4 errors of 3 Σ 1/a². Dropping the
    /// (V/2) log(ε/ε') term or the reverse drift fails it.
    #[test]
    fn mala_corrector_leaves_a_gaussian_invariant() {
        let v = 12;
        let a: Vec<f64> = (0..v).map(|i| 0.5 + 5.5 * i as f64 / (v - 1) as f64).collect();
        let n = 4000;
        let mut rngs: Vec<Stream> = (0..n).map(|i| rng::stream(7, Domain::Sample, i as u64)).collect();
        let mut phi = vec![0.0; n * v];
        for (p, r) in phi.chunks_mut(v).zip(rngs.iter_mut()) {
            normals(r, p);
            p.iter_mut().zip(&a).for_each(|(x, a)| *x /= a.sqrt());
        }
        let mut calls = 0;
        let mut eval = |phi: &[f64], u: &mut [f64], s: &mut [f64]| {
            calls += 1;
            for ((p, u), s) in phi.chunks(v).zip(u.iter_mut()).zip(s.chunks_mut(v)) {
                *u = 0.5 * p.iter().zip(&a).map(|(x, a)| a * x * x).sum::<f64>();
                s.iter_mut().zip(p).zip(&a).for_each(|((s, x), a)| *s = -a * x);
            }
            Ok(())
        };
        let acc = mala(&mut eval, 0.5, 25, &mut phi, &mut rngs).unwrap();
        assert_eq!(calls, 26, "one evaluation per step and one at the start");
        println!("MALA corrector acceptance {acc:.3}");
        let mut quartic = Vec::with_capacity(n);
        for x in 0..v {
            let sq: Vec<f64> = phi.chunks(v).map(|p| p[x] * p[x]).collect();
            let (m, e) = mean_err(&sq);
            let want = 1.0 / a[x];
            assert!(((m - want) / e).abs() < 4.5, "site {x}: <phi^2> {m} ± {e} vs {want}");
        }
        for p in phi.chunks(v) {
            quartic.push(p.iter().map(|x| x.powi(4)).sum::<f64>());
        }
        let (m, e) = mean_err(&quartic);
        let want: f64 = a.iter().map(|a| 3.0 / (a * a)).sum();
        println!("sum <phi^4>: {m:.4} ± {e:.4}, exact {want:.4}");
        assert!(((m - want) / e).abs() < 4.0, "sum <phi^4> {m} ± {e} vs {want}");
        assert!(acc > 0.2 && acc < 0.9, "acceptance {acc}: the test needs a step that rejects often");
    }

    /// A NaN energy at the proposal is a rejection, and the stream still advances by one
    /// uniform (the next step's noise does not depend on what happened).
    #[test]
    fn nan_energy_is_rejected() {
        let v = 4;
        let mut phi = vec![0.5; v];
        let mut rngs = vec![rng::stream(1, Domain::Sample, 0)];
        let mut first = true;
        let mut eval = |p: &[f64], u: &mut [f64], s: &mut [f64]| {
            u[0] = if first { 1.0 } else { f64::NAN };
            first = false;
            s.iter_mut().zip(p).for_each(|(s, x)| *s = -x);
            Ok(())
        };
        let acc = mala(&mut eval, 0.2, 1, &mut phi, &mut rngs).unwrap();
        assert_eq!((acc, phi), (0.0, vec![0.5; v]));
        let mut reference = rng::stream(1, Domain::Sample, 0);
        normals(&mut reference, &mut [0.0; 4]);
        let _: f64 = reference.random();
        let (a, b): (f64, f64) = (rngs[0].random(), reference.random());
        assert_eq!(a, b, "the stream did not advance by the noise and one uniform");
    }

    fn mean_err(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        (m, (x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n * (n - 1.0))).sqrt())
    }
}
