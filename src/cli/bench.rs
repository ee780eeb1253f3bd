//! `latdiff bench`: throughput figures for BENCHMARKS.md.

use crate::backend::{self, Device, DeviceRequest};
use crate::mc::{
    bench::{engine_throughput, hmc_throughput},
    Integrator,
};
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
        #[arg(long, default_value_t = 10)]
        n_md: usize,
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

pub fn run(a: &BenchArgs, device: DeviceRequest) -> Result<()> {
    let dev = backend::select(device, true, 0, !a.json).map_err(super::input_err)?;
    match &a.what {
        BenchWhat::Hmc { lattice, seconds, n_md } => {
            let mut rows = Vec::new();
            for &l in lattice {
                if l < 2 {
                    return Err(super::input_err(anyhow::anyhow!("lattice: {l} is too small")));
                }
                for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
                    rows.push(match dev {
                        Device::Cpu => {
                            // Enough chains to keep every thread busy, similar work per size.
                            let chains = (rayon::current_num_threads() * 4).max((64 * 32 * 32 / (l * l)).max(1));
                            hmc_throughput(l, chains, integ, *n_md, *seconds)
                        }
                        // ~16 M sites in flight saturate a GPU's memory system.
                        Device::Cuda { .. } => {
                            engine_throughput(dev, l, (1 << 24) / (l * l).max(1), integ, *n_md, *seconds)?
                        }
                    });
                }
            }
            if a.json {
                let mut by_l = serde_json::Map::new();
                for r in &rows {
                    if r.integrator == "leapfrog" {
                        by_l.insert(r.lattice.to_string(), serde_json::json!(r.site_updates_per_s));
                    }
                }
                let obj = serde_json::json!({
                    "bench": "hmc",
                    "device": rows.first().map_or("cpu".to_string(), |r| r.device.clone()),
                    "threads": rayon::current_num_threads(),
                    "site_updates_per_s": by_l,
                    "runs": rows,
                    "latdiff_version": crate::VERSION,
                });
                println!("{}", serde_json::to_string_pretty(&obj)?);
            } else {
                println!(
                    "{:>5} {:>7} {:>10} {:>5} {:>8} {:>16} {:>18}",
                    "L", "chains", "integrator", "n_md", "threads", "site-updates/s", "force-site-evals/s"
                );
                for r in &rows {
                    println!(
                        "{:>5} {:>7} {:>10} {:>5} {:>8} {:>16.3e} {:>18.3e}",
                        r.lattice,
                        r.chains,
                        r.integrator,
                        r.n_md,
                        r.threads,
                        r.site_updates_per_s,
                        r.force_site_evals_per_s
                    );
                }
                if let Some(r) = rows.first().filter(|r| r.device != "cpu") {
                    println!("device: {}", r.device);
                    for r in &rows {
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
            }
        }
    }
    Ok(())
}
