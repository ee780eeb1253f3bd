//! The reverse kernel of the em/matched samplers: the start draw and one reverse step with
//! its contribution to the path log-weight. Shared by [`crate::diffusion::sample::sampler`] (em, pc) and
//! [`crate::diffusion::smc`], so that with resampling off SMC reproduces the em sampler's weights bit
//! for bit. The formulas are in the module docs of [`crate::diffusion::sample::sampler`].

use std::sync::Arc;

use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::diffusion::sample::settings::{Kernel, SamplerSettings};
use crate::diffusion::ScoreModel;
use crate::lattice::fft::{self, Fft2, Fft2Work};
use crate::lattice::Lattice;
use crate::rng::Stream;
use crate::theory::manifold::{wrap_angle, wrapped_gaussian_log};
use rand::RngExt;
use std::f64::consts::PI;

pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Start distribution N(0, C_N) and reverse steps on one lattice and σ ladder; on the
/// torus (U(1) links) the uniform start and wrapped em steps.
pub struct ReverseKernel {
    lattice: Lattice,
    fft: Arc<Fft2>,
    /// [σ_0 = 0, σ_1, …, σ_N].
    sigma: Vec<f64>,
    /// G(p) for the matched kernel; `None` for the em kernel (Σ_k = Δ_k I).
    g: Option<Vec<f64>>,
    /// Angles on the torus, this many per configuration (`torus`); `None` on R^V.
    torus: Option<usize>,
}

/// Per-thread scratch of the kernel.
struct Work {
    fft: Fft2Work,
    z: Vec<f64>,
    noise: Vec<f64>,
}

/// Fills `z` with standard normals from `rng`; returns zᵀz.
pub(crate) fn normals(rng: &mut Stream, z: &mut [f64]) -> f64 {
    let mut zz = 0.0;
    for v in z.iter_mut() {
        *v = StandardNormal.sample(rng);
        zz += *v * *v;
    }
    zz
}

impl ReverseKernel {
    /// The kernel of `settings` on `lat`; the matched kernel needs a positive G(p) from `model`.
    pub fn new(model: &dyn ScoreModel, lat: Lattice, settings: &SamplerSettings) -> Result<Self, String> {
        let g = match settings.kernel {
            Kernel::Em => None,
            Kernel::Matched => Some(positive_two_point(model, lat)?),
        };
        Ok(ReverseKernel { lattice: lat, fft: fft::plan(lat), sigma: settings.sigma_ladder(), g, torus: None })
    }

    /// The em kernel for `n` angles per configuration on the torus: the start is uniform
    /// (log q = −n log 2π; the noised ensemble at σ_N ≳ 3 is uniform to 10⁻⁸), and step k
    /// draws θ_{k−1} = wrap(θ_k + Δ_k s + √Δ_k z) with the wrapped Gaussian kernels in the
    /// path weight on both sides:
    ///   log_w += log K(wrap(θ_k − θ_{k−1}); Δ_k) − log K(wrap(θ_{k−1} − θ_k − Δ_k s); Δ_k).
    pub fn torus(lat: Lattice, settings: &SamplerSettings, n: usize) -> Result<Self, String> {
        if settings.kernel != Kernel::Em {
            return Err("sampler: angles on the torus take the em kernel only".into());
        }
        Ok(ReverseKernel { lattice: lat, fft: fft::plan(lat), sigma: settings.sigma_ladder(), g: None, torus: Some(n) })
    }

    /// Values per configuration.
    pub fn dof(&self) -> usize {
        self.torus.unwrap_or(self.lattice.volume())
    }

    fn torus_start(&self, theta: &mut [f64], rngs: &mut [Stream], log_w: &mut [f64], n: usize) {
        theta.par_chunks_mut(n).zip(rngs.par_iter_mut()).zip(log_w.par_iter_mut()).for_each(|((t, r), l)| {
            for a in t.iter_mut() {
                *a = wrap_angle(r.random_range(-PI..PI));
            }
            *l = n as f64 * LN_2PI;
        });
    }

    fn torus_step(&self, k: usize, theta: &mut [f64], score: &[f64], rngs: &mut [Stream], log_w: &mut [f64], n: usize) {
        let (sk, skm) = (self.sigma[k], self.sigma[k - 1]);
        let delta = sk * sk - skm * skm;
        let width = delta.sqrt();
        theta.par_chunks_mut(n).zip(score.par_chunks(n)).zip(rngs.par_iter_mut()).zip(log_w.par_iter_mut()).for_each(
            |(((t, sc), r), l)| {
                let mut acc = 0.0;
                for (a, s) in t.iter_mut().zip(sc) {
                    let z: f64 = StandardNormal.sample(r);
                    let from = *a;
                    *a = wrap_angle(from + delta * s + width * z);
                    acc += wrapped_gaussian_log(wrap_angle(from - *a), width)
                        - wrapped_gaussian_log(wrap_angle(*a - from - delta * s), width);
                }
                *l += acc;
            },
        );
    }

    pub fn lattice(&self) -> Lattice {
        self.lattice
    }

    /// [σ_0 = 0, σ_1, …, σ_N].
    pub fn sigma_ladder(&self) -> &[f64] {
        &self.sigma
    }

    /// (Δ_k, Σ_k(p = 0)): the step's forward variance per site and its reverse covariance
    /// at zero momentum, so that the magnetisation's share of the step is N(m + Δ_k s̄, Σ_k(0)/V).
    pub fn zero_mode_step(&self, k: usize) -> (f64, f64) {
        let (sk, skm) = (self.sigma[k], self.sigma[k - 1]);
        let delta = sk * sk - skm * skm;
        let cov0 = match &self.g {
            Some(g) => delta * (g[0] + skm * skm) / (g[0] + sk * sk),
            None => delta,
        };
        (delta, cov0)
    }

    /// N, the number of reverse steps.
    pub fn n_steps(&self) -> usize {
        self.sigma.len() - 1
    }

    fn work(&self) -> Work {
        let v = self.lattice.volume();
        Work { fft: self.fft.work(), z: vec![0.0; v], noise: vec![0.0; v] }
    }

    /// Draws φ_N ~ N(0, C_N) for each configuration from its stream and sets
    /// log_w = −log N(φ_N; 0, C_N) = ½ zᵀz + ½ log det C_N + (V/2) log 2π.
    pub fn start(&self, phi: &mut [f64], rngs: &mut [Stream], log_w: &mut [f64]) {
        if let Some(n) = self.torus {
            return self.torus_start(phi, rngs, log_w, n);
        }
        let v = self.lattice.volume();
        let sn2 = self.sigma[self.n_steps()].powi(2);
        let c_n: Vec<f64> = match &self.g {
            Some(g) => g.iter().map(|g| g + sn2).collect(),
            None => vec![sn2; v],
        };
        let sqrt_c_n: Vec<f64> = c_n.iter().map(|c| c.sqrt()).collect();
        let start_const = 0.5 * fft::log_det(&c_n) + 0.5 * v as f64 * LN_2PI;
        let fft = &self.fft;
        phi.par_chunks_mut(v).zip(rngs.par_iter_mut()).zip(log_w.par_iter_mut()).for_each_init(
            || self.work(),
            |w, ((p, r), l)| {
                let zz = normals(r, &mut w.z);
                fft.color_noise(&sqrt_c_n, &w.z, p, &mut w.fft);
                *l = 0.5 * zz + start_const;
            },
        );
    }

    /// Reverse step k (σ_k → σ_{k−1}) of every configuration: φ ← φ + Δ_k s + η with
    /// η ~ N(0, Σ_k) from its stream, and log_w += log N(φ_k; φ_{k−1}, Δ_k I) − log N(φ_{k−1}; μ_k, Σ_k).
    /// `score` holds s(φ_k, σ_k) per configuration.
    pub fn step(&self, k: usize, phi: &mut [f64], score: &[f64], rngs: &mut [Stream], log_w: &mut [f64]) {
        if let Some(n) = self.torus {
            return self.torus_step(k, phi, score, rngs, log_w, n);
        }
        let v = self.lattice.volume();
        let (sk, skm) = (self.sigma[k], self.sigma[k - 1]);
        let delta = sk * sk - skm * skm;
        // √Σ_k (matched) and the sample-independent part of the step's log-weight,
        // ½ log det Σ_k − (V/2) log Δ_k (zero for the em kernel).
        let (sqrt_cov, step_const) = match &self.g {
            Some(g) => {
                let cov: Vec<f64> = g.iter().map(|g| delta * (g + skm * skm) / (g + sk * sk)).collect();
                let c = 0.5 * fft::log_det(&cov) - 0.5 * v as f64 * delta.ln();
                (Some(cov.iter().map(|c| c.sqrt()).collect::<Vec<f64>>()), c)
            }
            None => (None, 0.0),
        };
        let sqrt_delta = delta.sqrt();
        let fft = &self.fft;
        phi.par_chunks_mut(v)
            .zip(score.par_chunks(v))
            .zip(rngs.par_iter_mut())
            .zip(log_w.par_iter_mut())
            .for_each_init(
                || self.work(),
                |w, (((p, sc), r), l)| {
                    let zz = normals(r, &mut w.z);
                    match &sqrt_cov {
                        Some(c) => fft.color_noise(c, &w.z, &mut w.noise, &mut w.fft),
                        None => w.noise.iter_mut().zip(&w.z).for_each(|(e, z)| *e = sqrt_delta * z),
                    }
                    // φ_{k−1} − φ_k = Δ s + η.
                    let mut dd = 0.0;
                    for ((p, sc), e) in p.iter_mut().zip(sc).zip(&w.noise) {
                        let d = delta * sc + e;
                        *p += d;
                        dd += d * d;
                    }
                    *l += -0.5 * dd / delta + 0.5 * zz + step_const;
                },
            );
    }
}

/// G(p) of `model` on `lat`, refused unless finite and positive at every momentum.
pub fn positive_two_point(model: &dyn ScoreModel, lat: Lattice) -> Result<Vec<f64>, String> {
    let g = model.two_point(lat);
    if g.len() != lat.volume() || !g.iter().all(|x| x.is_finite() && *x > 0.0) {
        return Err(format!("sampler: {} gives no positive two-point function on {lat}", model.describe()));
    }
    Ok(g)
}
