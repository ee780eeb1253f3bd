//! Periodic 3×3 convolution for the action network: forward, input and weight gradient.
//!
//! The action network needs the convolution's input gradient (the score) and, to train on
//! that score, the backward of that input gradient. A convolution is bilinear in (input,
//! weight), so the backward of its backward needs no new kernel: the input gradient
//! `conv3_backward_input` is linear in (dout, w), and its own backward is
//! `conv3_forward` (in dout) plus `conv3_backward_weight` (in w). These three functions
//! are therefore every first- and second-order piece of the layer.
//!
//! Activations are NCHW, [B, C, L_t, L_x]; weights [Cout, Cin, 3, 3]; taps k = 3(dt+1) +
//! (dx+1) read the input at (t + dt, x + dx) modulo the lattice.
//!
//! Two paths compute the same three functions:
//! - the reference (`*_reference`): direct loops that gather through a neighbour table.
//!   Readable, and the f64 yardstick of the tests, but the gather `inp[nb[k·V + s]]` does
//!   not vectorise: it ran at ~2.5 GMAC/s on 2 threads and was 90 % of a training step.
//! - the fast path (`conv3_forward`, `conv3_backward_input`, `conv3_backward_weight`): per
//!   group of samples one im2col (`conv::im2col_chunk`, shifted row copies) and one GEMM
//!   (`conv::matmul`). The input gradient is the forward convolution of dout with the
//!   weights transposed in (in, out) and flipped in the tap, so it needs no col2im.
//!   Groups hold whole samples and their size depends on the shape only; each group's sums
//!   are one single-threaded GEMM and the weight gradient's per-group parts are added in
//!   group order, so the results do not depend on the thread count.

use super::conv::{grow, im2col_chunk, matmul, Chunk, ConvShape};
use super::float::Float;
use super::lanes::lane_sum;
use rayon::prelude::*;
use std::sync::Mutex;

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
    /// The same convolution in `conv`'s terms (its im2col).
    fn im2col(&self) -> ConvShape {
        ConvShape { b: self.b, cin: self.cin, cout: self.cout, h: self.lt, w: self.lx, k: 3 }
    }
    /// In and out swapped: the shape of the input gradient as a forward convolution.
    fn transposed(&self) -> Conv3Shape {
        Conv3Shape { cin: self.cout, cout: self.cin, ..*self }
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
/// The reference of `conv3_forward`.
pub fn conv3_forward_reference<T: Float>(
    out: &mut [T],
    inp: &[T],
    w: &[T],
    bias: Option<&[T]>,
    nb: &[usize],
    s: &Conv3Shape,
) {
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
/// gradient of `conv3_forward`, i.e. its transpose. The reference of `conv3_backward_input`.
pub fn conv3_backward_input_reference<T: Float>(dinp: &mut [T], dout: &[T], w: &[T], nb: &[usize], s: &Conv3Shape) {
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

/// dw[o, i, k] += Σ_{b,s} dout[b, o, s] inp[b, i, nb_k(s)]: the weight gradient. The
/// reference of `conv3_backward_weight`.
pub fn conv3_backward_weight_reference<T: Float>(dw: &mut [T], dout: &[T], inp: &[T], nb: &[usize], s: &Conv3Shape) {
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

/// The GEMM wants at least this many columns: samples of a small lattice are grouped.
const MIN_COLS: usize = 256;

/// Samples per group of the fast path: a function of the shape alone (never of the thread
/// count), so that every group's sums are the same whichever thread runs it.
fn group_size(s: &Conv3Shape) -> usize {
    MIN_COLS.div_ceil(s.sites()).clamp(1, s.b.max(1))
}

/// One thread's buffers: a group's column matrix [9·Cin, n] and GEMM output [Cout, n].
#[derive(Default)]
struct GroupBufs<T> {
    col: Vec<T>,
    tmp: Vec<T>,
}

/// Scratch of the fast path, kept across calls (it grows to the largest shape once).
#[derive(Default)]
pub struct Conv3Scratch<T> {
    /// One per rayon thread, taken by `rayon::current_thread_index` (never contended).
    threads: Vec<Mutex<GroupBufs<T>>>,
    /// The weights as `conv3_backward_input` uses them (`transpose_flip`).
    wt: Vec<T>,
    /// The weight gradient of each group, summed in group order.
    dw_parts: Vec<T>,
}

impl<T: Float> Conv3Scratch<T> {
    pub fn bytes(&self) -> usize {
        let bufs: usize = self.threads.iter().map(|m| m.lock().map_or(0, |b| b.col.len() + b.tmp.len())).sum();
        (bufs + self.wt.len() + self.dw_parts.len()) * std::mem::size_of::<T>()
    }
}

/// Runs `f(bufs, group, part)` for every group of samples, in parallel; `dst` is cut into
/// `per_group` elements per group (the last part may be shorter).
fn par_groups<T: Float>(
    threads: &mut Vec<Mutex<GroupBufs<T>>>,
    s: &Conv3Shape,
    dst: &mut [T],
    per_group: usize,
    f: impl Fn(&mut GroupBufs<T>, Chunk, &mut [T]) + Sync,
) {
    let n = rayon::current_num_threads();
    if threads.len() < n {
        threads.resize_with(n, Default::default);
    }
    let (threads, g) = (&threads[..n], group_size(s));
    dst.par_chunks_mut(per_group).enumerate().for_each(|(j, part)| {
        let b0 = j * g;
        let group = Chunk { b0, nb: g.min(s.b - b0), y0: 0, ny: s.lt };
        // `f` runs no rayon work, so this thread cannot be handed another group meanwhile.
        let mut bufs = threads[rayon::current_thread_index().unwrap_or(0) % n].lock().unwrap();
        f(&mut bufs, group, part);
    });
}

/// dst[b, o] (+)= Σ_{i,k} wmat[o, i·9 + k] src[b, i, nb_k] (+ bias[o]) for the samples of
/// `group` (`dst` holds just them, `src` the whole batch): im2col of `src`, one GEMM, the result copied out.
#[allow(clippy::too_many_arguments)]
fn apply_group<T: Float>(
    bufs: &mut GroupBufs<T>,
    group: Chunk,
    dst: &mut [T],
    src: &[T],
    wmat: &[T],
    bias: Option<&[T]>,
    accumulate: bool,
    s: &Conv3Shape,
) {
    let (v, kd, n) = (s.sites(), s.cin * TAPS, group.nb * s.sites());
    grow(&mut bufs.col, kd * n);
    grow(&mut bufs.tmp, s.cout * n);
    im2col_chunk(&mut bufs.col, src, &s.im2col(), group);
    matmul(s.cout, n, kd, &mut bufs.tmp, n, 1, false, wmat, kd, 1, &bufs.col, n, 1, false);
    // The GEMM's columns run over (sample, site), the output's planes over (sample, channel).
    for (j, plane) in dst[..s.cout * n].chunks_exact_mut(v).enumerate() {
        let (bl, o) = (j / s.cout, j % s.cout);
        let r = &bufs.tmp[o * n + bl * v..][..v];
        if accumulate {
            plane.iter_mut().zip(r).for_each(|(y, r)| *y += *r);
        } else {
            let b = bias.map_or(T::ZERO, |b| b[o]);
            plane.iter_mut().zip(r).for_each(|(y, r)| *y = *r + b);
        }
    }
}

/// `conv3_forward_reference`, fast (module docs). Overwrites `out`.
pub fn conv3_forward<T: Float>(
    out: &mut [T],
    inp: &[T],
    w: &[T],
    bias: Option<&[T]>,
    s: &Conv3Shape,
    scratch: &mut Conv3Scratch<T>,
) {
    let per_group = group_size(s) * s.cout * s.sites();
    par_groups(&mut scratch.threads, s, &mut out[..s.b * s.cout * s.sites()], per_group, |bufs, g, part| {
        apply_group(bufs, g, part, inp, w, bias, false, s)
    });
}

/// wt[i, o, k] = w[o, i, flip(k)]: the input gradient reads dout at the opposite
/// neighbour with the weights of the (o → i) pair.
fn transpose_flip<T: Float>(wt: &mut Vec<T>, w: &[T], s: &Conv3Shape) {
    grow(wt, s.weights());
    for i in 0..s.cin {
        for o in 0..s.cout {
            for k in 0..TAPS {
                wt[(i * s.cout + o) * TAPS + k] = w[(o * s.cin + i) * TAPS + flip(k)];
            }
        }
    }
}

/// `conv3_backward_input_reference`, fast: the forward convolution of dout with the
/// transposed, flipped weights, accumulated into `dinp`.
pub fn conv3_backward_input<T: Float>(
    dinp: &mut [T],
    dout: &[T],
    w: &[T],
    s: &Conv3Shape,
    scratch: &mut Conv3Scratch<T>,
) {
    let Conv3Scratch { threads, wt, .. } = scratch;
    transpose_flip(wt, w, s);
    let (t, wt) = (s.transposed(), &wt[..s.weights()]);
    let per_group = group_size(s) * s.cin * s.sites();
    par_groups(threads, s, &mut dinp[..s.b * s.cin * s.sites()], per_group, |bufs, g, part| {
        apply_group(bufs, g, part, dout, wt, None, true, &t)
    });
}

/// `conv3_backward_weight_reference`, fast: per group dW_g[Cout, 9·Cin] = dout_g[Cout, n] ·
/// col_gᵀ[n, 9·Cin], then dw += Σ_g dW_g in group order.
pub fn conv3_backward_weight<T: Float>(
    dw: &mut [T],
    dout: &[T],
    inp: &[T],
    s: &Conv3Shape,
    scratch: &mut Conv3Scratch<T>,
) {
    let (v, kd, nw) = (s.sites(), s.cin * TAPS, s.weights());
    let Conv3Scratch { threads, dw_parts, .. } = scratch;
    let groups = s.b.div_ceil(group_size(s));
    grow(dw_parts, groups * nw);
    par_groups(threads, s, &mut dw_parts[..groups * nw], nw, |bufs, g, part| {
        let n = g.nb * v;
        grow(&mut bufs.col, kd * n);
        grow(&mut bufs.tmp, s.cout * n);
        im2col_chunk(&mut bufs.col, inp, &s.im2col(), g);
        // dout of the group as a [Cout, n] matrix, columns (sample, site) as in col.
        for (j, plane) in dout[g.b0 * s.cout * v..][..s.cout * n].chunks_exact(v).enumerate() {
            let (bl, o) = (j / s.cout, j % s.cout);
            bufs.tmp[o * n + bl * v..][..v].copy_from_slice(plane);
        }
        matmul(s.cout, kd, n, part, kd, 1, false, &bufs.tmp, n, 1, &bufs.col, 1, n, false);
    });
    for part in dw_parts[..groups * nw].chunks_exact(nw) {
        dw[..nw].iter_mut().zip(part).for_each(|(d, p)| *d += *p);
    }
}

/// dbias[o] += Σ_{b,s} dout[b, o, s].
/// Plane sums in parallel, each over interleaved lanes in a fixed order; added in (b, o)
/// order.
pub fn conv3_backward_bias<T: Float>(dbias: &mut [T], dout: &[T], s: &Conv3Shape) {
    let v = s.sites();
    let sums: Vec<T> = dout[..s.b * s.cout * v].par_chunks(v).map(|p| lane_sum(p, |x| x)).collect();
    for (i, p) in sums.into_iter().enumerate() {
        dbias[i % s.cout] += p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    fn shape() -> Conv3Shape {
        Conv3Shape { b: 2, cin: 3, cout: 4, lt: 4, lx: 5 }
    }

    /// One output value by hand, on both paths: a single unit weight on tap (dt, dx) =
    /// (−1, +1) copies the input from the periodic neighbour (t − 1, x + 1).
    #[test]
    fn a_single_tap_reads_its_periodic_neighbour() {
        let s = Conv3Shape { b: 1, cin: 1, cout: 1, lt: 3, lx: 4 };
        let nb = neighbour_table(3, 4);
        let inp: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let mut w = vec![0.0; 9];
        w[2] = 1.0; // k = 3·0 + 2: dt = −1, dx = +1
        let (mut out, mut fast) = (vec![0.0; 12], vec![0.0; 12]);
        conv3_forward_reference(&mut out, &inp, &w, Some(&[0.5]), &nb, &s);
        conv3_forward(&mut fast, &inp, &w, Some(&[0.5]), &s, &mut Conv3Scratch::default());
        for out in [out, fast] {
            // site (t=0, x=3) reads (t=2, x=0) = 8
            assert_eq!(out[3], 8.5);
            // site (t=1, x=1) reads (t=0, x=2) = 2
            assert_eq!(out[5], 2.5);
        }
    }

    /// The three reference functions are the gradients of the bilinear form
    /// ⟨r, conv(x, w) + b⟩.
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
            conv3_forward_reference(&mut out, x, w, Some(bias), &nb, &s);
            out.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        let mut db = vec![0.0; bias.len()];
        conv3_backward_input_reference(&mut dx, &r, &w, &nb, &s);
        conv3_backward_weight_reference(&mut dw, &r, &x, &nb, &s);
        conv3_backward_bias(&mut db, &r, &s);
        let (w0, b0, x0) = (w.clone(), bias.clone(), x.clone());
        check_grad("conv3 input", &mut x, &dx, |x| form(x, &w0, &b0));
        check_grad("conv3 weight", &mut w, &dw, |w| form(&x0, w, &b0));
        check_grad("conv3 bias", &mut bias, &db, |b| form(&x0, &w0, b));
    }

    /// L_t ≠ L_x, L = 3 (every tap wraps somewhere), C_in ≠ C_out, one input channel (the
    /// first layer), batch 1 and 5; one group per sample (V ≥ 256) and groups of 3 samples
    /// with a short last one (V = 108).
    fn odd_shapes() -> Vec<Conv3Shape> {
        vec![
            Conv3Shape { b: 1, cin: 2, cout: 3, lt: 3, lx: 3 },
            Conv3Shape { b: 5, cin: 3, cout: 2, lt: 3, lx: 5 },
            Conv3Shape { b: 5, cin: 1, cout: 4, lt: 4, lx: 7 },
            Conv3Shape { b: 5, cin: 4, cout: 3, lt: 12, lx: 9 },
            Conv3Shape { b: 5, cin: 2, cout: 5, lt: 17, lx: 16 },
            Conv3Shape { b: 1, cin: 5, cout: 2, lt: 6, lx: 4 },
        ]
    }

    /// The three functions of one path on random inputs; the gradients accumulate into
    /// non-zero buffers.
    fn run_path<T: Float>(fast: bool, s: &Conv3Shape, seed: u64) -> [Vec<T>; 3] {
        let v = s.sites();
        let f = |n: usize, k: u64| rand_vec(n, seed + k).into_iter().map(T::from_f64).collect::<Vec<T>>();
        let (inp, w, bias, dout) = (f(s.b * s.cin * v, 1), f(s.weights(), 2), f(s.cout, 3), f(s.b * s.cout * v, 4));
        let (mut out, mut dinp, mut dw) = (vec![T::ZERO; s.b * s.cout * v], f(inp.len(), 5), f(w.len(), 6));
        if fast {
            let sc = &mut Conv3Scratch::default();
            conv3_forward(&mut out, &inp, &w, Some(&bias), s, sc);
            conv3_backward_input(&mut dinp, &dout, &w, s, sc);
            conv3_backward_weight(&mut dw, &dout, &inp, s, sc);
        } else {
            let nb = neighbour_table(s.lt, s.lx);
            conv3_forward_reference(&mut out, &inp, &w, Some(&bias), &nb, s);
            conv3_backward_input_reference(&mut dinp, &dout, &w, &nb, s);
            conv3_backward_weight_reference(&mut dw, &dout, &inp, &nb, s);
        }
        [out, dinp, dw]
    }

    /// The fast path against the reference in f64 on 1, 2 and 3 threads: the same sums in
    /// another order, so equal to rounding.
    #[test]
    fn fast_path_equals_reference() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (i, s) in odd_shapes().iter().enumerate() {
                let seed = 10 * i as u64;
                let (fast, reference): ([Vec<f64>; 3], [Vec<f64>; 3]) =
                    pool.install(|| (run_path(true, s, seed), run_path(false, s, seed)));
                for (what, (a, b)) in ["forward", "input grad", "weight grad"].iter().zip(fast.iter().zip(&reference)) {
                    let err = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max);
                    assert!(err < 1e-12, "{threads} threads, {s:?}: {what} differs by {err:.1e}");
                }
            }
        }
    }

    /// f32 on 1, 2 and 3 threads: the same bits (groups and their order are the shape's).
    #[test]
    fn f32_is_independent_of_thread_count() {
        for (i, s) in odd_shapes().iter().enumerate() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| run_path::<f32>(true, s, 10 * i as u64))
            };
            let one = run(1);
            assert!(run(2) == one && run(3) == one, "{s:?}: the result depends on the thread count");
        }
    }
}
