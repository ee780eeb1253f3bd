//! SiLU with its first and second derivatives, for the action network.
//!
//! The score pass multiplies by u'(m) (`silu_backward`: gm = gh ⊙ u'(m)); training on the
//! score differentiates that product in both factors, which is where u''(m) enters
//! (`silu_backward_backward`). SiLU rather than tanh: it does not saturate, so the energy
//! density can grow like φ⁴ and φ⁶ at large fields. The gate is `Float::sigmoid`: in f32 its
//! exp is `exp_f32`, which vectorises (libm's expf, a call per element, was 12 % of an
//! action-network training step).

use super::float::Float;
use super::fused::avx2;
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

/// u(m) = m σ(m).
#[inline(always)]
pub fn silu<T: Float>(m: T) -> T {
    m * m.sigmoid()
}

/// u'(m) = σ(m) (1 + m (1 − σ(m))).
#[inline(always)]
pub fn silu_d1<T: Float>(m: T) -> T {
    let s = m.sigmoid();
    s * (T::ONE + m * (T::ONE - s))
}

/// u''(m) = σ(m) (1 − σ(m)) (2 + m (1 − 2σ(m))).
#[inline(always)]
pub fn silu_d2<T: Float>(m: T) -> T {
    let s = m.sigmoid();
    let two = T::ONE + T::ONE;
    s * (T::ONE - s) * (two + m * (T::ONE - two * s))
}

// Each pass runs per chunk as a plain loop (`*_run`, always inlined) and, where the CPU has
// AVX2 and FMA, as the same loop compiled for them (`*_avx2`): the exp of the gate then runs
// 8 lanes wide instead of SSE2's 4 (the build targets baseline x86-64). No expression is
// contracted into an FMA, so both round alike.

#[inline(always)]
fn forward_run<T: Float>(out: &mut [T], inp: &[T]) {
    out.iter_mut().zip(inp).for_each(|(o, m)| *o = silu(*m));
}

#[inline(always)]
fn backward_run<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    for ((d, g), m) in dinp.iter_mut().zip(dout).zip(inp) {
        *d += *g * silu_d1(*m);
    }
}

#[inline(always)]
fn backward_backward_run<T: Float>(ddout: &mut [T], dinp: &mut [T], ddinp: &[T], dout: &[T], inp: &[T]) {
    // Every slice cut to one length, so that the loop runs without bounds checks.
    let n = ddout.len();
    let (di, ddi, g, m) = (&mut dinp[..n], &ddinp[..n], &dout[..n], &inp[..n]);
    for i in 0..n {
        ddout[i] += ddi[i] * silu_d1(m[i]);
        di[i] += ddi[i] * g[i] * silu_d2(m[i]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<T: Float>(out: &mut [T], inp: &[T]) {
    forward_run(out, inp)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    backward_run(dinp, dout, inp)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_backward_avx2<T: Float>(ddout: &mut [T], dinp: &mut [T], ddinp: &[T], dout: &[T], inp: &[T]) {
    backward_backward_run(ddout, dinp, ddinp, dout, inp)
}

/// out = u(inp). Overwrites.
pub fn silu_forward<T: Float>(out: &mut [T], inp: &[T]) {
    let fast = avx2();
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, m)| {
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: the CPU has AVX2 and FMA (checked by `avx2`).
            return unsafe { forward_avx2(o, m) };
        }
        forward_run(o, m)
    });
}

/// dinp += dout ⊙ u'(inp).
pub fn silu_backward<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    let fast = avx2();
    dinp.par_chunks_mut(CHUNK).zip(dout.par_chunks(CHUNK).zip(inp.par_chunks(CHUNK))).for_each(|(d, (g, m))| {
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: as in `silu_forward`.
            return unsafe { backward_avx2(d, g, m) };
        }
        backward_run(d, g, m)
    });
}

/// The backward of `silu_backward` (y = dout ⊙ u'(inp)), given the gradient `ddinp` of
/// y: accumulates into `ddout` (∂/∂dout = ddinp ⊙ u'(inp)) and into `dinp`
/// (∂/∂inp = ddinp ⊙ dout ⊙ u''(inp)).
pub fn silu_backward_backward<T: Float>(ddout: &mut [T], dinp: &mut [T], ddinp: &[T], dout: &[T], inp: &[T]) {
    let fast = avx2();
    ddout
        .par_chunks_mut(CHUNK)
        .zip(dinp.par_chunks_mut(CHUNK))
        .zip(ddinp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)).zip(inp.par_chunks(CHUNK)))
        .for_each(|((ddo, di), ((ddi, g), m))| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: as in `silu_forward`.
                return unsafe { backward_backward_avx2(ddo, di, ddi, g, m) };
            }
            backward_backward_run(ddo, di, ddi, g, m)
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
