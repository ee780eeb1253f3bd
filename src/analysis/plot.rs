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
use plotters::coord::ranged1d::{KeyPointHint, Ranged};
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

/// The palette's colour `i` (cycling).
pub fn colour(i: usize) -> RGBColor {
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

/// One axis, linear or logarithmic, optionally reversed (largest value first).
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    reversed: bool,
}

impl Ranged for Axis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = if self.reversed { (limit.1, limit.0) } else { limit };
        let f = if self.log {
            if *v > 0.0 {
                (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
            } else {
                -1.0
            }
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        // Far outside the range: clamped so that the pixel stays an i32.
        let f = if f.is_finite() { f.clamp(-10.0, 10.0) } else { -1.0 };
        a + (f * f64::from(b - a)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if self.log {
            log_ticks(self.lo, self.hi, hint.max_num_points(), hint.weight().allow_light_points())
        } else {
            // A tick at zero can come out as -1.1e-16; that is 0.
            let tiny = 1e-9 * (self.hi - self.lo).abs();
            let ticks = RangedCoordf64::from(self.lo..self.hi).key_points(hint);
            ticks.into_iter().map(|v| if v.abs() < tiny { 0.0 } else { v }).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks of a log axis on [lo, hi] that a reader can read off: decades when the range spans
/// several, else 1-2-5 or 1…9 times the decades, and within less than a decade the linear
/// ticks (plotters' own log ticks label only from the first decade up, so that 0.3..3 got
/// one label). `light`: the denser set, for the grid.
fn log_ticks(lo: f64, hi: f64, max_points: usize, light: bool) -> Vec<f64> {
    if max_points == 0 || !(lo > 0.0 && hi > lo) {
        return Vec::new();
    }
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let set = |mantissas: &[f64], every: i32| -> Vec<f64> {
        (e0..=e1)
            .filter(|e| e.rem_euclid(every) == 0)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(within)
            .collect()
    };
    let decades = set(&[1.0], 1);
    let candidates =
        [decades.clone(), set(&[1.0, 2.0, 5.0], 1), set(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)];
    if light {
        return candidates.into_iter().rev().find(|c| c.len() <= max_points).unwrap_or_default();
    }
    if decades.len() > max_points {
        return set(&[1.0], (decades.len() as f64 / max_points as f64).ceil() as i32);
    }
    if let Some(c) = candidates.iter().find(|c| c.len() >= 4 && c.len() <= max_points) {
        return c.clone();
    }
    let densest = candidates.into_iter().rev().find(|c| c.len() <= max_points).unwrap_or_default();
    if densest.len() >= 3 {
        return densest;
    }
    RangedCoordf64::from(lo..hi).key_points(max_points.min(6)).into_iter().filter(|v| *v > 0.0).collect()
}

/// What a [`Layer`] draws.
#[derive(Clone, Debug)]
pub enum Shape {
    /// A polyline through (x, y); `dashed` for a second curve of the same series or a
    /// reference, `markers` for a small square at every point.
    Line { pts: Vec<(f64, f64)>, dashed: bool, markers: bool },
    /// Markers with vertical error bars, (x, y, error).
    Points(Vec<(f64, f64, f64)>),
    /// A translucent band, (x, lower, upper).
    Band(Vec<(f64, f64, f64)>),
    /// A filled outline (a histogram's steps), drawn translucent with its edge.
    Area(Vec<(f64, f64)>),
    /// A dashed vertical line across the chart.
    VLine(f64),
}

/// One labelled item of a [`Plot`] (no label: not in the legend).
#[derive(Clone, Debug)]
pub struct Layer {
    pub label: Option<String>,
    pub colour: RGBColor,
    pub shape: Shape,
}

impl Layer {
    pub fn new(label: impl Into<String>, colour: RGBColor, shape: Shape) -> Self {
        Layer { label: Some(label.into()), colour, shape }
    }

    pub fn unlabelled(colour: RGBColor, shape: Shape) -> Self {
        Layer { label: None, colour, shape }
    }

    /// A solid line through the finite points.
    pub fn line(label: impl Into<String>, colour: RGBColor, x: &[f64], y: &[f64]) -> Self {
        Self::new(label, colour, Shape::Line { pts: finite_pairs(x, y), dashed: false, markers: false })
    }

    /// (x, y) of every finite pair, in the drawing's (for a log y, y > 0) domain.
    fn xy(&self, log_y: bool) -> Vec<(f64, f64)> {
        let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
        match &self.shape {
            Shape::Line { pts, .. } | Shape::Area(pts) => pts.iter().copied().filter(ok).collect(),
            Shape::Points(p) => p.iter().map(|&(x, y, _)| (x, y)).filter(ok).collect(),
            Shape::Band(b) => b.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]).filter(ok).collect(),
            Shape::VLine(_) => Vec::new(),
        }
    }

    /// The y values the axis must show: the points and the ends of their bars.
    fn y_extent(&self, log_y: bool) -> Vec<f64> {
        let mut y: Vec<f64> = self.xy(log_y).into_iter().map(|p| p.1).collect();
        if let Shape::Points(p) = &self.shape {
            for &(x, v, e) in p {
                if x.is_finite() && v.is_finite() && e.is_finite() && (!log_y || v > 0.0) {
                    y.push(v + e.abs());
                    if !log_y || v - e.abs() > 0.0 {
                        y.push(v - e.abs());
                    }
                }
            }
        }
        y
    }
}

/// (x, y) pairs of which both are finite.
pub fn finite_pairs(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().zip(y).map(|(&x, &y)| (x, y)).filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
}

/// A chart of layers: axes fitted to the data, log or linear, and a legend placed in the
/// corner where it covers no data (or above the data, the y axis extended to make room).
#[derive(Clone, Debug, Default)]
pub struct Plot {
    pub title: String,
    pub xlabel: String,
    pub ylabel: String,
    pub log_y: bool,
    /// A log x axis (e.g. the noise level σ).
    pub log_x: bool,
    /// The x axis runs from the largest value to the smallest (σ as a sampler visits it).
    pub reversed_x: bool,
    /// A linear y axis that starts at 0 (densities, fractions).
    pub y_from_zero: bool,
    /// A grey y = 0 line (where ρ(t) decays to).
    pub zero_line: bool,
    pub layers: Vec<Layer>,
}

/// Legend corner `k` in order of preference: upper right, upper left, lower right, lower left.
fn corner(k: usize) -> SeriesLabelPosition {
    match k {
        0 => SeriesLabelPosition::UpperRight,
        1 => SeriesLabelPosition::UpperLeft,
        2 => SeriesLabelPosition::LowerRight,
        _ => SeriesLabelPosition::LowerLeft,
    }
}

impl Plot {
    pub fn new(title: impl Into<String>, xlabel: impl Into<String>, ylabel: impl Into<String>) -> Self {
        Plot { title: title.into(), xlabel: xlabel.into(), ylabel: ylabel.into(), ..Default::default() }
    }

    /// Writes `dir/name.png` and `dir/name.svg`.
    pub fn save(&self, dir: impl AsRef<Path>, name: &str) -> Result<()> {
        save(dir.as_ref(), name, self, font_available())
    }

    fn x_axis(&self) -> Axis {
        let xs = self.layers.iter().flat_map(|l| {
            let v: Vec<f64> = match l.shape {
                Shape::VLine(x) => vec![x],
                _ => l.xy(false).into_iter().map(|p| p.0).collect(),
            };
            v.into_iter().filter(|x| !self.log_x || *x > 0.0)
        });
        axis_over(xs, self.log_x, true, self.reversed_x)
    }

    /// The y axis; `headroom`: the fraction of the height kept free above the data.
    fn y_axis(&self, headroom: f64) -> Axis {
        let ys = self.layers.iter().flat_map(|l| l.y_extent(self.log_y));
        let mut a = axis_over(ys, self.log_y, !self.y_from_zero, false);
        if self.y_from_zero && !self.log_y && a.lo > 0.0 {
            a.lo = 0.0;
        }
        if headroom > 0.0 {
            let grow = 1.0 / (1.0 - headroom.min(0.8));
            if self.log_y {
                a.hi = a.lo * (a.hi / a.lo).powf(grow);
            } else {
                a.hi = a.lo + (a.hi - a.lo) * grow;
            }
        }
        a
    }

    fn labels(&self) -> Vec<&str> {
        self.layers.iter().filter_map(|l| l.label.as_deref()).collect()
    }

    /// The legend's corner and the headroom it needs: the first corner (upper right, upper
    /// left, lower right, lower left) where the legend box covers no drawn point, found by
    /// laying the chart out on a scratch bitmap; if every corner covers data, the upper one
    /// covering least, with the y axis extended so that the data stay below the box.
    fn legend_layout(&self) -> Result<(usize, f64)> {
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        let chart = self.build(&root, true, 0.0)?;
        let (w, h) = legend_size(&self.labels())?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let (aw, ah) = (xr.end - xr.start, yr.end - yr.start);
        let boxes = [(aw - w - 5, 5), (5, 5), (aw - w - 5, ah - h - 5), (5, ah - h - 5)];
        // Every drawn point, and points along each segment every few pixels.
        let mut pixels: Vec<(i32, i32)> = Vec::new();
        let data_top = self.y_axis(0.0).hi;
        for l in &self.layers {
            let pts: Vec<(i32, i32)> = match l.shape {
                // A marker line (the Γ window) counts as data up to the data's top.
                Shape::VLine(x) => {
                    let lo = self.y_axis(0.0).lo;
                    vec![chart.backend_coord(&(x, lo)), chart.backend_coord(&(x, data_top))]
                }
                _ => l.xy(self.log_y).iter().map(|p| chart.backend_coord(p)).collect(),
            };
            let joined = matches!(l.shape, Shape::Line { .. } | Shape::Area(_) | Shape::VLine(_));
            for (i, &p) in pts.iter().enumerate() {
                pixels.push(p);
                if let (true, Some(&q)) = (joined, pts.get(i + 1)) {
                    let n = ((q.0 - p.0).abs().max((q.1 - p.1).abs()) / 4).clamp(0, 400);
                    pixels.extend((1..n).map(|k| (p.0 + (q.0 - p.0) * k / n, p.1 + (q.1 - p.1) * k / n)));
                }
            }
        }
        let hits = |&(bx, by): &(i32, i32)| {
            pixels
                .iter()
                .filter(|(px, py)| {
                    let (x, y) = (px - xr.start, py - yr.start);
                    x >= bx - 4 && x <= bx + w + 4 && y >= by - 4 && y <= by + h + 4
                })
                .count()
        };
        let counts: Vec<usize> = boxes.iter().map(hits).collect();
        if let Some(k) = counts.iter().position(|&c| c == 0) {
            return Ok((k, 0.0));
        }
        let top = if counts[1] < counts[0] { 1 } else { 0 };
        Ok((top, f64::from(h + 15) / f64::from(ah.max(1))))
    }

    fn build<'a, DB: DrawingBackend>(
        &self,
        root: &'a DrawingArea<DB, Shift>,
        text: bool,
        headroom: f64,
    ) -> Result<ChartContext<'a, DB, Cartesian2d<Axis, Axis>>> {
        let mut b = ChartBuilder::on(root);
        b.margin(20);
        if text {
            b.caption(&self.title, (FAMILY, 24)).x_label_area_size(50).y_label_area_size(80);
        }
        b.build_cartesian_2d(self.x_axis(), self.y_axis(headroom)).map_err(plot_err)
    }
}

/// Width and height in pixels of the legend box of `labels` (as plotters lays it out).
fn legend_size(labels: &[&str]) -> Result<(i32, i32)> {
    let font: TextStyle = (FAMILY, LEGEND_FONT).into_font().into();
    let mut t = plotters::element::MultiLineText::<_, &str>::new((0, 0), &font);
    for l in labels {
        t.push_line(*l);
    }
    let (w, h) = t.estimate_dimension().map_err(plot_err)?;
    Ok((w + 30 + 20, h + 20))
}

const LEGEND_FONT: u32 = 16;

/// An axis over the finite `values` with a 5 % margin (a factor 1.25 on a log axis); never
/// empty. `pad_low` false keeps the lower end (0 for densities).
fn axis_over(values: impl Iterator<Item = f64>, log: bool, pad_low: bool, reversed: bool) -> Axis {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if log {
        let (lo, hi) = if lo <= hi { (lo / 1.25, hi * 1.25) } else { (0.1, 10.0) };
        return Axis { lo, hi, log, reversed };
    }
    if lo > hi {
        return Axis { lo: 0.0, hi: 1.0, log, reversed };
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    let low = if pad_low { lo - 0.05 * span } else { lo };
    Axis { lo: low, hi: hi + 0.05 * span, log, reversed }
}

impl Figure for Plot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> Result<()> {
        let legend = text && !self.labels().is_empty();
        let (corner_k, headroom) = if legend { self.legend_layout()? } else { (0, 0.0) };
        let mut chart = self.build(root, text, headroom)?;
        draw_mesh(&mut chart, &self.xlabel, &self.ylabel, text)?;
        let (x_axis, y_axis) = (self.x_axis(), self.y_axis(headroom));
        if self.zero_line && !self.log_y {
            chart
                .draw_series(LineSeries::new([(x_axis.lo, 0.0), (x_axis.hi, 0.0)], BLACK.mix(0.4)))
                .map_err(plot_err)?;
        }
        // Bands and areas first, so that lines and points lie on top of them.
        let mut order: Vec<&Layer> = self.layers.iter().collect();
        order.sort_by_key(|l| !matches!(l.shape, Shape::Band(_) | Shape::Area(_)));
        for l in order {
            self.draw_layer(&mut chart, l, (&x_axis, &y_axis))?;
        }
        if legend {
            chart
                .configure_series_labels()
                .position(corner(corner_k))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.5))
                .label_font((FAMILY, LEGEND_FONT))
                .draw()
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

impl Plot {
    fn draw_layer<'a, DB: DrawingBackend + 'a>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<Axis, Axis>>,
        l: &Layer,
        (x_axis, y_axis): (&Axis, &Axis),
    ) -> Result<()> {
        let c = l.colour;
        let pts = l.xy(self.log_y);
        let anno: (&mut plotters::chart::SeriesAnno<'a, DB>, Mark) = match &l.shape {
            Shape::Line { dashed, markers, .. } => {
                let style = c.stroke_width(2);
                if *markers {
                    let sq = |p: (f64, f64)| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], c.filled());
                    chart.draw_series(pts.iter().map(|&p| sq(p))).map_err(plot_err)?;
                }
                let a = if *dashed {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style)).map_err(plot_err)?
                } else {
                    chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(plot_err)?
                };
                (a, if *dashed { Mark::Dash } else { Mark::Line })
            }
            Shape::Points(p) => {
                let y_floor = y_axis.lo;
                let cap = 0.006 * (x_axis.hi - x_axis.lo);
                let ok: Vec<(f64, f64, f64)> = p
                    .iter()
                    .map(|&(x, y, e)| (x, y, if e.is_finite() { e.abs() } else { 0.0 }))
                    .filter(|&(x, y, _)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0))
                    .collect();
                let bars = ok.iter().flat_map(|&(x, y, e)| {
                    let (lo, hi) = ((y - e).max(y_floor), y + e);
                    [
                        PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1)),
                        PathElement::new(vec![(x - cap, lo), (x + cap, lo)], c.stroke_width(1)),
                        PathElement::new(vec![(x - cap, hi), (x + cap, hi)], c.stroke_width(1)),
                    ]
                });
                chart.draw_series(bars).map_err(plot_err)?;
                let a = chart
                    .draw_series(ok.iter().map(|&(x, y, _)| Circle::new((x, y), 4, c.filled())))
                    .map_err(plot_err)?;
                (a, Mark::Dot)
            }
            Shape::Band(b) => {
                let ok = |v: f64| v.is_finite() && (!self.log_y || v > 0.0);
                let b: Vec<&(f64, f64, f64)> = b.iter().filter(|p| p.0.is_finite() && ok(p.1) && ok(p.2)).collect();
                let outline: Vec<(f64, f64)> =
                    b.iter().map(|p| (p.0, p.1)).chain(b.iter().rev().map(|p| (p.0, p.2))).collect();
                let a = chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.2)))).map_err(plot_err)?;
                (a, Mark::Swatch)
            }
            Shape::Area(_) => {
                chart.draw_series(std::iter::once(Polygon::new(pts.clone(), c.mix(0.15)))).map_err(plot_err)?;
                (chart.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(plot_err)?, Mark::Line)
            }
            Shape::VLine(x) => {
                // Up to the data's top only: the legend may sit in the headroom above it.
                let line = [(*x, y_axis.lo), (*x, self.y_axis(0.0).hi)];
                (chart.draw_series(DashedLineSeries::new(line, 6, 4, c.stroke_width(2))).map_err(plot_err)?, Mark::VBar)
            }
        };
        // An unlabelled layer registers no legend entry (plotters lists any series with a mark).
        if let Some(label) = &l.label {
            anno.0.label(label.as_str()).legend(move |p| anno.1.element(p, c));
        }
        Ok(())
    }
}

/// A legend entry's mark.
#[derive(Clone, Copy, Debug)]
enum Mark {
    Line,
    Dash,
    Dot,
    Swatch,
    VBar,
}

impl Mark {
    fn element<DB: DrawingBackend>(self, (x, y): (i32, i32), c: RGBColor) -> DynElement<'static, DB, (i32, i32)> {
        match self {
            Mark::Line => PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)).into_dyn(),
            Mark::Dash => PathElement::new([(x, y), (x + 8, y)], c.stroke_width(2)).into_dyn(),
            Mark::Dot => Circle::new((x + 10, y), 4, c.filled()).into_dyn(),
            Mark::Swatch => Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.mix(0.3).filled()).into_dyn(),
            Mark::VBar => PathElement::new([(x + 6, y - 6), (x + 6, y + 6)], c.stroke_width(2)).into_dyn(),
        }
    }
}

/// Axes, grid, tick labels and axis descriptions (or a bare frame without text).
fn draw_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<Axis, Axis>>,
    xlabel: &str,
    ylabel: &str,
    text: bool,
) -> Result<()> {
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

/// A `(label, values, weights)` series for [`histograms`].
pub type HistSeries<'a> = (&'a str, &'a [f64], Option<&'a [f64]>);

/// The step outlines of normalised histograms on common edges: (e0,0) (e0,d0) (e1,d0) …
/// (eB,0) per series (`None`: no finite weight). Weights are linear; non-finite values or
/// weights are skipped, missing trailing weights count as 0.
fn histogram_outlines(series: &[HistSeries<'_>], bins: usize) -> Vec<Option<Vec<(f64, f64)>>> {
    let bins = bins.max(1);
    let all = series.iter().flat_map(|(_, x, _)| x.iter().copied());
    let x_range = axis_over(all, false, false, false);
    let (lo, hi) = (x_range.lo, x_range.hi);
    let width = (hi - lo) / bins as f64;
    series
        .iter()
        .map(|(_, x, w)| {
            let mut h = vec![0.0; bins];
            let mut total = 0.0;
            for (i, &v) in x.iter().enumerate() {
                let wi = w.map_or(1.0, |w| w.get(i).copied().unwrap_or(0.0));
                if !v.is_finite() || !wi.is_finite() {
                    continue;
                }
                let b = (((v - lo) / width) as usize).min(bins - 1);
                h[b] += wi;
                total += wi;
            }
            (total > 0.0).then(|| {
                let mut outline = vec![(lo, 0.0)];
                for (b, c) in h.iter().enumerate() {
                    let (e0, d) = (lo + b as f64 * width, c / (total * width));
                    outline.push((e0, d));
                    outline.push((e0 + width, d));
                }
                outline.push((hi, 0.0));
                outline
            })
        })
        .collect()
}

/// Overlaid normalised histograms as layers of a [`Plot`] (probability densities on common
/// bin edges, so the curves integrate to 1 and are directly comparable).
pub fn histogram_layers(series: &[HistSeries<'_>], bins: usize) -> Vec<Layer> {
    series
        .iter()
        .zip(histogram_outlines(series, bins))
        .enumerate()
        .filter_map(|(k, ((label, _, _), outline))| Some(Layer::new(*label, colour(k), Shape::Area(outline?))))
        .collect()
}

/// Overlaid normalised histograms, e.g. of the magnetisation from HMC and from the
/// diffusion model, or raw vs reweighted.
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
    let mut p = Plot::new(title, xlabel, "density");
    p.y_from_zero = true;
    p.layers = histogram_layers(series, bins);
    p.save(dir, name)
}

/// A `(label, x, y, yerr)` series for [`errorbar_plot`].
pub type ErrorbarSeries<'a> = (&'a str, &'a [f64], &'a [f64], &'a [f64]);

/// (x, y, err) of a series; missing errors are 0.
pub fn with_errors(x: &[f64], y: &[f64], e: &[f64]) -> Vec<(f64, f64, f64)> {
    x.iter().zip(y).zip(e.iter().chain(std::iter::repeat(&0.0))).map(|((&x, &y), &e)| (x, y, e)).collect()
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
    let mut p = Plot::new(title, xlabel, ylabel);
    p.log_y = log_y;
    p.layers = series
        .iter()
        .enumerate()
        .map(|(k, (l, x, y, e))| Layer::new(*l, colour(k), Shape::Points(with_errors(x, y, e))))
        .collect();
    p.save(dir, name)
}

/// A `(label, x, y)` series for [`line_plot`].
pub type LineSeriesData<'a> = (&'a str, &'a [f64], &'a [f64]);

/// Line plot of several `(label, x, y)` series, e.g. the charge history of chains, with a
/// y = 0 reference line. Non-finite points are skipped. Writes `dir/name.png` and
/// `dir/name.svg`.
pub fn line_plot(
    dir: impl AsRef<Path>,
    name: &str,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[LineSeriesData<'_>],
) -> Result<()> {
    let mut p = Plot::new(title, xlabel, ylabel);
    p.zero_line = true;
    p.layers = series.iter().enumerate().map(|(k, (l, x, y))| Layer::line(*l, colour(k), x, y)).collect();
    p.save(dir, name)
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
            let mut hist = Plot::new("t", "x", "density");
            hist.layers = histogram_layers(&h, 1);
            save(&p, "h", &hist, text).unwrap();
            for log_y in [false, true] {
                let mut fig = Plot::new("t", "x", "y");
                fig.log_y = log_y;
                fig.layers = e
                    .iter()
                    .map(|(l, x, y, err)| Layer::new(*l, colour(0), Shape::Points(with_errors(x, y, err))))
                    .collect();
                fig.layers.push(Layer::new("band", colour(1), Shape::Band(vec![(0.0, -1.0, 1.0), (1.0, 0.5, 2.0)])));
                fig.layers.push(Layer::new("window", colour(2), Shape::VLine(0.5)));
                save(&p, "e", &fig, text).unwrap();
            }
            let mut fig = Plot::new("t", "x", "y");
            fig.layers = l.iter().map(|(lab, x, y)| Layer::line(*lab, colour(0), x, y)).collect();
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
