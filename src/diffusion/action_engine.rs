//! The action network (`nn::action`) as a [`NetEngine`]: training, validation and sampling
//! use it exactly as they use the U-Net, with F_θ = −∂S_θ/∂x as the raw output (the
//! `action` score form makes it the score −∂S_θ/∂φ). `NetEngine::actions` gives S_θ itself
//! from the same forward pass: the energies of Metropolis tests against the learnt action
//! (`ScoreModel::action_values`) and of `fit-action`.
//!
//! CPU only: the second-order backward has no CUDA kernels yet, so the commands refuse
//! `--device cuda` for this form before any work (`cuda_path`). Parameters, gradient and
//! AdamW state are host vectors, the gradient one flat buffer as the all-reduce wants it.

use super::engine::{NetEngine, Weights};
use super::objective::c_in;
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

/// An action-form score model of the tiny action network with `random_action_params` and
/// σ_data = 0.8 (so c_in ≠ 1 at every σ).
#[cfg(test)]
pub(crate) fn random_action_model(lat: Lattice, seed: u64) -> super::model::NetworkScoreModel {
    let unet = crate::nn::Arch { sigma_data: 0.8, ..crate::nn::Arch::tiny() };
    let theory = crate::theory::Couplings::Phi4(crate::theory::Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
    let (form, device) = (super::form::ScoreForm::Action, crate::backend::Device::Cpu);
    let params = random_action_params(seed);
    let g = vec![1.0; lat.volume()];
    let mut m = super::model::NetworkScoreModel::from_parts(unet, form, theory, &params, g, lat, "test".into(), device);
    m.action = Some(ActionArch::tiny());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::ScoreModel;

    /// Fields on multiples of 2⁻¹², so that φ ± h (h a power of two) is exact in f32.
    fn field(n: usize, seed: u64) -> Vec<f64> {
        crate::nn::gradcheck::rand_vec(n, seed).iter().map(|x| (x * 4096.0).round() / 4096.0).collect()
    }

    /// The score of an action model is minus the gradient of the energies it returns
    /// (fourth-order central differences; the network runs in f32, whose rounding of S ~ 10
    /// gives difference quotients good to ~2e-5 of the largest component at h = 2⁻⁵), the
    /// energies are the f64 network's forward at x = c_in(σ) φ to f32 rounding, and the
    /// score that comes with them is `score`'s bit for bit.
    #[test]
    fn action_model_score_is_minus_the_gradient_of_its_energies() {
        let lat = Lattice::new(4, 6);
        let v = lat.volume();
        let m = random_action_model(lat, 3);
        assert!(m.has_action());
        let sigma = [0.05, 0.7, 3.0];
        let mut phi = field(3 * v, 4);
        let (mut u, mut s) = (vec![0.0; 3], vec![0.0; 3 * v]);
        m.action_values(lat, &phi, &sigma, &mut u, Some(&mut s)).unwrap();
        let mut s_plain = vec![0.0; 3 * v];
        m.score(lat, &phi, &sigma, &mut s_plain).unwrap();
        assert_eq!(s, s_plain, "the score beside the energies is not score()'s");

        let net = ActionNet::new(ActionArch::tiny());
        let p64: Vec<f64> = random_action_params(3).iter().map(|&x| x as f64).collect();
        let x: Vec<f64> = phi.iter().enumerate().map(|(i, p)| p * c_in(0.8, sigma[i / v])).collect();
        let mut ws = crate::nn::ActionWorkspace::new(&net, 3, lat.lt, lat.lx);
        let mut want = vec![0.0; 3];
        net.forward(&mut want, &p64, &x, &sigma, &mut ws);
        for b in 0..3 {
            assert!(
                (u[b] - want[b]).abs() < 1e-5 * (1.0 + want[b].abs()),
                "S[{b}] = {} vs f64 forward {}",
                u[b],
                want[b]
            );
        }

        let h = 1.0 / 32.0;
        let at = |phi: &[f64]| {
            let mut a = vec![0.0; 3];
            m.action_values(lat, phi, &sigma, &mut a, None).unwrap();
            a
        };
        let mut worst = 0.0f64;
        let scale = s.iter().fold(0.0f64, |a, x| a.max(x.abs()));
        for i in 0..3 * v {
            let x0 = phi[i];
            let mut f = |d: f64| {
                phi[i] = x0 + d;
                at(&phi)[i / v]
            };
            let fd = (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h);
            phi[i] = x0;
            worst = worst.max((s[i] + fd).abs() / scale);
        }
        println!("largest |s + dS/dphi| / max|s| = {worst:.2e}");
        assert!(worst < 2e-4, "score vs -dS/dphi: {worst:.2e} of the largest component");
    }

    /// pc with an action model: each corrector step is one MALA step against S_θ (one
    /// evaluation per step plus one per level), its mean acceptance is reported, there are
    /// no weights, and the samples do not depend on the batching.
    #[test]
    fn pc_with_an_action_model_corrects_with_mala() {
        use crate::diffusion::sampler::{sample_batch, SamplerKind, SamplerSettings};
        let lat = Lattice::new(4, 6);
        let m = random_action_model(lat, 3);
        let st = SamplerSettings { corrector_steps: 2, ..SamplerSettings::new(SamplerKind::Pc, 6, 0.05, 5.0) };
        let target = crate::theory::Phi4::new(lat, crate::theory::Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
        let b = sample_batch(&m, Some(&target), lat, &st, 1, 0, 8).unwrap();
        assert_eq!(b.score_calls, 6 + 3 * 5);
        assert!(b.log_weight.is_none());
        let a = b.corrector_acceptance.unwrap();
        assert!(a > 0.0 && a < 1.0, "acceptance {a}");
        let halves =
            [sample_batch(&m, None, lat, &st, 1, 0, 3).unwrap(), sample_batch(&m, None, lat, &st, 1, 3, 5).unwrap()];
        assert_eq!(b.configs, [&halves[0].configs[..], &halves[1].configs[..]].concat());
        let plain = sample_batch(
            &crate::diffusion::free::FreeScoreModel::parse("free:kappa=0.2").unwrap(),
            None,
            lat,
            &st,
            1,
            0,
            2,
        );
        assert_eq!(plain.unwrap().corrector_acceptance, None);
    }

    /// Models without a learnt action say so in one line.
    #[test]
    fn models_without_an_action_refuse_energies() {
        let lat = Lattice::new(4, 4);
        let free = crate::diffusion::free::FreeScoreModel::parse("free:kappa=0.2").unwrap();
        assert!(!free.has_action());
        let e = free.action_values(lat, &[0.0; 16], &[1.0], &mut [0.0], None).unwrap_err();
        assert!(e.contains("no learnt action") && !e.contains('\n'), "{e}");
    }
}
