//! Held-out losses with fixed noise draws, and the score's deviation from the exact force
//! at σ_min: the figures a finished training reports and records.

use crate::diffusion::form::ScoreParts;
use crate::diffusion::net::engine::{NetEngine, Weights};
use crate::diffusion::objective::SigmaSchedule;
use crate::lattice::Lattice;
use crate::rng::{self, Domain};
use crate::theory::Action;
use anyhow::Result;
use rand_distr::{Distribution, StandardNormal};

/// Which third of log σ ∈ [log σ_min, log σ_max] a noise level falls in.
pub(super) fn band(sched: &SigmaSchedule, sigma: f64) -> usize {
    let t = (sigma / sched.sigma_min).ln() / (sched.sigma_max / sched.sigma_min).ln();
    ((t * 3.0).floor().max(0.0) as usize).min(2)
}

/// Fixed held-out noise draws, so validation losses are comparable between epochs and runs;
/// the loss inputs of the score form are prepared once.
pub struct Validation {
    pub phi0: Vec<f32>,
    pub sigma: Vec<f32>,
    phi_sigma: Vec<f32>,
    scale: Vec<f32>,
    offset: Vec<f32>,
}

impl Validation {
    pub fn new(configs: Vec<f32>, v: usize, sched: &SigmaSchedule, seed: u64, parts: &ScoreParts) -> Self {
        let n = configs.len() / v;
        let mut rng = rng::stream(seed, Domain::Misc, 0x7661_6c);
        let z: Vec<f32> = (0..n * v).map(|_| StandardNormal.sample(&mut rng)).map(|x: f64| x as f32).collect();
        let sigma: Vec<f32> = (0..n).map(|_| sched.sample(&mut rng) as f32).collect();
        let (phi_sigma, scale, offset) = parts.training_inputs(&configs, &z, &sigma);
        Validation { phi0: configs, sigma, phi_sigma, scale, offset }
    }

    /// The prepared loss inputs (φ_σ, a, e).
    pub fn inputs(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.phi_sigma, &self.scale, &self.offset)
    }

    pub fn empty() -> Self {
        Validation { phi0: vec![], sigma: vec![], phi_sigma: vec![], scale: vec![], offset: vec![] }
    }

    pub fn len(&self) -> usize {
        self.sigma.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigma.is_empty()
    }

    /// Mean DSM loss (and per σ band) over the held-out set with weights `w`, in chunks of `chunk`.
    pub fn loss(
        &self,
        engine: &mut dyn NetEngine,
        w: Weights,
        lat: Lattice,
        chunk: usize,
        sched: &SigmaSchedule,
    ) -> Result<(f64, [f64; 3])> {
        let n = self.len();
        if n == 0 {
            return Ok((f64::NAN, [f64::NAN; 3]));
        }
        // Network inputs and outputs per configuration (their channels may differ).
        let (vx, v) = (self.phi_sigma.len() / n, self.offset.len() / n);
        let (mut tot, mut bs, mut bc) = (0.0, [0.0; 3], [0.0; 3]);
        let mut a = 0;
        while a < n {
            let b = (a + chunk).min(n);
            let mut per = vec![0.0f32; b - a];
            let (x, e) = (&self.phi_sigma[a * vx..b * vx], &self.offset[a * v..b * v]);
            engine.losses(w, lat, x, &self.sigma[a..b], &self.scale[a..b], e, &mut per)?;
            for (i, l) in per.iter().enumerate() {
                let bd = band(sched, self.sigma[a + i] as f64);
                tot += *l as f64;
                bs[bd] += *l as f64;
                bc[bd] += 1.0;
            }
            a = b;
        }
        Ok((tot / n as f64, std::array::from_fn(|i| if bc[i] > 0.0 { bs[i] / bc[i] } else { f64::NAN })))
    }
}

/// ‖s_θ(φ, σ_min) + ∂S/∂φ‖ / ‖∂S/∂φ‖ over the given configurations: how close the learnt
/// score at the smallest noise is to the exact force (stochastic quantisation's drift).
pub fn score_force_deviation(
    engine: &mut dyn NetEngine,
    w: Weights,
    parts: &ScoreParts,
    theory: &dyn Action,
    (configs, v): (&[f32], usize),
    sigma_min: f64,
) -> Result<f64> {
    let lat = theory.lattice();
    let n = configs.len() / v;
    if n == 0 {
        return Ok(f64::NAN);
    }
    let chunk = n.min(32);
    let (mut num, mut den) = (0.0, 0.0);
    let mut a = 0;
    while a < n {
        let k = chunk.min(n - a);
        let sig = vec![sigma_min as f32; k];
        let mut f = vec![0.0f32; k * v];
        let phi: Vec<f64> = configs[a * v..(a + k) * v].iter().map(|&x| x as f64).collect();
        engine.output(w, lat, &parts.network_input(&phi), &sig, &mut f)?;
        let mut s = vec![0.0; k * v];
        parts.compose(&phi, &vec![sigma_min; k], &f, &mut s);
        let mut d = vec![0.0; v];
        for b in 0..k {
            theory.deriv(&phi[b * v..][..v], &mut d);
            for x in 0..v {
                num += (s[b * v + x] + d[x]).powi(2);
                den += d[x] * d[x];
            }
        }
        a += k;
    }
    Ok((num / den.max(1e-300)).sqrt())
}
