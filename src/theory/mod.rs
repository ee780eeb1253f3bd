//! Lattice field theories, one file each (`phi4.rs`), behind one interface: [`Theory`]
//! (its action and force in Grid's split — `action` evaluates S, `deriv` writes ∂S/∂φ, the
//! force driving molecular dynamics is −deriv —, starts, symmetry, thermalisation observable
//! and file attributes) on a [`Manifold`] (where the field lives and how MD moves on it).
//! HMC (`mc`) is written against these two and knows no theory by name.

pub mod cluster;
pub mod free;
pub mod manifold;
pub mod phi4;
pub mod su2;
pub mod su2_exact;
pub mod u1;
pub mod u1_exact;

pub use manifold::{Flat, Manifold, Torus};
pub use phi4::{Parametrisation, Phi4};
pub use su2::{Su2, Su2Links};
pub use u1::U1;

use crate::lattice::Lattice;
use crate::rng::Stream;
use serde::{Deserialize, Serialize};

/// A lattice action on a field of f64 degrees of freedom stored row-major (`dof_shape`).
pub trait Action: Sync {
    fn lattice(&self) -> Lattice;

    /// S[φ] in f64.
    fn action(&self, phi: &[f64]) -> f64;

    /// dsdphi[x] = ∂S/∂φ_x.
    fn deriv(&self, phi: &[f64], dsdphi: &mut [f64]);

    /// mom -= eps · ∂S/∂φ: the momentum half of an MD step. Actions override this
    /// with a fused loop; the default goes through `deriv` and a scratch buffer. On a group
    /// stored in more coordinates than its dimension (SU(2)) `deriv` writes the derivative
    /// along the generators, in the momenta's layout (`Manifold::momentum_len`).
    fn kick(&self, phi: &[f64], mom: &mut [f64], eps: f64) {
        let mut d = vec![0.0; mom.len()];
        self.deriv(phi, &mut d);
        for (p, dx) in mom.iter_mut().zip(&d) {
            *p -= eps * dx;
        }
    }
}

/// What a theory records in its files: labels (`theory`, its form) and couplings, in the
/// order they are written. Read back by [`Couplings::from_attrs`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TheoryAttrs {
    pub labels: Vec<(&'static str, String)>,
    pub couplings: Vec<(&'static str, f64)>,
}

/// Everything HMC, the thermalisation check, augmentation and the files need to know
/// about a theory. A new theory implements this (and `Action`) in its own file.
pub trait Theory: Action + Clone + Send {
    type Manifold: Manifold;

    fn manifold(&self) -> Self::Manifold;

    /// Name recorded in files (`theory` attribute), e.g. "phi4".
    fn name(&self) -> &'static str;

    /// The field's degrees of freedom on `lattice`, outermost first: φ⁴ [L_t, L_x]; U(1)
    /// link angles would be [2, L_t, L_x].
    fn dof_shape(&self, lattice: Lattice) -> Vec<usize>;

    /// An ordered start (φ⁴: the classical vacuum with a random sign), from `rng`.
    fn cold_start(&self, rng: &mut Stream) -> Vec<f64>;

    /// A disordered start, from `rng`.
    fn hot_start(&self, rng: &mut Stream) -> Vec<f64>;

    /// S and the extensive observable whose density's modulus the thermalisation check
    /// watches (φ⁴: Σφ, so |M|), in one pass: HMC needs both per trajectory.
    fn action_and_monitor(&self, field: &[f64]) -> (f64, f64);

    /// Name of that |density| in thermalisation reports.
    fn monitor_name(&self) -> &'static str;

    /// When the monitor is an integer on every valid configuration (U(1): the topological
    /// charge), the name of the integer column that stores it per saved configuration
    /// (checked with [`as_integer`]).
    fn integer_monitor_column(&self) -> Option<&'static str> {
        None
    }

    /// The global Z2 symmetry of S applied to one degree of freedom (φ⁴: φ → −φ), used to
    /// augment training data.
    fn reflect(&self, value: f32) -> f32;

    /// Updates besides HMC that leave e^{−S} invariant, `n` of them after each trajectory
    /// (φ⁴: Wolff flips of the embedded Ising model). None when the theory has none.
    fn cluster_flips(&self, field: &mut [f64], rng: &mut Stream, n: usize) -> Option<usize> {
        let _ = (field, rng, n);
        None
    }

    /// The attributes naming the theory and its couplings in every file it produces.
    fn attrs(&self) -> TheoryAttrs;
}

/// `x` as the integer it must be (an integer observable such as U(1)'s topological charge,
/// computed in floating point), or None when it is more than 1e−6 from one: a broken
/// field, not a measurement.
pub fn as_integer(x: f64) -> Option<i64> {
    let r = x.round();
    ((x - r).abs() < 1e-6).then_some(r as i64)
}

/// The couplings of every theory latdiff knows, tagged by the theory's name: what a
/// configuration or a file names, and what builds the theory on a lattice.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "theory", rename_all = "lowercase")]
pub enum Couplings {
    Phi4(Parametrisation),
    /// Compact U(1) gauge theory, Wilson action S = −β Σ_P cos θ_P.
    U1 {
        beta: f64,
    },
    /// SU(2) gauge theory, Wilson action S = β Σ_P (1 − ½ tr U_P).
    Su2 {
        beta: f64,
    },
}

impl Couplings {
    /// Reads the couplings from a file's attributes (`text` and `number` look one up by
    /// name). Files written before the `theory` attribute existed are φ⁴'s. The error
    /// names the missing or unknown attribute; the caller adds the file.
    pub fn from_attrs(
        text: &dyn Fn(&str) -> Option<String>,
        number: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Self, String> {
        match text("theory").as_deref() {
            // A file without `theory` is read as φ⁴ (what latdiff wrote before U(1)); one with
            // β and no φ⁴ coupling is a U(1) file missing its label: name that, not φ⁴'s keys.
            None if number("beta").is_some() && number("kappa").is_none() && number("m2").is_none() => Err(
                "attribute 'theory' missing: the file has 'beta' but no phi4 coupling; a U(1) file needs theory = \"u1\" (f.attrs[\"theory\"] = \"u1\" in h5py)".into(),
            ),
            None | Some("phi4") => Parametrisation::from_attrs(text, number).map(Couplings::Phi4),
            Some("u1") => match number("beta") {
                Some(beta) if beta.is_finite() => Ok(Couplings::U1 { beta }),
                Some(beta) => Err(format!("attribute 'beta' = {beta} is not a finite coupling")),
                None => Err("attribute 'beta' missing (no u1 coupling)".into()),
            },
            Some("su2") => match number("beta") {
                Some(beta) => Ok(Couplings::Su2 { beta }),
                None => Err("attribute 'beta' missing (no su2 coupling)".into()),
            },
            Some(other) => Err(format!("theory '{other}' is not known (latdiff has phi4, u1, su2)")),
        }
    }

    /// e.g. "hopping form, kappa = 0.27, lambda = 0.022".
    pub fn describe(&self) -> String {
        match self {
            Couplings::Phi4(p) => format!("{} form, {}", p.name(), p.describe()),
            Couplings::U1 { beta } | Couplings::Su2 { beta } => format!("beta = {beta}"),
        }
    }

    /// The name files record (`theory` attribute).
    pub fn name(&self) -> &'static str {
        match self {
            Couplings::Phi4(_) => "phi4",
            Couplings::U1 { .. } => "u1",
            Couplings::Su2 { .. } => "su2",
        }
    }

    /// The φ⁴ couplings, or an error naming the theory the file holds instead.
    pub fn phi4(self) -> Result<Parametrisation, String> {
        match self {
            Couplings::Phi4(p) => Ok(p),
            Couplings::U1 { .. } => Err(
                "the file holds U(1) gauge fields (theory = u1); this command handles phi4 only (hmc, train, sample, analyze and info handle u1)"
                    .into(),
            ),
            Couplings::Su2 { .. } => Err(
                "the file holds SU(2) gauge fields (theory = su2); this command handles phi4 only (hmc, analyze and info handle su2)"
                    .into(),
            ),
        }
    }
}
