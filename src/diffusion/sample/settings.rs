//! What a reverse-diffusion sampler is asked for: the sampler, its kernel and the σ ladder
//! (the ladder's formula is in [`crate::diffusion::sample::sampler`]'s docs).

use serde::{Deserialize, Serialize};

/// Named in the options, so config's (plain data).
pub use crate::config::{Kernel, SamplerKind};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerSettings {
    pub sampler: SamplerKind,
    pub kernel: Kernel,
    /// N, the number of noise levels σ_1..σ_N (and of reverse steps for em/pc).
    pub n_steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// M, Langevin corrector steps per noise level (pc only).
    pub corrector_steps: usize,
    /// r, the corrector's signal-to-noise ratio (pc only).
    pub snr: f64,
}

impl SamplerSettings {
    /// Matched kernel, one corrector step with snr 0.16 (used only by pc).
    pub fn new(sampler: SamplerKind, n_steps: usize, sigma_min: f64, sigma_max: f64) -> Self {
        SamplerSettings {
            sampler,
            kernel: Kernel::Matched,
            n_steps,
            sigma_min,
            sigma_max,
            corrector_steps: 1,
            snr: 0.16,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.n_steps == 0 {
            return Err("sampler: n_steps must be at least 1".into());
        }
        if !(self.sigma_min > 0.0 && self.sigma_min.is_finite()) {
            return Err(format!("sampler: sigma_min = {} must be positive", self.sigma_min));
        }
        if !(self.sigma_max >= self.sigma_min && self.sigma_max.is_finite()) {
            return Err(format!("sampler: sigma_max = {} must be finite and >= sigma_min", self.sigma_max));
        }
        if self.n_steps > 1 && self.sigma_max == self.sigma_min {
            return Err("sampler: sigma_max = sigma_min needs n_steps = 1".into());
        }
        if self.sampler == SamplerKind::Pc && !(self.snr > 0.0 && self.snr.is_finite()) {
            return Err(format!("sampler: snr = {} must be positive", self.snr));
        }
        Ok(())
    }

    /// [σ_0 = 0, σ_1 = σ_min, …, σ_N = σ_max], geometric from σ_1 on.
    pub fn sigma_ladder(&self) -> Vec<f64> {
        let n = self.n_steps;
        let mut s = Vec::with_capacity(n + 1);
        s.push(0.0);
        if n == 1 {
            s.push(self.sigma_max);
            return s;
        }
        let ratio = self.sigma_max / self.sigma_min;
        for k in 1..=n {
            s.push(self.sigma_min * ratio.powf((k - 1) as f64 / (n - 1) as f64));
        }
        s[n] = self.sigma_max;
        s
    }

    /// Score evaluations per configuration (= batched `ScoreModel::score` calls per batch):
    /// em and smc N, pc N + M(N − 1) (N + (M + 1)(N − 1) with an action model's MALA
    /// corrector), ode 2(N − 1) + 1.
    pub fn score_calls(&self) -> usize {
        let n = self.n_steps;
        match self.sampler {
            SamplerKind::Em | SamplerKind::Smc => n,
            // No network calls: the ladder uses the action only.
            SamplerKind::Multilevel => 0,
            SamplerKind::Pc => n + self.corrector_steps * (n - 1),
            SamplerKind::Ode => 2 * (n - 1) + 1,
        }
    }

    /// Whether `sample_batch` returns path weights (given a target).
    pub fn has_weights(&self) -> bool {
        self.sampler == SamplerKind::Em
    }
}
