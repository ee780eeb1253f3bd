//! `latdiff fit-action MODEL --data ENSEMBLE [--json]`: the couplings of an action-form
//! model's learnt action (`diffusion::fit_action`), with jackknife errors.

use crate::diffusion::fit_action::{self, FitTarget, OPERATORS};
use crate::diffusion::net::model_file::ModelFile;
use crate::io::Ensemble;
use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FitActionArgs {
    /// Model file trained with --score-form action (none with `--fit data`).
    pub model: Option<PathBuf>,
    /// Ensemble whose configurations the learnt action is fitted on (held-out data ideally).
    #[arg(long)]
    pub data: PathBuf,
    /// Noise level σ at which S_θ(φ, σ) is read [default: the model's σ_min].
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Use the first N configurations [default: all].
    #[arg(long)]
    pub n_configs: Option<usize>,
    /// Configurations per jackknife bin (within a chain).
    #[arg(long, default_value_t = 8)]
    pub bin_size: usize,
    /// What the operator basis is fitted to: `gradients` (∂S_θ/∂φ at every site, the
    /// learnt score), `values` (S_θ per configuration, up to a constant), or `data`
    /// (no model: score matching on the configurations themselves, the data's own reading).
    #[arg(long, default_value = "gradients")]
    pub fit: String,
    /// Print JSON (stable keys: kappa or m2, lambda, q or h, phi6, hop_nnn, each with _err;
    /// residual_rms, action_std, n_configs, sigma).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &FitActionArgs) -> Result<()> {
    let input = crate::error::input_err;
    let target = FitTarget::parse(&a.fit).map_err(|e| input(anyhow!(e)))?;
    let file = match (&a.model, target) {
        (Some(m), FitTarget::Data) => {
            return Err(input(anyhow!("fit: data fits the ensemble alone; drop the model {}", m.display())))
        }
        (None, FitTarget::Data) => None,
        (None, _) => return Err(input(anyhow!("model: missing (only --fit data runs without a model)"))),
        (Some(m), _) => Some(
            crate::io::check_regular_input(m, "model")
                .and_then(|()| ModelFile::read(m))
                .map_err(|e| input(anyhow!("model: {e}")))?,
        ),
    };
    let ens = Ensemble::open(&a.data).map_err(|e| input(anyhow!("data: {e}")))?;
    let theory = ens.theory().map_err(|e| input(anyhow!("data: {e}")))?;
    let sigma = a.sigma.or(file.as_ref().map(|f| f.schedule.sigma_min)).unwrap_or(0.0);
    if file.is_some() && !(sigma > 0.0) {
        return Err(input(anyhow!("sigma: {sigma} is not a positive noise level")));
    }
    let n = a.n_configs.unwrap_or(ens.n).min(ens.n);
    if n < 16 {
        return Err(input(anyhow!("n-configs: {n} configurations are too few for a fit with errors (at least 16)")));
    }
    let lat = ens.lattice;
    if lat.lt < 3 || lat.lx < 3 {
        return Err(input(anyhow!("data: lattice {lat} is too small for the operator basis (extent ≥ 3)")));
    }
    let configs = ens.read_configs(0, n)?;
    let chain: Option<Vec<usize>> =
        if ens.has("chain") { Some(ens.read_i64("chain")?[..n].iter().map(|&c| c as usize).collect()) } else { None };
    let bin = a.bin_size.max(1);
    let f = match (target, &file) {
        (FitTarget::Values, Some(file)) => {
            let s = fit_action::learnt_actions(file, &configs, lat, sigma)?;
            let x: Vec<_> = configs.chunks(lat.volume()).map(|c| fit_action::operators(c, lat)).collect();
            fit_action::fit(&s, &x, lat.volume(), chain.as_deref(), bin)
        }
        (FitTarget::Gradients, Some(file)) => {
            let g = fit_action::learnt_gradients(file, &configs, lat, sigma)?;
            fit_action::fit_gradients(&configs, lat, Some(&g), chain.as_deref(), bin)
        }
        _ => fit_action::fit_gradients(&configs, lat, None, chain.as_deref(), bin),
    };
    let couplings = fit_action::couplings(&f, theory);
    if a.json {
        let mut m = Map::new();
        let mut put = |k: &str, v: f64| {
            m.insert(k.to_string(), serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null));
        };
        for (k, v, e) in &couplings {
            put(k, *v);
            put(&format!("{k}_err"), *e);
        }
        for (k, (v, e)) in OPERATORS.iter().zip(&f.coefficients).skip(3) {
            put(k, *v);
            put(&format!("{k}_err"), *e);
        }
        put("residual_rms", f.residual_rms);
        put("action_std", f.action_std);
        put("sigma", sigma);
        m.insert("fit".into(), json!(target.name()));
        m.insert("n_configs".into(), json!(f.n_configs));
        m.insert("n_bins".into(), json!(f.n_bins));
        m.insert("parametrisation".into(), json!(theory.name()));
        m.insert("ensemble".into(), json!(theory.describe()));
        println!("{}", serde_json::to_string_pretty(&Value::Object(m))?);
        return Ok(());
    }
    let what = match target {
        FitTarget::Values => format!("S_theta(phi, sigma = {sigma:.3e}) up to a constant"),
        FitTarget::Gradients => format!("dS_theta/dphi(phi, sigma = {sigma:.3e}) at every site"),
        FitTarget::Data => "the configurations alone (score matching, no model)".to_string(),
    };
    let model = a.model.as_ref().map(|m| format!("{} ", m.display())).unwrap_or_default();
    println!("fit-action: {model}on {} ({} configurations, {lat}), {what}", a.data.display(), f.n_configs);
    println!("  ensemble      {} ({})", theory.describe(), theory.name());
    for (k, v, e) in &couplings {
        println!("  {k:<13} {v:.5} ± {e:.5}");
    }
    for (k, (v, e)) in OPERATORS.iter().zip(&f.coefficients).skip(3) {
        println!("  {k:<13} {v:.5} ± {e:.5}   (not in the theory: consistent with 0 if learnt exactly)");
    }
    let of = if target == FitTarget::Gradients { "rms of dS/dphi per site" } else { "std(S)" };
    if target != FitTarget::Data {
        println!(
            "  residual      rms {:.4} against {of} {:.4} ({:.2} % unexplained), {} jackknife bins",
            f.residual_rms,
            f.action_std,
            100.0 * f.residual_rms / f.action_std.max(1e-300),
            f.n_bins
        );
    } else {
        println!("  {} jackknife bins", f.n_bins);
    }
    if let Some(file) = &file {
        println!("  errors        of reading this model on these configurations, not of its training (README)");
        // Trained far above σ_min, S_θ(·, σ_min) keeps part of the noised action (README
        // "Reading the couplings"): say so where the figures are read.
        if file.schedule.sigma_max > 0.1 {
            println!(
                "  note          trained up to sigma = {:.3}: the sigma_min action keeps part of the noised one; for couplings train with --preset local-ops --antithetic true --sigma-max 0.05",
                file.schedule.sigma_max
            );
        }
    }
    Ok(())
}
