//! The network's side of the training objective: input preconditioning, the raw output
//! F_θ and the denoising score-matching (DSM) loss in a form shared by every score form.
//!
//! The network sees x_in = c_in(σ)·φ with c_in = 1/√(σ_data² + σ²) (Karras et al.'s input
//! preconditioning) and log σ. A score form (`diffusion::form`) turns F_θ into a score
//! s = s_prior + (a(σ)/σ) F_θ and prepares, per configuration, the output scale a_b and the
//! offset e_b = σ_b (s_prior − t_b) against the denoising target t_b, so that the loss with
//! weight λ(σ) = σ² reads, per configuration,
//!   ℓ_b = Σ_x σ_b² (s − t_b)² = Σ_x (a_b F_θ + e_b)²,
//! summed over the V lattice sites, L = mean over the batch of ℓ_b. Plain DSM (s = F/σ,
//! t = −z/σ) is a = 1, e = z: the zero network output gives L ≈ V.

use crate::nn::{CpuOps, Float, NetOps, Network, Workspace};
use anyhow::Result;
use rand::{Rng, RngExt};

/// Noise levels σ = σ_min (σ_max/σ_min)^t, t ~ U(t_eps, 1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SigmaSchedule {
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub t_eps: f64,
}

impl SigmaSchedule {
    pub fn sigma_at(&self, t: f64) -> f64 {
        self.sigma_min * (self.sigma_max / self.sigma_min).powf(t)
    }
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        self.sigma_at(rng.random_range(self.t_eps..1.0))
    }
}

pub fn c_in(sigma_data: f64, sigma: f64) -> f64 {
    1.0 / (sigma_data * sigma_data + sigma * sigma).sqrt()
}

/// Network workspace (on its device) plus the host buffers of the objective. The objective's
/// arithmetic is O(B·V) and stays on the host for every device: one code path, and the
/// transfers (network input, output and dL/d(output), B·V numbers each) are small beside
/// the network's O(B·V·params) work.
pub struct DsmWorkspace<B: NetOps> {
    pub net: Workspace<B>,
    x_in: Vec<B::Elem>,
    /// a F + e, kept for the backward pass.
    resid: Vec<B::Elem>,
    /// a_b per configuration, kept for the backward pass.
    scale: Vec<B::Elem>,
    dout: Vec<B::Elem>,
}

pub type CpuDsmWorkspace<T> = DsmWorkspace<CpuOps<T>>;

impl<T: Float> DsmWorkspace<CpuOps<T>> {
    pub fn new(net: &Network, batch: usize, h: usize, w: usize) -> Self {
        Self::on(CpuOps::default(), net, batch, h, w).expect("host allocation")
    }
}

impl<B: NetOps> DsmWorkspace<B> {
    pub fn on(dev: B, net: &Network, batch: usize, h: usize, w: usize) -> Result<Self> {
        let (n_in, n_out) = (batch * net.arch.in_channels * h * w, batch * net.arch.out_channels * h * w);
        let z = B::Elem::ZERO;
        Ok(DsmWorkspace {
            net: Workspace::on(dev, net, batch, h, w)?,
            x_in: vec![z; n_in],
            resid: vec![z; n_out],
            scale: vec![z; batch],
            dout: vec![z; n_out],
        })
    }
}

fn scale_input<T: Float>(x_in: &mut [T], phi: &[T], sigma: &[T], sigma_data: f64) {
    let v = phi.len() / sigma.len();
    for (b, s) in sigma.iter().enumerate() {
        let c = T::from_f64(c_in(sigma_data, s.to_f64()));
        for (o, p) in x_in[b * v..][..v].iter_mut().zip(&phi[b * v..][..v]) {
            *o = *p * c;
        }
    }
}

/// out[B,C_out,H,W] = F_θ(c_in(σ) φ, log σ) on the workspace's device (F_θ(φ, log σ) for an
/// input that is not scaled, `Arch::scaled_input`): the network's raw output, which the score
/// form (`diffusion::form`) turns into a score.
pub fn network_output<B: NetOps>(
    net: &Network,
    params: &B::Params,
    phi: &[B::Elem],
    sigma: &[B::Elem],
    out: &mut [B::Elem],
    ws: &mut DsmWorkspace<B>,
) -> Result<()> {
    if net.arch.scaled_input {
        scale_input(&mut ws.x_in, phi, sigma, net.arch.sigma_data);
        ws.net.set_input(&ws.x_in)?;
    } else {
        ws.net.set_input(phi)?;
    }
    net.forward_on(params, sigma, &mut ws.net)?;
    ws.net.get_output(out)
}

/// The loss ℓ_b = Σ_x (a_b F_θ(φ_σ, σ_b) + e_b)² for network inputs φ_σ (`phi_sigma`),
/// output scales a_b and offsets e_b prepared by the score form (plain DSM: a = 1, e = z).
/// Writes ℓ_b to `per_sample` and returns L = mean_b ℓ_b.
#[allow(clippy::too_many_arguments)]
pub fn dsm_loss_forward<B: NetOps>(
    net: &Network,
    params: &B::Params,
    phi_sigma: &[B::Elem],
    sigma: &[B::Elem],
    scale: &[B::Elem],
    offset: &[B::Elem],
    per_sample: &mut [B::Elem],
    ws: &mut DsmWorkspace<B>,
) -> Result<B::Elem> {
    let bsz = sigma.len();
    // Output values per configuration (C_out·V; the input may have other channels).
    let v = ws.resid.len() / bsz;
    assert_eq!(offset.len(), ws.resid.len(), "DSM offset is not [B, C_out, H, W]");
    let mut f = std::mem::take(&mut ws.resid);
    let r = network_output(net, params, phi_sigma, sigma, &mut f, ws);
    ws.resid = f;
    r?;
    ws.scale.copy_from_slice(scale);
    let mut total = B::Elem::ZERO;
    for b in 0..bsz {
        let mut l = B::Elem::ZERO;
        let a = scale[b];
        for i in b * v..(b + 1) * v {
            let r = a * ws.resid[i] + offset[i];
            ws.resid[i] = r;
            l += r * r;
        }
        per_sample[b] = l;
        total += l;
    }
    Ok(total / B::Elem::from_f64(bsz as f64))
}

/// Accumulates dL/dθ for the last `dsm_loss_forward` on `ws`.
pub fn dsm_loss_backward<B: NetOps>(
    net: &Network,
    params: &B::Params,
    dparams: &mut B::Params,
    ws: &mut DsmWorkspace<B>,
) -> Result<()> {
    let f = B::Elem::from_f64(2.0 / ws.net.batch as f64);
    let v = ws.resid.len() / ws.net.batch;
    for (b, a) in ws.scale.iter().enumerate() {
        for i in b * v..(b + 1) * v {
            ws.dout[i] = f * *a * ws.resid[i];
        }
    }
    net.backward_on(params, dparams, false, &ws.dout, &mut ws.net)
}

/// Plain DSM inputs: φ_σ = φ_0 + σ z, a = 1, e = z (the residual σ s + z = F + z).
pub fn plain_dsm_inputs<T: Float>(phi0: &[T], z: &[T], sigma: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
    let v = phi0.len() / sigma.len();
    let x = phi0.iter().zip(z).enumerate().map(|(i, (p, z))| *p + sigma[i / v] * *z).collect();
    (x, vec![T::ONE; sigma.len()], z.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Arch;

    fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
        use rand::SeedableRng;
        let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn dsm_loss_gradient_matches_finite_differences() {
        let net = Network::new(Arch::tiny());
        let (b, h, w) = (2, 4, 6);
        let mut p: Vec<f64> = rand_vec(net.num_params(), 1).iter().map(|v| 0.5 * v).collect();
        let phi0 = rand_vec(b * h * w, 2);
        let z = rand_vec(b * h * w, 3);
        let sigma = [0.3, 2.5];
        let mut ws = DsmWorkspace::new(&net, b, h, w);
        let mut ls = [0.0; 2];
        // A non-trivial output scale and offset, as the physics form has.
        let x: Vec<f64> = phi0.iter().zip(&z).enumerate().map(|(i, (p, z))| p + sigma[i / (h * w)] * z).collect();
        let a = [0.3, 1.7];
        let e: Vec<f64> = z.iter().map(|z| 0.4 * z).collect();
        let loss = dsm_loss_forward(&net, &p[..], &x, &sigma, &a, &e, &mut ls, &mut ws).unwrap();
        assert!((loss - 0.5 * (ls[0] + ls[1])).abs() < 1e-12);
        let mut g = vec![0.0; p.len()];
        dsm_loss_backward(&net, &p[..], &mut g[..], &mut ws).unwrap();
        let idx = (0..p.len()).step_by(p.len() / 60 + 1).collect::<Vec<_>>();
        crate::nn::gradcheck::check_grad_at("dsm", &mut p, &g, &idx, &mut |q: &[f64]| {
            let mut ls = [0.0; 2];
            dsm_loss_forward(&net, q, &x, &sigma, &a, &e, &mut ls, &mut ws).unwrap()
        });
    }

    #[test]
    fn network_sees_preconditioned_input_and_zero_output_loss_is_sum_z2() {
        let net = Network::new(Arch::tiny());
        let (b, h, w) = (2, 4, 4);
        let mut p = net.init_params::<f64>(3);
        p.iter_mut().for_each(|v| *v = 0.0);
        let phi0 = rand_vec(b * h * w, 4);
        let z = rand_vec(b * h * w, 5);
        let mut ws = DsmWorkspace::new(&net, b, h, w);
        let mut ls = [0.0; 2];
        let (x, a, e) = plain_dsm_inputs(&phi0, &z, &[0.5, 1.5]);
        dsm_loss_forward(&net, &p[..], &x, &[0.5, 1.5], &a, &e, &mut ls, &mut ws).unwrap();
        let z2: f64 = z[..16].iter().map(|v| v * v).sum();
        assert!((ls[0] - z2).abs() < 1e-12);
        let mut out = vec![0.0; b * h * w];
        let q = net.init_params::<f64>(3);
        network_output(&net, &q[..], &phi0, &[0.5, 1.5], &mut out, &mut ws).unwrap();
        let mut f = vec![0.0; b * h * w];
        let x_in: Vec<f64> = (0..b * h * w).map(|i| phi0[i] * c_in(1.0, [0.5, 1.5][i / 16])).collect();
        net.forward(&q, &x_in, &[0.5, 1.5], &mut f, &mut ws.net);
        assert!(out.iter().zip(&f).all(|(a, b)| (a - b).abs() < 1e-12));
    }
}
