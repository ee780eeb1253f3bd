//! Exact results of the free theory (λ = 0), the reference for tests and for the
//! analytic score model.
//!
//! Hopping form, λ = 0: S = Σ_x [φ_x² − 2κ Σ_μ φ_x φ_{x+μ}] = ½ φ·K·φ with, in momentum
//! space, K(p) = 2 − 4κ Σ_μ cos p_μ; so ⟨φ̃_p φ̃_{−p}⟩/V = 1/K(p).
//! Mass form, λ = 0: K(p) = 2(4 + m²) − 4 Σ_μ cos p_μ = 2(p̂² + m²).

use super::Parametrisation;
use crate::lattice::Lattice;

/// K(p) for mode (nt, nx); the propagator is 1/K(p).
pub fn kernel(param: &Parametrisation, lat: &Lattice, nt: usize, nx: usize) -> f64 {
    let (h, q, _) = param.coefficients();
    let pt = 2.0 * std::f64::consts::PI * nt as f64 / lat.lt as f64;
    let px = 2.0 * std::f64::consts::PI * nx as f64 / lat.lx as f64;
    2.0 * q - 4.0 * h * (pt.cos() + px.cos())
}

/// Whether the free theory with these couplings is stable (K(p) > 0 for all p).
pub fn is_stable(param: &Parametrisation) -> bool {
    let (h, q, _) = param.coefficients();
    2.0 * q - 8.0 * h.abs() > 0.0
}

/// ⟨φ_x²⟩ = (1/V) Σ_p 1/K(p).
pub fn phi2(param: &Parametrisation, lat: &Lattice) -> f64 {
    let mut s = 0.0;
    for nt in 0..lat.lt {
        for nx in 0..lat.lx {
            s += 1.0 / kernel(param, lat, nt, nx);
        }
    }
    s / lat.volume() as f64
}

/// χ = V⟨M²⟩ with M = (1/V)Σφ: the zero-momentum propagator 1/K(0).
pub fn chi(param: &Parametrisation, lat: &Lattice) -> f64 {
    1.0 / kernel(param, lat, 0, 0)
}
