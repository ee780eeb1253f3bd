//! Periodic 3×3 convolution written as three direct loops, for the action network.
//!
//! The action network needs the convolution's input gradient (the score) and, to train on
//! that score, the backward of that input gradient. A convolution is bilinear in (input,
//! weight), so the backward of its backward needs no new kernel: the input gradient
//! `conv3_backward_input` is linear in (dout, w), and its own backward is
//! `conv3_forward` (in dout) plus `conv3_backward_weight` (in w). These three functions
//! are therefore every first- and second-order piece of the layer.
//!
//! Activations are NCHW, [B, C, L_t, L_x]; weights [Cout, Cin, 3, 3]; taps k = 3(dt+1) +
//! (dx+1) read the input at (t + dt, x + dx) modulo the lattice. Kept apart from `conv`
//! (im2col + GEMM for the U-Net) on purpose: the action network's channel counts are small
//! and its second-order pass calls the convolution with roles swapped.

use super::float::Float;
use rayon::prelude::*;

pub const TAPS: usize = 9;

/// Shapes of one periodic 3×3 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3Shape {
    pub b: usize,
    pub cin: usize,
    pub cout: usize,
    pub lt: usize,
    pub lx: usize,
}

impl Conv3Shape {
    pub fn sites(&self) -> usize {
        self.lt * self.lx
    }
    pub fn weights(&self) -> usize {
        self.cout * self.cin * TAPS
    }
    /// Multiply-adds of one forward pass (each of the three functions costs the same).
    pub fn macs(&self) -> f64 {
        (self.b * self.sites() * self.weights()) as f64
    }
}

/// nb[k·V + s] = the site read by tap k at site s (periodic).
pub fn neighbour_table(lt: usize, lx: usize) -> Vec<usize> {
    let v = lt * lx;
    let mut nb = vec![0; TAPS * v];
    for k in 0..TAPS {
        let (dt, dx) = (k / 3 + lt - 1, k % 3 + lx - 1);
        for t in 0..lt {
            for x in 0..lx {
                nb[k * v + t * lx + x] = ((t + dt) % lt) * lx + (x + dx) % lx;
            }
        }
    }
    nb
}

/// The tap reading the opposite neighbour: site s is read by tap k at nb[k][s'] iff s' is
/// read by tap `flip(k)` at s.
#[inline(always)]
fn flip(k: usize) -> usize {
    TAPS - 1 - k
}

/// out[b, o] = Σ_{i,k} w[o, i, k] inp[b, i, nb_k] (+ bias[o] when given). Overwrites `out`.
pub fn conv3_forward<T: Float>(out: &mut [T], inp: &[T], w: &[T], bias: Option<&[T]>, nb: &[usize], s: &Conv3Shape) {
    let v = s.sites();
    out[..s.b * s.cout * v].par_chunks_mut(s.cout * v).enumerate().for_each(|(b, ob)| {
        let ib = &inp[b * s.cin * v..][..s.cin * v];
        for (o, oo) in ob.chunks_mut(v).enumerate() {
            oo.fill(bias.map_or(T::ZERO, |bb| bb[o]));
            for i in 0..s.cin {
                let ii = &ib[i * v..][..v];
                for k in 0..TAPS {
                    let wk = w[(o * s.cin + i) * TAPS + k];
                    for (y, &n) in oo.iter_mut().zip(&nb[k * v..][..v]) {
                        *y += wk * ii[n];
                    }
                }
            }
        }
    });
}

/// dinp[b, i] += Σ_{o,k} w[o, i, k] dout[b, o] read through the flipped tap: the input
/// gradient of `conv3_forward`, i.e. its transpose.
pub fn conv3_backward_input<T: Float>(dinp: &mut [T], dout: &[T], w: &[T], nb: &[usize], s: &Conv3Shape) {
    let v = s.sites();
    dinp[..s.b * s.cin * v].par_chunks_mut(s.cin * v).enumerate().for_each(|(b, db)| {
        let ob = &dout[b * s.cout * v..][..s.cout * v];
        for (i, di) in db.chunks_mut(v).enumerate() {
            for o in 0..s.cout {
                let oo = &ob[o * v..][..v];
                for k in 0..TAPS {
                    let wk = w[(o * s.cin + i) * TAPS + k];
                    for (d, &n) in di.iter_mut().zip(&nb[flip(k) * v..][..v]) {
                        *d += wk * oo[n];
                    }
                }
            }
        }
    });
}

/// dw[o, i, k] += Σ_{b,s} dout[b, o, s] inp[b, i, nb_k(s)]: the weight gradient.
pub fn conv3_backward_weight<T: Float>(dw: &mut [T], dout: &[T], inp: &[T], nb: &[usize], s: &Conv3Shape) {
    let v = s.sites();
    dw[..s.weights()].par_chunks_mut(s.cin * TAPS).enumerate().for_each(|(o, dwo)| {
        for b in 0..s.b {
            let oo = &dout[(b * s.cout + o) * v..][..v];
            for i in 0..s.cin {
                let ii = &inp[(b * s.cin + i) * v..][..v];
                for k in 0..TAPS {
                    let mut acc = T::ZERO;
                    for (y, &n) in oo.iter().zip(&nb[k * v..][..v]) {
                        acc += *y * ii[n];
                    }
                    dwo[i * TAPS + k] += acc;
                }
            }
        }
    });
}

/// dbias[o] += Σ_{b,s} dout[b, o, s].
pub fn conv3_backward_bias<T: Float>(dbias: &mut [T], dout: &[T], s: &Conv3Shape) {
    let v = s.sites();
    for b in 0..s.b {
        for (o, db) in dbias[..s.cout].iter_mut().enumerate() {
            *db += dout[(b * s.cout + o) * v..][..v].iter().copied().sum::<T>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    fn shape() -> Conv3Shape {
        Conv3Shape { b: 2, cin: 3, cout: 4, lt: 4, lx: 5 }
    }

    /// One output value by hand: a single unit weight on tap (dt, dx) = (−1, +1) copies the
    /// input from the periodic neighbour (t − 1, x + 1).
    #[test]
    fn a_single_tap_reads_its_periodic_neighbour() {
        let s = Conv3Shape { b: 1, cin: 1, cout: 1, lt: 3, lx: 4 };
        let nb = neighbour_table(3, 4);
        let inp: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let mut w = vec![0.0; 9];
        w[2] = 1.0; // k = 3·0 + 2: dt = −1, dx = +1
        let mut out = vec![0.0; 12];
        conv3_forward(&mut out, &inp, &w, Some(&[0.5]), &nb, &s);
        // site (t=0, x=3) reads (t=2, x=0) = 8
        assert_eq!(out[3], 8.5);
        // site (t=1, x=1) reads (t=0, x=2) = 2
        assert_eq!(out[5], 2.5);
    }

    /// The three functions are the gradients of the bilinear form ⟨r, conv(x, w) + b⟩.
    #[test]
    fn input_weight_and_bias_gradients_match_finite_differences() {
        let s = shape();
        let nb = neighbour_table(s.lt, s.lx);
        let v = s.sites();
        let mut x = rand_vec(s.b * s.cin * v, 1);
        let mut w = rand_vec(s.weights(), 2);
        let mut bias = rand_vec(s.cout, 3);
        let r = rand_vec(s.b * s.cout * v, 4);
        let form = |x: &[f64], w: &[f64], bias: &[f64]| {
            let mut out = vec![0.0; s.b * s.cout * v];
            conv3_forward(&mut out, x, w, Some(bias), &nb, &s);
            out.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        let mut db = vec![0.0; bias.len()];
        conv3_backward_input(&mut dx, &r, &w, &nb, &s);
        conv3_backward_weight(&mut dw, &r, &x, &nb, &s);
        conv3_backward_bias(&mut db, &r, &s);
        let (w0, b0, x0) = (w.clone(), bias.clone(), x.clone());
        check_grad("conv3 input", &mut x, &dx, |x| form(x, &w0, &b0));
        check_grad("conv3 weight", &mut w, &dw, |w| form(&x0, w, &b0));
        check_grad("conv3 bias", &mut bias, &db, |b| form(&x0, &w0, b));
    }
}
