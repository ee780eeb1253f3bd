//! The action network (`nn::action`) as a [`NetEngine`]: training, validation and sampling
//! use it exactly as they use the U-Net, with F_θ = −∂S_θ/∂x as the raw output (the
//! `action` score form makes it the score −∂S_θ/∂φ). `NetEngine::actions` gives S_θ itself
//! from the same forward pass: the energies of Metropolis tests against the learnt action
//! (`ScoreModel::action_values`) and of `fit-action`.
//!
//! CPU only: the second-order backward has no CUDA kernels yet, so the commands refuse
//! `--device cuda` for this form before any work (`cuda_path`). Parameters, gradient and
//! AdamW state are host vectors, the gradient one flat buffer as the all-reduce wants it.

use crate::diffusion::net::engine::{NetEngine, Weights};
use crate::diffusion::objective::c_in;
use crate::lattice::Lattice;
use crate::nn::optim::{AdamW, AdamWConfig, StepInfo};
use crate::nn::{ActionArch, ActionNet, ActionWorkspace};
use anyhow::{anyhow, Result};

/// Why `--device cuda` is refused for the action form (one line, see `backend::select`).
pub const NO_CUDA: &str = "the action network (score form action) has no CUDA kernels yet";

/// Workspaces kept per (batch, lattice), as in `engine`.
const MAX_WORKSPACES: usize = 4;

pub struct ActionEngine {
    net: ActionNet,
    sigma_data: f64,
    params: Vec<f32>,
    grad: Vec<f32>,
    opt: Option<AdamW<f32>>,
    workspaces: Vec<(usize, Lattice, ActionWorkspace<f32>)>,
}

impl ActionEngine {
    /// With an optimiser (`opt`: its configuration and, when resuming, the saved state).
    pub fn new(
        arch: ActionArch,
        sigma_data: f64,
        params: &[f32],
        opt: Option<(AdamWConfig, Option<&AdamW<f32>>)>,
    ) -> Result<Self> {
        let net = ActionNet::new(arch);
        if params.len() != net.num_params() {
            return Err(anyhow!(
                "action network: {} parameters given, the architecture has {}",
                params.len(),
                net.num_params()
            ));
        }
        let opt = opt.map(|(cfg, from)| match from {
            Some(o) => o.clone(),
            None => AdamW::new(cfg, &net.layout, params),
        });
        let grad = vec![0.0; params.len()];
        Ok(ActionEngine { net, sigma_data, params: params.to_vec(), grad, opt, workspaces: Vec::new() })
    }

    pub fn net(&self) -> &ActionNet {
        &self.net
    }

    fn workspace(&mut self, batch: usize, lat: Lattice) -> usize {
        if let Some(i) = self.workspaces.iter().position(|(b, l, _)| *b == batch && *l == lat) {
            return i;
        }
        if self.workspaces.len() >= MAX_WORKSPACES {
            self.workspaces.remove(0);
        }
        self.workspaces.push((batch, lat, ActionWorkspace::new(&self.net, batch, lat.lt, lat.lx)));
        self.workspaces.len() - 1
    }

    fn weights(&self, w: Weights) -> Result<&[f32]> {
        match w {
            Weights::Current => Ok(&self.params),
            Weights::Ema => {
                self.opt.as_ref().map(|o| &o.ema[..]).ok_or_else(|| anyhow!("this network has no EMA weights loaded"))
            }
        }
    }

    /// The network input x = c_in(σ) φ per configuration.
    fn preconditioned(&self, phi: &[f32], sigma: &[f32]) -> Vec<f32> {
        let v = phi.len() / sigma.len().max(1);
        let mut x = phi.to_vec();
        for (xb, s) in x.chunks_mut(v).zip(sigma) {
            let c = c_in(self.sigma_data, *s as f64) as f32;
            xb.iter_mut().for_each(|x| *x *= c);
        }
        x
    }
}

impl NetEngine for ActionEngine {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn loss_and_grad(
        &mut self,
        lat: Lattice,
        phi_sigma: &[f32],
        sigma: &[f32],
        scale: &[f32],
        offset: &[f32],
        per_sample: &mut [f32],
        grad: &mut [f32],
    ) -> Result<()> {
        if self.opt.is_none() {
            return Err(anyhow!("this network was loaded without an optimiser"));
        }
        let i = self.workspace(sigma.len(), lat);
        let x = self.preconditioned(phi_sigma, sigma);
        let ws = &mut self.workspaces[i].2;
        self.net.score_loss_forward(per_sample, &self.params, &x, sigma, scale, offset, ws);
        self.grad.fill(0.0);
        self.net.score_loss_backward(&mut self.grad, &self.params, ws);
        grad.copy_from_slice(&self.grad);
        Ok(())
    }

    fn update(&mut self, grad: &[f32]) -> Result<StepInfo> {
        let o = self.opt.as_mut().ok_or_else(|| anyhow!("this network was loaded without an optimiser"))?;
        Ok(o.update(&mut self.params, grad))
    }

    fn losses(
        &mut self,
        w: Weights,
        lat: Lattice,
        phi_sigma: &[f32],
        sigma: &[f32],
        scale: &[f32],
        offset: &[f32],
        per_sample: &mut [f32],
    ) -> Result<()> {
        let i = self.workspace(sigma.len(), lat);
        let x = self.preconditioned(phi_sigma, sigma);
        let p = self.weights(w)?.to_vec();
        self.net.score_loss_forward(per_sample, &p, &x, sigma, scale, offset, &mut self.workspaces[i].2);
        Ok(())
    }

    fn output(&mut self, w: Weights, lat: Lattice, phi: &[f32], sigma: &[f32], out: &mut [f32]) -> Result<()> {
        let mut action = vec![0.0f32; sigma.len()];
        self.actions(w, lat, phi, sigma, &mut action, Some(out))
    }

    /// S_θ is the forward pass's own result: the energies cost nothing beside the score.
    fn actions(
        &mut self,
        w: Weights,
        lat: Lattice,
        phi: &[f32],
        sigma: &[f32],
        action: &mut [f32],
        out: Option<&mut [f32]>,
    ) -> Result<()> {
        let i = self.workspace(sigma.len(), lat);
        let x = self.preconditioned(phi, sigma);
        let p = self.weights(w)?.to_vec();
        let ws = &mut self.workspaces[i].2;
        self.net.forward(action, &p, &x, sigma, ws);
        if let Some(out) = out {
            self.net.input_grad(out, &p, ws);
            out.iter_mut().for_each(|g| *g = -*g);
        }
        Ok(())
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn state(&mut self) -> Result<(Vec<f32>, AdamW<f32>)> {
        let o = self.opt.as_ref().ok_or_else(|| anyhow!("this network was loaded without an optimiser"))?;
        Ok((self.params.clone(), o.clone()))
    }
}

/// The tiny action network's weights, random and every one away from zero (so that no term
/// of S_θ vanishes).
#[cfg(test)]
pub(crate) fn random_action_params(seed: u64) -> Vec<f32> {
    let net = ActionNet::new(ActionArch::tiny());
    let noise = crate::nn::gradcheck::rand_vec(net.num_params(), seed);
    net.init_params::<f32>(seed).iter().zip(noise).map(|(p, r)| p + 0.2 * r as f32).collect()
}
