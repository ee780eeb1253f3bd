//! The exact noised marginal of the magnetisation, for the physics prior.
//!
//! Near the critical point and in the broken phase the magnetisation m = (1/V) Σ_x φ_x is
//! the one degree of freedom that a local network cannot see and that a Gaussian prior
//! gets wrong: its distribution is double-peaked, not Gaussian. But its noised marginal is
//! known exactly from the training data: the forward noise adds N(0, σ²/V) to m, so with
//! the data's magnetisations m_i (symmetrised under φ → −φ)
//!
//!   q_σ(m) = (1/2N) Σ_i Σ_± N(m; ±m_i, σ²/V + h²),   K_σ(m) = −log q_σ(m),
//!
//! a kernel density estimate with bandwidth h convolved with the noise. The physics prior
//! replaces its Gaussian zero mode by K_σ (see [`crate::diffusion::phi4::prior`]).
//!
//! Only exact on the training volume: m's distribution depends on V, so the prior uses it
//! on the training lattice only.

/// K_σ(m) from a sample of magnetisations on one volume.
#[derive(Clone, Debug)]
pub struct ZeroModeMarginal {
    /// ±m_i: the symmetrised sample.
    centres: Vec<f64>,
    h2: f64,
    volume: f64,
}

/// Fewer magnetisations than this do not make a density.
pub const MIN_SAMPLES: usize = 16;

impl ZeroModeMarginal {
    /// The marginal of the magnetisations `m` measured on a lattice of `volume` sites.
    pub fn new(m: &[f64], volume: usize) -> Result<Self, String> {
        if m.len() < MIN_SAMPLES {
            return Err(format!("zero mode: {} magnetisations, at least {MIN_SAMPLES} needed", m.len()));
        }
        if let Some(x) = m.iter().find(|x| !x.is_finite()) {
            return Err(format!("zero mode: magnetisation {x} is not finite"));
        }
        let centres: Vec<f64> = m.iter().flat_map(|&x| [x, -x]).collect();
        let h = silverman_bandwidth(&centres);
        if !(h > 0.0) {
            return Err("zero mode: the magnetisations have no spread".into());
        }
        Ok(ZeroModeMarginal { centres, h2: h * h, volume: volume as f64 })
    }

    /// The sample it was built from (one sign of each pair).
    pub fn magnetisations(&self) -> Vec<f64> {
        self.centres.iter().step_by(2).copied().collect()
    }

    pub fn bandwidth(&self) -> f64 {
        self.h2.sqrt()
    }

    pub fn volume(&self) -> usize {
        self.volume as usize
    }

    /// (K_σ(m), dK_σ/dm).
    pub fn potential(&self, m: f64, sigma: f64) -> (f64, f64) {
        let tau2 = sigma * sigma / self.volume + self.h2;
        // Log-sum-exp over the kernels: far in a tail every exponent underflows otherwise.
        let e = |c: &f64| -(m - c) * (m - c) / (2.0 * tau2);
        let top = self.centres.iter().map(e).fold(f64::NEG_INFINITY, f64::max);
        let (mut z, mut zm) = (0.0, 0.0);
        for c in &self.centres {
            let p = (e(c) - top).exp();
            z += p;
            zm += p * (m - c);
        }
        let n = self.centres.len() as f64;
        let log_q = top + (z / n).ln() - 0.5 * (2.0 * std::f64::consts::PI * tau2).ln();
        (-log_q, zm / (z * tau2))
    }
}

/// 0.9 min(sd, IQR/1.34) n^(−1/5): Silverman's rule, robust to the two peaks.
fn silverman_bandwidth(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |f: f64| s[((n - 1.0) * f).round() as usize];
    let iqr = q(0.75) - q(0.25);
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    0.9 * spread * n.powf(-0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two centres ±a: q is a pair of Gaussians, K' = (m − a tanh(a m/τ²))/τ² exactly.
    #[test]
    fn two_centres_give_the_exact_symmetric_mixture() {
        let m = vec![0.5; 20];
        let zm = ZeroModeMarginal::new(&m, 64).unwrap();
        // All centres coincide, so the sample has IQR 1 (±0.5) and sd ≈ 0.51.
        let h2 = zm.bandwidth().powi(2);
        for sigma in [0.0, 0.3, 2.0, 9.0] {
            let tau2 = sigma * sigma / 64.0 + h2;
            for x in [-1.3, -0.2, 0.0, 0.37, 2.5] {
                let (k, dk) = zm.potential(x, sigma);
                let want = (x - 0.5 * (0.5 * x / tau2).tanh()) / tau2;
                assert!((dk - want).abs() < 1e-12 * (1.0 + want.abs()), "σ {sigma} m {x}: {dk} vs {want}");
                let g = |c: f64| (-(x - c) * (x - c) / (2.0 * tau2)).exp() / (2.0 * std::f64::consts::PI * tau2).sqrt();
                let want_k = -(0.5 * (g(0.5) + g(-0.5))).ln();
                assert!((k - want_k).abs() < 1e-12 * (1.0 + want_k.abs()), "σ {sigma} m {x}: {k} vs {want_k}");
            }
        }
    }

    /// Far in the tail the log-sum-exp keeps K finite and K' equal to the nearest kernel's.
    #[test]
    fn tails_stay_finite() {
        let m: Vec<f64> = (0..32).map(|i| 0.01 * i as f64).collect();
        let zm = ZeroModeMarginal::new(&m, 256).unwrap();
        let (k, dk) = zm.potential(40.0, 0.0);
        assert!(k.is_finite() && k > 1e3, "{k}");
        let want = (40.0 - 0.31) / zm.bandwidth().powi(2);
        assert!((dk - want).abs() < 1e-9 * want, "{dk} vs {want}");
        let (_, d0) = zm.potential(0.0, 1.0);
        assert!(d0.abs() < 1e-12, "symmetric sample: K'(0) = {d0}");
    }

    #[test]
    fn refuses_too_few_or_bad_samples() {
        assert!(ZeroModeMarginal::new(&[0.1; 3], 16).unwrap_err().contains("at least"));
        let mut m = vec![0.1; 20];
        m[3] = f64::NAN;
        assert!(ZeroModeMarginal::new(&m, 16).unwrap_err().contains("not finite"));
        assert!(ZeroModeMarginal::new(&[0.0; 20], 16).unwrap_err().contains("spread"));
    }
}
