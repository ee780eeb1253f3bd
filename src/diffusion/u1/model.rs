//! The U(1) physics prior alone as a score model (`--model prior:ENSEMBLE.h5` on a U(1)
//! ensemble): the baseline a trained network must beat, and an exactly known model for
//! testing the torus sampler's weights.

use crate::diffusion::u1::prior::prior_score;
use crate::diffusion::ScoreModel;
use crate::lattice::Lattice;
use rayon::prelude::*;

pub struct GaugePriorModel {
    pub beta: f64,
}

impl ScoreModel for GaugePriorModel {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        lat.validate()
    }

    fn score(&self, lat: Lattice, theta: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        let n = 2 * lat.volume();
        out.par_chunks_mut(n).zip(theta.par_chunks(n)).zip(sigma.par_iter()).for_each(|((o, t), &s)| {
            prior_score(lat, self.beta, t, s, o);
        });
        Ok(())
    }

    /// No sampler kernel on the torus uses a two-point function.
    fn two_point(&self, _lat: Lattice) -> Vec<f64> {
        Vec::new()
    }

    fn torus_dof(&self, lat: Lattice) -> Option<usize> {
        Some(2 * lat.volume())
    }

    fn describe(&self) -> String {
        format!("U(1) physics prior alone (beta = {})", self.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::sample::sampler::{sample_batch, Kernel, SamplerKind, SamplerSettings};
    use crate::theory::U1;

    /// I_n(β) by its power series (small β, n).
    fn bessel_i(n: u32, beta: f64) -> f64 {
        let mut term = (0.5 * beta).powi(n as i32) / (1..=n).map(f64::from).product::<f64>();
        let mut sum = 0.0;
        for k in 0..60u32 {
            sum += term;
            term *= (0.25 * beta * beta) / (f64::from(k + 1) * f64::from(k + 1 + n));
        }
        sum
    }

    /// The torus kernel's path weights are proper importance weights: their mean estimates
    /// Z = ∫ e^{−S} dθ = (2π)^{2V} Σ_n I_n(β)^V (uniform links make the plaquettes uniform
    /// up to Σ_P θ_P ∈ 2πℤ, whose Fourier sum this is). The uniform start, both wrapped
    /// kernels and the target action all enter; with the prior alone the weights are not
    /// trivial (std log w ≈ 0.4 here). Fixed seed, 4 standard errors.
    #[test]
    fn path_weights_estimate_the_exact_partition_function() {
        let (lat, beta) = (Lattice::new(2, 2), 1.0);
        let v = lat.volume() as i32;
        let series: f64 = bessel_i(0, beta).powi(v) + 2.0 * (1..12).map(|n| bessel_i(n, beta).powi(v)).sum::<f64>();
        let log_z = 2.0 * f64::from(v) * (2.0 * std::f64::consts::PI).ln() + series.ln();
        let model = GaugePriorModel { beta };
        let target = U1::new(lat, beta);
        let settings = SamplerSettings { kernel: Kernel::Em, ..SamplerSettings::new(SamplerKind::Em, 40, 0.01, 3.0) };
        let n = 20_000;
        let b = sample_batch(&model, Some(&target), lat, &settings, 11, 0, n).unwrap();
        let lw = b.log_weight.unwrap();
        let m = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = lw.iter().map(|l| (l - m).exp()).collect();
        let mean = w.iter().sum::<f64>() / n as f64;
        let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let (est, se) = (m + mean.ln(), (var / n as f64).sqrt() / mean);
        assert!((est - log_z).abs() < 4.0 * se, "log Z: {est} ± {se} vs exact {log_z}");
        let sd = (lw.iter().map(|l| (l - est).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(sd > 0.05, "the weights are trivial (std {sd}): the test would not see an error");
        // Every configuration is on the torus.
        assert!(b.configs.iter().all(|t| *t > -std::f64::consts::PI && *t <= std::f64::consts::PI));
    }
}
