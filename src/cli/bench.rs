//! `latdiff bench`: throughput figures for BENCHMARKS.md.

use crate::backend::{self, Device, DeviceRequest};
use crate::config::TheoryName;
use crate::mc::{bench::engine_throughput, Integrator};
use anyhow::Result;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchWhat {
    /// HMC site-updates per second at each lattice size.
    Hmc {
        /// Lattice sizes (L×L).
        #[arg(long, value_delimiter = ',', default_value = "32,128")]
        lattice: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// MD steps per trajectory.
        #[arg(long, default_value_t = 10)]
        n_md: usize,
        /// Theory: phi4 (κ = 0.27, λ = 0.022), u1 or su2 (β = 3; rates count stored values; su2 on the CPU only).
        #[arg(long, value_enum, default_value = "phi4")]
        theory: crate::config::TheoryName,
    },
    /// Training samples/s and GEMM GFLOP/s per preset (run under mpirun for several ranks).
    Train {
        /// Network presets to measure.
        #[arg(long, value_delimiter = ',', default_value = "tiny,small,dmassq")]
        preset: Vec<String>,
        /// Lattice size (L×L).
        #[arg(long, default_value_t = 32)]
        lattice: usize,
        /// Global batch (split over ranks).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Sampling configurations/s and network evaluations/s per preset and lattice size.
    Sample {
        /// Network presets to measure.
        #[arg(long, value_delimiter = ',', default_value = "tiny,small,dmassq")]
        preset: Vec<String>,
        /// Lattice sizes (L×L).
        #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
        lattice: Vec<usize>,
        /// Reverse steps per sample.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Network evaluations/s (forward only, the sampler's cost) at a fixed batch: the figure
    /// `jobscripts/bench-vs-pytorch.sh` sets beside PyTorch's.
    Forward {
        /// Network presets to measure.
        #[arg(long, value_delimiter = ',', default_value = "tiny,small,dmassq")]
        preset: Vec<String>,
        /// Lattice size (L×L).
        #[arg(long, default_value_t = 32)]
        lattice: usize,
        /// Configurations per evaluation.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// All of the above with their default sizes, as one report.
    All {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The lattice and step bounds of the run commands (README, Limits): a benchmark of an
/// absurd size must be refused as fast as a run of one.
fn check_sizes(what: &BenchWhat) -> Result<()> {
    let (lattices, steps): (Vec<usize>, usize) = match what {
        BenchWhat::Hmc { lattice, n_md, .. } => (lattice.clone(), *n_md),
        BenchWhat::Train { lattice, .. } | BenchWhat::Forward { lattice, .. } => (vec![*lattice], 1),
        BenchWhat::Sample { lattice, steps, .. } => (lattice.clone(), *steps),
        BenchWhat::All { .. } => (vec![], 1),
    };
    for l in lattices {
        crate::lattice::Lattice::square(l).validate().map_err(|e| super::input_err(anyhow::anyhow!(e)))?;
    }
    crate::limits::bound("steps", steps as u64, crate::limits::MAX_STEPS).map_err(super::input_err)
}

pub fn run(a: &BenchArgs, device: DeviceRequest) -> Result<()> {
    check_sizes(&a.what)?;
    let comm = crate::dist::Comm::init();
    let dev = backend::select(device, Ok(()), comm.node_local_rank(), !a.json).map_err(super::input_err)?;
    backend::announce();
    comm.configure_threads(None);
    match &a.what {
        BenchWhat::Train { preset, lattice, batch, seconds } => {
            let rows = train_rows(dev, preset, *lattice, *batch, *seconds, &comm)?;
            if comm.is_root() {
                print_rows(a.json, "train", &rows)?;
            }
        }
        BenchWhat::Forward { preset, lattice, batch, seconds } => {
            let rows = forward_rows(dev, preset, *lattice, *batch, *seconds)?;
            print_rows(a.json, "forward", &rows)?;
        }
        BenchWhat::Sample { preset, lattice, steps, seconds } => {
            let rows = sample_rows(dev, preset, lattice, *steps, *seconds)?;
            if comm.is_root() {
                print_rows(a.json, "sample", &rows)?;
            }
        }
        BenchWhat::All { seconds } => bench_all(a.json, dev, *seconds, &comm)?,
        BenchWhat::Hmc { lattice, seconds, n_md, theory } => {
            let rows = hmc_rows(dev, *theory, lattice, *n_md, *seconds)?;
            print_hmc(a.json, &rows)?;
        }
    }
    Ok(())
}

/// `bench all`: HMC, training and sampling at their default sizes, one report from the root.
fn bench_all(json: bool, dev: Device, seconds: f64, comm: &crate::dist::Comm) -> Result<()> {
    let hmc: Vec<serde_json::Value> = [32usize, 128]
        .iter()
        .map(|&l| {
            hmc_row(dev, TheoryName::Phi4, l, Integrator::Leapfrog, 10, seconds)
                .map(|r| serde_json::to_value(r).unwrap())
        })
        .collect::<Result<_>>()?;
    let presets: Vec<String> = ["tiny", "small", "dmassq"].iter().map(|s| s.to_string()).collect();
    let train = train_rows(dev, &presets, 32, 64, seconds, comm)?;
    let sample = sample_rows(dev, &presets, &[32, 64, 128], 10, seconds)?;
    if !comm.is_root() {
        return Ok(());
    }
    if json {
        let obj = serde_json::json!({"hmc": hmc, "train": train, "sample": sample, "ranks": comm.size(),
            "threads": rayon::current_num_threads(), "latdiff_version": crate::VERSION});
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        println!("## HMC\n");
        print_rows(false, "hmc", &hmc)?;
        println!("\n## Training\n");
        print_rows(false, "train", &train)?;
        println!("\n## Sampling\n");
        print_rows(false, "sample", &sample)?;
    }
    Ok(())
}

/// `bench hmc`: both integrators at every lattice size.
fn hmc_rows(
    dev: Device,
    theory: TheoryName,
    lattice: &[usize],
    n_md: usize,
    seconds: f64,
) -> Result<Vec<crate::mc::bench::HmcBench>> {
    let mut rows = Vec::new();
    for &l in lattice {
        if l < 2 {
            return Err(super::input_err(anyhow::anyhow!("lattice: {l} is too small")));
        }
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            rows.push(hmc_row(dev, theory, l, integ, n_md, seconds)?);
        }
    }
    Ok(rows)
}

/// The HMC report: JSON with the leapfrog rate per L, or a table (and, on a GPU, the
/// modelled DRAM traffic against the card's peak).
fn print_hmc(json: bool, rows: &[crate::mc::bench::HmcBench]) -> Result<()> {
    if json {
        let mut by_l = serde_json::Map::new();
        for r in rows {
            if r.integrator == "leapfrog" {
                by_l.insert(r.lattice.to_string(), serde_json::json!(r.site_updates_per_s));
            }
        }
        let obj = serde_json::json!({
            "bench": "hmc",
            "theory": rows.first().map_or("phi4".to_string(), |r| r.theory.clone()),
            "device": rows.first().map_or("cpu".to_string(), |r| r.device.clone()),
            "threads": rayon::current_num_threads(),
            "site_updates_per_s": by_l,
            "runs": rows,
            "latdiff_version": crate::VERSION,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
        return Ok(());
    }
    println!(
        "{:>5} {:>7} {:>10} {:>5} {:>8} {:>16} {:>18}",
        "L", "chains", "integrator", "n_md", "threads", "site-updates/s", "force-site-evals/s"
    );
    for r in rows {
        println!(
            "{:>5} {:>7} {:>10} {:>5} {:>8} {:>16.3e} {:>18.3e}",
            r.lattice, r.chains, r.integrator, r.n_md, r.threads, r.site_updates_per_s, r.force_site_evals_per_s
        );
    }
    if let Some(r) = rows.first().filter(|r| r.device != "cpu") {
        println!("device: {}", r.device);
        for r in rows {
            if let (Some(b), Some(f)) = (r.bytes_per_s, r.bandwidth_fraction) {
                println!(
                    "L={:<4} {:>9}: {:.3e} B/s modelled DRAM traffic = {:.1}% of peak",
                    r.lattice,
                    r.integrator,
                    b,
                    100.0 * f
                );
            }
        }
    }
    Ok(())
}

/// Enough chains to keep every thread busy, similar work per size.
fn cpu_chains(l: usize) -> usize {
    (rayon::current_num_threads() * 4).max((64 * 32 * 32 / (l * l)).max(1))
}

/// HMC throughput of `theory` at L×L with as many chains as keep the device busy.
fn hmc_row(
    dev: Device,
    theory: TheoryName,
    l: usize,
    integ: Integrator,
    n_md: usize,
    seconds: f64,
) -> Result<crate::mc::bench::HmcBench> {
    let chains = match dev {
        Device::Cpu => cpu_chains(l),
        // ~16 M sites in flight saturate a GPU's memory system.
        Device::Cuda { .. } => (1 << 24) / (l * l).max(1),
    };
    engine_throughput(dev, theory, l, chains, integ, n_md, seconds)
}

/// Markdown table (or JSON) of homogeneous rows.
fn print_rows(json: bool, what: &str, rows: &[serde_json::Value]) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "bench": what, "runs": rows }))?);
        return Ok(());
    }
    let Some(first) = rows.first().and_then(|r| r.as_object()) else { return Ok(()) };
    let keys: Vec<&String> = first.keys().collect();
    println!("| {} |", keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|{}", keys.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| match &r[k.as_str()] {
                serde_json::Value::Number(n) if n.is_f64() => {
                    let x = n.as_f64().unwrap();
                    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-2) {
                        format!("{x:.3e}")
                    } else {
                        format!("{x:.3}")
                    }
                }
                v => v.to_string().trim_matches('"').to_string(),
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    }
    Ok(())
}

/// Training steps (DSM forward + backward + one all-reduce + AdamW) on random data, through
/// the same engine as `latdiff train`.
fn train_rows(
    dev: Device,
    presets: &[String],
    l: usize,
    batch: usize,
    seconds: f64,
    comm: &crate::dist::Comm,
) -> Result<Vec<serde_json::Value>> {
    use crate::diffusion::objective::SigmaSchedule;
    use crate::lattice::Lattice;
    use crate::nn::optim::AdamWConfig;
    use crate::nn::{Arch, Network};
    use rand::RngExt;
    let nr = comm.size();
    if batch % nr != 0 {
        return Err(super::input_err(anyhow::anyhow!("batch: {batch} cannot be split evenly over {nr} ranks")));
    }
    let b = batch / nr;
    let lat = Lattice::square(l);
    let mut rows = Vec::new();
    for name in presets {
        let arch = Arch::preset(name).ok_or_else(|| super::input_err(anyhow::anyhow!("preset: unknown '{name}'")))?;
        if l % arch.stride() != 0 {
            return Err(super::input_err(anyhow::anyhow!("lattice: {l} not divisible by {}", arch.stride())));
        }
        let net = Network::new(arch.clone());
        let (fwd, bwd) = net.gemm_flops(b, l, l);
        let params = net.init_params::<f32>(1);
        let np = params.len();
        let mut eng = crate::diffusion::net::build::unet(dev, arch, &params, Some((AdamWConfig::default(), None)))?;
        let mut grads = vec![0.0f32; np];
        let mut rng = crate::rng::stream(7, crate::rng::Domain::Misc, comm.rank() as u64);
        let n = b * l * l;
        let phi0: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0f32)).collect();
        let z: Vec<f32> = (0..n).map(|_| rng.random_range(-1.7..1.7f32)).collect();
        let sched = SigmaSchedule { sigma_min: 0.01, sigma_max: 10.0, t_eps: 1e-5 };
        let sigma: Vec<f32> = (0..b).map(|_| sched.sample(&mut rng) as f32).collect();
        // The plain form's loss inputs: the network's cost does not depend on the form.
        let (x, scale, offset) = crate::diffusion::objective::plain_dsm_inputs(&phi0, &z, &sigma);
        let mut per = vec![0.0f32; b];
        let (mut t_ar, mut steps) = (0.0, 0u64);
        let mut step = |grads: &mut Vec<f32>, t_ar: &mut f64| -> Result<()> {
            eng.loss_and_grad(lat, &x, &sigma, &scale, &offset, &mut per, grads)?;
            let t = std::time::Instant::now();
            comm.all_reduce_sum(grads);
            *t_ar += t.elapsed().as_secs_f64();
            eng.update(grads)?;
            Ok(())
        };
        step(&mut grads, &mut t_ar)?;
        t_ar = 0.0;
        let t0 = std::time::Instant::now();
        // Every rank must take the same number of steps (the all-reduce): rank 0 decides.
        loop {
            step(&mut grads, &mut t_ar)?;
            steps += 1;
            let mut go = [f64::from(
                u8::from(t0.elapsed().as_secs_f64() < seconds && steps < 10_000) & u8::from(comm.is_root()),
            )];
            comm.all_reduce_sum(&mut go);
            if go[0] == 0.0 || steps >= 10_000 {
                break;
            }
        }
        let dt = t0.elapsed().as_secs_f64() / steps as f64;
        let flops = (fwd + bwd) * nr as f64;
        rows.push(serde_json::json!({
            "preset": name, "params": np, "lattice": l, "batch": batch, "ranks": nr,
            "device": eng.describe(),
            "threads_per_rank": rayon::current_num_threads(),
            "step_s": dt, "samples_per_s": batch as f64 / dt, "gflops": flops / dt * 1e-9,
            "allreduce_share": t_ar / (steps as f64 * dt),
        }));
    }
    Ok(rows)
}

/// The checked preset of a network benchmark at lattice `l`.
fn bench_arch(name: &str, l: usize) -> Result<crate::nn::Arch> {
    let arch =
        crate::nn::Arch::preset(name).ok_or_else(|| super::input_err(anyhow::anyhow!("preset: unknown '{name}'")))?;
    if l == 0 || l % arch.stride() != 0 {
        return Err(super::input_err(anyhow::anyhow!("lattice: {l} is not a positive multiple of {}", arch.stride())));
    }
    Ok(arch)
}

/// Forward passes (the raw network output, as sampling evaluates it) on random
/// inputs, through the same engine as `latdiff sample`.
fn forward_rows(
    dev: Device,
    presets: &[String],
    l: usize,
    batch: usize,
    seconds: f64,
) -> Result<Vec<serde_json::Value>> {
    use crate::diffusion::net::engine::Weights;
    use crate::lattice::Lattice;
    use crate::nn::Network;
    use rand::RngExt;
    if batch == 0 {
        return Err(super::input_err(anyhow::anyhow!("batch: must be positive")));
    }
    let archs = presets.iter().map(|name| bench_arch(name, l)).collect::<Result<Vec<_>>>()?;
    let lat = Lattice::square(l);
    let mut rows = Vec::new();
    for (name, arch) in presets.iter().zip(archs) {
        let net = Network::new(arch.clone());
        let (fwd, _) = net.gemm_flops(batch, l, l);
        let params = net.init_params::<f32>(1);
        let mut eng = crate::diffusion::net::build::unet(dev, arch, &params, None)?;
        let mut rng = crate::rng::stream(7, crate::rng::Domain::Misc, 0);
        let phi: Vec<f32> = (0..batch * l * l).map(|_| rng.random_range(-2.0..2.0f32)).collect();
        let sigma: Vec<f32> = (0..batch).map(|i| 0.01 * 1000f32.powf(i as f32 / batch as f32)).collect();
        let mut out = vec![0.0f32; phi.len()];
        eng.output(Weights::Current, lat, &phi, &sigma, &mut out)?;
        let (t0, mut n) = (std::time::Instant::now(), 0usize);
        while n == 0 || t0.elapsed().as_secs_f64() < seconds {
            eng.output(Weights::Current, lat, &phi, &sigma, &mut out)?;
            n += 1;
        }
        let dt = t0.elapsed().as_secs_f64() / n as f64;
        rows.push(serde_json::json!({
            "preset": name, "params": params.len(), "lattice": l, "batch": batch, "device": eng.describe(),
            "threads": rayon::current_num_threads(), "forward_s": dt,
            "network_evals_per_s": batch as f64 / dt, "gflops": fwd / dt * 1e-9,
        }));
    }
    Ok(rows)
}

/// Reverse-SDE sampling with randomly initialised networks (the cost does not depend on
/// the weights' values), through the same model as `latdiff sample`.
fn sample_rows(
    dev: Device,
    presets: &[String],
    lattices: &[usize],
    steps: usize,
    seconds: f64,
) -> Result<Vec<serde_json::Value>> {
    use crate::diffusion::form::ScoreForm;
    use crate::diffusion::generate::output::Timed;
    use crate::diffusion::net::model::{workspace_bytes_per_config, NetworkScoreModel};
    use crate::diffusion::sample::sampler::{sample_batch, SamplerKind, SamplerSettings};
    use crate::diffusion::ScoreModel;
    use crate::lattice::Lattice;
    use crate::nn::{Arch, Network};
    use crate::theory::Parametrisation;
    // Every (preset, lattice) is checked before the first one runs.
    for name in presets {
        let arch = Arch::preset(name).ok_or_else(|| super::input_err(anyhow::anyhow!("preset: unknown '{name}'")))?;
        if let Some(&l) = lattices.iter().find(|&&l| l == 0 || l % arch.stride() != 0) {
            let e = anyhow::anyhow!("lattice: {l} is not a positive multiple of {} (preset '{name}')", arch.stride());
            return Err(super::input_err(e));
        }
    }
    let mut rows = Vec::new();
    for name in presets {
        let arch = Arch::preset(name).ok_or_else(|| super::input_err(anyhow::anyhow!("preset: unknown '{name}'")))?;
        for &l in lattices {
            let lat = Lattice::square(l);
            let net = Network::new(arch.clone());
            let params = net.init_params::<f32>(1);
            let per = workspace_bytes_per_config(&arch, lat) + 16 * 8 * l * l;
            let batch = ((2048usize << 20) / per).clamp(1, 64);
            // A free-field-like propagator for the matched kernel: its values do not change the cost.
            let g = (0..lat.volume()).map(|i| 1.0 / (1.0 + lat.phat2(i / l, i % l))).collect();
            let (fwd, _) = net.gemm_flops(1, l, l);
            let (form, theory) = (ScoreForm::Physics, Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 });
            let inner = NetworkScoreModel::from_parts(
                arch.clone(),
                form,
                crate::theory::Couplings::Phi4(theory),
                &params,
                g,
                lat,
                "bench".into(),
                dev,
            );
            let model = Timed::new(&inner);
            let settings = SamplerSettings::new(SamplerKind::Em, steps, 0.01, 10.0);
            let t0 = std::time::Instant::now();
            let mut n = 0usize;
            let mut evals = 0usize;
            while n == 0 || t0.elapsed().as_secs_f64() < seconds {
                let sb =
                    sample_batch(&model, None, lat, &settings, 1, n as u64, batch).map_err(|e| anyhow::anyhow!(e))?;
                evals += sb.network_evaluations();
                n += batch;
            }
            let dt = t0.elapsed().as_secs_f64();
            let net_s = model.seconds();
            rows.push(serde_json::json!({
                "preset": name, "lattice": l, "steps": steps, "batch": batch, "device": model.device(),
                "configs_per_s": n as f64 / dt, "network_evals_per_s": evals as f64 / dt,
                "gflops": fwd * evals as f64 / net_s * 1e-9, "outside_network_share": 1.0 - net_s / dt,
            }));
        }
    }
    Ok(rows)
}
