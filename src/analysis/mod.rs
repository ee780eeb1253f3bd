//! Analysis of Monte Carlo ensembles: statistics (Γ-method autocorrelations, binned
//! jackknife, importance reweighting) and figures (PNG + SVG).
//!
//! `stats` and `plot` work on plain `f64` series; `observables` holds the theory-independent
//! pipeline (streamed measurement, jackknife, τ_int) behind the [`Observables`] trait,
//! `phi4_obs`, `u1_obs` and `su2_obs` each theory's observables, `theories` the choice between them
//! ([`observables_for`]) and `topology` what a theory with an integer charge adds. The
//! `latdiff analyze` command lives in `cli::analyze`.

pub mod observables;
pub mod phi4_obs;
pub mod plot;
pub mod replicas;
pub mod stats;
pub mod su2_obs;
pub mod theories;
pub mod topology;
pub mod u1_obs;

pub use observables::{analyze, measure, Analysis, DerivedSpec, Estimate, Observables, Primaries};
pub use phi4_obs::Phi4Observables;
pub use plot::{errorbar_plot, font_available, histograms, line_plot, ErrorbarSeries, HistSeries, LineSeriesData};
pub use stats::{
    bin_size_from_tau, ess, gamma_method, gamma_method_labelled, gamma_method_replicas, jackknife, jackknife_vec,
    log_sum_exp, normalized_weights, series_summary, GammaResult, JackknifeEstimate, JackknifeVecEstimate,
    SeriesSummary, Windowing, DEFAULT_S_TAU,
};
pub use su2_obs::Su2Observables;
pub use theories::observables_for;
pub use topology::Topology;
pub use u1_obs::U1Observables;
