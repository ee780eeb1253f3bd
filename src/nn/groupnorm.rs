//! GroupNorm over (C/G channels × H × W) per sample, with per-channel affine γ, β.

use super::float::Float;
use rayon::prelude::*;

pub const GN_EPS: f64 = 1e-5;

/// `(batch, channels, sites per channel, groups)` of a GroupNorm.
#[derive(Clone, Copy, Debug)]
pub struct NormShape {
    pub b: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}

/// stats[B, G, 2] receives (mean, 1/√(var+ε)) for the backward pass.
#[allow(clippy::too_many_arguments)]
pub fn groupnorm_forward<T: Float>(
    out: &mut [T],
    stats: &mut [T],
    inp: &[T],
    gamma: &[T],
    beta: &[T],
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
) {
    assert_eq!(c % groups, 0, "GroupNorm: {c} channels not divisible by {groups} groups");
    let cg = c / groups;
    let n = cg * hw;
    let eps = T::from_f64(GN_EPS);
    out[..b * c * hw].par_chunks_mut(n).zip(stats[..2 * b * groups].par_chunks_mut(2)).enumerate().for_each(
        |(i, (o, st))| {
            let x = &inp[i * n..][..n];
            let inv_n = T::from_f64(1.0 / n as f64);
            let mean = x.iter().copied().sum::<T>() * inv_n;
            let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() * inv_n;
            let rstd = T::ONE / (var + eps).sqrt();
            st[0] = mean;
            st[1] = rstd;
            let g = i % groups;
            for j in 0..cg {
                let ch = g * cg + j;
                let (ga, be) = (gamma[ch] * rstd, beta[ch]);
                for (ov, xv) in o[j * hw..][..hw].iter_mut().zip(&x[j * hw..][..hw]) {
                    *ov = (*xv - mean) * ga + be;
                }
            }
        },
    );
}

/// Accumulates dinp, dgamma, dbeta.
#[allow(clippy::too_many_arguments)]
pub fn groupnorm_backward<T: Float>(
    dinp: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    dout: &[T],
    inp: &[T],
    stats: &[T],
    gamma: &[T],
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
) {
    let cg = c / groups;
    let n = cg * hw;
    dinp[..b * c * hw].par_chunks_mut(n).enumerate().for_each(|(i, dx)| {
        let x = &inp[i * n..][..n];
        let dy = &dout[i * n..][..n];
        let (mean, rstd) = (stats[2 * i], stats[2 * i + 1]);
        let g = i % groups;
        // Means over the group of dx̂ = dy·γ and of dx̂·x̂.
        let (mut s1, mut s2) = (T::ZERO, T::ZERO);
        for j in 0..cg {
            let ga = gamma[g * cg + j];
            for (yv, xv) in dy[j * hw..][..hw].iter().zip(&x[j * hw..][..hw]) {
                let dxh = *yv * ga;
                s1 += dxh;
                s2 += dxh * (*xv - mean) * rstd;
            }
        }
        let inv_n = T::from_f64(1.0 / n as f64);
        let (m1, m2) = (s1 * inv_n, s2 * inv_n);
        for j in 0..cg {
            let ga = gamma[g * cg + j];
            let r = &mut dx[j * hw..][..hw];
            for ((dv, yv), xv) in r.iter_mut().zip(&dy[j * hw..][..hw]).zip(&x[j * hw..][..hw]) {
                let xh = (*xv - mean) * rstd;
                *dv += rstd * (*yv * ga - m1 - xh * m2);
            }
        }
    });
    dgamma[..c].par_iter_mut().zip(dbeta[..c].par_iter_mut()).enumerate().for_each(|(ch, (dg, db))| {
        let g = ch / cg;
        for bi in 0..b {
            let off = (bi * c + ch) * hw;
            let (mean, rstd) = (stats[2 * (bi * groups + g)], stats[2 * (bi * groups + g) + 1]);
            for (yv, xv) in dout[off..][..hw].iter().zip(&inp[off..][..hw]) {
                *dg += *yv * (*xv - mean) * rstd;
                *db += *yv;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    #[test]
    fn backward_matches_finite_differences() {
        let (b, c, hw, g) = (2, 6, 12, 3);
        let mut x = rand_vec(b * c * hw, 1);
        let mut gamma = rand_vec(c, 2);
        let mut beta = rand_vec(c, 3);
        let r = rand_vec(b * c * hw, 4);
        let loss = |x: &[f64], ga: &[f64], be: &[f64]| {
            let mut out = vec![0.0; x.len()];
            let mut st = vec![0.0; 2 * b * g];
            groupnorm_forward(&mut out, &mut st, x, ga, be, b, c, hw, g);
            out.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut out = vec![0.0; x.len()];
        let mut st = vec![0.0; 2 * b * g];
        groupnorm_forward(&mut out, &mut st, &x, &gamma, &beta, b, c, hw, g);
        let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        groupnorm_backward(&mut dx, &mut dg, &mut db, &r, &x, &st, &gamma, b, c, hw, g);
        let (g0, b0) = (gamma.clone(), beta.clone());
        check_grad("gn dinp", &mut x, &dx, |v| loss(v, &g0, &b0));
        let x0 = x.clone();
        check_grad("gn dgamma", &mut gamma, &dg, |v| loss(&x0, v, &b0));
        check_grad("gn dbeta", &mut beta, &db, |v| loss(&x0, &g0, v));
    }
}
