//! AdamW over the flat parameter buffer: warm-up + cosine learning rate, global-norm
//! clipping and an EMA of the weights. Moments and EMA share the parameter layout.

use super::float::Float;
use super::params::ParamLayout;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate, reached at the end of warm-up.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub lr_min: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, applied to tensors of rank ≥ 2 only (not biases / norms).
    pub weight_decay: f64,
    /// Global-norm clip threshold; ≤ 0 disables clipping.
    pub clip_norm: f64,
    pub ema_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            lr_min: 1e-5,
            warmup_steps: 500,
            total_steps: 50_000,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: 1.0,
            ema_decay: 0.999,
        }
    }
}

impl AdamWConfig {
    /// Learning rate of update number `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let prog = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + (std::f64::consts::PI * prog).cos())
    }

    /// Effective EMA decay of update `step` (1-based): min(decay, (1 + step)/(10 + step)).
    /// The warm-up (as TensorFlow's num_updates) lets the average follow the fast-moving
    /// early weights; without it a short run samples with nearly initial weights.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.ema_decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// The scalars of update `step` given the gradient norm, shared by the CPU loop and the
    /// GPU kernel so that both apply the same schedule, clipping and EMA warm-up.
    pub fn scalars(&self, step: u64, grad_norm: f64) -> StepScalars {
        let lr = self.lr_at(step);
        let clip_scale =
            if self.clip_norm > 0.0 && grad_norm > self.clip_norm { self.clip_norm / grad_norm } else { 1.0 };
        let bc1 = 1.0 - self.beta1.powi(step as i32);
        let bc2 = 1.0 - self.beta2.powi(step as i32);
        // lr·m̂/(√v̂ + ε) = (lr/bc1)·m / (√v/√bc2 + ε)
        StepScalars {
            lr,
            clip_scale,
            step_size: lr / bc1,
            inv_sqrt_bc2: 1.0 / bc2.sqrt(),
            shrink: 1.0 - lr * self.weight_decay,
            ema_decay: self.ema_decay_at(step),
        }
    }
}

/// Per-update scalars (see [`AdamWConfig::scalars`]).
#[derive(Clone, Copy, Debug)]
pub struct StepScalars {
    pub lr: f64,
    pub clip_scale: f64,
    pub step_size: f64,
    pub inv_sqrt_bc2: f64,
    /// Weight-decay factor of the decaying (≥ 2-d) tensors.
    pub shrink: f64,
    pub ema_decay: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    pub step: u64,
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub clip_scale: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdamW<T> {
    pub cfg: AdamWConfig,
    pub step: u64,
    pub m: Vec<T>,
    pub v: Vec<T>,
    pub ema: Vec<T>,
    /// (range start, range end, decays) per layout entry.
    segments: Vec<(usize, usize, bool)>,
}

impl<T: Float> AdamW<T> {
    pub fn new(cfg: AdamWConfig, layout: &ParamLayout, params: &[T]) -> Self {
        assert_eq!(layout.len(), params.len());
        let segments = layout.entries.iter().map(|e| (e.offset, e.offset + e.len(), e.shape.len() >= 2)).collect();
        let n = params.len();
        AdamW { cfg, step: 0, m: vec![T::ZERO; n], v: vec![T::ZERO; n], ema: params.to_vec(), segments }
    }

    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.cfg.ema_decay_at(step)
    }

    /// One update of `params` from `grads` (grads are not modified; clipping is a scale).
    pub fn update(&mut self, params: &mut [T], grads: &[T]) -> StepInfo {
        assert_eq!(params.len(), grads.len());
        self.step += 1;
        let c = &self.cfg;
        let grad_norm = grads.iter().map(|g| g.to_f64() * g.to_f64()).sum::<f64>().sqrt();
        let k = c.scalars(self.step, grad_norm);
        let (b1, b2) = (T::from_f64(c.beta1), T::from_f64(c.beta2));
        let (ob1, ob2) = (T::ONE - b1, T::ONE - b2);
        let gs = T::from_f64(k.clip_scale);
        let step_size = T::from_f64(k.step_size);
        let inv_sqrt_bc2 = T::from_f64(k.inv_sqrt_bc2);
        let eps = T::from_f64(c.eps);
        let ed = T::from_f64(k.ema_decay);
        for &(lo, hi, decays) in &self.segments {
            let shrink = if decays { T::from_f64(k.shrink) } else { T::ONE };
            for i in lo..hi {
                let g = grads[i] * gs;
                let m = b1 * self.m[i] + ob1 * g;
                let v = b2 * self.v[i] + ob2 * g * g;
                self.m[i] = m;
                self.v[i] = v;
                let p = params[i] * shrink - step_size * m / (v.sqrt() * inv_sqrt_bc2 + eps);
                params[i] = p;
                self.ema[i] = ed * self.ema[i] + (T::ONE - ed) * p;
            }
        }
        StepInfo { step: self.step, lr: k.lr, grad_norm, clip_scale: k.clip_scale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(n: usize) -> ParamLayout {
        let mut l = ParamLayout::default();
        l.push("w", &[n / 2, 2]);
        l.push("b", &[n - 2 * (n / 2)]);
        l
    }

    /// f(p) = ½ Σ a_i (p_i − c_i)²; first AdamW step is p0(1 − lr·wd) − lr·g/(|g|+ε).
    #[test]
    fn first_step_on_quadratic_matches_closed_form() {
        let n = 7;
        let l = layout(n);
        let a: Vec<f64> = (0..n).map(|i| 0.5 + i as f64).collect();
        let c: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let p0: Vec<f64> = (0..n).map(|i| 0.3 * i as f64 - 1.0).collect();
        let cfg = AdamWConfig {
            lr: 0.01,
            lr_min: 0.0,
            warmup_steps: 0,
            total_steps: 100,
            weight_decay: 0.1,
            clip_norm: 0.0,
            ema_decay: 0.9,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg.clone(), &l, &p0);
        let g: Vec<f64> = (0..n).map(|i| a[i] * (p0[i] - c[i])).collect();
        let mut p = p0.clone();
        let info = opt.update(&mut p, &g);
        let lr1 = 0.5 * 0.01 * (1.0 + (std::f64::consts::PI / 100.0).cos());
        assert!((info.lr - lr1).abs() < 1e-15);
        for i in 0..n {
            let wd = if i < 6 { 0.1 } else { 0.0 };
            let want = p0[i] * (1.0 - lr1 * wd) - lr1 * g[i] / (g[i].abs() + 1e-8);
            assert!((p[i] - want).abs() < 1e-14, "{i}: {} vs {want}", p[i]);
            let d = opt.ema_decay_at(1);
            assert_eq!(d, 2.0 / 11.0, "warm-up decay at step 1");
            assert_eq!(opt.ema_decay_at(1000), 0.9, "configured decay later");
            let ema = d * p0[i] + (1.0 - d) * p[i];
            assert!((opt.ema[i] - ema).abs() < 1e-14);
        }
        // Second step: m̂, v̂ with bias correction, by hand.
        let g2: Vec<f64> = (0..n).map(|i| a[i] * (p[i] - c[i])).collect();
        let p1 = p.clone();
        let ema1 = opt.ema.clone();
        opt.update(&mut p, &g2);
        let lr = cfg.lr_at(2);
        for i in 0..n {
            let wd = if i < 6 { 0.1 } else { 0.0 };
            let m = 0.9 * 0.1 * g[i] + 0.1 * g2[i];
            let v = 0.999 * 0.001 * g[i] * g[i] + 0.001 * g2[i] * g2[i];
            let (mh, vh) = (m / (1.0 - 0.81), v / (1.0 - 0.999f64.powi(2)));
            let want = p1[i] * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + 1e-8);
            assert!((p[i] - want).abs() < 1e-13, "{i}: {} vs {want}", p[i]);
            let d = opt.ema_decay_at(2);
            assert!((opt.ema[i] - (d * ema1[i] + (1.0 - d) * p[i])).abs() < 1e-14);
        }
    }

    #[test]
    fn clipping_scales_gradient_and_schedule_shape() {
        let l = layout(4);
        let cfg = AdamWConfig {
            clip_norm: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            lr: 1.0,
            lr_min: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg.clone(), &l, &[0.0; 4]);
        let info = opt.update(&mut [0.0; 4], &[3.0, 4.0, 0.0, 0.0]);
        assert!((info.grad_norm - 5.0).abs() < 1e-12 && (info.clip_scale - 0.2).abs() < 1e-12);
        assert!((opt.m[0] - 0.1 * 0.6).abs() < 1e-12);
        assert!((cfg.lr_at(5) - 0.5).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(60) - 0.55).abs() < 1e-12);
        assert!((cfg.lr_at(110) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(500) - 0.1).abs() < 1e-12);
    }
}
