//! Score-based diffusion for lattice fields: the training objective and the samplers.
//!
//! Variance-exploding SDE: φ_σ = φ_0 + σ z. A `ScoreModel` gives s(φ, σ) ≈ ∇_φ log p_σ(φ);
//! at σ → 0 this is −∂S/∂φ, so the reverse-time SDE is Langevin dynamics with a learnt,
//! σ-dependent action (stochastic quantisation).

pub mod data;
pub mod fit_action;
pub mod form;
pub mod generate;
pub mod multilevel;
pub mod net;
pub mod objective;
pub mod phi4;
pub mod sample;
pub mod smc;
pub mod theories;
pub mod theory;
pub mod train;
pub mod u1;

use crate::lattice::Lattice;

/// Anything that gives the score of the noised ensemble: a trained network or the exact
/// free-field score. Fields are f64 on the sampler side, row-major [B, L_t, L_x] ([B, 2, L_t,
/// L_x] for U(1) links, `torus_dof`).
pub trait ScoreModel: Sync {
    /// Why the model cannot run on `lat`, if it cannot (e.g. not divisible by 2^levels).
    fn check_lattice(&self, lat: Lattice) -> Result<(), String>;

    /// out[b] = s(φ_b, σ_b) for a batch of B = sigma.len() configurations. Fails only when
    /// the device running the model does.
    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String>;

    /// Two-point function G(p) = ⟨|φ̃_p|²⟩/V of the (un-noised) data on `lat`, indexed
    /// nt * L_x + nx: the propagator the matched sampler kernel is built from.
    fn two_point(&self, lat: Lattice) -> Vec<f64>;

    /// One-line description for logs and file attributes.
    fn describe(&self) -> String;

    /// φ⁴'s physics prior its score is built on at `lat`, if it has one (physics-form
    /// networks, `prior:` models): its scalar action is the SMC sampler's intermediate target.
    fn physics_prior(&self, _lat: Lattice) -> Option<std::sync::Arc<phi4::prior::PhysicsPrior>> {
        None
    }

    /// For a field of angles on the torus (U(1) links), their number per configuration on
    /// `lat`; `None` for a real field of one value per site.
    fn torus_dof(&self, _lat: Lattice) -> Option<usize> {
        None
    }

    /// Whether `action_values` gives an action whose gradient is the score (action-form
    /// networks): the energies for Metropolis tests against the model itself.
    fn has_action(&self) -> bool {
        false
    }

    /// action[b] = U(φ_b; σ_b) with s(φ, σ) = −∇_φ U(φ; σ) (up to a constant per σ): for an
    /// action-form network its learnt S_θ(c_in(σ) φ, σ). With `score`, s(φ_b, σ_b) from the
    /// same pass, bit for bit what `score` gives. Models without one refuse (`has_action`).
    fn action_values(
        &self,
        _lat: Lattice,
        _phi: &[f64],
        _sigma: &[f64],
        _action: &mut [f64],
        _score: Option<&mut [f64]>,
    ) -> Result<(), String> {
        Err(format!("{} has no learnt action (only score form action has one)", self.describe()))
    }

    /// Where the model is evaluated (file attribute `device`).
    fn device(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
}
