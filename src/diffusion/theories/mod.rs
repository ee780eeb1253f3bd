//! The theories' implementations of `DiffusionTheory` (φ⁴: [`phi4`], U(1): [`u1`]), built
//! from the pieces in `diffusion::phi4` and `diffusion::u1`, and `of`: the one place that
//! picks one from the couplings.

pub mod phi4;
pub mod u1;

use self::phi4::Phi4Diffusion;
use self::u1::U1Diffusion;
use crate::diffusion::theory::DiffusionTheory;
use crate::theory::Couplings;

/// The diffusion pieces of the theory at `couplings`.
pub fn of(couplings: Couplings) -> Box<dyn DiffusionTheory> {
    match couplings {
        Couplings::Phi4(p) => Box::new(Phi4Diffusion(p)),
        Couplings::U1 { beta } => Box::new(U1Diffusion { beta }),
    }
}

/// The parts of `form` on `lat` for a model of `theory` sampling it: with the data's
/// two-point function `g` and zero-mode data `m` (`DiffusionTheory::score_parts`).
pub fn score_parts(
    form: crate::config::ScoreForm,
    theory: Couplings,
    sigma_data: f64,
    g: Vec<f64>,
    m: &[f64],
    lat: crate::lattice::Lattice,
) -> Result<crate::diffusion::form::ScoreParts, String> {
    of(theory).score_parts(form, sigma_data, g, m, lat, theory)
}
