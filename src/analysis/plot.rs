//! Figures (placeholder while stats are built).
pub fn histograms() {}
pub fn errorbar_plot() {}
pub fn line_plot() {}
