//! Element-wise layers: SiLU, FiLM modulation, residual add, channel concat.
//! Every backward accumulates into its input gradients, so branches need no special case.

use super::float::Float;
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    x.sigmoid()
}

pub fn silu_forward<T: Float>(out: &mut [T], inp: &[T]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| {
        for (ov, xv) in o.iter_mut().zip(x) {
            *ov = *xv * sigmoid(*xv);
        }
    });
}

pub fn silu_backward<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    dinp.par_chunks_mut(CHUNK).zip(dout.par_chunks(CHUNK).zip(inp.par_chunks(CHUNK))).for_each(|(d, (dy, x))| {
        for ((dv, yv), xv) in d.iter_mut().zip(dy).zip(x) {
            let s = sigmoid(*xv);
            *dv += *yv * s * (T::ONE + *xv * (T::ONE - s));
        }
    });
}

/// FiLM: out[b,c] = inp[b,c]·(1 + ss[b,c]) + ss[b,C+c], ss[B, 2C] from the noise embedding.
pub fn film_forward<T: Float>(out: &mut [T], inp: &[T], ss: &[T], b: usize, c: usize, hw: usize) {
    out[..b * c * hw].par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
        let (bi, ch) = (i / c, i % c);
        let (sc, sh) = (T::ONE + ss[bi * 2 * c + ch], ss[bi * 2 * c + c + ch]);
        for (ov, xv) in o.iter_mut().zip(&inp[i * hw..][..hw]) {
            *ov = *xv * sc + sh;
        }
    });
}

#[allow(clippy::too_many_arguments)]
pub fn film_backward<T: Float>(
    dinp: &mut [T],
    dss: &mut [T],
    dout: &[T],
    inp: &[T],
    ss: &[T],
    b: usize,
    c: usize,
    hw: usize,
) {
    dinp[..b * c * hw].par_chunks_mut(c * hw).zip(dss[..2 * b * c].par_chunks_mut(2 * c)).enumerate().for_each(
        |(bi, (dx, ds))| {
            for ch in 0..c {
                let sc = T::ONE + ss[bi * 2 * c + ch];
                let off = (bi * c + ch) * hw;
                let (mut dsc, mut dsh) = (T::ZERO, T::ZERO);
                for ((dv, yv), xv) in dx[ch * hw..][..hw].iter_mut().zip(&dout[off..][..hw]).zip(&inp[off..][..hw]) {
                    *dv += *yv * sc;
                    dsc += *yv * *xv;
                    dsh += *yv;
                }
                ds[ch] += dsc;
                ds[c + ch] += dsh;
            }
        },
    );
}

pub fn add_forward<T: Float>(out: &mut [T], a: &[T], b: &[T]) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (x, y))| {
        for ((ov, xv), yv) in o.iter_mut().zip(x).zip(y) {
            *ov = *xv + *yv;
        }
    });
}

/// dst += src (backward of add, identity and copy).
pub fn accumulate<T: Float>(dst: &mut [T], src: &[T]) {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
        for (dv, sv) in d.iter_mut().zip(s) {
            *dv += *sv;
        }
    });
}

/// out[b] = [a[b] (ca channels); c[b] (cb channels)].
pub fn concat_forward<T: Float>(out: &mut [T], a: &[T], ca: usize, c: &[T], cb: usize, b: usize, hw: usize) {
    out[..b * (ca + cb) * hw].par_chunks_mut((ca + cb) * hw).enumerate().for_each(|(bi, o)| {
        o[..ca * hw].copy_from_slice(&a[bi * ca * hw..][..ca * hw]);
        o[ca * hw..].copy_from_slice(&c[bi * cb * hw..][..cb * hw]);
    });
}

#[allow(clippy::too_many_arguments)]
pub fn concat_backward<T: Float>(da: &mut [T], dc: &mut [T], dout: &[T], ca: usize, cb: usize, b: usize, hw: usize) {
    for bi in 0..b {
        let d = &dout[bi * (ca + cb) * hw..][..(ca + cb) * hw];
        accumulate(&mut da[bi * ca * hw..][..ca * hw], &d[..ca * hw]);
        accumulate(&mut dc[bi * cb * hw..][..cb * hw], &d[ca * hw..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn silu_backward_matches_finite_differences() {
        let mut x: Vec<f64> = rand_vec(40, 1).iter().map(|v| 4.0 * v).collect();
        let r = rand_vec(40, 2);
        let mut dx = vec![0.0; 40];
        silu_backward(&mut dx, &r, &x);
        check_grad("silu", &mut x, &dx, |v| {
            let mut o = vec![0.0; 40];
            silu_forward(&mut o, v);
            dot(&o, &r)
        });
    }

    #[test]
    fn film_backward_matches_finite_differences() {
        let (b, c, hw) = (3, 4, 5);
        let mut x = rand_vec(b * c * hw, 3);
        let mut ss = rand_vec(b * 2 * c, 4);
        let r = rand_vec(b * c * hw, 5);
        let loss = |x: &[f64], ss: &[f64]| {
            let mut o = vec![0.0; x.len()];
            film_forward(&mut o, x, ss, b, c, hw);
            dot(&o, &r)
        };
        let (mut dx, mut dss) = (vec![0.0; x.len()], vec![0.0; ss.len()]);
        film_backward(&mut dx, &mut dss, &r, &x, &ss, b, c, hw);
        let s0 = ss.clone();
        check_grad("film dinp", &mut x, &dx, |v| loss(v, &s0));
        let x0 = x.clone();
        check_grad("film dss", &mut ss, &dss, |v| loss(&x0, v));
    }

    #[test]
    fn concat_roundtrip() {
        let (b, ca, cb, hw) = (2, 2, 3, 4);
        let a = rand_vec(b * ca * hw, 6);
        let c = rand_vec(b * cb * hw, 7);
        let mut o = vec![0.0; b * (ca + cb) * hw];
        concat_forward(&mut o, &a, ca, &c, cb, b, hw);
        assert_eq!(o[(ca + cb) * hw + 1], a[ca * hw + 1]);
        assert_eq!(o[(ca + cb) * hw + ca * hw], c[cb * hw]);
        let (mut da, mut dc) = (vec![0.0; a.len()], vec![0.0; c.len()]);
        concat_backward(&mut da, &mut dc, &o, ca, cb, b, hw);
        assert_eq!(da, a);
        assert_eq!(dc, c);
    }
}
