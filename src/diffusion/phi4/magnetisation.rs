//! The magnetisation's share of a reverse step, drawn from (nearly) its exact conditional.
//!
//! Why: in the broken phase the magnetisation m = Σφ/V of the level targets is a double
//! well whose curvature in m is O(V) while the step's noise in m is only Δ_k/V, so the
//! Gaussian step (drift Δ_k s̄) overshoots whenever Δ_k·u''(m) ≳ 1. Measured (κ = 0.3,
//! L = 32, cumulant targets, no network): without the redraw every weight vanished at
//! σ = 80; with it the run completes and ⟨|M|⟩ is within 0.3 % of HMC. Near criticality at
//! L = 64 it does not help: there the whole band of soft modes is off (README, "SMC with a
//! trained model").
//!
//! After the usual step has drawn φ_{k−1}, its magnetisation is replaced: with φ_{k−1} + δ
//! (δ uniform over sites) the exact reverse transition of the levels has the density
//!   q*(δ) ∝ exp(−U_{k−1}(φ_{k−1} + δ) − V (m_k − m_{k−1} − δ)² / (2Δ_k)),
//! one-dimensional. U_{k−1} along δ is fitted by the quartic through five points (exact for
//! the φ⁴ action, the cumulant surrogate and S_prior without the data's zero mode), and δ is
//! drawn from the piecewise-constant density of that fit on a grid around its minima. The
//! proposal's density is known exactly, so the weights stay exact whatever the fit's error:
//! the path part gains log N(m_{k−1}; m_k + Δ_k s̄, Σ_k(0)/V) − log q(δ) (the Gaussian share
//! of log b_k swapped for q's) and the change of the forward term log f_k.

use rand::RngExt;
use rayon::prelude::*;

use crate::diffusion::phi4::levels::LevelPotential;
use crate::diffusion::phi4::prior::PriorWork;
use crate::diffusion::sample::kernel::LN_2PI;
use crate::rng::Stream;

/// Grid cells per unit of the narrowest local width (and never fewer than `MIN_CELLS`).
const CELLS_PER_WIDTH: f64 = 16.0;
const MIN_CELLS: usize = 1024;
const MAX_CELLS: usize = 1 << 16;
/// The grid spans each minimum ± this many local widths (1/√g'').
const SPAN_WIDTHS: f64 = 12.0;

/// What the step needs of one particle before the usual step: m_k and the mean score s̄.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    pub m: f64,
    pub mean_score: f64,
}

pub fn before(phi: &[f64], score: &[f64], v: usize) -> Vec<Before> {
    phi.par_chunks(v).zip(score.par_chunks(v)).map(|(p, s)| Before { m: mean(p), mean_score: mean(s) }).collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Redraws the magnetisation of every particle after reverse step k (module docs).
/// `pot` is U_{k−1}; (delta, cov0) are Δ_k and Σ_k(0).
#[allow(clippy::too_many_arguments)]
pub fn redraw(
    pot: LevelPotential<'_>,
    delta: f64,
    cov0: f64,
    before: &[Before],
    phi: &mut [f64],
    path: &mut [f64],
    rngs: &mut [Stream],
    new_work: impl Fn() -> PriorWork + Sync + Send,
) {
    let n = before.len();
    let v = phi.len() / n.max(1);
    phi.par_chunks_mut(v).zip(path.par_iter_mut()).zip(rngs.par_iter_mut()).zip(before.par_iter()).for_each_init(
        || (new_work(), vec![0.0; v]),
        |(ws, shifted), (((p, path), rng), b)| {
            let vf = v as f64;
            let m_std = mean(p);
            // U_{k−1} along δ, plus the forward term: g(δ) = −log q*(δ) + const.
            let mut g = quartic_along_uniform(pot, p, shifted, ws);
            let d0 = b.m - m_std;
            g[2] += vf / (2.0 * delta);
            g[1] -= vf * d0 / delta;
            // δ = 0 is the usual step's draw; the wells of U lie at |m| = O(1).
            let span = 4.0 + 2.0 * m_std.abs() + 64.0 * (cov0 / vf).sqrt();
            let grid = Grid::new(&g, 0.0, span);
            let u: f64 = rng.random();
            let w: f64 = rng.random();
            let (dlt, log_q) = grid.sample(u, w);
            p.iter_mut().for_each(|x| *x += dlt);
            // log N(m_std; m_k + Δ s̄, cov0/V), the Gaussian share of log b_k now replaced.
            let var0 = cov0 / vf;
            let r = m_std - b.m - delta * b.mean_score;
            let log_gauss = -0.5 * r * r / var0 - 0.5 * (LN_2PI + var0.ln());
            let forward = -vf * ((d0 - dlt).powi(2) - d0 * d0) / (2.0 * delta);
            *path += forward + log_gauss - log_q;
        },
    );
}

/// Coefficients [c0, c1, c2, c3, c4] of U(φ + δ) in δ, from U at δ = 0, ±h, ±2h.
fn quartic_along_uniform(pot: LevelPotential<'_>, phi: &[f64], shifted: &mut [f64], ws: &mut PriorWork) -> [f64; 5] {
    let h = 0.25;
    let mut f = [0.0; 5];
    for (i, f) in f.iter_mut().enumerate() {
        let d = (i as f64 - 2.0) * h;
        shifted.iter_mut().zip(phi).for_each(|(s, p)| *s = p + d);
        *f = pot.energy(shifted, ws);
    }
    let [fm2, fm1, f0, f1, f2] = f;
    [
        f0,
        (fm2 - 8.0 * fm1 + 8.0 * f1 - f2) / (12.0 * h),
        (-fm2 + 16.0 * fm1 - 30.0 * f0 + 16.0 * f1 - f2) / (24.0 * h * h),
        (-fm2 + 2.0 * fm1 - 2.0 * f1 + f2) / (12.0 * h.powi(3)),
        (fm2 - 4.0 * fm1 + 6.0 * f0 - 4.0 * f1 + f2) / (24.0 * h.powi(4)),
    ]
}

fn poly(c: &[f64; 5], x: f64) -> f64 {
    (((c[4] * x + c[3]) * x + c[2]) * x + c[1]) * x + c[0]
}

fn dpoly(c: &[f64; 5], x: f64) -> f64 {
    ((4.0 * c[4] * x + 3.0 * c[3]) * x + 2.0 * c[2]) * x + c[1]
}

fn ddpoly(c: &[f64; 5], x: f64) -> f64 {
    (12.0 * c[4] * x + 6.0 * c[3]) * x + 2.0 * c[2]
}

/// The local minima of g (where g' rises through zero) within `span` of `centre`.
fn minima(c: &[f64; 5], centre: f64, span: f64) -> Vec<f64> {
    // g' is a cubic: its real roots lie where it rises through zero on a scan of
    // [centre − span, centre + span]; bisection polishes each bracket.
    let n = 4096;
    let x = |i: usize| centre - span + 2.0 * span * i as f64 / n as f64;
    let mut out = Vec::new();
    for i in 0..n {
        let (a, b) = (x(i), x(i + 1));
        if dpoly(c, a) < 0.0 && dpoly(c, b) >= 0.0 {
            let (mut lo, mut hi) = (a, b);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if dpoly(c, mid) < 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(0.5 * (lo + hi));
        }
    }
    out
}

/// The piecewise-constant density exp(−g) on cells of equal width.
struct Grid {
    lo: f64,
    cell: f64,
    /// Cumulative probabilities of the cells.
    cdf: Vec<f64>,
    /// log of each cell's probability.
    log_p: Vec<f64>,
}

impl Grid {
    /// The grid of exp(−g) around the minima of g within `span` of `centre`.
    fn new(c: &[f64; 5], centre: f64, span: f64) -> Self {
        let mins = minima(c, centre, span);
        let mins = if mins.is_empty() { vec![centre] } else { mins };
        let g_min = mins.iter().map(|&x| poly(c, x)).fold(f64::INFINITY, f64::min);
        // Minima more than 50 units above the lowest carry e^{-50} of the mass: dropped.
        let kept: Vec<f64> = mins.iter().copied().filter(|&x| poly(c, x) - g_min < 50.0).collect();
        let widths: Vec<f64> = kept.iter().map(|&x| 1.0 / ddpoly(c, x).max(1e-300).sqrt()).collect();
        let lo = kept.iter().zip(&widths).map(|(x, w)| x - SPAN_WIDTHS * w).fold(f64::INFINITY, f64::min);
        let hi = kept.iter().zip(&widths).map(|(x, w)| x + SPAN_WIDTHS * w).fold(f64::NEG_INFINITY, f64::max);
        let narrow = widths.iter().copied().fold(f64::INFINITY, f64::min);
        let cells = (((hi - lo) / narrow * CELLS_PER_WIDTH).ceil() as usize).clamp(MIN_CELLS, MAX_CELLS);
        let cell = (hi - lo) / cells as f64;
        let g: Vec<f64> = (0..cells).map(|i| poly(c, lo + (i as f64 + 0.5) * cell)).collect();
        let g0 = g.iter().copied().fold(f64::INFINITY, f64::min);
        let p: Vec<f64> = g.iter().map(|g| (-(g - g0)).exp()).collect();
        let total: f64 = p.iter().sum();
        let mut acc = 0.0;
        let cdf = p
            .iter()
            .map(|p| {
                acc += p / total;
                acc
            })
            .collect();
        let log_p = p.iter().map(|p| (p / total).ln()).collect();
        Grid { lo, cell, cdf, log_p }
    }

    /// (δ, log q(δ)) from uniforms u (the cell) and w (the position within it).
    fn sample(&self, u: f64, w: f64) -> (f64, f64) {
        let j = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        (self.lo + (j as f64 + w) * self.cell, self.log_p[j] - self.cell.ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid's density integrates to 1 and its draws follow a double well: the mean of
    /// δ² under the drawn samples matches the grid's own expectation.
    #[test]
    fn grid_density_is_normalised_and_covers_both_wells() {
        // g = 50 (δ² − 1)² + 0.5 δ²: wells at about ±1.
        let c = [50.0, 0.0, -100.0 + 0.5, 0.0, 50.0];
        let grid = Grid::new(&c, 0.0, 4.0);
        let total: f64 = grid.log_p.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12, "total {total}");
        let (mut left, n) = (0usize, 20_000);
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            let (d, lq) = grid.sample(u, 0.5);
            left += usize::from(d < 0.0);
            assert!(lq.is_finite());
        }
        let frac = left as f64 / n as f64;
        assert!((frac - 0.5).abs() < 0.01, "left well holds {frac} of the mass");
    }

    /// The quartic fit is exact for a quartic energy.
    #[test]
    fn quartic_fit_is_exact_for_the_phi4_action() {
        use crate::lattice::Lattice;
        use crate::theory::Action;
        let prior = crate::diffusion::phi4::prior::tests::interacting(Lattice::new(4, 4));
        let th = *prior.theory();
        let phi: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut ws = prior.work();
        let c = quartic_along_uniform(LevelPotential::Target(&th), &phi, &mut vec![0.0; 16], &mut ws);
        for d in [-1.3, 0.4, 2.2] {
            let shifted: Vec<f64> = phi.iter().map(|p| p + d).collect();
            let want = th.action(&shifted);
            assert!((poly(&c, d) - want).abs() < 1e-9 * want.abs().max(1.0), "δ {d}: {} vs {want}", poly(&c, d));
        }
    }
}
