//! Actions S[φ] and their derivatives (Grid's split: `action` evaluates S, `deriv`
//! writes ∂S/∂φ; the force driving molecular dynamics is −deriv).

pub mod free;
pub mod phi4;

pub use phi4::{Parametrisation, Phi4};

use crate::lattice::Lattice;

/// A lattice action on a real scalar field stored row-major (`Lattice::site`).
pub trait Action: Sync {
    fn lattice(&self) -> Lattice;

    /// S[φ] in f64.
    fn action(&self, phi: &[f64]) -> f64;

    /// dsdphi[x] = ∂S/∂φ_x.
    fn deriv(&self, phi: &[f64], dsdphi: &mut [f64]);

    /// mom -= eps · ∂S/∂φ: the momentum half of an MD step. Actions override this
    /// with a fused loop; the default goes through `deriv` and a scratch buffer.
    fn kick(&self, phi: &[f64], mom: &mut [f64], eps: f64) {
        let mut d = vec![0.0; phi.len()];
        self.deriv(phi, &mut d);
        for (p, dx) in mom.iter_mut().zip(&d) {
            *p -= eps * dx;
        }
    }
}
