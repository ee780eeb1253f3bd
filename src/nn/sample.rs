//! Resolution changes by 2: 2×2 average pooling down, nearest-neighbour up.
//!
//! Average pooling was chosen over a stride-2 periodic conv: with even H, W the 2×2
//! windows never wrap, it has no parameters, and it is a low-pass filter, so the
//! network is exactly equivariant under translations by multiples of 2^levels and only
//! mildly broken (aliasing) under odd translations.

use super::float::Float;
use rayon::prelude::*;

/// out[B, C, H/2, W/2] = mean of each 2×2 block of inp[B, C, H, W].
pub fn down_forward<T: Float>(out: &mut [T], inp: &[T], bc: usize, h: usize, w: usize) {
    let (ho, wo) = (h / 2, w / 2);
    let q = T::from_f64(0.25);
    out[..bc * ho * wo].par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
        let x = &inp[p * h * w..][..h * w];
        for y in 0..ho {
            let (r0, r1) = (&x[2 * y * w..][..w], &x[(2 * y + 1) * w..][..w]);
            for (xo, ov) in o[y * wo..][..wo].iter_mut().enumerate() {
                *ov = q * (r0[2 * xo] + r0[2 * xo + 1] + r1[2 * xo] + r1[2 * xo + 1]);
            }
        }
    });
}

pub fn down_backward<T: Float>(dinp: &mut [T], dout: &[T], bc: usize, h: usize, w: usize) {
    let (ho, wo) = (h / 2, w / 2);
    let q = T::from_f64(0.25);
    dinp[..bc * h * w].par_chunks_mut(h * w).enumerate().for_each(|(p, d)| {
        let g = &dout[p * ho * wo..][..ho * wo];
        for y in 0..h {
            for x in 0..w {
                d[y * w + x] += q * g[(y / 2) * wo + x / 2];
            }
        }
    });
}

/// out[B, C, 2H, 2W] = inp[B, C, H, W] repeated over 2×2 blocks.
pub fn up_forward<T: Float>(out: &mut [T], inp: &[T], bc: usize, h: usize, w: usize) {
    let (ho, wo) = (2 * h, 2 * w);
    out[..bc * ho * wo].par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
        let x = &inp[p * h * w..][..h * w];
        for y in 0..ho {
            for (xo, ov) in o[y * wo..][..wo].iter_mut().enumerate() {
                *ov = x[(y / 2) * w + xo / 2];
            }
        }
    });
}

pub fn up_backward<T: Float>(dinp: &mut [T], dout: &[T], bc: usize, h: usize, w: usize) {
    let wo = 2 * w;
    dinp[..bc * h * w].par_chunks_mut(h * w).enumerate().for_each(|(p, d)| {
        let g = &dout[p * 4 * h * w..][..4 * h * w];
        for y in 0..h {
            for x in 0..w {
                let i = 2 * y * wo + 2 * x;
                d[y * w + x] += g[i] + g[i + 1] + g[i + wo] + g[i + wo + 1];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    #[test]
    fn down_up_backward_match_finite_differences() {
        let (bc, h, w) = (3, 4, 6);
        let mut x = rand_vec(bc * h * w, 1);
        let r = rand_vec(bc * h * w / 4, 2);
        let mut dx = vec![0.0; x.len()];
        down_backward(&mut dx, &r, bc, h, w);
        check_grad("down", &mut x, &dx, |v| {
            let mut o = vec![0.0; r.len()];
            down_forward(&mut o, v, bc, h, w);
            o.iter().zip(&r).map(|(a, b)| a * b).sum()
        });
        let mut y = rand_vec(bc * h * w, 3);
        let r = rand_vec(bc * h * w * 4, 4);
        let mut dy = vec![0.0; y.len()];
        up_backward(&mut dy, &r, bc, h, w);
        check_grad("up", &mut y, &dy, |v| {
            let mut o = vec![0.0; r.len()];
            up_forward(&mut o, v, bc, h, w);
            o.iter().zip(&r).map(|(a, b)| a * b).sum()
        });
    }
}
