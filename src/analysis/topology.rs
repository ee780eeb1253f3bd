//! The topology of an ensemble whose theory has an integer charge (U(1) today): the charge
//! of every configuration, how often it changed, and the exact values on the torus to
//! compare with. Built by the theory's [`Observables::topology`](super::Observables::topology).

/// The largest |Q| whose exact probability analyze prints.
pub const Q_EXACT: usize = 6;

/// Per-configuration integer charges, the freezing measure and the exact reference values.
#[derive(Clone, Debug)]
pub struct Topology {
    pub q: Vec<i64>,
    /// Dense chain index per configuration (all 0 without /chain).
    pub chain: Vec<usize>,
    /// Fraction of successive saved configurations of a chain whose Q differs.
    pub changed_fraction: f64,
    /// Exact values of derived quantities on this torus, by key (U(1): `plaquette`
    /// ⟨cos θ_P⟩ and `chi_t`, from `theory::u1_exact`), compared with the estimates.
    pub exact: Vec<(&'static str, f64)>,
    /// The exact P(Q) for Q = −Q_EXACT..=Q_EXACT.
    pub exact_p_q: Vec<(i64, f64)>,
}
