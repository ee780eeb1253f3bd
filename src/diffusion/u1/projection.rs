//! The projector P onto the link fields that a gauge-invariant density's score can be:
//! orthogonal to the gauge directions Dα, (Dα)_μ(x) = α(x + μ̂) − α(x), and to the two
//! holonomy shifts (every link of one direction moved alike), which leave every plaquette
//! unchanged. p_σ is exactly invariant along both (the noise is a translation on the
//! torus), so its score lies in the range of P, and so does E[t | θ_σ] for the denoising
//! target t: projecting t is an unbiased variance reduction of the loss (half the link
//! components are gauge or holonomy), and projecting the network's share at sampling keeps
//! the learnt drift from moving the field along directions no observable sees but the path
//! weight does.
//!
//! P e = e − D (DᵀD)⁺ Dᵀ e − (holonomy means), with DᵀD = −Δ the lattice Laplacian,
//! diagonal in momentum space (p̂² = Σ_μ 4 sin²(p_μ/2), the zero mode dropped).

use std::sync::Arc;

use crate::lattice::fft::{self, Fft2, Fft2Work};
use crate::lattice::Lattice;

pub struct GaugeProjector {
    lattice: Lattice,
    fft: Arc<Fft2>,
    /// 1/p̂² per momentum (nt·L_x + nx), 0 at p = 0.
    inv_laplacian: Vec<f64>,
}

/// Per-thread scratch of the projector.
pub struct ProjectorWork {
    fft: Fft2Work,
    div: Vec<f64>,
    alpha: Vec<f64>,
}

impl GaugeProjector {
    pub fn new(lattice: Lattice) -> Self {
        let (lt, lx) = (lattice.lt, lattice.lx);
        let s2 = |n: usize, l: usize| 4.0 * (std::f64::consts::PI * n as f64 / l as f64).sin().powi(2);
        let mut inv_laplacian = vec![0.0; lt * lx];
        for nt in 0..lt {
            for nx in 0..lx {
                let p2 = s2(nt, lt) + s2(nx, lx);
                inv_laplacian[nt * lx + nx] = if nt == 0 && nx == 0 { 0.0 } else { 1.0 / p2 };
            }
        }
        GaugeProjector { lattice, fft: fft::plan(lattice), inv_laplacian }
    }

    pub fn work(&self) -> ProjectorWork {
        let v = self.lattice.volume();
        ProjectorWork { fft: self.fft.work(), div: vec![0.0; v], alpha: vec![0.0; v] }
    }

    /// e ← P e for one link field e ([2, L_t, L_x]).
    pub fn project(&self, e: &mut [f64], ws: &mut ProjectorWork) {
        let (lt, lx, v) = (self.lattice.lt, self.lattice.lx, self.lattice.volume());
        let up = |t: usize, x: usize| ((t + 1) % lt) * lx + x;
        let right = |t: usize, x: usize| t * lx + (x + 1) % lx;
        // Dᵀe(x) = Σ_μ [e_μ(x − μ̂) − e_μ(x)], accumulated from each link's two ends.
        ws.div.iter_mut().for_each(|d| *d = 0.0);
        for t in 0..lt {
            for x in 0..lx {
                let s = t * lx + x;
                ws.div[s] -= e[s] + e[v + s];
                ws.div[up(t, x)] += e[s];
                ws.div[right(t, x)] += e[v + s];
            }
        }
        self.fft.apply_diag(&self.inv_laplacian, &ws.div, &mut ws.alpha, &mut ws.fft);
        let a = &ws.alpha;
        for t in 0..lt {
            for x in 0..lx {
                let s = t * lx + x;
                e[s] -= a[up(t, x)] - a[s];
                e[v + s] -= a[right(t, x)] - a[s];
            }
        }
        for mu in 0..2 {
            let c = &mut e[mu * v..][..v];
            let mean = c.iter().sum::<f64>() / v as f64;
            c.iter_mut().for_each(|x| *x -= mean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::{Action, U1};
    use rand::RngExt;

    fn random(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::stream(seed, crate::rng::Domain::Misc, 4);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// P removes gauge and holonomy directions, keeps the force of any plaquette action
    /// (the range of curlᵀ), and is idempotent and symmetric.
    #[test]
    fn projector_keeps_plaquette_forces_and_removes_gauge_directions() {
        for lat in [Lattice::new(4, 4), Lattice::new(6, 8)] {
            let (v, p) = (lat.volume(), GaugeProjector::new(lat));
            let mut ws = p.work();
            // A pure gauge direction plus holonomy shifts projects to zero.
            let alpha = random(v, 1);
            let mut g = vec![0.0; 2 * v];
            let (lt, lx) = (lat.lt, lat.lx);
            for t in 0..lt {
                for x in 0..lx {
                    let s = t * lx + x;
                    g[s] = alpha[((t + 1) % lt) * lx + x] - alpha[s] + 0.7;
                    g[v + s] = alpha[t * lx + (x + 1) % lx] - alpha[s] - 0.2;
                }
            }
            p.project(&mut g, &mut ws);
            assert!(g.iter().all(|x| x.abs() < 1e-12), "{lat}: {:?}", &g[..4]);
            // The Wilson force is kept.
            let theta: Vec<f64> = random(2 * v, 2).iter().map(|x| 3.0 * x).collect();
            let mut f = vec![0.0; 2 * v];
            U1::new(lat, 1.3).deriv(&theta, &mut f);
            let mut pf = f.clone();
            p.project(&mut pf, &mut ws);
            assert!(f.iter().zip(&pf).all(|(a, b)| (a - b).abs() < 1e-12), "{lat}");
            // Symmetric (⟨Pa, b⟩ = ⟨a, Pb⟩) and idempotent.
            let (mut a, mut b) = (random(2 * v, 3), random(2 * v, 4));
            let (a0, b0) = (a.clone(), b.clone());
            p.project(&mut a, &mut ws);
            p.project(&mut b, &mut ws);
            let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
            assert!((dot(&a, &b0) - dot(&a0, &b)).abs() < 1e-12);
            let a1 = a.clone();
            p.project(&mut a, &mut ws);
            assert!(a.iter().zip(&a1).all(|(x, y)| (x - y).abs() < 1e-12));
            // What is left has V − 1 dimensions of 2V: the norm halves on average.
            assert!(dot(&a, &a) < dot(&a0, &a0));
        }
    }
}
