//! The score network on one device, as training and sampling use it.
//!
//! `latdiff train`, `latdiff sample` and the benchmarks are written once against
//! [`NetEngine`]; the device is chosen once, when the engine is built ([`build`]). The one
//! implementation, [`Engine`], is generic over the layer backend (`nn::NetOps`): on the CPU
//! it runs the reference layers, on a GPU the kernels of `kernels/` (`backend::cuda_nn`).
//! Parameters, their gradient and the optimiser state live on the device; the host sees the
//! gradient once per step (for the all-reduce) and the full state only at checkpoints.

use crate::diffusion::objective::{dsm_loss_backward, dsm_loss_forward, network_output, DsmWorkspace};
use crate::lattice::Lattice;
use crate::nn::optim::{AdamW, AdamWConfig, StepInfo};
use crate::nn::{NetOps, Network};
use anyhow::{anyhow, Result};
use std::borrow::{Borrow, BorrowMut};

/// Which weights a forward pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The optimiser's current parameters.
    Current,
    /// The exponential moving average (what sampling uses).
    Ema,
}

pub trait NetEngine: Send {
    /// e.g. "cpu (8 threads)" or "cuda:0 NVIDIA H100 (compute_90)".
    fn describe(&self) -> String;
    /// Writes ℓ_b = Σ_x (a_b F_θ(φ_σ) + e_b)² of every configuration to `per_sample` and the
    /// gradient of their mean to `grad` (host, overwritten), with the current weights;
    /// `phi_sigma`, `scale` (a) and `offset` (e) come from the score form
    /// (`form::ScoreParts::training_inputs`). `lat` is the lattice.
    #[allow(clippy::too_many_arguments)]
    fn loss_and_grad(
        &mut self,
        lat: Lattice,
        phi_sigma: &[f32],
        sigma: &[f32],
        scale: &[f32],
        offset: &[f32],
        per_sample: &mut [f32],
        grad: &mut [f32],
    ) -> Result<()>;
    /// One AdamW + EMA step with the (all-reduced) gradient `grad`.
    fn update(&mut self, grad: &[f32]) -> Result<StepInfo>;
    /// ℓ_b of every configuration, without gradients.
    #[allow(clippy::too_many_arguments)]
    fn losses(
        &mut self,
        w: Weights,
        lat: Lattice,
        phi_sigma: &[f32],
        sigma: &[f32],
        scale: &[f32],
        offset: &[f32],
        per_sample: &mut [f32],
    ) -> Result<()>;
    /// out = F_θ(φ, σ), the raw network output, for a batch of B = sigma.len()
    /// configurations (`form::ScoreParts::compose` makes it a score).
    fn output(&mut self, w: Weights, lat: Lattice, phi: &[f32], sigma: &[f32], out: &mut [f32]) -> Result<()>;
    /// action[b] = S_θ(c_in(σ_b) φ_b, σ_b), the scalar of a network that has one (the action
    /// form), and with `out` its raw output F_θ = −∂S_θ/∂x from the same pass (what `output`
    /// gives). Networks without a scalar action refuse.
    fn actions(
        &mut self,
        _w: Weights,
        _lat: Lattice,
        _phi: &[f32],
        _sigma: &[f32],
        _action: &mut [f32],
        _out: Option<&mut [f32]>,
    ) -> Result<()> {
        Err(anyhow!("this network has no scalar action (only the action score form has one)"))
    }
    /// Host copy of the current parameters (cross-rank checksums).
    fn params(&mut self) -> Result<Vec<f32>>;
    /// Host copies of the parameters and the optimiser state (checkpoints).
    fn state(&mut self) -> Result<(Vec<f32>, AdamW<f32>)>;
}

/// Workspaces kept per (batch, lattice): training, validation chunks and sampling batches
/// differ in size; more than this many distinct shapes evict the oldest.
const MAX_WORKSPACES: usize = 4;

/// The network, its parameters and optimiser on the device of `B`.
pub struct Engine<B: NetOps<Elem = f32>> {
    net: Network,
    dev: B,
    params: B::ParamBuf,
    grad: Option<B::ParamBuf>,
    opt: Option<B::Adam>,
    workspaces: Vec<(usize, Lattice, DsmWorkspace<B>)>,
}

impl<B: NetOps<Elem = f32>> Engine<B> {
    /// With an optimiser (`opt`: its configuration and, when resuming, the saved state).
    pub fn new(
        mut dev: B,
        net: Network,
        params: &[f32],
        opt: Option<(AdamWConfig, Option<&AdamW<f32>>)>,
    ) -> Result<Self> {
        assert_eq!(params.len(), net.num_params());
        let pbuf = dev.upload_params(params)?;
        let (grad, opt) = match opt {
            Some((cfg, from)) => {
                let o = dev.adamw_new(cfg, &net.layout, pbuf.borrow(), from)?;
                (Some(dev.upload_params(&vec![0.0; params.len()])?), Some(o))
            }
            None => (None, None),
        };
        Ok(Engine { net, dev, params: pbuf, grad, opt, workspaces: Vec::new() })
    }

    fn workspace(&mut self, batch: usize, lat: Lattice) -> Result<usize> {
        if let Some(i) = self.workspaces.iter().position(|(b, l, _)| *b == batch && *l == lat) {
            return Ok(i);
        }
        if self.workspaces.len() >= MAX_WORKSPACES {
            self.workspaces.remove(0);
        }
        let dev = self.dev.fork()?;
        let ws = DsmWorkspace::on(dev, &self.net, batch, lat.lt, lat.lx)?;
        self.workspaces.push((batch, lat, ws));
        Ok(self.workspaces.len() - 1)
    }
}

/// The parameters a forward pass with `w` uses.
fn weights<'a, B: NetOps>(params: &'a B::ParamBuf, opt: &'a Option<B::Adam>, w: Weights) -> Result<&'a B::Params> {
    match w {
        Weights::Current => Ok(params.borrow()),
        Weights::Ema => {
            let o = opt.as_ref().ok_or_else(|| anyhow!("this network has no EMA weights loaded"))?;
            Ok(B::adamw_ema(o))
        }
    }
}

impl<B: NetOps<Elem = f32>> NetEngine for Engine<B> {
    fn describe(&self) -> String {
        self.dev.describe()
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
        let i = self.workspace(sigma.len(), lat)?;
        let g = self.grad.as_mut().ok_or_else(|| anyhow!("this network was loaded without an optimiser"))?;
        self.dev.zero_params(g.borrow_mut())?;
        let ws = &mut self.workspaces[i].2;
        let p: &B::Params = self.params.borrow();
        dsm_loss_forward(&self.net, p, phi_sigma, sigma, scale, offset, per_sample, ws)?;
        dsm_loss_backward(&self.net, p, g.borrow_mut(), ws)?;
        self.dev.download_params((*g).borrow(), grad)
    }

    fn update(&mut self, grad: &[f32]) -> Result<StepInfo> {
        let (Some(g), Some(o)) = (self.grad.as_mut(), self.opt.as_mut()) else {
            return Err(anyhow!("this network was loaded without an optimiser"));
        };
        // The same gradient on every rank after the all-reduce: the device copy is replaced.
        self.dev.copy_params((*g).borrow_mut(), grad)?;
        self.dev.adamw_update(o, self.params.borrow_mut(), (*g).borrow())
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
        let i = self.workspace(sigma.len(), lat)?;
        let p = weights::<B>(&self.params, &self.opt, w)?;
        let ws = &mut self.workspaces[i].2;
        dsm_loss_forward(&self.net, p, phi_sigma, sigma, scale, offset, per_sample, ws).map(|_| ())
    }

    fn output(&mut self, w: Weights, lat: Lattice, phi: &[f32], sigma: &[f32], out: &mut [f32]) -> Result<()> {
        let i = self.workspace(sigma.len(), lat)?;
        let p = weights::<B>(&self.params, &self.opt, w)?;
        network_output(&self.net, p, phi, sigma, out, &mut self.workspaces[i].2)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        let mut p = vec![0.0f32; self.net.num_params()];
        self.dev.download_params(self.params.borrow(), &mut p)?;
        Ok(p)
    }

    fn state(&mut self) -> Result<(Vec<f32>, AdamW<f32>)> {
        let p = self.params()?;
        let o = self.opt.as_ref().ok_or_else(|| anyhow!("this network was loaded without an optimiser"))?;
        let st = self.dev.adamw_state(o, &self.net.layout)?;
        Ok((p, st))
    }
}
