//! The couplings of a run from its flags: each theory's flags only with that theory, the
//! default point where none is named, and couplings whose action is representable.

use super::{finite, TheoryName};
use crate::lattice::Lattice;
use crate::theory::{Couplings, Parametrisation};
use anyhow::{anyhow, bail, Result};

/// Default theory when none is named: the near-critical hopping-form point of the study.
pub const DEFAULT_KAPPA: f64 = 0.27;
pub const DEFAULT_LAMBDA: f64 = 0.022;

pub fn resolve_theory(kappa: Option<f64>, m2: Option<f64>, lambda: Option<f64>) -> Result<Parametrisation> {
    let p = match (kappa, m2) {
        (Some(_), Some(_)) => {
            bail!("kappa and m2: give one parametrisation (hopping: kappa, mass: m2), not both")
        }
        (None, Some(m2)) => {
            let lambda = lambda.ok_or_else(|| anyhow!("lambda: required with m2 (mass form)"))?;
            Parametrisation::Mass { m2, lambda }
        }
        (k, None) => {
            Parametrisation::Hopping { kappa: k.unwrap_or(DEFAULT_KAPPA), lambda: lambda.unwrap_or(DEFAULT_LAMBDA) }
        }
    };
    match p {
        Parametrisation::Hopping { kappa, lambda } => {
            finite("kappa", kappa)?;
            finite("lambda", lambda)?;
        }
        Parametrisation::Mass { m2, lambda } => {
            finite("m2", m2)?;
            finite("lambda", lambda)?;
        }
    }
    check_representable(&p)?;
    let lambda = p.lambda();
    if lambda < 0.0 {
        bail!("lambda: {lambda} is negative (the action would be unbounded below)");
    }
    if lambda == 0.0 && !crate::theory::free::is_stable(&p) {
        bail!("{}: the free theory (lambda = 0) is unstable here (needs kappa < 1/4, or m2 > 0)", p.describe());
    }
    Ok(p)
}

/// The couplings of `theory` from the flags, refusing another theory's flags.
pub fn resolve_couplings(
    theory: TheoryName,
    kappa: Option<f64>,
    m2: Option<f64>,
    lambda: Option<f64>,
    beta: Option<f64>,
) -> Result<Couplings> {
    match theory {
        TheoryName::Phi4 => {
            if let Some(b) = beta {
                bail!("beta: {b} given, but beta is the coupling of theory u1 or su2 (phi4 takes kappa or m2, and lambda)");
            }
            resolve_theory(kappa, m2, lambda).map(Couplings::Phi4)
        }
        TheoryName::U1 => {
            for (k, v) in [("kappa", kappa), ("m2", m2), ("lambda", lambda)] {
                if let Some(v) = v {
                    bail!("{k}: {v} given, but theory u1 takes only beta");
                }
            }
            let beta = beta.ok_or_else(|| anyhow!("beta: required with theory u1 (e.g. --beta 3)"))?;
            finite("beta", beta)?;
            if beta < 0.0 {
                bail!("beta: {beta} is negative (the Wilson action would favour disorder over order)");
            }
            Ok(Couplings::U1 { beta })
        }
        TheoryName::Su2 => {
            for (k, v) in [("kappa", kappa), ("m2", m2), ("lambda", lambda)] {
                if let Some(v) = v {
                    bail!("{k}: {v} given, but theory su2 takes only beta");
                }
            }
            let beta = beta.ok_or_else(|| anyhow!("beta: required with theory su2 (e.g. --beta 2)"))?;
            finite("beta", beta)?;
            if beta <= 0.0 {
                bail!("beta: {beta} is not positive (theory su2 needs beta > 0)");
            }
            Ok(Couplings::Su2 { beta })
        }
    }
}

/// Couplings so large that the action of a start configuration overflows f64 would let a
/// run start and fill its output with NaN: refused here, naming the couplings.
fn check_representable(p: &Parametrisation) -> Result<()> {
    let th = crate::theory::Phi4::new(Lattice::square(2), *p);
    for phi in [th.classical_vacuum(), 1.0] {
        let (s, _) = th.action_and_sum(&[phi; 4]);
        if !s.is_finite() {
            // Debug prints 1e200 as such (Display writes all 201 digits).
            let couplings = match *p {
                Parametrisation::Hopping { kappa, lambda } => format!("kappa = {kappa:?}, lambda = {lambda:?}"),
                Parametrisation::Mass { m2, lambda } => format!("m2 = {m2:?}, lambda = {lambda:?}"),
            };
            bail!("{couplings}: the action of a constant field {phi:.3e} overflows (couplings out of range)");
        }
    }
    Ok(())
}
