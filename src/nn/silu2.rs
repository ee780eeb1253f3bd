//! SiLU with its first and second derivatives, for the action network.
//!
//! The score pass multiplies by u'(m) (`silu_backward`: gm = gh ⊙ u'(m)); training on the
//! score differentiates that product in both factors, which is where u''(m) enters
//! (`silu_backward_backward`). SiLU rather than tanh: it does not saturate, so the energy
//! density can grow like φ⁴ and φ⁶ at large fields.

use super::float::Float;
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// u(m) = m σ(m).
#[inline(always)]
pub fn silu<T: Float>(m: T) -> T {
    m * sigmoid(m)
}

/// u'(m) = σ(m) (1 + m (1 − σ(m))).
#[inline(always)]
pub fn silu_d1<T: Float>(m: T) -> T {
    let s = sigmoid(m);
    s * (T::ONE + m * (T::ONE - s))
}

/// u''(m) = σ(m) (1 − σ(m)) (2 + m (1 − 2σ(m))).
#[inline(always)]
pub fn silu_d2<T: Float>(m: T) -> T {
    let s = sigmoid(m);
    let two = T::ONE + T::ONE;
    s * (T::ONE - s) * (two + m * (T::ONE - two * s))
}

/// out = u(inp). Overwrites.
pub fn silu_forward<T: Float>(out: &mut [T], inp: &[T]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, m)| {
        o.iter_mut().zip(m).for_each(|(o, m)| *o = silu(*m));
    });
}

/// dinp += dout ⊙ u'(inp).
pub fn silu_backward<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    dinp.par_chunks_mut(CHUNK).zip(dout.par_chunks(CHUNK).zip(inp.par_chunks(CHUNK))).for_each(|(d, (g, m))| {
        for ((d, g), m) in d.iter_mut().zip(g).zip(m) {
            *d += *g * silu_d1(*m);
        }
    });
}

/// The backward of `silu_backward` (y = dout ⊙ u'(inp)), given the gradient `ddinp` of
/// y: accumulates into `ddout` (∂/∂dout = ddinp ⊙ u'(inp)) and into `dinp`
/// (∂/∂inp = ddinp ⊙ dout ⊙ u''(inp)).
pub fn silu_backward_backward<T: Float>(ddout: &mut [T], dinp: &mut [T], ddinp: &[T], dout: &[T], inp: &[T]) {
    ddout
        .par_chunks_mut(CHUNK)
        .zip(dinp.par_chunks_mut(CHUNK))
        .zip(ddinp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)).zip(inp.par_chunks(CHUNK)))
        .for_each(|((ddo, di), ((ddi, g), m))| {
            for i in 0..ddo.len() {
                ddo[i] += ddi[i] * silu_d1(m[i]);
                di[i] += ddi[i] * g[i] * silu_d2(m[i]);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    /// Known values: u(0) = 0, u'(0) = 1/2, u''(0) = 1/2; u(m) → m and u'(m) → 1 at large m.
    #[test]
    fn derivatives_at_known_points() {
        assert_eq!(silu(0.0f64), 0.0);
        assert!((silu_d1(0.0f64) - 0.5).abs() < 1e-15);
        assert!((silu_d2(0.0f64) - 0.5).abs() < 1e-15);
        assert!((silu(40.0f64) - 40.0).abs() < 1e-12 && (silu_d1(40.0f64) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn first_and_second_derivatives_match_finite_differences() {
        let n = 40;
        let mut m: Vec<f64> = rand_vec(n, 1).iter().map(|v| 4.0 * v).collect();
        let r = rand_vec(n, 2);
        let mut d1 = vec![0.0; n];
        silu_backward(&mut d1, &r, &m);
        check_grad("silu'", &mut m, &d1, |m| m.iter().zip(&r).map(|(m, r)| silu(*m) * r).sum());
        // The second-order layer: the gradient of ⟨q, g ⊙ u'(m)⟩ in g and in m.
        let mut g = rand_vec(n, 3);
        let q = rand_vec(n, 4);
        let (mut dg, mut dm) = (vec![0.0; n], vec![0.0; n]);
        silu_backward_backward(&mut dg, &mut dm, &q, &g, &m);
        let form = |g: &[f64], m: &[f64]| {
            let mut y = vec![0.0; n];
            silu_backward(&mut y, g, m);
            y.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>()
        };
        let (g0, m0) = (g.clone(), m.clone());
        check_grad("silu'' in m", &mut m, &dm, |m| form(&g0, m));
        check_grad("silu' in g", &mut g, &dg, |g| form(g, &m0));
    }
}
