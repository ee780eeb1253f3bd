//! Diffusion on the torus for U(1) link angles: what a score model of a gauge field needs
//! beside the shared network, objective and samplers.
//!
//! The forward noise adds N(0, σ²) to every link angle and wraps (kernel: the wrapped
//! Gaussian of `theory::manifold`). That noise is a translation on the torus and a gauge
//! transformation is one too, so the noised density p_σ stays exactly gauge invariant and
//! its score depends on the field only through the plaquette angles (and the two
//! holonomies, which no local network sees). The network is therefore fed cos θ_P and
//! sin θ_P ([`features`]): gauge invariance holds by construction, not by augmentation,
//! and the inputs are bounded (no c_in scaling). It returns one score component per link
//! (2 channels). The score is the [`prior`]'s, exact as σ → 0 and as σ → ∞, plus the
//! network's correction; [`symmetry`] holds the lattice symmetries that augment the data.

pub mod features;
pub mod levels;
pub mod model;
pub mod prior;
pub mod projection;
pub mod symmetry;

pub use prior::GaugePrior;
pub use projection::GaugeProjector;

/// Network input channels (cos θ_P, sin θ_P) and output channels (the two link directions).
pub const IN_CHANNELS: usize = 2;
pub const OUT_CHANNELS: usize = 2;
