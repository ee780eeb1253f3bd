//! SiLU(FiLM(GroupNorm(x))) as one layer, forward and backward: the pre-activation of
//! every block (and, without FiLM, of the head).
//!
//! The three separate layers (groupnorm.rs, activation.rs) are the reference: they write
//! and read back two intermediate tensors per block, and their f32 reductions run one
//! element at a time (a strict sequential sum does not vectorise). Here one task per
//! (sample, group) reads the group once for its statistics (it stays in L1/L2) and once to
//! write the activation; the backward reads x and dy once, keeps dz = ∂L/∂(pre-SiLU) of the
//! group in a task buffer, and writes dx once. Sums run over interleaved accumulators in a
//! fixed order (lanes.rs), so the result does not depend on the thread count or on the SIMD
//! width the CPU dispatch picks.
//!
//! With x̂ = (x − μ)·r (r = 1/√(var + ε)), s = 1 + scale, the pre-activation is
//! z = (γ x̂ + β)·s + shift = (x − μ)·(γ r s) + (β s + shift).

use super::float::Float;
use super::groupnorm::{NormShape, GN_EPS};
use super::lanes::{lane_sum, lane_sum2};
use rayon::prelude::*;

/// (1 + scale, shift) of channel `ch` of sample `bi` from ss[B, 2C]; (1, 0) without FiLM.
#[inline(always)]
fn film_of<T: Float>(ss: Option<&[T]>, bi: usize, ch: usize, c: usize) -> (T, T) {
    match ss {
        Some(ss) => (T::ONE + ss[bi * 2 * c + ch], ss[bi * 2 * c + c + ch]),
        None => (T::ONE, T::ZERO),
    }
}

/// The per-channel coefficients of one (sample, group): γ, β and the FiLM (scale, shift).
#[derive(Clone, Copy)]
struct Coef<'a, T> {
    gamma: &'a [T],
    beta: &'a [T],
    film: Option<(&'a [T], &'a [T])>,
}

impl<'a, T: Float> Coef<'a, T> {
    fn new(gamma: &'a [T], beta: &'a [T], ss: Option<&'a [T]>, bi: usize, g: usize, n: &NormShape) -> Self {
        let (cg, c) = (n.c / n.groups, n.c);
        let film = ss.map(|ss| (&ss[bi * 2 * c + g * cg..][..cg], &ss[bi * 2 * c + c + g * cg..][..cg]));
        Coef { gamma: &gamma[g * cg..][..cg], beta: &beta[g * cg..][..cg], film }
    }
    fn channels(&self) -> usize {
        self.gamma.len()
    }
    /// (γ, β, 1 + scale, shift) of the group's channel j.
    #[inline(always)]
    fn at(&self, j: usize) -> (T, T, T, T) {
        let (sc, sh) = self.film.map_or((T::ONE, T::ZERO), |(s, h)| (T::ONE + s[j], h[j]));
        (self.gamma[j], self.beta[j], sc, sh)
    }
}

/// One (sample, group) of the forward: statistics into `st`, activations into `o`.
#[inline(always)]
fn group_forward<T: Float>(o: &mut [T], st: &mut [T], x: &[T], coef: Coef<'_, T>, hw: usize) {
    let inv_n = T::from_f64(1.0 / x.len() as f64);
    let mean = lane_sum(x, |v| v) * inv_n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) * inv_n;
    let rstd = T::ONE / (var + T::from_f64(GN_EPS)).sqrt();
    st[0] = mean;
    st[1] = rstd;
    for j in 0..coef.channels() {
        let (ga, be, sc, sh) = coef.at(j);
        let (a, b0) = (ga * rstd * sc, be * sc + sh);
        for (ov, xv) in o[j * hw..][..hw].iter_mut().zip(&x[j * hw..][..hw]) {
            let z = (*xv - mean) * a + b0;
            *ov = z * z.sigmoid();
        }
    }
}

/// One (sample, group) of the backward: dz of the group into `dz`, per channel
/// (Σ dz, Σ dz·x̂) into `sums`, and dx += the GroupNorm backward of dz·γ·s.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn group_backward<T: Float>(
    dx: &mut [T],
    sums: &mut [T],
    dz: &mut [T],
    dy: &[T],
    x: &[T],
    (mean, rstd): (T, T),
    coef: Coef<'_, T>,
    hw: usize,
) {
    let (mut m1, mut m2) = (T::ZERO, T::ZERO);
    for j in 0..coef.channels() {
        let (ga, be, sc, sh) = coef.at(j);
        let (a, b0) = (ga * rstd * sc, be * sc + sh);
        let (xs, ys, zs) = (&x[j * hw..][..hw], &dy[j * hw..][..hw], &mut dz[j * hw..][..hw]);
        for ((zv, xv), yv) in zs.iter_mut().zip(xs).zip(ys) {
            let z = (*xv - mean) * a + b0;
            let s = z.sigmoid();
            *zv = *yv * s * (T::ONE + z * (T::ONE - s));
        }
        let (s0, s1) = lane_sum2(zs, xs, |d, xv| (d, d * ((xv - mean) * rstd)));
        sums[2 * j] = s0;
        sums[2 * j + 1] = s1;
        m1 += ga * sc * s0;
        m2 += ga * sc * s1;
    }
    let inv_n = T::from_f64(1.0 / x.len() as f64);
    let (m1, m2) = (m1 * inv_n, m2 * inv_n);
    for j in 0..coef.channels() {
        let (ga, _, sc, _) = coef.at(j);
        let gs = ga * sc;
        let it = dx[j * hw..][..hw].iter_mut().zip(&dz[j * hw..][..hw]).zip(&x[j * hw..][..hw]);
        for ((dv, zv), xv) in it {
            let xh = (*xv - mean) * rstd;
            *dv += rstd * (*zv * gs - m1 - xh * m2);
        }
    }
}

// The same code compiled for AVX2 + FMA (chosen at run time). No expression is contracted
// into an FMA (Rust never does so implicitly), so both versions round alike.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn group_forward_avx2<T: Float>(o: &mut [T], st: &mut [T], x: &[T], coef: Coef<'_, T>, hw: usize) {
    group_forward(o, st, x, coef, hw)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn group_backward_avx2<T: Float>(
    dx: &mut [T],
    sums: &mut [T],
    dz: &mut [T],
    dy: &[T],
    x: &[T],
    stats: (T, T),
    coef: Coef<'_, T>,
    hw: usize,
) {
    group_backward(dx, sums, dz, dy, x, stats, coef, hw)
}

/// Whether the CPU has AVX2 and FMA (the dispatch of the element-wise layers).
pub(super) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// out = SiLU(FiLM(GroupNorm(inp; γ, β); ss)), FiLM skipped when `ss` is None;
/// stats[B, G, 2] = (mean, 1/√(var+ε)) as `groupnorm_forward` writes them.
#[allow(clippy::too_many_arguments)]
pub fn norm_film_silu_forward<T: Float>(
    out: &mut [T],
    stats: &mut [T],
    inp: &[T],
    gamma: &[T],
    beta: &[T],
    ss: Option<&[T]>,
    n: NormShape,
) {
    assert_eq!(n.c % n.groups, 0, "GroupNorm: {} channels not divisible by {} groups", n.c, n.groups);
    let gn = n.c / n.groups * n.hw;
    let fast = avx2();
    let o = out[..n.b * n.c * n.hw].par_chunks_mut(gn);
    o.zip(stats[..2 * n.b * n.groups].par_chunks_mut(2)).enumerate().for_each(|(i, (o, st))| {
        let coef = Coef::new(gamma, beta, ss, i / n.groups, i % n.groups, &n);
        let x = &inp[i * gn..][..gn];
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: the CPU has AVX2 and FMA (checked by `avx2`).
            return unsafe { group_forward_avx2(o, st, x, coef, n.hw) };
        }
        group_forward(o, st, x, coef, n.hw)
    });
}

/// The backward of `norm_film_silu_forward` given dout = ∂L/∂out: accumulates dinp,
/// dgamma, dbeta and (with FiLM) dss[B, 2C]. `sums` is scratch (grown to 2·B·C).
#[allow(clippy::too_many_arguments)]
pub fn norm_film_silu_backward<T: Float>(
    dinp: &mut [T],
    dss: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
    dout: &[T],
    inp: &[T],
    ss: Option<&[T]>,
    stats: &[T],
    gamma: &[T],
    beta: &[T],
    n: NormShape,
    sums: &mut Vec<T>,
) {
    let (cg, c) = (n.c / n.groups, n.c);
    let gn = cg * n.hw;
    if sums.len() < 2 * n.b * c {
        sums.resize(2 * n.b * c, T::ZERO);
    }
    let fast = avx2();
    let d = dinp[..n.b * c * n.hw].par_chunks_mut(gn).zip(sums[..2 * n.b * c].par_chunks_mut(2 * cg));
    d.enumerate().for_each_init(Vec::new, |dz, (i, (dx, su))| {
        dz.resize(gn, T::ZERO);
        let coef = Coef::new(gamma, beta, ss, i / n.groups, i % n.groups, &n);
        let (x, dy, st) = (&inp[i * gn..][..gn], &dout[i * gn..][..gn], (stats[2 * i], stats[2 * i + 1]));
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: the CPU has AVX2 and FMA (checked by `avx2`).
            return unsafe { group_backward_avx2(dx, su, dz, dy, x, st, coef, n.hw) };
        }
        group_backward(dx, su, dz, dy, x, st, coef, n.hw)
    });
    // Per-sample partial sums into the parameter gradients, samples in order.
    for ch in 0..c {
        for bi in 0..n.b {
            let (s0, s1) = (sums[2 * (bi * c + ch)], sums[2 * (bi * c + ch) + 1]);
            let (sc, _) = film_of(ss, bi, ch, c);
            dgamma[ch] += sc * s1;
            dbeta[ch] += sc * s0;
        }
    }
    if let Some(dss) = dss {
        for bi in 0..n.b {
            for ch in 0..c {
                let (s0, s1) = (sums[2 * (bi * c + ch)], sums[2 * (bi * c + ch) + 1]);
                dss[bi * 2 * c + ch] += gamma[ch] * s1 + beta[ch] * s0;
                dss[bi * 2 * c + c + ch] += s0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activation::{film_backward, film_forward, silu_backward, silu_forward};
    use crate::nn::gradcheck::rand_vec;
    use crate::nn::groupnorm::{groupnorm_backward, groupnorm_forward};

    /// The three reference layers, forward then backward: (out, stats, dinp, dgamma, dbeta, dss).
    fn reference(x: &[f64], ga: &[f64], be: &[f64], ss: Option<&[f64]>, dy: &[f64], n: NormShape) -> [Vec<f64>; 6] {
        let len = x.len();
        let (mut nrm, mut st, mut fi, mut out) =
            (vec![0.0; len], vec![0.0; 2 * n.b * n.groups], vec![0.0; len], vec![0.0; len]);
        groupnorm_forward(&mut nrm, &mut st, x, ga, be, n.b, n.c, n.hw, n.groups);
        let pre = match ss {
            Some(ss) => {
                film_forward(&mut fi, &nrm, ss, n.b, n.c, n.hw);
                &fi
            }
            None => &nrm,
        };
        silu_forward(&mut out, pre);
        let (mut dpre, mut dnrm, mut dss) = (vec![0.0; len], vec![0.0; len], vec![0.25; 2 * n.b * n.c]);
        silu_backward(&mut dpre, dy, pre);
        match ss {
            Some(ss) => film_backward(&mut dnrm, &mut dss, &dpre, &nrm, ss, n.b, n.c, n.hw),
            None => dnrm = dpre,
        }
        let (mut dx, mut dg, mut db) = (vec![0.5; len], vec![0.125; n.c], vec![-0.5; n.c]);
        groupnorm_backward(&mut dx, &mut dg, &mut db, &dnrm, x, &st, ga, n.b, n.c, n.hw, n.groups);
        [out, st, dx, dg, db, dss]
    }

    fn fused(x: &[f64], ga: &[f64], be: &[f64], ss: Option<&[f64]>, dy: &[f64], n: NormShape) -> [Vec<f64>; 6] {
        let len = x.len();
        let (mut out, mut st) = (vec![0.0; len], vec![0.0; 2 * n.b * n.groups]);
        norm_film_silu_forward(&mut out, &mut st, x, ga, be, ss, n);
        let (mut dx, mut dg, mut db, mut dss) =
            (vec![0.5; len], vec![0.125; n.c], vec![-0.5; n.c], vec![0.25; 2 * n.b * n.c]);
        let dssr = ss.map(|_| &mut dss[..]);
        norm_film_silu_backward(&mut dx, dssr, &mut dg, &mut db, dy, x, ss, &st, ga, be, n, &mut Vec::new());
        [out, st, dx, dg, db, dss]
    }

    /// Against the unfused layers in f64, forward and backward (accumulating into non-zero
    /// gradients), with and without FiLM, on group sizes that leave a lane remainder.
    #[test]
    fn fused_equals_unfused_layers() {
        let shapes = [
            NormShape { b: 3, c: 6, hw: 20, groups: 3 },
            NormShape { b: 2, c: 8, hw: 64, groups: 8 },
            NormShape { b: 2, c: 4, hw: 7, groups: 1 },
        ];
        for (k, n) in shapes.into_iter().enumerate() {
            let s = 10 * k as u64;
            let len = n.b * n.c * n.hw;
            let x: Vec<f64> = rand_vec(len, s + 1).iter().map(|v| 3.0 * v + 0.7).collect();
            let (ga, be) = (rand_vec(n.c, s + 2), rand_vec(n.c, s + 3));
            let ss = rand_vec(2 * n.b * n.c, s + 4);
            let dy = rand_vec(len, s + 5);
            for film in [Some(&ss[..]), None] {
                let (a, b) = (fused(&x, &ga, &be, film, &dy, n), reference(&x, &ga, &be, film, &dy, n));
                for (what, (u, v)) in ["out", "stats", "dinp", "dgamma", "dbeta", "dss"].iter().zip(a.iter().zip(&b)) {
                    let err = u.iter().zip(v).map(|(p, q)| (p - q).abs() / (1.0 + q.abs())).fold(0.0, f64::max);
                    assert!(err < 1e-12, "{n:?}, film {}: {what} differs by {err:.1e}", film.is_some());
                }
            }
        }
    }

    /// f32 on 1 and 2 threads: the same bits (the sums do not depend on the split).
    #[test]
    fn f32_is_independent_of_thread_count() {
        let n = NormShape { b: 4, c: 16, hw: 100, groups: 4 };
        let len = n.b * n.c * n.hw;
        let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
        let (x, ga, be, ss, dy) = (
            f(rand_vec(len, 1)),
            f(rand_vec(n.c, 2)),
            f(rand_vec(n.c, 3)),
            f(rand_vec(2 * n.b * n.c, 4)),
            f(rand_vec(len, 5)),
        );
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut out, mut st) = (vec![0.0f32; len], vec![0.0f32; 2 * n.b * n.groups]);
                norm_film_silu_forward(&mut out, &mut st, &x, &ga, &be, Some(&ss), n);
                let (mut dx, mut dg, mut db, mut dss) =
                    (vec![0.0f32; len], vec![0.0; n.c], vec![0.0; n.c], vec![0.0; 2 * n.b * n.c]);
                norm_film_silu_backward(
                    &mut dx,
                    Some(&mut dss),
                    &mut dg,
                    &mut db,
                    &dy,
                    &x,
                    Some(&ss),
                    &st,
                    &ga,
                    &be,
                    n,
                    &mut Vec::new(),
                );
                [out, dx, dg, db, dss]
            })
        };
        assert_eq!(run(1), run(2));
    }
}
