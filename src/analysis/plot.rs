//! Figures for `latdiff analyze --plot`: each function writes `name.png` and `name.svg`
//! into a directory (PNG for a quick look, SVG for papers).
//!
//! Text needs a TrueType font: plotters' `ab_glyph` backend has no system font lookup, so
//! a font is registered once at run time, from `$LATDIFF_FONT` if set, else from the
//! usual DejaVu / Liberation paths (`apt-get install fonts-dejavu-core` on Debian). The
//! font is read at run time rather than embedded so that the crate carries no ~700 kB
//! binary blob and builds without the font installed. If no font can be loaded, figures
//! are still written, without any text (title, axis labels, ticks, legend), and a single
//! warning goes to stderr: a missing font must not make an analysis run fail.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Pixel size of the PNG (and nominal size of the SVG).
const SIZE: (u32, u32) = (960, 640);
/// Font family used for all text; registered by [`font_available`].
const FAMILY: &str = "sans-serif";
/// A family that is never registered: in text-less mode every style points here, so any
/// text plotters might still try to lay out fails loudly in tests instead of silently.
const NO_FONT: &str = "latdiff-no-font";

/// Qualitative palette (matplotlib "tab10"): distinguishable, also in grey-scale print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Font files tried in order after `$LATDIFF_FONT`.
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", // Debian / Ubuntu
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",          // Fedora / RHEL
    "/usr/share/fonts/TTF/DejaVuSans.ttf",             // Arch
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Whether a font is registered for figure text (loaded on the first call; thread-safe).
/// When `false`, figures are drawn without text.
pub fn font_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let env = std::env::var("LATDIFF_FONT").ok();
        for path in env.iter().map(String::as_str).chain(FONT_PATHS) {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // plotters keeps `&'static` font data; one font per process, leaked once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
        eprintln!(
            "latdiff: no TrueType font found (set LATDIFF_FONT or install fonts-dejavu-core); \
             figures are drawn without text"
        );
        false
    })
}

/// Something drawable on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> Result<()>;
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e}")
}

/// Write `dir/name.png` and `dir/name.svg` (creating `dir`), each through a temporary.
fn save(dir: &Path, name: &str, fig: &impl Figure, text: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let png = dir.join(format!("{name}.png"));
    write_via_temp(&png, |tmp| {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        fig.draw(&root, text).with_context(|| format!("drawing {}", png.display()))?;
        root.present().map_err(plot_err).with_context(|| format!("writing {}", tmp.display()))
    })?;
    let svg = dir.join(format!("{name}.svg"));
    write_via_temp(&svg, |tmp| {
        let root = SVGBackend::new(tmp, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        fig.draw(&root, text).with_context(|| format!("drawing {}", svg.display()))?;
        root.present().map_err(plot_err).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// `draw` writes a temporary sibling, renamed to `path` once complete: a full disk leaves
/// neither a truncated figure under its name nor the temporary. The temporary keeps the
/// extension, by which the bitmap backend picks the format.
fn write_via_temp(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = std::path::PathBuf::from(format!("{}.{ext}", crate::io::temp_path(path).display()));
    let r = draw(&tmp).and_then(|()| crate::io::durable_rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Chart frame with title and margins; without text no caption or label areas.
fn chart_builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    text: bool,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(root);
    b.margin(20);
    if text {
        b.caption(title, (FAMILY, 26)).x_label_area_size(50).y_label_area_size(80);
    }
    b
}

/// Axes, grid, tick labels and axis descriptions (or a bare grid without text).
fn draw_mesh<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    xlabel: &str,
    ylabel: &str,
    text: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(xlabel)
            .y_desc(ylabel)
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 18));
    } else {
        mesh.x_labels(0).y_labels(0).label_style((NO_FONT, 15)).axis_desc_style((NO_FONT, 18));
    }
    mesh.draw().map_err(plot_err)?;
    if !text {
        // Without tick labels plotters draws no grid either; at least frame the data.
        let area = chart.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        let frame = Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK);
        area.draw(&frame).map_err(plot_err)?;
    }
    Ok(())
}

/// Short tick label: at most 4 significant digits, no trailing zeros (plotters' default
/// prints log-axis ticks such as 0.6000000000000001), exponent form for very large or
/// small magnitudes.
fn tick_label(v: &f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return if a == 0.0 { "0".into() } else { format!("{v}") };
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = mant.trim_end_matches('0').trim_end_matches('.');
        return format!("{mant}e{exp}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Legend box in the upper right (only with text).
fn draw_legend<'a, DB, X, Y>(chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>, text: bool) -> Result<()>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .label_font((FAMILY, 16))
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Finite min..max of `values`, widened so that it is never empty and has a 5 % margin
/// (`pad_low` false keeps the lower end, e.g. 0 for densities).
fn padded_range(values: impl Iterator<Item = f64>, pad_low: bool) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    let low = if pad_low { lo - 0.05 * span } else { lo };
    low..hi + 0.05 * span
}

/// A `(label, values, weights)` series for [`histograms`].
pub type HistSeries<'a> = (&'a str, &'a [f64], Option<&'a [f64]>);

struct Histograms<'a> {
    title: &'a str,
    xlabel: &'a str,
    series: &'a [HistSeries<'a>],
    bins: usize,
}

impl Figure for Histograms<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> Result<()> {
        let all = self.series.iter().flat_map(|(_, x, _)| x.iter().copied());
        let x_range = padded_range(all, false);
        let (lo, hi) = (x_range.start, x_range.end);
        let width = (hi - lo) / self.bins as f64;
        // Densities on common edges so that the overlaid curves are comparable.
        let densities: Vec<Option<Vec<f64>>> = self
            .series
            .iter()
            .map(|(_, x, w)| {
                let mut h = vec![0.0; self.bins];
                let mut total = 0.0;
                for (i, &v) in x.iter().enumerate() {
                    let wi = w.map_or(1.0, |w| w.get(i).copied().unwrap_or(0.0));
                    if !v.is_finite() || !wi.is_finite() {
                        continue;
                    }
                    let b = (((v - lo) / width) as usize).min(self.bins - 1);
                    h[b] += wi;
                    total += wi;
                }
                (total > 0.0).then(|| h.iter().map(|c| c / (total * width)).collect())
            })
            .collect();
        let y_max = densities.iter().flatten().flatten().fold(0.0f64, |m, &d| m.max(d));
        let y_range = 0.0..if y_max > 0.0 { 1.1 * y_max } else { 1.0 };

        let mut chart = chart_builder(root, self.title, text).build_cartesian_2d(x_range, y_range).map_err(plot_err)?;
        draw_mesh(&mut chart, self.xlabel, "density", text)?;
        for (k, ((label, _, _), dens)) in self.series.iter().zip(&densities).enumerate() {
            let Some(dens) = dens else { continue };
            let c = colour(k);
            // Step outline of the histogram: (e0,0) (e0,d0) (e1,d0) (e1,d1) ... (eB,0).
            let mut outline = vec![(lo, 0.0)];
            for (b, &d) in dens.iter().enumerate() {
                let e0 = lo + b as f64 * width;
                outline.push((e0, d));
                outline.push((e0 + width, d));
            }
            outline.push((hi, 0.0));
            chart.draw_series(std::iter::once(Polygon::new(outline.clone(), c.mix(0.15)))).map_err(plot_err)?;
            chart
                .draw_series(LineSeries::new(outline, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(*label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        draw_legend(&mut chart, text)
    }
}

/// Overlaid normalised histograms (probability densities on common bin edges, so the
/// curves integrate to 1 and are directly comparable), e.g. of the magnetisation from HMC
/// and from the diffusion model, or raw vs reweighted.
///
/// `series`: `(label, values, weights)`; weights are *linear* (use
/// [`super::stats::normalized_weights`] for log-weights) and may be `None`. Non-finite
/// values or weights are skipped; missing trailing weights count as 0. `bins` is the
/// number of equal-width bins spanning all finite values (0 is treated as 1).
/// Writes `dir/name.png` and `dir/name.svg`.
pub fn histograms(
    dir: impl AsRef<Path>,
    name: &str,
    title: &str,
    xlabel: &str,
    series: &[HistSeries<'_>],
    bins: usize,
) -> Result<()> {
    let fig = Histograms { title, xlabel, series, bins: bins.max(1) };
    save(dir.as_ref(), name, &fig, font_available())
}

/// A `(label, x, y, yerr)` series for [`errorbar_plot`].
pub type ErrorbarSeries<'a> = (&'a str, &'a [f64], &'a [f64], &'a [f64]);

struct Errorbars<'a> {
    title: &'a str,
    xlabel: &'a str,
    ylabel: &'a str,
    series: &'a [ErrorbarSeries<'a>],
    log_y: bool,
}

impl Errorbars<'_> {
    /// Points to draw: finite, and y > 0 on a log scale (the bar's lower end is clipped at
    /// the axis when y − err ≤ 0).
    fn points<'s>(&'s self, s: &'s ErrorbarSeries<'s>) -> impl Iterator<Item = (f64, f64, f64)> + 's {
        let (_, x, y, e) = *s;
        x.iter()
            .zip(y)
            .zip(e.iter().chain(std::iter::repeat(&0.0)))
            .map(|((&x, &y), &e)| (x, y, if e.is_finite() { e.abs() } else { 0.0 }))
            .filter(move |&(x, y, _)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0))
    }

    fn draw_on<DB, Y>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x_range: Range<f64>,
        y_spec: Y,
        y_floor: f64,
        text: bool,
    ) -> Result<()>
    where
        DB: DrawingBackend,
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart =
            chart_builder(root, self.title, text).build_cartesian_2d(x_range.clone(), y_spec).map_err(plot_err)?;
        draw_mesh(&mut chart, self.xlabel, self.ylabel, text)?;
        // Cap half-width: 0.6 % of the x range, in data units so that it scales with the plot.
        let cap = 0.006 * (x_range.end - x_range.start);
        for (k, s) in self.series.iter().enumerate() {
            let c = colour(k);
            let pts: Vec<(f64, f64, f64)> = self.points(s).collect();
            let bars = pts.iter().flat_map(|&(x, y, e)| {
                let lo = (y - e).max(y_floor);
                let hi = y + e;
                [
                    PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1)),
                    PathElement::new(vec![(x - cap, lo), (x + cap, lo)], c.stroke_width(1)),
                    PathElement::new(vec![(x - cap, hi), (x + cap, hi)], c.stroke_width(1)),
                ]
            });
            chart.draw_series(bars).map_err(plot_err)?;
            chart
                .draw_series(pts.iter().map(|&(x, y, _)| Circle::new((x, y), 3, c.filled())))
                .map_err(plot_err)?
                .label(s.0)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, c.filled()));
        }
        draw_legend(&mut chart, text)
    }
}

impl Figure for Errorbars<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> Result<()> {
        let x_range = padded_range(self.series.iter().flat_map(|s| self.points(s).map(|p| p.0)), true);
        if self.log_y {
            // Range over y and the positive bar ends, with a margin of a factor ~1.25.
            let ends = self
                .series
                .iter()
                .flat_map(|s| self.points(s).flat_map(|(_, y, e)| [y, y + e, if y - e > 0.0 { y - e } else { y }]));
            let (lo, hi) = ends.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo <= hi { (lo / 1.25, hi * 1.25) } else { (0.1, 10.0) };
            let hi = if hi > lo { hi } else { lo * 10.0 };
            self.draw_on(root, x_range, (lo..hi).log_scale(), lo, text)
        } else {
            let ends = self.series.iter().flat_map(|s| self.points(s).flat_map(|(_, y, e)| [y - e, y + e]));
            let y_range = padded_range(ends, true);
            let floor = y_range.start;
            self.draw_on::<DB, Range<f64>>(root, x_range, y_range, floor, text)
        }
    }
}

/// Points with vertical error bars, e.g. the correlator G(t) ± δG(t) or an effective
/// mass, several series overlaid with a legend.
///
/// `series`: `(label, x, y, yerr)` (yerr may be shorter than y: missing errors are 0).
/// Non-finite points are skipped. With `log_y`, points with y ≤ 0 are skipped and bars
/// reaching below the axis are clipped there. Writes `dir/name.png` and `dir/name.svg`.
pub fn errorbar_plot(
    dir: impl AsRef<Path>,
    name: &str,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[ErrorbarSeries<'_>],
    log_y: bool,
) -> Result<()> {
    let fig = Errorbars { title, xlabel, ylabel, series, log_y };
    save(dir.as_ref(), name, &fig, font_available())
}

/// A `(label, x, y)` series for [`line_plot`].
pub type LineSeriesData<'a> = (&'a str, &'a [f64], &'a [f64]);

struct Lines<'a> {
    title: &'a str,
    xlabel: &'a str,
    ylabel: &'a str,
    series: &'a [LineSeriesData<'a>],
}

impl Figure for Lines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> Result<()> {
        let finite = |s: &LineSeriesData<'_>| -> Vec<(f64, f64)> {
            s.1.iter().zip(s.2).map(|(&x, &y)| (x, y)).filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
        };
        let data: Vec<Vec<(f64, f64)>> = self.series.iter().map(finite).collect();
        let x_range = padded_range(data.iter().flatten().map(|p| p.0), true);
        let y_range = padded_range(data.iter().flatten().map(|p| p.1), true);
        let mut chart =
            chart_builder(root, self.title, text).build_cartesian_2d(x_range.clone(), y_range).map_err(plot_err)?;
        draw_mesh::<DB, RangedCoordf64, RangedCoordf64>(&mut chart, self.xlabel, self.ylabel, text)?;
        // Reference line y = 0 (where ρ(t) should decay to).
        chart
            .draw_series(LineSeries::new([(x_range.start, 0.0), (x_range.end, 0.0)], BLACK.mix(0.4)))
            .map_err(plot_err)?;
        for (k, ((label, _, _), pts)) in self.series.iter().zip(data).enumerate() {
            let c = colour(k);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(*label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        draw_legend(&mut chart, text)
    }
}

/// Line plot of several `(label, x, y)` series, e.g. the normalised autocorrelation
/// function ρ(t) ([`super::stats::GammaResult::gamma`]) or τ_int(W), with a y = 0
/// reference line. Non-finite points are skipped. Writes `dir/name.png` and
/// `dir/name.svg`.
pub fn line_plot(
    dir: impl AsRef<Path>,
    name: &str,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[LineSeriesData<'_>],
) -> Result<()> {
    let fig = Lines { title, xlabel, ylabel, series };
    save(dir.as_ref(), name, &fig, font_available())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both files exist and are non-empty; the PNG has the PNG signature; returns the SVG.
    fn check_outputs(dir: &Path, name: &str) -> String {
        let png = std::fs::read(dir.join(format!("{name}.png"))).expect("png written");
        assert!(png.len() > 1000, "png too small: {}", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).expect("svg written");
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
        svg
    }

    fn gaussian_like(n: usize, shift: f64) -> Vec<f64> {
        // Deterministic, roughly bell-shaped: sum of three uniform-ish sequences.
        (0..n)
            .map(|i| {
                let u = |k: f64| ((i as f64 * k).sin() * 43758.5453).fract();
                shift + u(12.9898) + u(78.233) + u(37.719) - 1.5
            })
            .collect()
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(&0.6000000000000001), "0.6");
        assert_eq!(tick_label(&2.0), "2");
        assert_eq!(tick_label(&-0.25), "-0.25");
        assert_eq!(tick_label(&1234.5678), "1235");
        assert_eq!(tick_label(&0.0), "0");
        assert_eq!(tick_label(&1e-6), "1e-6");
        assert_eq!(tick_label(&2.5e7), "2.5e7");
        assert_eq!(tick_label(&-1e-20), "-1e-20");
    }

    #[test]
    fn histograms_write_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let a = gaussian_like(5000, 0.0);
        let b = gaussian_like(5000, 0.7);
        let w: Vec<f64> = b.iter().map(|x| (-x).exp()).collect();
        let series: [HistSeries; 3] = [("HMC", &a, None), ("diffusion", &b, None), ("reweighted", &b, Some(&w))];
        histograms(dir.path(), "hist_m", "Magnetisation M", "M", &series, 40).unwrap();
        let svg = check_outputs(dir.path(), "hist_m");
        if font_available() {
            assert!(svg.contains("Magnetisation M"));
            assert!(svg.contains("diffusion"));
        }
    }

    #[test]
    fn errorbar_plot_writes_linear_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let t: Vec<f64> = (0..16).map(f64::from).collect();
        let g: Vec<f64> = t.iter().map(|t| (-0.4 * t).exp() + (-0.4 * (16.0 - t)).exp()).collect();
        let e: Vec<f64> = g.iter().map(|g| 0.05 * g + 0.002).collect();
        let noisy: Vec<f64> = g.iter().zip(&t).map(|(g, t)| g - 0.003 * t).collect();
        let series: [ErrorbarSeries; 2] = [("G(t)", &t, &g, &e), ("noisy", &t, &noisy, &e)];
        for log_y in [false, true] {
            let name = if log_y { "corr_log" } else { "corr_lin" };
            errorbar_plot(dir.path(), name, "Correlator G(t)", "t", "G(t)", &series, log_y).unwrap();
            let svg = check_outputs(dir.path(), name);
            if font_available() {
                assert!(svg.contains("Correlator G(t)"));
            }
        }
    }

    #[test]
    fn line_plot_writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let t: Vec<f64> = (0..60).map(f64::from).collect();
        let rho: Vec<f64> = t.iter().map(|t| 0.9f64.powf(*t)).collect();
        let rho2: Vec<f64> = t.iter().map(|t| 0.5f64.powf(*t)).collect();
        line_plot(dir.path(), "rho", "Autocorrelation rho(t)", "t", "rho(t)", &[("|M|", &t, &rho), ("M^2", &t, &rho2)])
            .unwrap();
        let svg = check_outputs(dir.path(), "rho");
        if font_available() {
            assert!(svg.contains("Autocorrelation rho(t)"));
        }
    }

    #[test]
    fn degenerate_data_and_textless_mode_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let empty: [f64; 0] = [];
        let constant = [2.0; 10];
        let nan = [f64::NAN, 1.0, f64::INFINITY];
        let h: [HistSeries; 3] = [("empty", &empty, None), ("const", &constant, None), ("nan", &nan, None)];
        let e: [ErrorbarSeries; 2] = [("neg", &[0.0, 1.0], &[-1.0, 0.0], &[0.1]), ("none", &empty, &empty, &empty)];
        let l: [LineSeriesData; 1] = [("nan", &nan, &nan)];
        for text in [true, false] {
            if text && !font_available() {
                continue;
            }
            let p = dir.path().join(if text { "text" } else { "plain" });
            let hist = Histograms { title: "t", xlabel: "x", series: &h, bins: 1 };
            save(&p, "h", &hist, text).unwrap();
            for log_y in [false, true] {
                let fig = Errorbars { title: "t", xlabel: "x", ylabel: "y", series: &e, log_y };
                save(&p, "e", &fig, text).unwrap();
            }
            let fig = Lines { title: "t", xlabel: "x", ylabel: "y", series: &l };
            save(&p, "l", &fig, text).unwrap();
            check_outputs(&p, "l");
            if !text {
                // Nothing textual in the SVG without a font.
                let svg = std::fs::read_to_string(p.join("l.svg")).unwrap();
                assert!(!svg.contains("<text"), "text drawn in text-less mode");
            }
        }
        // Public entry points with empty input.
        histograms(dir.path(), "eh", "empty", "x", &[], 10).unwrap();
        histograms(dir.path(), "h0", "zero bins", "x", &h, 0).unwrap();
        line_plot(dir.path(), "el", "empty", "x", "y", &[]).unwrap();
        errorbar_plot(dir.path(), "ee", "empty", "x", "y", &[], true).unwrap();
    }
}
