//! `latdiff info FILE`: what a latdiff file holds, in physics terms.

use crate::io::{AttrValue, Ensemble};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// HDF5 file written by latdiff.
    pub file: PathBuf,
    /// Also print the stored run configuration (TOML).
    #[arg(long)]
    pub config: bool,
}

pub fn run(a: &InfoArgs) -> Result<()> {
    crate::io::check_regular_input(&a.file, "file").map_err(super::input_err)?;
    if crate::io::ensemble::is_hdf5(&a.file) {
        if let Ok(m) = crate::diffusion::net::model_file::ModelFile::read(&a.file) {
            return model_info(a, &m);
        }
        if let Some(f) = hmc_checkpoint(&a.file) {
            return checkpoint_info(a, &f);
        }
    }
    let e = Ensemble::open(&a.file).map_err(super::input_err)?;
    let s = |k: &str| e.attr_str(k).unwrap_or_else(|| "?".into());
    let f = |k: &str| e.attr(k).map(|v| v.to_string()).unwrap_or_else(|_| "?".into());
    println!("{}", a.file.display());
    let theory = s("theory");
    // A file from elsewhere may lack its theory's attributes: say which (info describes, it
    // does not refuse).
    let couplings = e.couplings().map(|c| c.describe()).unwrap_or_else(|err| format!("{err:#}"));
    println!("  theory        {theory} ({couplings})");
    println!("  lattice       {} (L_t x L_x), volume {}", e.lattice, e.lattice.volume());
    println!("  configs       {}", e.n);
    println!("  generator     {}", s("generator"));
    if s("generator") == "hmc" {
        println!(
            "  hmc           {} chains, {} integrator, {} MD steps, tau = {}, n_therm = {}, n_sep = {}, start {}",
            f("n_chains"),
            s("integrator"),
            f("n_md"),
            f("tau"),
            f("n_therm"),
            f("n_sep"),
            s("start")
        );
        println!("  update mix    {}", s("update_mix"));
        // A file from elsewhere may lack these: "?" rather than a NaN that reads as a failure.
        let sig = |k: &str| e.attr_f64(k).filter(|v| v.is_finite()).map_or("?".into(), |v| crate::util::fmt_sig(v, 3));
        let exp_dh =
            match (e.attr_f64("exp_minus_delta_h").filter(|v| v.is_finite()), e.attr_f64("exp_minus_delta_h_err")) {
                (Some(v), err) => crate::util::fmt_pm(v, err.unwrap_or(f64::NAN)),
                (None, _) => "?".into(),
            };
        println!("  acceptance    {}   <exp(-dH)> = {exp_dh}   rms dH = {}", sig("acceptance"), sig("delta_h_rms"));
        let report: Option<crate::mc::therm::ThermReport> =
            e.attr_str("therm_report").and_then(|t| serde_json::from_str(&t).ok());
        let verdict = match (e.attr_f64("therm_ok") == Some(1.0), report) {
            (true, _) => "yes (drift check passed)".to_string(),
            (false, Some(r)) if !r.failures().is_empty() => format!("NO: {}", r.failures().join("; ")),
            (false, _) => "NO: see therm_report".to_string(),
        };
        println!("  thermalised   {verdict}");
    }
    if s("generator") == "diffusion" {
        diffusion_info(&e);
    }
    println!("  seed          {}   ranks {}   latdiff {}", f("seed"), f("n_ranks"), s("latdiff_version"));
    // Quick look at the action density, streamed in chunks.
    if e.has("action") {
        let act = e.read_f64("action")?;
        let v = e.lattice.volume() as f64;
        // A damaged column is named, not averaged into NaN.
        if let Some(i) = act.iter().position(|a| !a.is_finite()) {
            let n_bad = act.iter().filter(|a| !a.is_finite()).count();
            println!("  S/V           /action holds {n_bad} non-finite value(s), the first at configuration {i}");
        } else {
            let n = act.len().max(1) as f64;
            let m = act.iter().sum::<f64>() / n / v;
            let sd = (act.iter().map(|a| (a / v - m).powi(2)).sum::<f64>() / n).sqrt();
            println!("  S/V           mean {m:.6}, spread {sd:.6} (naive; see `latdiff analyze` for errors)");
        }
    }
    let mut names = e.file.member_names()?;
    names.sort();
    let shapes: Vec<String> = names
        .iter()
        .map(|n| e.file.dataset(n).map(|d| format!("/{n} {:?}", d.shape())).unwrap_or_else(|_| format!("/{n}")))
        .collect();
    println!("  datasets      {}", shapes.join(", "));
    if a.config {
        if let Ok(AttrValue::Str(c)) = e.attr("config") {
            println!("\n# stored configuration\n{c}");
        }
    }
    Ok(())
}

fn model_info(a: &InfoArgs, m: &crate::diffusion::net::model_file::ModelFile) -> Result<()> {
    let s = |k: &str| m.attr(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!("{}", a.file.display());
    println!("  kind          score model (latdiff train)");
    let theory = m.theory().map(|p| format!("phi4 ({}, {})", p.name(), p.describe())).unwrap_or_else(|e| e.to_string());
    let hash = m.attr("data_hash").and_then(|v| v.as_str().map(|h| format!(" ({h})"))).unwrap_or_default();
    println!("  trained on    {} from {}{hash}", theory, s("data"));
    let form =
        crate::diffusion::net::model::model_form(m).map(|f| f.name().to_string()).unwrap_or_else(|e| e.to_string());
    if let Ok(Some(act)) = m.action_arch() {
        return action_model_info(a, m, &act);
    }
    println!("  lattice       {} (runs on any multiple of {} per direction)", m.train_lattice, m.arch.stride());
    let reach = match m.arch.receptive_radius() {
        Some(r) => format!("local, receptive radius {r}"),
        None => "GroupNorm: sees the whole lattice".into(),
    };
    println!(
        "  network       preset {}, {form} score, channels {:?}, {} blocks/level, {} parameters ({reach})",
        s("preset"),
        m.arch.channels,
        m.arch.blocks_per_level,
        m.params.len()
    );
    if form == "physics" {
        let zm = match m.magnetisation.len() {
            0 => "Gaussian zero mode (file older than the magnetisation marginal)".to_string(),
            n => format!("zero mode from {n} training magnetisations on {}", m.train_lattice),
        };
        println!("  prior         action + G(p), {zm}");
    }
    print_diffusion_and_training(m);
    if let Some(c) = m.attr("val_chains") {
        println!("  held out      chains {c} (whole chains)");
    }
    print_provenance(a, m);
    Ok(())
}

/// A model's noise schedule, training progress and validation figures (either form).
fn print_diffusion_and_training(m: &crate::diffusion::net::model_file::ModelFile) {
    let s = |k: &str| m.attr(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!(
        "  diffusion     VE SDE, sigma in [{:.3e}, {:.3e}], sigma_data {:.4}",
        m.schedule.sigma_min, m.schedule.sigma_max, m.arch.sigma_data
    );
    println!(
        "  training      step {} of {} (batch {}, {} rank(s)), finished {}",
        m.step,
        s("steps"),
        s("batch"),
        s("n_ranks"),
        s("finished")
    );
    if let Some(v) = m.attr("val_loss") {
        println!("  validation    loss {v} (EMA {}), per sigma band {}", s("val_loss_ema"), s("val_loss_bands"));
        println!("  score check   |s(phi, sigma_min) + dS/dphi| / |dS/dphi| = {}", s("score_force_rel_dev"));
    }
}

/// A model's seed and version, and with `--config` its stored configuration.
fn print_provenance(a: &InfoArgs, m: &crate::diffusion::net::model_file::ModelFile) {
    let s = |k: &str| m.attr(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!("  seed          {}   latdiff {}", s("seed"), s("latdiff_version"));
    if a.config {
        if let Some(AttrValue::Str(c)) = m.attr("config") {
            println!("\n# stored configuration\n{c}");
        }
    }
}

/// An action-form model: the learnt scalar action's network instead of the U-Net's.
fn action_model_info(
    a: &InfoArgs,
    m: &crate::diffusion::net::model_file::ModelFile,
    act: &crate::nn::ActionArch,
) -> Result<()> {
    let s = |k: &str| m.attr(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!("  lattice       {} (runs on any lattice: S is a sum of local terms)", m.train_lattice);
    println!(
        "  network       preset {}, action score (s = -dS/dphi), {} periodic 3x3 layers of {} channels, {} parameters (local, receptive radius {}){}",
        s("preset"),
        act.layers,
        act.channels,
        m.params.len(),
        act.layers,
        if act.operators {
            format!(", plus explicit terms c_k(sigma) O_k ({})", crate::nn::local_ops::OP_NAMES.join(", "))
        } else {
            String::new()
        }
    );
    print_diffusion_and_training(m);
    print_provenance(a, m);
    Ok(())
}

/// A sampled ensemble: the model and sampler it came from, and how far its weights can be
/// trusted (ESS), as `latdiff sample` recorded them.
fn diffusion_info(e: &Ensemble) {
    let s = |k: &str| e.attr_str(k).unwrap_or_else(|| "?".into());
    let f = |k: &str| e.attr(k).map(|v| v.to_string()).unwrap_or_else(|_| "?".into());
    let g = |k: &str| e.attr_f64(k).map_or("?".to_string(), |x| format!("{x:.4e}"));
    println!("  model         {} ({}; model theory {})", s("model"), s("model_description"), s("model_theory"));
    println!(
        "  sampler       {}, {} kernel, {} steps, sigma in [{}, {}], hmc_refine {}",
        s("sampler"),
        s("kernel"),
        f("steps"),
        g("sigma_min"),
        g("sigma_max"),
        f("hmc_refine")
    );
    if let Some(ess) = e.attr_f64("ess") {
        let n = e.n.max(1) as f64;
        let trust = if ess < 50.0 { "  <-- fewer than 50: reweighted results unreliable" } else { "" };
        let std = e.attr_f64("log_weight_std").map_or("?".to_string(), |x| format!("{x:.3}"));
        println!("  weights       ESS {ess:.1} of {} (ESS/N {:.4}), std(log w) {std}{trust}", e.n, ess / n);
    } else {
        println!("  weights       none (the {} sampler has no path weights)", s("sampler"));
    }
    if e.attr_f64("metropolis") == Some(1.0) {
        println!(
            "  metropolis    independence chain, acceptance {}",
            e.attr_f64("acceptance").map_or("?".into(), |a| crate::util::fmt_sig(a, 3))
        );
    }
    if e.attr_f64("stopped_by_signal") == Some(1.0) {
        println!("  stopped       by a signal after {} of {} requested configurations", e.n, f("n_requested"));
    }
}

/// The file if it is an HMC checkpoint (`OUT.ckpt`).
fn hmc_checkpoint(path: &std::path::Path) -> Option<hdf5::File> {
    let f = crate::io::h5_open(path).ok()?;
    let kind = crate::io::attrs::read_attr(&f, "kind").ok()?;
    (kind.as_str() == Some("latdiff-hmc-checkpoint")).then_some(f)
}

fn checkpoint_info(a: &InfoArgs, f: &hdf5::File) -> Result<()> {
    let attr = |k: &str| crate::io::attrs::read_attr(f, k).ok();
    let s = |k: &str| attr(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let config = attr("config").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let cfg: Option<crate::config::HmcConfig> = toml::from_str(&config).ok();
    println!("{}", a.file.display());
    println!("  kind          HMC checkpoint (latdiff hmc; continue with --resume)");
    if let Some(c) = &cfg {
        let theory = c.couplings().map(|k| format!("{} {}", k.name(), k.describe())).unwrap_or_else(|e| e.to_string());
        println!("  run           {theory} on {}, {} chains, output {}", c.lattice(), c.n_chains, c.out.display());
    }
    let at = match attr("phase").and_then(|v| v.as_str().map(str::to_string)).as_deref() {
        Some("therm") => format!("thermalisation (target {} trajectories per chain)", s("therm_target")),
        Some("production") => format!(
            "production, {} rounds done, {} of {} configurations written",
            s("rounds_done"),
            s("rows_written"),
            cfg.as_ref().map_or("?".to_string(), |c| c.n_configs.to_string())
        ),
        _ => "unknown phase".into(),
    };
    println!("  stopped in    {at}");
    let secs = attr("seconds").map(|v| v.to_string().parse::<f64>().unwrap_or(f64::NAN)).unwrap_or(f64::NAN);
    println!("  time so far   {secs:.1} s on {} rank(s)   latdiff {}", s("n_ranks"), s("latdiff_version"));
    if a.config {
        println!("\n# stored configuration\n{config}");
    }
    Ok(())
}
