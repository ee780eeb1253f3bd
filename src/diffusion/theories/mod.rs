//! The theories' implementations of `DiffusionTheory` (φ⁴: [`phi4`], U(1): [`u1`]), built
//! from the pieces in `diffusion::phi4` and `diffusion::u1`, and `of`: the one place that
//! picks one from the couplings.

pub mod phi4;
pub mod u1;

use self::phi4::Phi4Diffusion;
use self::u1::U1Diffusion;
use crate::diffusion::theory::DiffusionTheory;
use crate::theory::Couplings;

/// The couplings of a file entering diffusion (training data, a model's theory, a prior's
/// ensemble), or bad input when latdiff has no diffusion for that theory yet: every entry
/// calls this before [`of`].
pub fn built(couplings: Couplings) -> Result<Couplings, String> {
    match couplings {
        Couplings::Su2 { .. } => {
            Err("diffusion for su2 is not built yet (latdiff hmc, analyze and info handle su2 ensembles)".into())
        }
        c => Ok(c),
    }
}

/// The diffusion pieces of the theory at `couplings` (checked by [`built`] on entry).
pub fn of(couplings: Couplings) -> Box<dyn DiffusionTheory> {
    match couplings {
        Couplings::Phi4(p) => Box::new(Phi4Diffusion(p)),
        Couplings::U1 { beta } => Box::new(U1Diffusion { beta }),
        Couplings::Su2 { .. } => panic!("{}", built(couplings).unwrap_err()),
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
