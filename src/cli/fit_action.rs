//! `latdiff fit-action MODEL --data ENSEMBLE [--json]`: the couplings of an action-form
//! model's learnt action (`diffusion::fit_action`), with jackknife errors.

use crate::diffusion::fit_action::{self, OPERATORS};
use crate::diffusion::model_file::ModelFile;
use crate::io::Ensemble;
use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FitActionArgs {
    /// Model file trained with --score-form action.
    pub model: PathBuf,
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
    /// Print JSON (stable keys: kappa or m2, lambda, q or h, phi6, hop_nnn, each with _err;
    /// residual_rms, action_std, n_configs, sigma).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &FitActionArgs) -> Result<()> {
    let input = crate::error::input_err;
    let file = ModelFile::read(&a.model).map_err(|e| input(anyhow!("model: {e}")))?;
    let ens = Ensemble::open(&a.data).map_err(|e| input(anyhow!("data: {e}")))?;
    let theory = ens.theory().map_err(|e| input(anyhow!("data: {e}")))?;
    let sigma = a.sigma.unwrap_or(file.schedule.sigma_min);
    if !(sigma > 0.0) {
        return Err(input(anyhow!("sigma: {sigma} is not a positive noise level")));
    }
    let n = a.n_configs.unwrap_or(ens.n).min(ens.n);
    if n < 16 {
        return Err(input(anyhow!("n-configs: {n} configurations are too few for a fit with errors (at least 16)")));
    }
    let lat = ens.lattice;
    let configs = ens.read_configs(0, n)?;
    let chain: Option<Vec<usize>> =
        if ens.has("chain") { Some(ens.read_i64("chain")?[..n].iter().map(|&c| c as usize).collect()) } else { None };
    let s = fit_action::learnt_actions(&file, &configs, lat, sigma)?;
    let x: Vec<_> = configs.chunks(lat.volume()).map(|c| fit_action::operators(c, lat)).collect();
    let f = fit_action::fit(&s, &x, lat.volume(), chain.as_deref(), a.bin_size.max(1));
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
        m.insert("n_configs".into(), json!(f.n_configs));
        m.insert("n_bins".into(), json!(f.n_bins));
        m.insert("parametrisation".into(), json!(theory.name()));
        m.insert("ensemble".into(), json!(theory.describe()));
        println!("{}", serde_json::to_string_pretty(&Value::Object(m))?);
        return Ok(());
    }
    println!(
        "fit-action: {} on {} ({} configurations, {lat}), S_theta(phi, sigma = {sigma:.3e}) up to a constant",
        a.model.display(),
        a.data.display(),
        f.n_configs
    );
    println!("  ensemble      {} ({})", theory.describe(), theory.name());
    for (k, v, e) in &couplings {
        println!("  {k:<13} {v:.5} ± {e:.5}");
    }
    for (k, (v, e)) in OPERATORS.iter().zip(&f.coefficients).skip(3) {
        println!("  {k:<13} {v:.5} ± {e:.5}   (not in the theory: consistent with 0 if learnt exactly)");
    }
    println!(
        "  residual      rms {:.4} against std(S) {:.4} ({:.2} % unexplained), {} jackknife bins",
        f.residual_rms,
        f.action_std,
        100.0 * f.residual_rms / f.action_std.max(1e-300),
        f.n_bins
    );
    Ok(())
}
