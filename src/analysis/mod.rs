//! Analysis of Monte Carlo ensembles: statistics (Γ-method autocorrelations, binned
//! jackknife, importance reweighting) and figures (PNG + SVG).
//!
//! Everything here works on plain `f64` series; reading the HDF5 files and the
//! `latdiff analyze` command live elsewhere.

pub mod plot;
pub mod stats;

pub use plot::{errorbar_plot, font_available, histograms, line_plot, ErrorbarSeries, HistSeries, LineSeriesData};
pub use stats::{
    bin_size_from_tau, ess, gamma_method, gamma_method_labelled, gamma_method_replicas, jackknife, jackknife_vec,
    log_sum_exp, normalized_weights, series_summary, GammaResult, JackknifeEstimate, JackknifeVecEstimate,
    SeriesSummary, Windowing, DEFAULT_S_TAU,
};
