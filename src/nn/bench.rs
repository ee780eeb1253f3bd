//! Training-step throughput benchmark (for `latdiff bench train`).

use super::optim::{AdamW, AdamWConfig};
use super::unet::{Arch, Network};
use crate::diffusion::objective::{dsm_loss_backward, dsm_loss_forward, DsmWorkspace, SigmaSchedule};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct TrainBench {
    pub params: usize,
    pub samples_per_s: f64,
    /// GEMM GFLOP/s over the whole step (forward + backward GEMM FLOPs / step time).
    pub gflops: f64,
    pub step_s: f64,
    pub forward_gflop: f64,
    pub backward_gflop: f64,
}

/// Times f32 DSM forward + backward + AdamW steps on an L×L lattice, after one warm-up
/// step, for at least `min_steps` steps and two seconds.
pub fn bench_train_step(arch: &Arch, batch: usize, l: usize, min_steps: usize) -> TrainBench {
    let net = Network::new(arch.clone());
    let mut params = net.init_params::<f32>(1);
    let mut grads = vec![0.0f32; params.len()];
    let mut opt = AdamW::new(AdamWConfig::default(), &net.layout, &params);
    let mut ws = DsmWorkspace::<f32>::new(&net, batch, l, l);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let n = batch * l * l;
    let phi0: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let z: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let sched = SigmaSchedule { sigma_min: 0.01, sigma_max: 10.0, t_eps: 1e-3 };
    let sigma: Vec<f32> = (0..batch).map(|_| sched.sample(&mut rng) as f32).collect();
    let mut per = vec![0.0f32; batch];
    let mut step = |params: &mut Vec<f32>, grads: &mut Vec<f32>| {
        grads.fill(0.0);
        dsm_loss_forward(&net, params, &phi0, &z, &sigma, &mut per, &mut ws);
        dsm_loss_backward(&net, params, grads, &mut ws);
        opt.update(params, grads);
    };
    step(&mut params, &mut grads);
    let t0 = Instant::now();
    let mut steps = 0;
    while steps < min_steps || t0.elapsed().as_secs_f64() < 2.0 {
        step(&mut params, &mut grads);
        steps += 1;
    }
    let step_s = t0.elapsed().as_secs_f64() / steps as f64;
    let (f, b) = (ws.net.forward_flops(), ws.net.backward_flops());
    TrainBench {
        params: net.num_params(),
        samples_per_s: batch as f64 / step_s,
        gflops: (f + b) / step_s * 1e-9,
        step_s,
        forward_gflop: f * 1e-9,
        backward_gflop: b * 1e-9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test --release --lib nn::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_train_step_throughput() {
        let arch = std::env::var("LATDIFF_BENCH_ARCH").unwrap_or_else(|_| "dmassq".into());
        let l = std::env::var("LATDIFF_BENCH_L").map_or(32, |v| v.parse().unwrap());
        let b = std::env::var("LATDIFF_BENCH_B").map_or(64, |v| v.parse().unwrap());
        let r = bench_train_step(&Arch::preset(&arch).unwrap(), b, l, 3);
        println!("{arch} L={l} B={b} threads={}: {r:?}", rayon::current_num_threads());
    }

    #[test]
    fn bench_runs_tiny() {
        let r = bench_train_step(&Arch::tiny(), 2, 8, 1);
        assert!(r.samples_per_s > 0.0 && r.forward_gflop > 0.0);
    }
}
