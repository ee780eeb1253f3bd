//! Periodic (circular) k×k convolution, k odd, as im2col + one GEMM for the whole batch.
//!
//! Activations are NCHW. The column matrix is laid out `[Cin·k·k, B·H·W]` so that each
//! convolution is a single GEMM over the batch: at the coarsest U-Net level H·W is tiny
//! (16 at L=32) and per-sample GEMMs would be far too thin to run near peak. The copy
//! between NCHW and `[C, B·H·W]` costs O(C·B·H·W), a factor ≥ 2·9·Cin below the GEMM.
//! Dense layers are the H = W = 1, k = 1 case of the same code.

use super::float::Float;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub b: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl ConvShape {
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    pub fn cols(&self) -> usize {
        self.b * self.h * self.w
    }
    /// FLOPs of the forward GEMM (2·M·N·K).
    pub fn gemm_flops(&self) -> f64 {
        2.0 * self.cout as f64 * self.kdim() as f64 * self.cols() as f64
    }
}

/// Scratch shared by every convolution of a network; grows to the largest layer once.
#[derive(Default)]
pub struct ConvScratch<T> {
    pub col: Vec<T>,
    pub tmp: Vec<T>,
}

impl<T: Float> ConvScratch<T> {
    pub fn reserve(&mut self, s: &ConvShape) {
        let nc = s.kdim() * s.cols();
        let nt = s.cout * s.cols();
        if self.col.len() < nc {
            self.col.resize(nc, T::ZERO);
        }
        if self.tmp.len() < nt {
            self.tmp.resize(nt, T::ZERO);
        }
    }
}

/// dst = lhs·rhs (or dst += lhs·rhs), row/column strides given explicitly.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[T],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    if k > 0 {
        assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
        assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    }
    let par = if (m * n * k) >= (1 << 15) && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: bounds asserted above; the slices do not alias (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// col[(ci·k + ky)·k + kx][b·HW + y·W + x] = inp[b, ci, (y+ky−p) mod H, (x+kx−p) mod W].
pub fn im2col<T: Float>(col: &mut [T], inp: &[T], s: &ConvShape) {
    let (h, w, k) = (s.h, s.w, s.k);
    let hw = h * w;
    let p = k / 2;
    col[..s.kdim() * s.cols()].par_chunks_mut(s.cols()).enumerate().for_each(|(r, row)| {
        let ci = r / (k * k);
        let ky = (r / k) % k;
        let kx = r % k;
        // Shifts folded into [0, H) and [0, W) so the wrap-around is two slice copies.
        let sy = (ky + h - p % h) % h;
        let sx = (kx + w - p % w) % w;
        for b in 0..s.b {
            let plane = &inp[(b * s.cin + ci) * hw..][..hw];
            let dst = &mut row[b * hw..][..hw];
            for y in 0..h {
                let src = &plane[((y + sy) % h) * w..][..w];
                let d = &mut dst[y * w..][..w];
                d[..w - sx].copy_from_slice(&src[sx..]);
                d[w - sx..].copy_from_slice(&src[..sx]);
            }
        }
    });
}

/// Adjoint of `im2col`, accumulated: dinp += col2im(dcol).
pub fn col2im_add<T: Float>(dinp: &mut [T], dcol: &[T], s: &ConvShape) {
    let (h, w, k) = (s.h, s.w, s.k);
    let hw = h * w;
    let p = k / 2;
    let ncols = s.cols();
    dinp[..s.b * s.cin * hw].par_chunks_mut(hw).enumerate().for_each(|(plane_idx, plane)| {
        let b = plane_idx / s.cin;
        let ci = plane_idx % s.cin;
        for ky in 0..k {
            for kx in 0..k {
                let r = (ci * k + ky) * k + kx;
                let src = &dcol[r * ncols + b * hw..][..hw];
                let sy = (ky + h - p % h) % h;
                let sx = (kx + w - p % w) % w;
                for y in 0..h {
                    let srow = &src[y * w..][..w];
                    let d = &mut plane[((y + sy) % h) * w..][..w];
                    for (dv, sv) in d[sx..].iter_mut().zip(&srow[..w - sx]) {
                        *dv += *sv;
                    }
                    for (dv, sv) in d[..sx].iter_mut().zip(&srow[w - sx..]) {
                        *dv += *sv;
                    }
                }
            }
        }
    });
}

/// out[B, Cout, H, W] = conv(inp[B, Cin, H, W], weight[Cout, Cin, k, k]) + bias[Cout].
pub fn conv2d_forward<T: Float>(
    out: &mut [T],
    inp: &[T],
    weight: &[T],
    bias: &[T],
    s: &ConvShape,
    scratch: &mut ConvScratch<T>,
) {
    scratch.reserve(s);
    let (kd, nc, hw) = (s.kdim(), s.cols(), s.h * s.w);
    im2col(&mut scratch.col, inp, s);
    let tmp = &mut scratch.tmp[..s.cout * nc];
    matmul(s.cout, nc, kd, tmp, nc, 1, false, weight, kd, 1, &scratch.col, nc, 1);
    let tmp = &*tmp;
    out[..s.b * s.cout * hw].par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
        let (b, co) = (i / s.cout, i % s.cout);
        let bv = bias[co];
        for (ov, tv) in o.iter_mut().zip(&tmp[co * nc + b * hw..][..hw]) {
            *ov = *tv + bv;
        }
    });
}

/// Accumulates dweight, dbias and (when given) dinp from dout.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward<T: Float>(
    dinp: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
    dout: &[T],
    inp: &[T],
    weight: &[T],
    s: &ConvShape,
    scratch: &mut ConvScratch<T>,
) {
    scratch.reserve(s);
    let (kd, nc, hw) = (s.kdim(), s.cols(), s.h * s.w);
    let tmp = &mut scratch.tmp[..s.cout * nc];
    tmp.par_chunks_mut(nc).enumerate().for_each(|(co, row)| {
        for b in 0..s.b {
            row[b * hw..][..hw].copy_from_slice(&dout[(b * s.cout + co) * hw..][..hw]);
        }
    });
    let tmp = &*tmp;
    dbias[..s.cout]
        .par_iter_mut()
        .enumerate()
        .for_each(|(co, db)| *db += tmp[co * nc..][..nc].iter().copied().sum::<T>());
    im2col(&mut scratch.col, inp, s);
    // dW[Cout, K] += dout[Cout, N] · colᵀ[N, K]
    matmul(s.cout, kd, nc, dweight, kd, 1, true, tmp, nc, 1, &scratch.col, 1, nc);
    if let Some(dinp) = dinp {
        // dcol[K, N] = Wᵀ[K, Cout] · dout[Cout, N], written over col (no longer needed).
        matmul(kd, nc, s.cout, &mut scratch.col, nc, 1, false, weight, 1, kd, tmp, nc, 1);
        col2im_add(dinp, &scratch.col, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    fn naive(inp: &[f64], wt: &[f64], bias: &[f64], s: &ConvShape) -> Vec<f64> {
        let (h, w, k) = (s.h as isize, s.w as isize, s.k as isize);
        let p = k / 2;
        let mut out = vec![0.0; s.b * s.cout * s.h * s.w];
        for b in 0..s.b {
            for co in 0..s.cout {
                for y in 0..h {
                    for x in 0..w {
                        let mut acc = bias[co];
                        for ci in 0..s.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let yy = (y + ky - p).rem_euclid(h) as usize;
                                    let xx = (x + kx - p).rem_euclid(w) as usize;
                                    acc += wt[((co * s.cin + ci) * s.k + ky as usize) * s.k + kx as usize]
                                        * inp[((b * s.cin + ci) * s.h + yy) * s.w + xx];
                                }
                            }
                        }
                        out[((b * s.cout + co) * s.h + y as usize) * s.w + x as usize] = acc;
                    }
                }
            }
        }
        out
    }

    fn shapes() -> Vec<ConvShape> {
        vec![
            ConvShape { b: 2, cin: 3, cout: 4, h: 6, w: 4, k: 3 },
            ConvShape { b: 3, cin: 5, cout: 2, h: 4, w: 8, k: 1 },
            ConvShape { b: 2, cin: 2, cout: 3, h: 1, w: 1, k: 1 },
            ConvShape { b: 1, cin: 2, cout: 2, h: 2, w: 2, k: 3 },
        ]
    }

    #[test]
    fn forward_matches_naive_periodic_conv() {
        for (i, s) in shapes().into_iter().enumerate() {
            let inp = rand_vec(s.b * s.cin * s.h * s.w, 10 + i as u64);
            let wt = rand_vec(s.cout * s.kdim(), 20 + i as u64);
            let bias = rand_vec(s.cout, 30 + i as u64);
            let mut out = vec![0.0; s.b * s.cout * s.h * s.w];
            conv2d_forward(&mut out, &inp, &wt, &bias, &s, &mut ConvScratch::default());
            let r = naive(&inp, &wt, &bias, &s);
            let err = out.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "shape {s:?}: max err {err}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (i, s) in shapes().into_iter().enumerate() {
            let seed = 100 * (i as u64 + 1);
            let mut inp = rand_vec(s.b * s.cin * s.h * s.w, seed);
            let mut wt = rand_vec(s.cout * s.kdim(), seed + 1);
            let mut bias = rand_vec(s.cout, seed + 2);
            let r = rand_vec(s.b * s.cout * s.h * s.w, seed + 3);
            let loss = |inp: &[f64], wt: &[f64], bias: &[f64]| {
                let mut out = vec![0.0; r.len()];
                conv2d_forward(&mut out, inp, wt, bias, &s, &mut ConvScratch::default());
                out.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
            };
            let mut dinp = vec![0.0; inp.len()];
            let mut dw = vec![0.0; wt.len()];
            let mut db = vec![0.0; bias.len()];
            conv2d_backward(Some(&mut dinp), &mut dw, &mut db, &r, &inp, &wt, &s, &mut ConvScratch::default());
            let (w0, b0) = (wt.clone(), bias.clone());
            check_grad("conv dinp", &mut inp, &dinp, |x| loss(x, &w0, &b0));
            let i0 = inp.clone();
            check_grad("conv dweight", &mut wt, &dw, |x| loss(&i0, x, &b0));
            check_grad("conv dbias", &mut bias, &db, |x| loss(&i0, &w0, x));
        }
    }
}
