//! Command-line interface: `latdiff <command>`.

pub mod analyze;
pub mod bench;
pub mod clean;
pub mod fit_action;
pub mod help;
pub mod hmc;
pub mod info;
pub mod sample;
pub mod train;

use crate::backend::DeviceRequest;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "latdiff", version = crate::VERSION, about = "Lattice field theory ensembles: HMC, score-based diffusion training and exact sampling")]
pub struct Cli {
    /// Compute device: auto (CUDA when usable, else CPU), cpu, cuda.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub device: DeviceRequest,
    /// Worker threads per rank (default: all cores available to the rank).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate an ensemble (φ⁴, or U(1) with --theory u1) with Hybrid Monte Carlo (MPI-parallel over chains).
    #[command(allow_negative_numbers = true)]
    Hmc(crate::config::HmcOptions),
    /// Train a score network on an ensemble (denoising score matching, MPI data-parallel).
    #[command(allow_negative_numbers = true)]
    Train(crate::config::TrainOptions),
    /// Generate an ensemble with a trained (or analytic) score model, with exact weights.
    #[command(allow_negative_numbers = true)]
    Sample(crate::config::SampleOptions),
    /// Describe an HDF5 file written by latdiff in physics terms.
    Info(info::InfoArgs),
    /// Measure throughput (HMC site-updates/s, ...).
    Bench(bench::BenchArgs),
    /// Observables with errors (jackknife, τ_int, reweighting) of one or more ensembles, compared.
    Analyze(analyze::AnalyzeArgs),
    /// Fit an action-form model's learnt action on an ensemble in an operator basis: the couplings (κ, λ, ...) with jackknife errors.
    FitAction(fit_action::FitActionArgs),
    /// List latdiff's stale temporaries and lock files under a directory (by host and PID); --remove deletes them.
    Clean(clean::CleanArgs),
}

// Bad input is raised by every layer, so its type lives at the bottom (`crate::error`).
pub use crate::error::{input_err, InputError};

pub fn main() -> i32 {
    let cli = match help::parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 };
            }
            // Before MPI: every rank of a launch has the same command line; one speaks.
            if crate::dist::launcher::reports_early_errors() {
                eprintln!("{}", help::one_line(&e));
            }
            return 2;
        }
    };
    if let Some(n) = cli.threads {
        if n == 0 {
            if crate::dist::launcher::reports_early_errors() {
                eprintln!("error: threads: must be at least 1");
            }
            return 2;
        }
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    match cli.command {
        Command::Hmc(opts) => hmc::run(&opts, cli.device, cli.threads),
        Command::Train(opts) => train::run(&opts, cli.device, cli.threads),
        Command::Sample(opts) => sample::run(&opts, cli.device, cli.threads),
        Command::Info(a) => report(info::run(&a), 0),
        Command::Bench(a) => report(bench::run(&a, cli.device), 0),
        Command::Analyze(a) => report(analyze::run(&a), 0),
        Command::Clean(a) => report(clean::run(&a), 0),
        Command::FitAction(a) => report(fit_action::run(&a), 0),
    }
}

/// Prints an error on one line (rank 0 only for bad input) and returns the exit code.
pub fn report(r: anyhow::Result<()>, rank: usize) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            if let Some(ie) = e.downcast_ref::<InputError>() {
                if rank == 0 {
                    eprintln!("error: {ie}");
                }
                2
            } else {
                // HDF5's failures span lines; a full disk is named as such.
                let line = crate::io::full::one_line(&e);
                if rank == 0 {
                    eprintln!("error: {line}");
                } else {
                    eprintln!("error [rank {rank}]: {line}");
                }
                1
            }
        }
    }
}

/// The output a command writes, as its frame locks it: the path, and whether an existing
/// file there may be replaced (`--force`, or a training checkpoint being resumed).
pub struct Output {
    pub path: std::path::PathBuf,
    pub replace: bool,
}

/// The `--config` file is an input too: an output over it would replace it mid-run.
fn check_config_not_out(config: &Option<std::path::PathBuf>, out: &std::path::Path) -> anyhow::Result<()> {
    config.as_deref().map_or(Ok(()), |c| crate::io::check_not_input(out, c, "config file"))
}

/// The frame shared by the MPI commands: configuration checked before MPI starts and
/// before any file exists, then MPI, the output's lock, thread share, signal flag and
/// device, then `body`. Bad input is found identically on every rank and reported once
/// (exit 2); any other failure may be one rank's alone, so it ends the whole job rather
/// than leave the other ranks waiting in a collective.
pub fn run_distributed<C: serde::Serialize>(
    cfg: anyhow::Result<C>,
    device: DeviceRequest,
    threads: Option<usize>,
    output: impl FnOnce(&C) -> Output,
    cuda_path: impl FnOnce(&C) -> Result<(), &'static str>,
    body: impl FnOnce(&C, &crate::dist::Comm, &crate::util::StopFlag, crate::backend::Device) -> anyhow::Result<()>,
) -> i32 {
    // First, before MPI's start-up (about 0.3 s): a SIGTERM from then on is the documented
    // clean stop (checkpoint, exit 0), not the default death with 143.
    let stop = crate::util::StopFlag::install();
    let cfg = cfg.map_err(input_err);
    // Not started as one of several ranks: refuse at once, without starting MPI.
    if cfg.is_err() && crate::dist::launcher::size() <= 1 {
        return report(cfg.map(|_| ()), 0);
    }
    let comm = crate::dist::Comm::init();
    let cfg = match agree_on_config(cfg, &comm) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = same_config_on_every_rank(&cfg, &comm) {
        return code;
    }
    let out = output(&cfg);
    // Held until `body` has renamed its output into place; dropped on every return below.
    let _lock = match lock_output(&out, &comm) {
        Ok(l) => l,
        Err(e) => return report(Err(e), comm.rank()),
    };
    if comm.is_root() {
        crate::io::publish::guard_output(&out.path, out.replace);
    }
    comm.configure_threads(threads);
    let dev = match crate::backend::select(device, cuda_path(&cfg), comm.node_local_rank(), comm.is_root()) {
        Ok(d) => d,
        Err(e) => return report(Err(input_err(e)), comm.rank()),
    };
    let code = report(body(&cfg, &comm, &stop, dev), comm.rank());
    if code == 1 && comm.size() > 1 {
        comm.abort(code);
    }
    code
}

/// The ranks agree whether the configuration was refused (collective): the refusal is
/// printed once, by rank 0 (naming the rank when rank 0 itself was fine), and every rank
/// exits with 2 without MPI_Abort (mpirun still prints its exit-status banner; `mpirun -q` hides it).
fn agree_on_config<C>(cfg: anyhow::Result<C>, comm: &crate::dist::Comm) -> Result<C, i32> {
    let mine = cfg.as_ref().err().map(|e| format!("{e:#}"));
    match comm.first_failure(mine.as_deref()) {
        None => cfg.map_err(|_| 2),
        Some((rank, text)) => {
            match (comm.is_root(), rank) {
                (true, 0) => eprintln!("error: {text}"),
                (true, r) => eprintln!("error [rank {r}]: {text}"),
                (false, _) => {}
            }
            Err(2)
        }
    }
}

/// Every rank must run the same resolved configuration: an MPMD launch (`mpirun -n 1
/// latdiff hmc --kappa 0.27 : -n 1 latdiff hmc --kappa 0.2`) would otherwise merge different
/// physics into one file under rank 0's labels, or fail in a collective with mismatched
/// sizes. Rank 0 gathers every rank's configuration (as the outputs record it) and names the
/// first rank and key that differ; every rank exits 2, before the lock and any output.
fn same_config_on_every_rank<C: serde::Serialize>(cfg: &C, comm: &crate::dist::Comm) -> Result<(), i32> {
    if comm.size() <= 1 {
        return Ok(());
    }
    let mine = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    let text = mine.to_string().into_bytes();
    let mut lengths = vec![0u64; comm.size()];
    lengths[comm.rank()] = text.len() as u64;
    comm.all_reduce_sum(&mut lengths);
    let counts: Vec<usize> = lengths.iter().map(|&l| l as usize).collect();
    let all = comm.gather(&text, &counts);
    let mut refusal = Vec::new();
    if comm.is_root() {
        let mut start = 0;
        for (rank, n) in counts.iter().enumerate() {
            let theirs: serde_json::Value = serde_json::from_slice(&all[start..start + n]).unwrap_or_default();
            start += n;
            if let Some(diff) = first_difference(&mine, &theirs) {
                refusal = format!(
                    "rank {rank} was given another configuration than rank 0: {diff} (every rank of a launch must run the same settings)"
                )
                .into_bytes();
                break;
            }
        }
    }
    comm.broadcast_bytes(&mut refusal);
    if refusal.is_empty() {
        return Ok(());
    }
    if comm.is_root() {
        eprintln!("error: {}", String::from_utf8_lossy(&refusal));
    }
    Err(2)
}

/// "kappa = 0.2 (rank 0: 0.27)" for the first key (in the configuration's order) whose
/// values differ; `None` when they agree.
fn first_difference(reference: &serde_json::Value, other: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let show = |v: Option<&Value>| v.map_or("(none)".to_string(), Value::to_string);
    match (reference, other) {
        (Value::Object(a), Value::Object(b)) => a
            .keys()
            .chain(b.keys().filter(|k| !a.contains_key(*k)))
            .find(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{k} = {} (rank 0: {})", show(b.get(k)), show(a.get(k)))),
        (a, b) => (a != b).then(|| format!("{} (rank 0: {})", b, a)),
    }
}

/// Rank 0 takes the output's lock (`io::lock`); every rank learns the outcome, so a refusal
/// is bad input on all of them and none is left waiting in a collective.
fn lock_output(out: &Output, comm: &crate::dist::Comm) -> anyhow::Result<Option<crate::io::OutputLock>> {
    let mut refusal = Vec::new();
    let lock = if comm.is_root() {
        // The output is checked again under the lock: a run that held it until a moment
        // ago may have renamed its file into place since this run's first check.
        match crate::io::OutputLock::acquire(&out.path)
            .and_then(|l| crate::io::check_output_path(&out.path, out.replace).map(|()| l))
        {
            Ok(l) => Some(l),
            Err(e) => {
                refusal = crate::io::full::one_line(&e).into_bytes();
                None
            }
        }
    } else {
        None
    };
    comm.broadcast_bytes(&mut refusal);
    if !refusal.is_empty() {
        return Err(input_err(anyhow::anyhow!("{}", String::from_utf8_lossy(&refusal))));
    }
    Ok(lock)
}
