//! `latdiff analyze A.h5 [B.h5 ...]`: observables with errors, compared between ensembles.
//!
//! Definitions, normalisations and error methods: `analysis::phi4_obs`, `analysis::u1_obs`,
//! `analysis::observables` and README.md ("Analysis (latdiff analyze)").

use crate::analysis::observables::{
    self, dense_chain_ids, Analysis, Estimate, MIN_INDEPENDENT_CONFIGS, MIN_RELIABLE_ESS,
};
use crate::analysis::replicas::{self, Replicas};
use crate::analysis::{observables_for, stats, Observables, Topology};
use crate::io::{AttrValue, Ensemble};
use crate::theory::Couplings;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub mod figures;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Ensemble files (HDF5 written by latdiff); with several, each is compared with the first.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one machine-readable JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write figures (PNG + SVG) into this directory (created if needed; figures already
    /// there are replaced only with --force).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Overwrite the figures of an earlier run in the --plot directory.
    #[arg(long)]
    pub force: bool,
    /// Compare ensembles even if theory, couplings or lattice size differ.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Jackknife bin size (configurations per bin within a chain) instead of the automatic
    /// choice from τ_int.
    #[arg(long, value_name = "N")]
    pub bin_size: Option<usize>,
    /// Ignore /log_weight: the raw (unreweighted) estimates of weighted ensembles.
    #[arg(long)]
    pub raw: bool,
}

/// An opened, validated ensemble file (nothing measured yet).
pub struct Input {
    pub path: PathBuf,
    pub ens: Ensemble,
    pub couplings: Couplings,
    pub obs: Box<dyn Observables>,
    pub attrs: Vec<(String, AttrValue)>,
    /// Dense chain index per row from /chain (`None`: no /chain, one chain).
    pub chain: Option<Vec<usize>>,
    /// /log_weight when present.
    pub log_weight: Option<Vec<f64>>,
    /// /replica when present (SMC): errors come from the spread between replicas.
    pub replicas: Option<Replicas>,
    /// What was assumed in reading the file (no /chain: one chain), shown as warnings.
    pub notes: Vec<String>,
}

/// Opens and validates one file. Every error is bad input naming the file and the problem.
pub fn open(path: &Path) -> Result<Input> {
    let ens = Ensemble::open(path)?;
    let name = path.display();
    if ens.n == 0 {
        bail!("{name}: /configs holds no configurations");
    }
    ens.lattice.validate().map_err(|e| anyhow!("{name}: {e}"))?;
    let couplings = ens.couplings()?;
    let obs = observables_for(couplings, ens.lattice);
    let components = obs.values_per_site();
    if ens.shape.components() != components {
        bail!(
            "{name}: /configs holds {} values per site, theory {} has {components}",
            ens.shape.components(),
            couplings.name()
        );
    }
    let attrs = ens.attrs().with_context(|| format!("{name}: reading attributes"))?;
    let chain = if ens.has("chain") {
        let c = ens.read_i64("chain").map_err(|_| anyhow!("{name}: /chain is not an integer column"))?;
        if c.len() != ens.n {
            bail!("{name}: /chain has {} rows but /configs has {}", c.len(), ens.n);
        }
        Some(dense_chain_ids(&c))
    } else {
        // Several chains without the column that tells their rows apart cannot be analysed
        // per chain: refuse rather than bin rows of different chains together.
        if let Some(n) = ens.attr_f64("n_chains").filter(|n| *n > 1.0) {
            bail!("{name}: attribute n_chains = {n} but no /chain column: the rows of different chains cannot be told apart (write /chain, the chain of every row)");
        }
        None
    };
    let log_weight = if ens.has("log_weight") {
        let w = ens.read_f64("log_weight").map_err(|_| anyhow!("{name}: /log_weight is not a float column"))?;
        if w.len() != ens.n {
            bail!("{name}: /log_weight has {} rows but /configs has {}", w.len(), ens.n);
        }
        // −∞ is a weight of exactly zero; NaN or +∞ is a broken weight, which would
        // otherwise be dropped silently or swamp every other configuration.
        let broken: Vec<usize> = (0..w.len()).filter(|&i| w[i].is_nan() || w[i] == f64::INFINITY).collect();
        if let Some(&i) = broken.first() {
            let others = match broken.len() {
                1 => String::new(),
                n => format!(" ({n} configurations have a NaN or +inf log-weight)"),
            };
            bail!("{name}: /log_weight of configuration {i} is {}{others}: the weights are broken", w[i]);
        }
        if !w.iter().any(|x| x.is_finite()) {
            bail!("{name}: /log_weight has no finite entry (all weights zero)");
        }
        Some(w)
    } else {
        None
    };
    let replicas = if ens.has("replica") {
        let r = ens.read_i64("replica").map_err(|_| anyhow!("{name}: /replica is not an integer column"))?;
        if r.len() != ens.n {
            bail!("{name}: /replica has {} rows but /configs has {}", r.len(), ens.n);
        }
        let replicas = Replicas::from_labels(&r);
        Some(if ens.has("ancestor") {
            let a = ens.read_i64("ancestor").map_err(|_| anyhow!("{name}: /ancestor is not an integer column"))?;
            if a.len() != ens.n {
                bail!("{name}: /ancestor has {} rows but /configs has {}", a.len(), ens.n);
            }
            replicas.with_ancestors(&a)
        } else {
            replicas
        })
    } else {
        None
    };
    // Without /chain (and not independent samples) the rows are one Markov chain in file
    // order: right for one chain, wrong for rows that interleave several.
    let independent = ens.attr_str("generator").as_deref() == Some("diffusion");
    let notes = (chain.is_none() && replicas.is_none() && !independent)
        .then(|| "no /chain column: the rows are read as one Markov chain in file order (if they come from several chains, write /chain)".to_string())
        .into_iter()
        .collect();
    Ok(Input { path: path.to_path_buf(), ens, couplings, obs, attrs, chain, log_weight, replicas, notes })
}

/// Theory, couplings and lattice, for the mismatch check.
fn physics(i: &Input) -> Vec<(&'static str, String)> {
    let a = i.obs.theory_attrs();
    let mut v = a.labels;
    v.extend(a.couplings.into_iter().map(|(k, x)| (k, x.to_string())));
    v.push(("lattice", i.ens.lattice.to_string()));
    v
}

/// `Err` naming the first difference in theory, couplings or lattice size.
pub fn check_match(reference: &Input, other: &Input) -> Result<()> {
    let (a, b) = (physics(reference), physics(other));
    let a_of = |k: &str| a.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let mut diffs = Vec::new();
    for (k, vb) in &b {
        match a_of(k) {
            Some(va) if &va == vb => {}
            Some(va) => diffs.push(format!("{k} {vb} vs {va}")),
            None => diffs.push(format!("{k} {vb} vs (none)")),
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    bail!(
        "{} does not match {}: {} (use --allow-mismatch to compare anyway)",
        other.path.display(),
        reference.path.display(),
        diffs.join(", ")
    )
}

/// `Err` when `other` measures other quantities than `reference` (another theory): their
/// rows cannot be set side by side, whatever `--allow-mismatch` says.
pub fn check_same_observables(reference: &Input, other: &Input) -> Result<()> {
    let keys = |i: &Input| i.obs.derived_specs().into_iter().map(|s| s.key).collect::<Vec<_>>();
    if keys(reference) != keys(other) {
        bail!(
            "{} ({}) and {} ({}) measure different observables and cannot be compared, even with --allow-mismatch",
            other.path.display(),
            other.couplings.name(),
            reference.path.display(),
            reference.couplings.name()
        );
    }
    Ok(())
}

/// Analysis of one file, with the per-configuration series the figures need.
pub struct FileAnalysis {
    pub path: PathBuf,
    pub lattice: crate::lattice::Lattice,
    pub attrs: Vec<(String, AttrValue)>,
    pub analysis: Analysis,
    /// Per-configuration M and S/V (histograms); M is empty for U(1).
    pub m: Vec<f64>,
    pub action_density: Vec<f64>,
    /// U(1): the integer charge of every configuration and how often it changed.
    pub topology: Option<Topology>,
    /// Exact values on this torus of theories without a topology (SU(2)), by key.
    pub exact: Vec<(String, f64)>,
    /// Linear weights (largest 1) for weighted ensembles.
    pub weights: Option<Vec<f64>>,
    /// Replica structure of SMC ensembles (how the errors were obtained).
    pub replicas: Option<Replicas>,
    /// What was assumed in reading the file ([`Input::notes`]).
    pub notes: Vec<String>,
}

/// (key, exact value, deviation of the estimate in its standard errors) for every quantity
/// the topology knows exactly.
fn exact_comparison(t: &Topology, a: &Analysis) -> Vec<(&'static str, f64, f64)> {
    t.exact
        .iter()
        .map(|&(k, x)| {
            let dev = a.scalar(k).map_or(f64::NAN, |e| deviation_from_exact(x, e.mean, e.err));
            (k, x, dev)
        })
        .collect()
}

/// (key, exact value, deviation of the estimate in its standard errors) for the exact
/// values a theory without a topology supplies (`Observables::exact`).
fn exact_values_comparison(exact: &[(String, f64)], a: &Analysis) -> Vec<(String, f64, f64)> {
    exact
        .iter()
        .map(|(k, x)| (k.clone(), *x, a.scalar(k).map_or(f64::NAN, |e| deviation_from_exact(*x, e.mean, e.err))))
        .collect()
}

/// Measures (streamed) and analyses one opened file.
pub fn analyze_input(i: &Input, bin_size: Option<usize>) -> Result<FileAnalysis> {
    let prim = observables::measure(&i.ens, i.obs.as_ref())?;
    let mut analysis = match &i.replicas {
        Some(r) => replicas::analyze(i.obs.as_ref(), &prim, r, i.log_weight.as_deref()),
        None => observables::analyze(i.obs.as_ref(), &prim, i.chain.as_deref(), i.log_weight.as_deref(), bin_size),
    };
    analysis.caveats.extend(generator_caveats(&i.attrs));
    let col = |k: &str| prim.column(k).map(<[f64]>::to_vec).unwrap_or_default();
    let topology = i
        .obs
        .topology(&prim, i.chain.as_deref())
        .map_err(|e| super::input_err(anyhow!("{}: {e}", i.path.display())))?;
    // A charge that never moved gives χ_t = 0 ± 0 with "independent samples": the ensemble
    // sampled one sector per chain, which no error bar shows.
    if topology.as_ref().is_some_and(|t| t.changed_fraction == 0.0) {
        analysis.caveats.push(FROZEN_TOPOLOGY.to_string());
    }
    Ok(FileAnalysis {
        path: i.path.clone(),
        lattice: i.ens.lattice,
        attrs: i.attrs.clone(),
        m: col("m"),
        action_density: col("action_density"),
        topology,
        exact: i.obs.exact(),
        weights: i.log_weight.as_deref().map(stats::normalized_weights),
        analysis,
        replicas: i.replicas.clone(),
        notes: i.notes.clone(),
    })
}

/// Why an ensemble whose topological charge never changed within a chain is unreliable.
pub const FROZEN_TOPOLOGY: &str = "frozen topology: the topological charge never changed between successive configurations of a chain, so chi_t and P(Q) are not estimates (generate with flux moves: hmc --cluster-updates 4, the default for u1)";

/// What the generator recorded against its own ensemble: a failed thermalisation verdict
/// (`therm_ok` = 0) or a run that accepted nothing (`acceptance` = 0).
fn generator_caveats(attrs: &[(String, AttrValue)]) -> Vec<String> {
    let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.as_f64());
    let mut why = Vec::new();
    if attr("therm_ok") == Some(0.0) {
        why.push("the generator's thermalisation check failed (therm_ok = 0; `latdiff info` says why)".to_string());
    }
    if attr("acceptance") == Some(0.0) {
        why.push("acceptance 0: the chains never moved".to_string());
    }
    why
}

pub fn run(a: &AnalyzeArgs) -> Result<()> {
    if a.bin_size == Some(0) {
        return Err(super::input_err(anyhow!("bin-size: must be at least 1")));
    }
    // Before any file is opened: opening a FIFO would block (issue 32, item 10).
    for p in &a.files {
        crate::io::check_regular_input(p, "input").map_err(super::input_err)?;
    }
    let is_model = |p: &PathBuf| crate::diffusion::net::model_file::is_model_file(p);
    if let Some(model) = a.files.iter().find(|p| is_model(p)) {
        if let Some(ens) = a.files.iter().find(|p| !is_model(p)) {
            return Err(super::input_err(anyhow!(
                "{} is a model file and {} is not: analyze takes either ensembles or model files (loss curves), not both",
                model.display(),
                ens.display()
            )));
        }
        if let Some(dir) = &a.plot {
            std::fs::create_dir_all(dir)
                .map_err(|e| super::input_err(anyhow!("plot: cannot create directory '{}': {e}", dir.display())))?;
        }
        return figures::analyze_models(&a.files, a.json, a.plot.as_deref());
    }
    // Open and check everything before any measurement.
    let mut inputs: Vec<Input> = a.files.iter().map(|p| open(p)).collect::<Result<_>>().map_err(super::input_err)?;
    if a.raw {
        inputs.iter_mut().for_each(|i| i.log_weight = None);
    }
    for other in &inputs[1..] {
        check_same_observables(&inputs[0], other).map_err(super::input_err)?;
        if !a.allow_mismatch {
            check_match(&inputs[0], other).map_err(super::input_err)?;
        }
    }
    if let Some(dir) = &a.plot {
        if !a.force {
            refuse_old_figures(dir).map_err(super::input_err)?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| super::input_err(anyhow!("plot: cannot create directory '{}': {e}", dir.display())))?;
    }
    let results: Vec<FileAnalysis> = inputs.iter().map(|i| analyze_input(i, a.bin_size)).collect::<Result<_>>()?;
    if let Some(dir) = &a.plot {
        figures::write_plots(dir, &results)?;
        eprintln!("analyze: figures written to {}", dir.display());
    }
    let text = if a.json { serde_json::to_string_pretty(&to_json(&results))? + "\n" } else { table(&results) };
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A closed pipe (`latdiff analyze ... | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `Err` when `dir` already holds figures (PNG or SVG): like every other output, they are
/// replaced only with `--force`.
fn refuse_old_figures(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut figures: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".png") || n.ends_with(".svg"))
        .collect();
    if figures.is_empty() {
        return Ok(());
    }
    figures.sort();
    bail!(
        "plot: '{}' already holds {} figures ({}, …): give --force to replace them, or another directory",
        dir.display(),
        figures.len(),
        figures[0]
    )
}

/// The warnings under a file: a partial ensemble (a sampler stopped by a signal), and the
/// scalar quantities whose own τ_int asks for larger bins than were used (e.g. ⟨M⟩ with
/// slow tunnelling when the bins follow |M|): their jackknife error may be too small.
pub fn warnings(r: &FileAnalysis) -> Vec<String> {
    let a = &r.analysis;
    partial_ensemble(r).into_iter().chain(r.notes.iter().cloned()).chain(a.quantities
        .iter()
        .filter_map(|(spec, e)| {
            let s = e.scalar()?;
            let need = stats::bin_size_from_tau(s.tau_int, usize::MAX);
            // B ≈ 10 τ_int leaves the error ~5 % low; below half of that it is ≳ 10 % low.
            (s.tau_int.is_finite() && need > 2 * a.bin_size).then(|| {
                format!(
                    "{}: tau_int {:.1} wants bins of {need} configurations but {} were used; its error may be underestimated",
                    spec.key, s.tau_int, a.bin_size
                )
            })
        }))
        .collect()
}

/// A `sample` run stopped by a signal wrote fewer configurations than asked (and exited
/// with code 3): valid, but not the ensemble the job meant to make.
fn partial_ensemble(r: &FileAnalysis) -> Option<String> {
    let attr = |k: &str| r.attrs.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.as_f64());
    (attr("stopped_by_signal") == Some(1.0)).then(|| {
        format!(
            "PARTIAL ENSEMBLE: the sampler was stopped by a signal after {} of {} requested configurations",
            r.analysis.n_configs,
            attr("n_requested").map_or("?".to_string(), |n| format!("{n}"))
        )
    })
}

// ---------------------------------------------------------------- JSON

fn num(x: f64) -> Value {
    // JSON has no NaN/inf: undefined values are null.
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

fn nums(x: &[f64]) -> Value {
    Value::Array(x.iter().map(|v| num(*v)).collect())
}

fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::F64(x) => num(*x),
        AttrValue::I64(x) => json!(x),
        AttrValue::Str(s) => json!(s),
        AttrValue::F64s(x) => nums(x),
        AttrValue::I64s(x) => json!(x),
    }
}

/// The JSON object for one file (keys documented in README.md).
pub fn file_json(r: &FileAnalysis) -> Value {
    let a = &r.analysis;
    let mut obs = Map::new();
    for (spec, est) in &a.quantities {
        let v = match est {
            Estimate::Scalar(s) => json!({
                "mean": num(s.mean),
                "err": num(s.err),
                "tau_int": num(s.tau_int),
                "undefined_reason": s.undefined,
            }),
            Estimate::Array(x) => json!({"t": nums(&x.x), "mean": nums(&x.mean), "err": nums(&x.err)}),
        };
        obs.insert(spec.key.clone(), v);
    }
    let attrs: Map<String, Value> = r.attrs.iter().map(|(k, v)| (k.clone(), attr_json(v))).collect();
    let mut o = json!({
        "file": r.path.display().to_string(),
        "attributes": attrs,
        "observables": obs,
        "n_configs": a.n_configs,
        "n_chains": a.n_chains,
        "bin_size": a.bin_size,
        "n_bins": a.n_bins,
        "binning": {"primary": a.binning.0, "tau_int": num(a.binning.1)},
        "warnings": warnings(r),
        "reliable": a.unreliable().is_none(),
        "min_ess": MIN_RELIABLE_ESS,
        "min_independent_configs": MIN_INDEPENDENT_CONFIGS,
        "unreliable_reason": a.unreliable(),
    });
    if let Some(e) = a.ess {
        o["ess"] = num(e);
        o["ess_fraction"] = num(e / a.n_configs.max(1) as f64);
    }
    if let Some(t) = &r.topology {
        let hist: Map<String, Value> =
            charge_histogram(&t.q, r.weights.as_deref()).into_iter().map(|(q, p)| (q.to_string(), num(p))).collect();
        let exact: Map<String, Value> = exact_comparison(t, &r.analysis)
            .into_iter()
            .flat_map(|(k, x, dev)| [(k.to_string(), num(x)), (format!("{k}_sigma"), num(dev))])
            .chain(std::iter::once((
                "p_q".to_string(),
                Value::Object(t.exact_p_q.iter().map(|(q, p)| (q.to_string(), num(*p))).collect()),
            )))
            .collect();
        o["topology"] = json!({"q_changed_fraction": num(t.changed_fraction), "p_q": hist, "exact": exact});
    }
    if !r.exact.is_empty() {
        let exact: Map<String, Value> = exact_values_comparison(&r.exact, &r.analysis)
            .into_iter()
            .flat_map(|(k, x, dev)| [(format!("{k}_sigma"), num(dev)), (k, num(x))])
            .collect();
        o["exact"] = Value::Object(exact);
    }
    if let Some(r) = &r.replicas {
        o["n_replicas"] = json!(r.count);
        o["error_method"] = json!(r.error_method());
        o["min_lineages"] = json!(r.lineages);
    }
    o
}

/// Whether `err` is a measured error of `mean`: finite and above the rounding of the mean
/// (identical configurations leave a jackknife "error" of ~1e-17 |mean|, which is no
/// measurement of anything).
fn resolved(mean: f64, err: f64) -> bool {
    err.is_finite() && err > 1e-10 * mean.abs()
}

/// (b − a) / sqrt(δa² + δb²) between two measured values; NaN (printed n/a) unless both
/// errors are positive and finite: an ensemble whose error is zero (one configuration,
/// nothing fluctuated) or undefined has no error to measure a deviation in.
fn sigma(a: f64, ea: f64, b: f64, eb: f64) -> f64 {
    if resolved(a, ea) && resolved(b, eb) {
        (b - a) / (ea * ea + eb * eb).sqrt()
    } else {
        f64::NAN
    }
}

/// (estimate − exact) / error; NaN (n/a) unless the error is positive and finite.
fn deviation_from_exact(exact: f64, mean: f64, err: f64) -> f64 {
    if resolved(mean, err) {
        (mean - exact) / err
    } else {
        f64::NAN
    }
}

/// "+1.3 sigma", or "n/a" for a deviation without an error to measure it in.
fn fmt_sigma(d: f64) -> String {
    if d.is_finite() {
        format!("{d:+.1} sigma")
    } else {
        "n/a".into()
    }
}

pub fn to_json(results: &[FileAnalysis]) -> Value {
    if results.len() == 1 {
        return file_json(&results[0]);
    }
    let reference = &results[0];
    let comparison: Vec<Value> = results[1..]
        .iter()
        .map(|r| {
            let mut obs = Map::new();
            for ((spec, ea), (_, eb)) in reference.analysis.quantities.iter().zip(&r.analysis.quantities) {
                let v = match (ea, eb) {
                    (Estimate::Scalar(a), Estimate::Scalar(b)) => json!({
                        "diff": num(b.mean - a.mean),
                        "err": num(a.err.hypot(b.err)),
                        "sigma": num(sigma(a.mean, a.err, b.mean, b.err)),
                    }),
                    (Estimate::Array(a), Estimate::Array(b)) => {
                        let n = a.mean.len().min(b.mean.len());
                        let d: Vec<f64> = (0..n).map(|i| b.mean[i] - a.mean[i]).collect();
                        let e: Vec<f64> = (0..n).map(|i| a.err[i].hypot(b.err[i])).collect();
                        let s: Vec<f64> = (0..n).map(|i| sigma(a.mean[i], a.err[i], b.mean[i], b.err[i])).collect();
                        json!({"t": nums(&a.x[..n]), "diff": nums(&d), "err": nums(&e), "sigma": nums(&s)})
                    }
                    _ => Value::Null,
                };
                obs.insert(spec.key.clone(), v);
            }
            // A σ from an unreliable ensemble is no evidence of agreement (or disagreement).
            let why: Vec<String> = [reference, r]
                .iter()
                .filter_map(|x| x.analysis.unreliable().map(|u| format!("{}: {u}", x.path.display())))
                .collect();
            json!({
                "file": r.path.display().to_string(),
                "reference": reference.path.display().to_string(),
                "observables": obs,
                "reliable": why.is_empty(),
                "unreliable_reason": (!why.is_empty()).then(|| why.join("; ")),
            })
        })
        .collect();
    json!({
        "ensembles": results.iter().map(file_json).collect::<Vec<_>>(),
        "comparison": comparison,
    })
}

// ---------------------------------------------------------------- table

/// "mean ± err" rounded to the error ([`crate::util::fmt_pm`]).
pub use crate::util::fmt_pm;

/// P(Q) (reweighted when weights are given) over the charges seen, as (Q, probability).
pub fn charge_histogram(q: &[i64], weights: Option<&[f64]>) -> Vec<(i64, f64)> {
    let mut h = std::collections::BTreeMap::new();
    for (i, &qi) in q.iter().enumerate() {
        *h.entry(qi).or_insert(0.0) += weights.map_or(1.0, |w| w[i]);
    }
    let total: f64 = h.values().sum();
    h.into_iter().map(|(k, x)| (k, x / total)).collect()
}

/// e.g. "Q changed between 41.3 % of successive configurations; P(Q): -1 0.12, 0 0.76, 1 0.12".
fn topology_line(t: &Topology, weights: Option<&[f64]>) -> String {
    let hist = charge_histogram(&t.q, weights)
        .iter()
        .filter(|(_, p)| *p >= 0.005)
        .map(|(q, p)| format!("{q} {p:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Q changed between {:.1} % of successive configurations of a chain; P(Q) (>= 0.005): {hist}",
        100.0 * t.changed_fraction
    )
}

fn attr_of(r: &FileAnalysis, k: &str) -> Option<String> {
    r.attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string())
}

/// A label attribute (theory, generator, sampler): text only, so that a damaged file's
/// number there is not shown as if it were a name.
fn text_attr_of(r: &FileAnalysis, k: &str) -> Option<String> {
    r.attrs.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// "[A] ", "[B] ", ... before the file `i` of several; nothing when there is one.
fn file_tag(i: usize, n_files: usize) -> String {
    if n_files > 1 {
        format!("[{}] ", file_letter(i))
    } else {
        String::new()
    }
}

fn file_letter(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

/// The text report: each file's header, the table of observables side by side (with the σ
/// of each file's deviation from the first), and the notes on unreliable or undefined values.
pub fn table(results: &[FileAnalysis]) -> String {
    let mut s = String::new();
    for (i, r) in results.iter().enumerate() {
        s += &file_header(r, &file_tag(i, results.len()));
    }
    s.push('\n');
    s += &observable_grid(results, &table_rows(results));
    let notes = table_notes(results);
    if !notes.is_empty() {
        s.push('\n');
        s += &notes;
    }
    s
}

/// One file's lines above the table: what it holds, how its errors were obtained, why they
/// may not be trusted, and (with a topology) how its charge moved and the exact values.
fn file_header(r: &FileAnalysis, tag: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let a = &r.analysis;
    let couplings = ["kappa", "m2", "lambda", "beta"]
        .iter()
        .filter_map(|k| attr_of(r, k).map(|v| format!("{k} = {v}")))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "{tag}{}: {} {couplings}, lattice {}",
        r.path.display(),
        text_attr_of(r, "theory").unwrap_or("phi4".into()),
        r.lattice
    );
    s += &sampling_line(r);
    if let Some(u) = a.unreliable() {
        let _ = writeln!(
            s,
            "    unreliable: {u}: the values rest on a handful of configurations or lineages; their errors and sigmas are not trustworthy"
        );
    }
    for w in warnings(r) {
        let _ = writeln!(s, "    warning: {w}");
    }
    if let Some(t) = &r.topology {
        let _ = writeln!(s, "    topology: {}", topology_line(t, r.weights.as_deref()));
        let cmp: Vec<String> =
            exact_comparison(t, a).iter().map(|(k, x, dev)| format!("{k} {x:.6} ({})", fmt_sigma(*dev))).collect();
        let p_q: Vec<String> =
            t.exact_p_q.iter().filter(|(_, p)| *p >= 0.005).map(|(q, p)| format!("{q} {p:.3}")).collect();
        let _ = writeln!(s, "    exact on this torus: {}; P(Q) (>= 0.005): {}", cmp.join(", "), p_q.join(", "));
    }
    if !r.exact.is_empty() {
        let cmp: Vec<String> = exact_values_comparison(&r.exact, a)
            .iter()
            .map(|(k, x, dev)| format!("{k} {x:.6} ({})", fmt_sigma(*dev)))
            .collect();
        let _ = writeln!(s, "    exact on this torus: {}", cmp.join(", "));
    }
    s
}

/// The line on how the configurations were made and their errors obtained (replicas, or
/// chains and jackknife bins), with acceptance and ESS where known.
fn sampling_line(r: &FileAnalysis) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let a = &r.analysis;
    if let Some(rep) = &r.replicas {
        let _ = write!(
            s,
            "    {} configs in {} SMC replica(s), generator {} ({}); {}",
            a.n_configs,
            rep.count,
            text_attr_of(r, "generator").unwrap_or("?".into()),
            text_attr_of(r, "sampler").unwrap_or("?".into()),
            rep.error_method()
        );
        if let Some(l) = rep.lineages {
            let _ = write!(s, ", fewest lineages in a replica {l}");
        }
    } else {
        let _ = write!(
            s,
            "    {} configs in {} chain(s), generator {}, jackknife bin {} ({} bins; {})",
            a.n_configs,
            a.n_chains,
            text_attr_of(r, "generator").unwrap_or("?".into()),
            a.bin_size,
            a.n_bins,
            // Independent samples (one chain of proposals) have no autocorrelation to report.
            if a.frozen {
                "no autocorrelation: the chains do not move".to_string()
            } else if a.binning.0.is_empty() {
                "independent samples".to_string()
            } else {
                format!("max tau_int {:.2} from {}", a.binning.1, a.binning.0)
            }
        );
    }
    if let Some(acc) = r.attrs.iter().find(|(n, _)| n == "acceptance").and_then(|(_, v)| v.as_f64()) {
        let _ = write!(s, ", acceptance {}", crate::util::fmt_sig(acc, 3));
    }
    if let Some(e) = a.ess {
        let _ = write!(s, ", ESS {e:.1} (ESS/N = {:.4})", e / a.n_configs.max(1) as f64);
    }
    s.push('\n');
    s
}

/// One table cell: mean, error and (scalars) τ_int of one file.
type Cell = (f64, f64, Option<f64>);

/// The table's rows, (label, a cell per file): a scalar is one row, an array one row per
/// component (G(t) only up to L_t/2, the rest repeats it).
fn table_rows(results: &[FileAnalysis]) -> Vec<(String, Vec<Cell>)> {
    let mut rows: Vec<(String, Vec<Cell>)> = Vec::new();
    for (k, (spec, _)) in results[0].analysis.quantities.iter().enumerate() {
        let ests: Vec<&Estimate> = results.iter().map(|r| &r.analysis.quantities[k].1).collect();
        match ests[0] {
            Estimate::Scalar(_) => rows.push((
                spec.label.clone(),
                ests.iter()
                    .map(|e| e.scalar().map_or((f64::NAN, 0.0, None), |x| (x.mean, x.err, Some(x.tau_int))))
                    .collect(),
            )),
            Estimate::Array(a0) => {
                let name = spec.label.trim_end_matches("(t)");
                for (j, t) in a0.x.iter().enumerate() {
                    if spec.key == "g_t" && *t > (a0.x.len() / 2) as f64 {
                        continue; // G(t) = G(L_t − t)
                    }
                    rows.push((
                        format!("{name}({t})"),
                        ests.iter()
                            .map(|e| {
                                e.array().and_then(|a| Some((*a.mean.get(j)?, *a.err.get(j)?, None))).unwrap_or((
                                    f64::NAN,
                                    0.0,
                                    None,
                                ))
                            })
                            .collect(),
                    ));
                }
            }
        }
    }
    rows
}

/// The rows laid out in columns under a header line: "mean ± err" per file, then the σ of
/// each file's deviation from the first.
fn observable_grid(results: &[FileAnalysis], rows: &[(String, Vec<Cell>)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let lw = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10).max(10);
    let cell = |(m, e, tau): Cell| -> String {
        match tau {
            Some(t) if t.is_finite() => format!("{}  (tau {t:.2})", fmt_pm(m, e)),
            _ => fmt_pm(m, e),
        }
    };
    // Every value of an unreliable ensemble, and every σ involving one, carries the marker.
    let unreliable: Vec<bool> = results.iter().map(|r| r.analysis.unreliable().is_some()).collect();
    let mark = |bad: bool| if bad { " *" } else { "" };
    let cells: Vec<Vec<String>> =
        rows.iter().map(|(_, v)| v.iter().zip(&unreliable).map(|(x, bad)| cell(*x) + mark(*bad)).collect()).collect();
    let cw = cells.iter().flatten().map(|c| c.chars().count()).max().unwrap_or(10).max(12);
    let pad = |x: &str, w: usize| format!("{x}{}", " ".repeat(w.saturating_sub(x.chars().count())));
    let mut head = pad("observable", lw);
    for i in 0..results.len() {
        head += "  ";
        head += &pad(&format!("{}mean ± err", file_tag(i, results.len())), cw);
    }
    for i in 1..results.len() {
        head += &format!("  {}-A /sigma", file_letter(i));
    }
    let _ = writeln!(s, "{}", head.trim_end());
    for ((label, vals), cs) in rows.iter().zip(&cells) {
        let mut line = pad(label, lw);
        for c in cs {
            line += "  ";
            line += &pad(c, cw);
        }
        for (v, bad) in vals[1..].iter().zip(&unreliable[1..]) {
            let d = sigma(vals[0].0, vals[0].1, v.0, v.1);
            let d = if d.is_finite() { format!("{d:+.2}") } else { "n/a".to_string() };
            line += &format!("  {}", pad(&(d + mark(unreliable[0] || *bad)), "B-A /sigma".len()));
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

/// Below the table: why each marked file is unreliable, and why each undefined value is.
fn table_notes(results: &[FileAnalysis]) -> String {
    use std::fmt::Write;
    let mut notes = String::new();
    for (i, r) in results.iter().enumerate() {
        let tag = file_tag(i, results.len());
        if let Some(u) = r.analysis.unreliable() {
            let _ = writeln!(notes, "* unreliable: {u} ({tag}{})", r.path.display());
        }
        for (spec, e) in &r.analysis.quantities {
            if let Some(why) = e.scalar().and_then(|x| x.undefined.as_ref()) {
                let _ = writeln!(notes, "note: {tag}{}: {why}", spec.label);
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::{deviation_from_exact, fmt_pm, fmt_sigma, sigma};

    /// A deviation measured in a zero or undefined error is n/a, never ±inf σ or 0 σ.
    #[test]
    fn sigma_without_an_error_is_not_a_number() {
        assert_eq!(fmt_sigma(sigma(1.0, 0.0, 2.0, 0.0)), "n/a");
        assert_eq!(fmt_sigma(sigma(1.0, 0.0, 1.0, 0.0)), "n/a");
        assert_eq!(fmt_sigma(sigma(1.0, 0.0, 1.5, 0.1)), "n/a");
        assert_eq!(fmt_sigma(sigma(1.0, f64::NAN, 1.5, 0.1)), "n/a");
        assert_eq!(fmt_sigma(sigma(1.0, 0.3, 1.5, 0.4)), "+1.0 sigma");
        assert_eq!(fmt_sigma(deviation_from_exact(1.0, 1.5, 0.0)), "n/a");
        assert_eq!(fmt_sigma(deviation_from_exact(1.0, 1.5, 0.25)), "+2.0 sigma");
    }

    /// An undefined error must not read as an exact value.
    #[test]
    fn undefined_error_is_not_shown_as_zero() {
        assert_eq!(fmt_pm(1.25, f64::NAN), "1.25000 ± n/a");
        assert_eq!(fmt_pm(1.25, 0.0), "1.25000 ± n/a");
        assert_eq!(fmt_pm(1.25, f64::INFINITY), "1.25000 ± n/a");
        assert_eq!(fmt_pm(1.25, 7.9e-17), "1.25000 ± n/a");
        assert_eq!(fmt_pm(f64::NAN, 0.1), "undefined");
        assert_eq!(fmt_pm(1.2346, 0.012), "1.235 ± 0.012");
    }
}
