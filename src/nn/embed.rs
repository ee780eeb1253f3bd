//! Noise-level embedding input: Gaussian Fourier features of log σ.
//!
//! The frequencies are fixed (not trained) and drawn from `Arch::fourier_seed`, so a
//! checkpoint's `Arch` reproduces them. The dense → SiLU → dense part that follows is
//! built from `conv` (1×1 at H = W = 1) and `activation` in `unet`. No gradient flows
//! to σ: it is an input the objective samples, never a trained quantity.

use super::float::Float;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Frequencies f_i ~ N(0, scale²).
pub fn fourier_frequencies(n: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            scale * z
        })
        .collect()
}

/// out[b, :] = [sin(2π f log σ_b), cos(2π f log σ_b)], out is [B, 2F].
pub fn fourier_forward<T: Float>(out: &mut [T], sigma: &[T], freqs: &[f64]) {
    let nf = freqs.len();
    for (b, s) in sigma.iter().enumerate() {
        let ls = s.to_f64().ln();
        for (i, f) in freqs.iter().enumerate() {
            let a = 2.0 * std::f64::consts::PI * f * ls;
            out[b * 2 * nf + i] = T::from_f64(a.sin());
            out[b * 2 * nf + nf + i] = T::from_f64(a.cos());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activation::{silu_backward, silu_forward};
    use crate::nn::conv::{conv2d_backward, conv2d_forward, ConvScratch, ConvShape};
    use crate::nn::gradcheck::{check_grad, rand_vec};

    /// The full embedding (Fourier → dense → SiLU → dense), parameter gradients.
    #[test]
    fn embedding_backward_matches_finite_differences() {
        let (b, nf, e) = (3, 4, 5);
        let freqs = fourier_frequencies(nf, 1.0, 7);
        let sigma = [0.05, 0.7, 3.0];
        let s1 = ConvShape { b, cin: 2 * nf, cout: e, h: 1, w: 1, k: 1 };
        let s2 = ConvShape { b, cin: e, cout: e, h: 1, w: 1, k: 1 };
        let mut p = rand_vec(s1.cout * s1.cin + e + e * e + e, 8);
        let r = rand_vec(b * e, 9);
        let n1 = s1.cout * s1.cin;
        let fwd = |p: &[f64]| {
            let mut f = vec![0.0; b * 2 * nf];
            fourier_forward(&mut f, &sigma, &freqs);
            let mut h1 = vec![0.0; b * e];
            let mut sc = ConvScratch::default();
            conv2d_forward(&mut h1, &f, &p[..n1], &p[n1..n1 + e], &s1, &mut sc);
            let mut a1 = vec![0.0; b * e];
            silu_forward(&mut a1, &h1);
            let mut o = vec![0.0; b * e];
            let w2 = n1 + e;
            conv2d_forward(&mut o, &a1, &p[w2..w2 + e * e], &p[w2 + e * e..], &s2, &mut sc);
            (f, h1, a1, o)
        };
        let (f, h1, a1, _) = fwd(&p);
        let mut dp = vec![0.0; p.len()];
        let mut sc = ConvScratch::default();
        let mut da1 = vec![0.0; b * e];
        let w2 = n1 + e;
        {
            let (d1, d2) = dp.split_at_mut(w2);
            let (dw2, db2) = d2.split_at_mut(e * e);
            conv2d_backward(Some(&mut da1), dw2, db2, &r, &a1, &p[w2..w2 + e * e], &s2, &mut sc);
            let mut dh1 = vec![0.0; b * e];
            silu_backward(&mut dh1, &da1, &h1);
            let (dw1, db1) = d1.split_at_mut(n1);
            conv2d_backward(None, dw1, db1, &dh1, &f, &p[..n1], &s1, &mut sc);
        }
        check_grad("embedding", &mut p, &dp, |v| fwd(v).3.iter().zip(&r).map(|(a, b)| a * b).sum());
    }
}
