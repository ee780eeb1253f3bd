//! `cargo bench --bench hmc`: φ⁴ HMC site-updates per second at L = 32 and 128.
use latdiff::mc::{bench::hmc_throughput, Integrator};

fn main() {
    let secs: f64 = std::env::var("LATDIFF_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    for (l, chains) in [(32, 64), (128, 8)] {
        for integ in [Integrator::Leapfrog, Integrator::Omelyan] {
            let b = hmc_throughput(l, chains, integ, 10, secs);
            println!(
                "hmc L={:<4} chains={:<3} {:<9} threads={} site-updates/s {:.3e}  (force site-evals/s {:.3e})",
                l, chains, b.integrator, b.threads, b.site_updates_per_s, b.force_site_evals_per_s
            );
        }
    }
}
