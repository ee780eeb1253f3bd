//! The figures of `latdiff analyze --plot DIR` (PNG + SVG, listed in docs/reference.md) and
//! the loss curves of model files (`latdiff analyze --plot DIR model.h5`). Every title names
//! the theory, its couplings and the lattice.

use super::{charge_histogram, FileAnalysis};
use crate::analysis::plot::{self, colour, Layer, Plot, Shape};
use crate::diffusion::generate::smc_report::{self, LevelTable};
use crate::diffusion::net::model_file::ModelFile;
use crate::io::AttrValue;
use crate::lattice::Lattice;
use anyhow::{anyhow, Result};
use plotters::style::BLACK;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// "φ⁴, κ = 0.27, λ = 0.022, L = 16" or "U(1), β = 3, L_t×L_x = 32×16", from a file's
/// attributes.
pub fn physics_title(attrs: &[(String, AttrValue)], lattice: Lattice) -> String {
    let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    let theory = attr("theory").unwrap_or_else(|| "phi4".into());
    let mut parts = vec![match theory.as_str() {
        "phi4" => "φ⁴".to_string(),
        "u1" => "U(1)".to_string(),
        other => other.to_string(),
    }];
    for (key, symbol) in [("kappa", "κ"), ("m2", "m²"), ("lambda", "λ"), ("beta", "β")] {
        if let Some(v) = attr(key) {
            parts.push(format!("{symbol} = {v}"));
        }
    }
    parts.push(if lattice.lt == lattice.lx {
        format!("L = {}", lattice.lt)
    } else {
        format!("L_t×L_x = {}×{}", lattice.lt, lattice.lx)
    });
    parts.join(", ")
}

fn label_of(r: &FileAnalysis) -> String {
    let name =
        r.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| r.path.display().to_string());
    // The first reason only: a legend line must fit the chart (analyze prints them all).
    match r.analysis.unreliable() {
        Some(u) => match u.split_once("; ") {
            Some((first, _)) => format!("{name} ({first}; …: unreliable)"),
            None => format!("{name} ({u}: unreliable)"),
        },
        None => name,
    }
}

/// The ensembles' figures: `hist_action_density`, `rho_<observable>`, `log_weights` (weighted
/// files), `smc_levels` (SMC outputs); φ⁴: `hist_m`, `g_t`; U(1): `q_history`, `p_q`.
pub fn write_plots(dir: &Path, results: &[FileAnalysis]) -> Result<()> {
    let labels: Vec<String> = results.iter().map(label_of).collect();
    let physics = physics_title(&results[0].attrs, results[0].lattice);
    let titled = |what: &str| format!("{what} ({physics})");
    let n_max = results.iter().map(|r| r.action_density.len()).max().unwrap_or(1);
    let bins = ((n_max as f64).sqrt() as usize).clamp(20, 100);
    let weighted = results.iter().any(|r| r.weights.is_some());
    let hist = |name: &str, title: &str, xlabel: &str, pick: &dyn Fn(&FileAnalysis) -> &[f64]| -> Result<()> {
        let series: Vec<plot::HistSeries<'_>> =
            results.iter().zip(&labels).map(|(r, l)| (l.as_str(), pick(r), r.weights.as_deref())).collect();
        plot::histograms(dir, name, &titled(title), xlabel, &series, bins)
    };
    let w = if weighted { " (reweighted)" } else { "" };
    hist("hist_action_density", &format!("Action density S/V{w}"), "S/V", &|r| &r.action_density)?;
    write_rho(dir, results, &labels, &titled)?;
    write_log_weights(dir, results, &labels, &titled, bins)?;
    write_smc_levels(dir, results, &labels, &titled)?;
    if results.iter().all(|r| r.topology.is_some()) {
        return write_topology_plots(dir, results, &labels, &titled);
    }
    hist("hist_m", &format!("Magnetisation M{w}"), "M", &|r| &r.m)?;
    let g: Vec<plot::ErrorbarSeries<'_>> = results
        .iter()
        .zip(&labels)
        .filter_map(|(r, l)| {
            let a = r.analysis.get("g_t")?.array()?;
            Some((l.as_str(), &a.x[..], &a.mean[..], &a.err[..]))
        })
        .collect();
    plot::errorbar_plot(dir, "g_t", &titled("Connected correlator G(t)"), "t", "G(t)", &g, true)
}

/// The observable whose autocorrelation is drawn: |M| (φ⁴), Q² (U(1)), else the one that
/// set the jackknife bins.
fn main_primary(r: &FileAnalysis) -> Option<(String, &'static str)> {
    for (key, symbol) in [("abs_m", "|M|"), ("q2", "Q²")] {
        if r.analysis.gamma(key).is_some() {
            return Some((key.to_string(), symbol));
        }
    }
    let key = &r.analysis.binning.0;
    (!key.is_empty()).then(|| (key.clone(), ""))
}

/// `rho_<observable>`: ρ(t) of each file with Wolff's error band and the window W the
/// Γ-method chose (dashed), τ_int in the legend.
fn write_rho(dir: &Path, results: &[FileAnalysis], labels: &[String], titled: &dyn Fn(&str) -> String) -> Result<()> {
    let Some((key, symbol)) = main_primary(&results[0]) else { return Ok(()) };
    let symbol = if symbol.is_empty() { key.as_str() } else { symbol };
    let mut p =
        Plot::new(titled(&format!("Autocorrelation ρ(t) of {symbol}")), "t (saved configurations of a chain)", "ρ(t)");
    p.zero_line = true;
    for (k, (r, l)) in results.iter().zip(labels).enumerate() {
        let Some(g) = r.analysis.gamma(&key).filter(|g| !g.gamma.is_empty()) else { continue };
        let t: Vec<f64> = (0..g.gamma.len()).map(|t| t as f64).collect();
        let band = t.iter().zip(&g.gamma).zip(g.rho_errors()).map(|((&t, &y), e)| (t, y - e, y + e)).collect();
        let name = if results.len() > 1 { format!("{l}: ") } else { String::new() };
        p.layers.push(Layer::unlabelled(colour(k), Shape::Band(band)));
        p.layers.push(Layer::line(format!("{name}ρ(t) ± δρ(t)"), colour(k), &t, &g.gamma));
        p.layers.push(Layer::new(
            format!("{name}window W = {}: τ_int = {:.2} ± {:.2}", g.window, g.tau_int, g.tau_int_err),
            colour(k),
            Shape::VLine(g.window as f64),
        ));
    }
    p.save(dir, &format!("rho_{key}"))
}

/// ln(w/⟨w⟩) of every configuration with a positive weight.
fn normalised_log_weights(w: &[f64]) -> Vec<f64> {
    let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
    w.iter().filter(|&&x| x > 0.0).map(|x| (x / mean).ln()).collect()
}

fn ess_text(r: &FileAnalysis) -> String {
    let n = r.analysis.n_configs;
    match r.analysis.ess {
        Some(e) => format!("ESS = {e:.1} of {n} (ESS/N = {:.3})", e / n.max(1) as f64),
        None => format!("{n} configurations"),
    }
}

/// `log_weights`: the histogram of ln(w/⟨w⟩) of each weighted file, its ESS in the title
/// (one file) or the legend (several).
fn write_log_weights(
    dir: &Path,
    results: &[FileAnalysis],
    labels: &[String],
    titled: &dyn Fn(&str) -> String,
    bins: usize,
) -> Result<()> {
    let weighted: Vec<(&FileAnalysis, &String)> =
        results.iter().zip(labels).filter(|(r, _)| r.weights.is_some()).collect();
    if weighted.is_empty() {
        return Ok(());
    }
    let lw: Vec<Vec<f64>> =
        weighted.iter().map(|(r, _)| normalised_log_weights(r.weights.as_deref().unwrap_or(&[]))).collect();
    let names: Vec<String> = if weighted.len() == 1 {
        vec![weighted[0].1.clone()]
    } else {
        weighted.iter().map(|(r, l)| format!("{l}: {}", ess_text(r))).collect()
    };
    let series: Vec<plot::HistSeries<'_>> = names.iter().zip(&lw).map(|(l, x)| (l.as_str(), &x[..], None)).collect();
    let title = match weighted.as_slice() {
        [(r, _)] => format!("Log-weights, {}", ess_text(r)),
        _ => "Log-weights".to_string(),
    };
    let mut p = Plot::new(titled(&title), "ln(w / mean w)", "density");
    p.y_from_zero = true;
    p.layers = plot::histogram_layers(&series, bins);
    p.save(dir, "log_weights")
}

/// Mean, smallest and largest over the replicas of each level's value.
fn over_replicas(rows: &[Vec<f64>], scale: f64) -> Vec<(f64, f64, f64)> {
    let n = rows.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|j| {
            let col: Vec<f64> = rows.iter().map(|r| r[j] / scale).collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            (
                mean,
                col.iter().copied().fold(f64::INFINITY, f64::min),
                col.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        })
        .collect()
}

/// `smc_levels`: ESS/n on arrival at each level and the lineages left after it (divided by
/// the particles per replica), mean over the replicas with their range as a band; log y.
fn write_smc_levels(
    dir: &Path,
    results: &[FileAnalysis],
    labels: &[String],
    titled: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut tables: Vec<(usize, LevelTable)> = Vec::new();
    for (k, r) in results.iter().enumerate() {
        let f = crate::io::h5_open(&r.path).map_err(|e| anyhow!("{}: {e}", r.path.display()))?;
        if let Some(t) = smc_report::read_levels(&f).map_err(|e| anyhow!("{}: /smc_levels: {e}", r.path.display()))? {
            tables.push((k, t));
        }
    }
    if tables.is_empty() {
        return Ok(());
    }
    let first = &tables[0].1;
    let (s0, s1) = (first.sigma.first().copied().unwrap_or(f64::NAN), first.sigma.last().copied().unwrap_or(f64::NAN));
    let what = format!(
        "SMC: ESS/n and lineages/n per level, {} replica(s) of {} particles",
        first.ess_fraction.len(),
        first.n_particles
    );
    let mut p = Plot::new(
        titled(&what),
        format!("level, in the order visited (σ from {s0:.3} to {s1:.3})"),
        "fraction of the particles",
    );
    p.log_y = true;
    for (k, t) in &tables {
        let name = if results.len() > 1 { format!("{}: ", labels[*k]) } else { String::new() };
        let level: Vec<f64> = (1..=t.sigma.len()).map(|j| j as f64).collect();
        let ranged = |s: Vec<(f64, f64, f64)>| -> (Vec<(f64, f64)>, Vec<(f64, f64, f64)>) {
            (
                level.iter().zip(&s).map(|(&x, m)| (x, m.0)).collect(),
                level.iter().zip(&s).map(|(&x, m)| (x, m.1, m.2)).collect(),
            )
        };
        let (ess, ess_band) = ranged(over_replicas(&t.ess_fraction, 1.0));
        let several = t.ess_fraction.len() > 1;
        if several {
            p.layers.push(Layer::unlabelled(colour(2 * k), Shape::Band(ess_band)));
        }
        let range = if several { " (band: replicas' range)" } else { "" };
        p.layers.push(Layer::new(
            format!("{name}ESS/n on arrival{range}"),
            colour(2 * k),
            Shape::Line { pts: ess, dashed: false, markers: false },
        ));
        if !t.lineages.is_empty() && t.n_particles > 0 {
            let (lin, lin_band) = ranged(over_replicas(&t.lineages, t.n_particles as f64));
            if several {
                p.layers.push(Layer::unlabelled(colour(2 * k + 1), Shape::Band(lin_band)));
            }
            p.layers.push(Layer::new(
                format!("{name}lineages/n after the level"),
                colour(2 * k + 1),
                Shape::Line { pts: lin, dashed: true, markers: false },
            ));
        }
    }
    p.save(dir, "smc_levels")
}

/// Chains drawn in the Q history plot (of the first file).
const Q_HISTORY_CHAINS: usize = 8;

/// U(1): the charge history of the first file's first chains (frozen topology shows as flat
/// lines) and P(Q) of every file beside the exact distribution on the torus.
fn write_topology_plots(
    dir: &Path,
    results: &[FileAnalysis],
    labels: &[String],
    titled: &dyn Fn(&str) -> String,
) -> Result<()> {
    let t = results[0].topology.as_ref().expect("checked by the caller");
    let histories: Vec<(String, Vec<f64>, Vec<f64>)> = (0..Q_HISTORY_CHAINS)
        .filter_map(|c| {
            let q: Vec<f64> = t.q.iter().zip(&t.chain).filter(|(_, &k)| k == c).map(|(&q, _)| q as f64).collect();
            (!q.is_empty()).then(|| (format!("chain {c}"), (0..q.len()).map(|i| i as f64).collect(), q))
        })
        .collect();
    let series: Vec<plot::LineSeriesData<'_>> =
        histories.iter().map(|(l, x, y)| (l.as_str(), &x[..], &y[..])).collect();
    let title = titled(&format!("Topological charge per chain of {}", labels[0]));
    plot::line_plot(dir, "q_history", &title, "saved configuration of the chain", "Q", &series)?;
    write_p_q(dir, results, labels, titled)
}

/// `p_q`: P(Q) of each file with the binomial error sqrt(P(1 − P)/N_eff), N_eff = (ESS or
/// N)/(2 τ_int(Q²)), beside the exact P(Q) on the torus (down to a tenth of 1/N); log y.
fn write_p_q(dir: &Path, results: &[FileAnalysis], labels: &[String], titled: &dyn Fn(&str) -> String) -> Result<()> {
    let mut p = Plot::new(titled("Topological charge distribution P(Q)"), "Q", "P(Q)");
    p.log_y = true;
    let mut n_min = usize::MAX;
    for (k, (r, l)) in results.iter().zip(labels).enumerate() {
        let t = r.topology.as_ref().expect("checked by the caller");
        let tau = r.analysis.gamma("q2").map(|g| g.tau_int).filter(|x| x.is_finite()).unwrap_or(0.5).max(0.5);
        let n_eff = r.analysis.ess.unwrap_or(t.q.len() as f64) / (2.0 * tau);
        n_min = n_min.min(t.q.len());
        let pts = charge_histogram(&t.q, r.weights.as_deref())
            .into_iter()
            .map(|(q, pq)| (q as f64, pq, (pq * (1.0 - pq) / n_eff).sqrt()))
            .collect();
        let name = if results.len() > 1 { format!("{l}: ") } else { String::new() };
        p.layers.push(Layer::new(format!("{name}measured (N_eff = {n_eff:.0})"), colour(k), Shape::Points(pts)));
    }
    let floor = 0.1 / n_min.max(1) as f64;
    let exact: Vec<(f64, f64)> = results[0]
        .topology
        .as_ref()
        .map(|t| t.exact_p_q.iter().filter(|(_, pq)| *pq >= floor).map(|&(q, pq)| (q as f64, pq)).collect())
        .unwrap_or_default();
    if !exact.is_empty() {
        p.layers.push(Layer::new(
            "exact on this torus",
            BLACK.into(),
            Shape::Line { pts: exact, dashed: true, markers: true },
        ));
    }
    p.save(dir, "p_q")
}

// ---------------------------------------------------------------- model files

/// `analyze` on model files: each one's loss history (text or JSON) and, with `--plot`,
/// `loss_history`: training and validation loss against the step, log y.
pub fn analyze_models(files: &[PathBuf], json: bool, plot_dir: Option<&Path>) -> Result<()> {
    let models: Vec<(PathBuf, ModelFile)> = files
        .iter()
        .map(|p| ModelFile::read(p).map(|m| (p.clone(), m)))
        .collect::<Result<_>>()
        .map_err(crate::cli::input_err)?;
    if let Some(dir) = plot_dir {
        write_loss_plot(dir, &models)?;
        eprintln!("analyze: figures written to {}", dir.display());
    }
    let text = if json {
        let v: Vec<Value> = models.iter().map(|(p, m)| model_json(p, m)).collect();
        let v = if v.len() == 1 { v.into_iter().next().unwrap_or(Value::Null) } else { json!({ "models": v }) };
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        models.iter().map(|(p, m)| model_text(p, m)).collect()
    };
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn model_json(path: &Path, m: &ModelFile) -> Value {
    let col = |j: usize| -> Vec<Value> {
        m.loss_history
            .rows
            .iter()
            .map(|r| serde_json::Number::from_f64(r[j]).map_or(Value::Null, Value::Number))
            .collect()
    };
    json!({
        "file": path.display().to_string(),
        "kind": "model",
        "step": m.step,
        "loss_history": {"step": col(0), "train": col(1), "validation": col(2)},
    })
}

fn model_text(path: &Path, m: &ModelFile) -> String {
    let h = &m.loss_history.rows;
    let steps = m.attr("steps").and_then(AttrValue::as_f64).map_or("?".into(), |s| format!("{s}"));
    let mut s = format!("{}: model at step {} of {steps}; ", path.display(), m.step);
    let (Some(first), Some(last)) = (h.first(), h.last()) else {
        return s + "no loss history (a file written before latdiff stored one)\n";
    };
    s += &format!("loss history of {} rows, steps {}..{}\n", h.len(), first[0], last[0]);
    s += &format!("    last row: training loss {:.4}, validation loss {:.4}", last[1], last[2]);
    if let Some(best) = h.iter().filter(|r| r[2].is_finite()).min_by(|a, b| a[2].total_cmp(&b[2])) {
        s += &format!("; lowest validation loss {:.4} at step {}", best[2], best[0]);
    }
    s + "\n"
}

/// The training data's physics and the network, for the title.
fn model_title(m: &ModelFile) -> String {
    let physics = physics_title(&m.data_attrs, m.train_lattice);
    let s = |k: &str| m.attr(k).map(|v| v.to_string());
    match (s("preset"), s("score_form")) {
        (Some(p), Some(f)) => format!("{physics}; {p}, {f} score"),
        (Some(p), None) => format!("{physics}; {p}"),
        _ => physics,
    }
}

fn write_loss_plot(dir: &Path, models: &[(PathBuf, ModelFile)]) -> Result<()> {
    let title = format!("Training loss ({})", model_title(&models[0].1));
    let mut p = Plot::new(title, "training step", "denoising score-matching loss");
    p.log_y = true;
    for (k, (path, m)) in models.iter().enumerate() {
        let name = if models.len() > 1 {
            format!(
                "{}: ",
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string())
            )
        } else {
            String::new()
        };
        let rows = &m.loss_history.rows;
        let pts =
            |j: usize| -> Vec<(f64, f64)> { rows.iter().map(|r| (r[0], r[j])).filter(|p| p.1.is_finite()).collect() };
        p.layers.push(Layer::new(
            format!("{name}training (mean since the previous row)"),
            colour(k),
            Shape::Line { pts: pts(1), dashed: false, markers: rows.len() < 30 },
        ));
        let val = pts(2);
        if !val.is_empty() {
            p.layers.push(Layer::new(
                format!("{name}validation (held-out set)"),
                colour(k),
                Shape::Line { pts: val, dashed: true, markers: false },
            ));
        }
    }
    p.save(dir, "loss_history")
}
