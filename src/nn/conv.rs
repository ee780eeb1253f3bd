//! Periodic (circular) k×k convolution, k odd, as im2col + GEMM.
//!
//! Activations are NCHW. Two paths compute the same convolution:
//! - the reference (`conv2d_forward_im2col`, `conv2d_backward_im2col`): one column matrix
//!   `[Cin·k·k, B·H·W]` for the whole batch and one (internally threaded) GEMM. Readable, but
//!   the column matrix of a full-resolution layer is hundreds of MB (864 × 65 536 floats for
//!   dmassq's last up block at L = 32, batch 64): it streams through DRAM twice per GEMM.
//! - the fast path (`conv2d_forward`, `conv2d_backward`): the batch is split into one
//!   contiguous range of samples per thread, and each thread walks its range in chunks of
//!   columns (a band of rows of one sample, or several whole samples when a plane is small)
//!   whose column matrix fits in cache, with single-threaded GEMMs. No thread waits on
//!   another inside a layer, no large buffer is written, and the weight gradient is summed
//!   per thread and then over threads in a fixed order (bit-reproducible for a thread count).
//!
//! Dense layers are the H = W = 1, k = 1 case of the same code.

use super::float::Float;
use super::lanes::lane_sum;
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

/// Bytes of one thread's column matrix and output columns: small enough to stay in a core's
/// L2 / its share of L3 between im2col writing them and the GEMM reading them, large enough
/// (with `MIN_COLS`) for the GEMM's packed micro-kernels to run near peak.
const CHUNK_BYTES: usize = 1 << 20;
const MIN_COLS: usize = 256;

/// A chunk of columns: `nb` whole samples from `b0` (`y0 = 0`, `ny = h`), or rows
/// `y0..y0 + ny` of the one sample `b0` (`nb = 1`). Columns are ordered (sample, y, x).
#[derive(Clone, Copy, Debug)]
pub(super) struct Chunk {
    pub b0: usize,
    pub nb: usize,
    pub y0: usize,
    pub ny: usize,
}

impl Chunk {
    fn cols(&self, w: usize) -> usize {
        self.nb * self.ny * w
    }
}

/// Columns per chunk of shape `s`: (samples per chunk, rows per chunk).
fn chunk_geometry<T>(s: &ConvShape) -> (usize, usize) {
    let hw = s.h * s.w;
    let target = (CHUNK_BYTES / (std::mem::size_of::<T>() * (s.kdim() + s.cout))).max(MIN_COLS);
    if hw >= target {
        (1, (target / s.w).clamp(1, s.h))
    } else {
        ((target / hw).max(1), s.h)
    }
}

/// Calls `f` on the chunks of samples `b0..b1`, in order.
fn for_each_chunk<T>(s: &ConvShape, b0: usize, b1: usize, mut f: impl FnMut(Chunk)) {
    let (per, rows) = chunk_geometry::<T>(s);
    if rows < s.h {
        for b in b0..b1 {
            for y0 in (0..s.h).step_by(rows) {
                f(Chunk { b0: b, nb: 1, y0, ny: rows.min(s.h - y0) });
            }
        }
    } else {
        for b in (b0..b1).step_by(per) {
            f(Chunk { b0: b, nb: per.min(b1 - b), y0: 0, ny: s.h });
        }
    }
}

/// Contiguous sample ranges, one per task: the first `b % n` take one more.
fn task_ranges(b: usize, n: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i * (b / n) + i.min(b % n), (i + 1) * (b / n) + (i + 1).min(b % n))).collect()
}

/// `buf` cut at the sample ranges `r` (each sample `per` elements).
fn split_ranges<'a, T>(mut buf: &'a mut [T], r: &[(usize, usize)], per: usize) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(r.len());
    for &(a, b) in r {
        let (head, rest) = std::mem::take(&mut buf).split_at_mut((b - a) * per);
        out.push(head);
        buf = rest;
    }
    out
}

/// One thread's buffers of the fast path: a chunk's column matrix, its output columns, and
/// the thread's partial weight and bias gradients.
#[derive(Default)]
struct TaskScratch<T> {
    col: Vec<T>,
    tmp: Vec<T>,
    dw: Vec<T>,
    /// One plane's band of shifted columns (col2im).
    band: Vec<T>,
}

/// Scratch shared by every convolution of a network; grows to the largest layer once.
/// `col` and `tmp` are the reference path's whole-batch matrices (allocated only when the
/// reference runs); the fast path keeps per-thread chunk buffers.
#[derive(Default)]
pub struct ConvScratch<T> {
    pub col: Vec<T>,
    pub tmp: Vec<T>,
    tasks: Vec<TaskScratch<T>>,
}

pub(super) fn grow<T: Float>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::ZERO);
    }
}

impl<T: Float> ConvScratch<T> {
    /// Sizes the fast path's buffers for `s` on the current rayon pool.
    pub fn reserve(&mut self, s: &ConvShape) {
        let n = rayon::current_num_threads().clamp(1, s.b.max(1));
        if self.tasks.len() < n {
            self.tasks.resize_with(n, TaskScratch::default);
        }
        let (per, rows) = chunk_geometry::<T>(s);
        let nc = per.min(s.b) * rows * s.w;
        for t in &mut self.tasks[..n] {
            grow(&mut t.col, s.kdim() * nc);
            grow(&mut t.tmp, s.cout * nc);
            grow(&mut t.dw, s.cout * (s.kdim() + 1));
            grow(&mut t.band, rows * s.w * per.min(s.b));
        }
    }

    /// Sizes the reference path's whole-batch matrices for `s`.
    pub fn reserve_im2col(&mut self, s: &ConvShape) {
        grow(&mut self.col, s.kdim() * s.cols());
        grow(&mut self.tmp, s.cout * s.cols());
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let task: usize = self.tasks.iter().map(|t| t.col.len() + t.tmp.len() + t.dw.len() + t.band.len()).sum();
        (self.col.len() + self.tmp.len() + task) * std::mem::size_of::<T>()
    }
}

/// dst = lhs·rhs (or dst += lhs·rhs), row/column strides given explicitly.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul<T: Float>(
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
    threaded: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    if k > 0 {
        assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
        assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    }
    let par = if threaded && (m * n * k) >= (1 << 15) && rayon::current_num_threads() > 1 {
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

/// The horizontal shift of tap `kx` as a signed offset of magnitude ≤ w/2 (periodic).
fn tap_shift(kx: usize, k: usize, w: usize) -> isize {
    let s = (kx + w - (k / 2) % w) % w;
    if s <= w / 2 {
        s as isize
    } else {
        s as isize - w as isize
    }
}

/// dst[r·w + x] = src[r·w + (x + s) mod w] for the rows of `src` (|s| < w): one copy of
/// the whole run shifted by s, then the |s| wrapped entries of each row. One call per run
/// of rows instead of two short copies per row (which cost more than the data they moved
/// at w = 4…32).
fn shifted_rows<T: Float>(dst: &mut [T], src: &[T], w: usize, s: isize) {
    let n = src.len();
    let a = s.unsigned_abs();
    if n == 0 {
        return;
    }
    // a = 1 (every 3×3 tap off the centre column) as a plain store: a copy_from_slice of
    // unknown length is a memcpy call.
    if s >= 0 {
        dst[..n - a].copy_from_slice(&src[a..]);
        for (d, r) in dst.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
            match a {
                0 => {}
                1 => d[w - 1] = r[0],
                _ => d[w - a..].copy_from_slice(&r[..a]),
            }
        }
    } else {
        dst[a..n].copy_from_slice(&src[..n - a]);
        for (d, r) in dst.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
            match a {
                1 => d[0] = r[w - 1],
                _ => d[..a].copy_from_slice(&r[w - a..]),
            }
        }
    }
}

/// Row r = (ci·k + ky)·k + kx of chunk `c`'s column matrix:
/// row[(b − b0)·ny·W + (y − y0)·W + x] = inp[b, ci, (y+ky−p) mod H, (x+kx−p) mod W].
fn im2col_row<T: Float>(row: &mut [T], inp: &[T], s: &ConvShape, r: usize, c: Chunk) {
    let (h, w, k) = (s.h, s.w, s.k);
    let hw = h * w;
    let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
    let sy = (ky + h - (k / 2) % h) % h;
    let sx = tap_shift(kx, k, w);
    // The band's source rows are one run, or two where they wrap around the plane.
    let start = (c.y0 + sy) % h;
    let first = c.ny.min(h - start);
    for bl in 0..c.nb {
        let plane = &inp[((c.b0 + bl) * s.cin + ci) * hw..][..hw];
        let (d1, d2) = row[bl * c.ny * w..][..c.ny * w].split_at_mut(first * w);
        shifted_rows(d1, &plane[start * w..][..first * w], w, sx);
        shifted_rows(d2, &plane[..(c.ny - first) * w], w, sx);
    }
}

/// The whole batch as one chunk (the reference path).
fn whole(s: &ConvShape) -> Chunk {
    Chunk { b0: 0, nb: s.b, y0: 0, ny: s.h }
}

/// col[(ci·k + ky)·k + kx][b·HW + y·W + x] = inp[b, ci, (y+ky−p) mod H, (x+kx−p) mod W].
pub fn im2col<T: Float>(col: &mut [T], inp: &[T], s: &ConvShape) {
    let n = s.cols();
    col[..s.kdim() * n].par_chunks_mut(n).enumerate().for_each(|(r, row)| im2col_row(row, inp, s, r, whole(s)));
}

/// `im2col` of chunk `c` alone (also the action network's periodic convolution).
pub(super) fn im2col_chunk<T: Float>(col: &mut [T], inp: &[T], s: &ConvShape, c: Chunk) {
    let n = c.cols(s.w);
    for (r, row) in col[..s.kdim() * n].chunks_exact_mut(n).enumerate() {
        im2col_row(row, inp, s, r, c);
    }
}

/// The adjoint of `im2col_row` for every (ky, kx) of channel `ci` of sample b0 + bl of
/// chunk `c`, accumulated into that sample's plane: each tap's columns are shifted back
/// into `buf` (`shifted_rows` by −s) and added as one run, so the inner loops are long.
#[allow(clippy::too_many_arguments)]
fn col2im_plane<T: Float>(
    plane: &mut [T],
    dcol: &[T],
    s: &ConvShape,
    ci: usize,
    bl: usize,
    c: Chunk,
    buf: &mut Vec<T>,
) {
    let (h, w, k) = (s.h, s.w, s.k);
    let (n, seg) = (c.cols(w), c.ny * w);
    grow(buf, seg);
    for ky in 0..k {
        let start = (c.y0 + ky + h - (k / 2) % h) % h;
        let first = c.ny.min(h - start);
        for kx in 0..k {
            let r = (ci * k + ky) * k + kx;
            let src = &dcol[r * n + bl * seg..][..seg];
            let sx = tap_shift(kx, k, w);
            let (b1, b2) = buf[..seg].split_at_mut(first * w);
            shifted_rows(b1, &src[..first * w], w, -sx);
            shifted_rows(b2, &src[first * w..], w, -sx);
            add_into(&mut plane[start * w..][..first * w], b1);
            add_into(&mut plane[..b2.len()], b2);
        }
    }
}

fn add_into<T: Float>(dst: &mut [T], src: &[T]) {
    for (d, v) in dst.iter_mut().zip(src) {
        *d += *v;
    }
}

/// Adjoint of `im2col`, accumulated: dinp += col2im(dcol).
pub fn col2im_add<T: Float>(dinp: &mut [T], dcol: &[T], s: &ConvShape) {
    let hw = s.h * s.w;
    dinp[..s.b * s.cin * hw]
        .par_chunks_mut(hw)
        .enumerate()
        .for_each_init(Vec::new, |buf, (i, plane)| col2im_plane(plane, dcol, s, i % s.cin, i / s.cin, whole(s), buf));
}

/// `col2im_add` of chunk `c` into `dinp`, which holds the samples from `tb0` on.
fn col2im_chunk<T: Float>(dinp: &mut [T], tb0: usize, dcol: &[T], s: &ConvShape, c: Chunk, buf: &mut Vec<T>) {
    let hw = s.h * s.w;
    for bl in 0..c.nb {
        for ci in 0..s.cin {
            let plane = &mut dinp[((c.b0 - tb0 + bl) * s.cin + ci) * hw..][..hw];
            col2im_plane(plane, dcol, s, ci, bl, c, buf);
        }
    }
}

/// out[B, Cout, H, W] = conv(inp[B, Cin, H, W], weight[Cout, Cin, k, k]) + bias[Cout]:
/// the reference path (module docs).
pub fn conv2d_forward_im2col<T: Float>(
    out: &mut [T],
    inp: &[T],
    weight: &[T],
    bias: &[T],
    s: &ConvShape,
    scratch: &mut ConvScratch<T>,
) {
    scratch.reserve_im2col(s);
    let (kd, nc, hw) = (s.kdim(), s.cols(), s.h * s.w);
    im2col(&mut scratch.col, inp, s);
    let tmp = &mut scratch.tmp[..s.cout * nc];
    matmul(s.cout, nc, kd, tmp, nc, 1, false, weight, kd, 1, &scratch.col, nc, 1, true);
    let tmp = &*tmp;
    out[..s.b * s.cout * hw].par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
        let (b, co) = (i / s.cout, i % s.cout);
        let bv = bias[co];
        for (ov, tv) in o.iter_mut().zip(&tmp[co * nc + b * hw..][..hw]) {
            *ov = *tv + bv;
        }
    });
}

/// Accumulates dweight, dbias and (when given) dinp from dout: the reference path.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_im2col<T: Float>(
    dinp: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
    dout: &[T],
    inp: &[T],
    weight: &[T],
    s: &ConvShape,
    scratch: &mut ConvScratch<T>,
) {
    scratch.reserve_im2col(s);
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
    matmul(s.cout, kd, nc, dweight, kd, 1, true, tmp, nc, 1, &scratch.col, 1, nc, true);
    if let Some(dinp) = dinp {
        // dcol[K, N] = Wᵀ[K, Cout] · dout[Cout, N], written over col (no longer needed).
        matmul(kd, nc, s.cout, &mut scratch.col, nc, 1, false, weight, 1, kd, tmp, nc, 1, true);
        col2im_add(dinp, &scratch.col, s);
    }
}

/// The fast path's tasks for `s`: one contiguous sample range per thread (at most one per
/// sample).
fn tasks<T: Float>(s: &ConvShape, scratch: &mut ConvScratch<T>) -> Vec<(usize, usize)> {
    scratch.reserve(s);
    task_ranges(s.b, rayon::current_num_threads().clamp(1, s.b.max(1)))
}

/// out[B, Cout, H, W] = conv(inp[B, Cin, H, W], weight[Cout, Cin, k, k]) + bias[Cout]:
/// batch-parallel over cache-sized chunks (module docs).
pub fn conv2d_forward<T: Float>(
    out: &mut [T],
    inp: &[T],
    weight: &[T],
    bias: &[T],
    s: &ConvShape,
    scratch: &mut ConvScratch<T>,
) {
    let ranges = tasks(s, scratch);
    let outs = split_ranges(&mut out[..s.b * s.cout * s.h * s.w], &ranges, s.cout * s.h * s.w);
    scratch.tasks.par_iter_mut().zip(outs).zip(&ranges).for_each(|((t, o), &(b0, b1))| {
        for_each_chunk::<T>(s, b0, b1, |c| forward_chunk(o, b0, inp, weight, bias, s, c, t));
    });
}

/// One chunk of the forward pass into `out`, which holds the samples from `tb0` on.
#[allow(clippy::too_many_arguments)]
fn forward_chunk<T: Float>(
    out: &mut [T],
    tb0: usize,
    inp: &[T],
    weight: &[T],
    bias: &[T],
    s: &ConvShape,
    c: Chunk,
    t: &mut TaskScratch<T>,
) {
    let (kd, n, hw, seg) = (s.kdim(), c.cols(s.w), s.h * s.w, c.ny * s.w);
    im2col_chunk(&mut t.col, inp, s, c);
    matmul(s.cout, n, kd, &mut t.tmp, n, 1, false, weight, kd, 1, &t.col, n, 1, false);
    for bl in 0..c.nb {
        for (co, &bv) in bias[..s.cout].iter().enumerate() {
            let dst = &mut out[((c.b0 - tb0 + bl) * s.cout + co) * hw + c.y0 * s.w..][..seg];
            for (d, v) in dst.iter_mut().zip(&t.tmp[co * n + bl * seg..][..seg]) {
                *d = *v + bv;
            }
        }
    }
}

/// Accumulates dweight, dbias and (when given) dinp from dout: batch-parallel over
/// cache-sized chunks, the weight gradient summed per thread and then over the threads in
/// order (module docs).
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
    let ranges = tasks(s, scratch);
    let nw = s.cout * s.kdim();
    let dinps: Vec<Option<&mut [T]>> = match dinp {
        Some(d) => {
            split_ranges(&mut d[..s.b * s.cin * s.h * s.w], &ranges, s.cin * s.h * s.w).into_iter().map(Some).collect()
        }
        None => ranges.iter().map(|_| None).collect(),
    };
    scratch.tasks.par_iter_mut().zip(dinps).zip(&ranges).for_each(|((t, mut di), &(b0, b1))| {
        t.dw[..nw + s.cout].fill(T::ZERO);
        for_each_chunk::<T>(s, b0, b1, |c| backward_chunk(di.as_deref_mut(), b0, dout, inp, weight, s, c, t));
    });
    let parts = &scratch.tasks[..ranges.len()];
    dweight[..nw].par_chunks_mut(1 << 12).enumerate().for_each(|(j, d)| {
        for t in parts {
            for (dv, pv) in d.iter_mut().zip(&t.dw[j << 12..]) {
                *dv += *pv;
            }
        }
    });
    for t in parts {
        for (dv, pv) in dbias[..s.cout].iter_mut().zip(&t.dw[nw..]) {
            *dv += *pv;
        }
    }
}

/// One chunk of the backward pass: the thread's partial weight and bias gradients in `t.dw`
/// (weight, then bias), and dinp (holding the samples from `tb0` on) when given.
#[allow(clippy::too_many_arguments)]
fn backward_chunk<T: Float>(
    dinp: Option<&mut [T]>,
    tb0: usize,
    dout: &[T],
    inp: &[T],
    weight: &[T],
    s: &ConvShape,
    c: Chunk,
    t: &mut TaskScratch<T>,
) {
    let (kd, n, hw, seg) = (s.kdim(), c.cols(s.w), s.h * s.w, c.ny * s.w);
    let TaskScratch { col, tmp, dw, band } = t;
    // dout of the chunk as a [Cout, n] matrix (row stride `rs`): in place for a band of one
    // sample (the GEMMs pack it anyway), gathered into `tmp` across samples.
    let (dy, rs): (&[T], usize) = if c.nb == 1 {
        (&dout[(c.b0 * s.cout) * hw + c.y0 * s.w..][..(s.cout - 1) * hw + seg], hw)
    } else {
        for bl in 0..c.nb {
            for co in 0..s.cout {
                let src = &dout[((c.b0 + bl) * s.cout + co) * hw + c.y0 * s.w..][..seg];
                tmp[co * n + bl * seg..][..seg].copy_from_slice(src);
            }
        }
        (&tmp[..], n)
    };
    let (dwt, dbt) = dw.split_at_mut(s.cout * kd);
    for (co, db) in dbt[..s.cout].iter_mut().enumerate() {
        *db += lane_sum(&dy[co * rs..][..n], |v| v);
    }
    im2col_chunk(col, inp, s, c);
    // dW[Cout, K] += dout[Cout, n] · colᵀ[n, K]
    matmul(s.cout, kd, n, dwt, kd, 1, true, dy, rs, 1, col, 1, n, false);
    if let Some(dinp) = dinp {
        // dcol[K, n] = Wᵀ[K, Cout] · dout[Cout, n], written over col (no longer needed).
        matmul(kd, n, s.cout, col, n, 1, false, weight, 1, kd, dy, rs, 1, false);
        col2im_chunk(dinp, tb0, col, s, c, band);
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

    /// Shapes that cut the batch into row bands (f64: 359 columns of 1 MB at K + Cout = 365
    /// → 17-row bands of a 24-row plane, the last one short), into several multi-sample
    /// chunks per thread (4 sites per plane, 256 columns = 64 samples per chunk) and into
    /// one chunk.
    fn chunked_shapes() -> Vec<ConvShape> {
        vec![
            ConvShape { b: 3, cin: 40, cout: 5, h: 24, w: 20, k: 3 },
            ConvShape { b: 200, cin: 60, cout: 4, h: 2, w: 2, k: 3 },
            ConvShape { b: 7, cin: 3, cout: 4, h: 4, w: 2, k: 3 },
            ConvShape { b: 5, cin: 6, cout: 2, h: 1, w: 1, k: 1 },
        ]
    }

    #[test]
    fn chunk_geometry_cuts_as_intended() {
        let [bands, many, one, _] = chunked_shapes()[..] else { unreachable!() };
        assert_eq!(chunk_geometry::<f64>(&bands), (1, 17));
        assert_eq!(chunk_geometry::<f64>(&many), (64, 2));
        let count = |s: &ConvShape, b0, b1| {
            let mut n = 0;
            for_each_chunk::<f64>(s, b0, b1, |_| n += 1);
            n
        };
        assert_eq!(count(&bands, 0, 3), 6);
        assert_eq!(count(&many, 0, 100), 2);
        assert_eq!(count(&one, 0, 7), 1);
    }

    /// The fast path against the reference (whole-batch im2col) on 1, 2 and 3 threads:
    /// the same sums in another order, so equal to rounding.
    #[test]
    fn fast_path_equals_reference() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (i, s) in chunked_shapes().into_iter().chain(shapes()).enumerate() {
                let seed = 1000 + 10 * i as u64;
                let inp = rand_vec(s.b * s.cin * s.h * s.w, seed);
                let wt = rand_vec(s.cout * s.kdim(), seed + 1);
                let bias = rand_vec(s.cout, seed + 2);
                let dout = rand_vec(s.b * s.cout * s.h * s.w, seed + 3);
                let init = rand_vec(s.b * s.cin * s.h * s.w, seed + 4);
                let run = |fast: bool| {
                    let mut sc = ConvScratch::default();
                    let mut out = vec![0.0; dout.len()];
                    let (mut dinp, mut dw, mut db) = (init.clone(), vec![0.5; wt.len()], vec![0.25; s.cout]);
                    pool.install(|| {
                        if fast {
                            conv2d_forward(&mut out, &inp, &wt, &bias, &s, &mut sc);
                            conv2d_backward(Some(&mut dinp), &mut dw, &mut db, &dout, &inp, &wt, &s, &mut sc);
                        } else {
                            conv2d_forward_im2col(&mut out, &inp, &wt, &bias, &s, &mut sc);
                            conv2d_backward_im2col(Some(&mut dinp), &mut dw, &mut db, &dout, &inp, &wt, &s, &mut sc);
                        }
                    });
                    [out, dinp, dw, db]
                };
                let (fast, reference) = (run(true), run(false));
                for (what, (a, b)) in ["out", "dinp", "dweight", "dbias"].iter().zip(fast.iter().zip(&reference)) {
                    let err = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max);
                    assert!(err < 1e-12, "{threads} threads, {s:?}: {what} differs by {err:.1e}");
                }
            }
        }
    }
}
