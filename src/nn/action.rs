//! The action network: a learnt scalar action S_θ(x, σ) = Σ_s e_θ(x, σ)_s whose score is
//! its input gradient, trained through the backward of that gradient.
//!
//! The energy density e_θ is local and periodic: `layers` periodic 3×3 convolutions, each
//! followed by a FiLM modulation from the noise embedding and SiLU, then a 1×1 head. There
//! is no normalisation over the lattice, so S_θ is a sum of translation-invariant local
//! terms: extensive, and defined on every lattice size (the receptive radius is `layers`).
//!
//! Three passes, all explicit:
//! * `forward`: the activations a_l (conv), m_l (FiLM), h_{l+1} = u(m_l) and S_b.
//! * `input_grad`: gx = ∂S/∂x by the ordinary backward with ∂S/∂e = 1; its tensors are
//!   named g* (gh_l = ∂S/∂h_l, gm_l, ga_l) and kept, since training differentiates them.
//! * `input_grad_backward`: given dL/d(gx), the parameter gradient dL/dθ. It runs back
//!   through the input-gradient pass (adjoints dgh, dgm, dga: the backward of the backward,
//!   built from `periodic_conv` and `silu2`) and then through the forward pass, whose
//!   activations the g* tensors depend on (adjoints dm, da, dh).
//!
//! With `operators` the action also has explicit local terms Σ_k c_k(σ) O_k(x) (hopping,
//! diagonal hopping, x², x⁴; `local_ops.rs`, which says why), their coefficients cubic polynomials in
//! u = σ²/(σ² + 1) (`ops_sigma_features`): S_θ = Σ_s e_θ + Σ_k c_k O_k.
//!
//! The network's input is x = c_in(σ)·φ and its σ enters through Fourier features of log σ
//! (`embed`); the diffusion layer applies c_in and the chain rule.

use super::embed::{fourier_forward, fourier_frequencies};
use super::float::Float;
use super::lanes::lane_sum2;
use super::local_ops::{ops_forward, ops_input_grad, ops_input_grad_backward, N_OPS};
use super::params::ParamLayout;
use super::periodic_conv::{
    conv3_backward_bias, conv3_backward_input, conv3_backward_weight, conv3_forward, Conv3Scratch, Conv3Shape, TAPS,
};
use super::silu2::{silu_backward, silu_backward_backward, silu_forward};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionArch {
    /// Channels of every hidden layer.
    pub channels: usize,
    /// Periodic 3×3 convolutions: the receptive radius of the energy density.
    pub layers: usize,
    pub fourier_features: usize,
    /// Standard deviation of the fixed Fourier frequencies (in units of log σ).
    pub fourier_scale: f64,
    pub fourier_seed: u64,
    /// Explicit local operator terms Σ_k c_k(σ) O_k beside e_θ (`local_ops.rs`); absent in
    /// files written before they existed.
    #[serde(default)]
    pub operators: bool,
}

impl ActionArch {
    /// CI-sized: trains in seconds at L = 8.
    pub fn tiny() -> Self {
        ActionArch {
            channels: 8,
            layers: 2,
            fourier_features: 4,
            fourier_scale: 1.0,
            fourier_seed: 0x5eed,
            operators: false,
        }
    }

    /// The default (`--preset local`, as for the score network): receptive radius 3.
    pub fn local() -> Self {
        ActionArch {
            channels: 16,
            layers: 3,
            fourier_features: 8,
            fourier_scale: 1.0,
            fourier_seed: 0x5eed,
            operators: false,
        }
    }

    pub fn small() -> Self {
        ActionArch {
            channels: 32,
            layers: 3,
            fourier_features: 8,
            fourier_scale: 1.0,
            fourier_seed: 0x5eed,
            operators: false,
        }
    }

    /// The presets by name (`--preset` with `--score-form action`); a `-ops` suffix adds
    /// the explicit local operator terms.
    pub const NAMES: &'static str = "tiny, local, small, tiny-ops, local-ops, small-ops";

    /// The preset `name` builds on: without its `-ops` suffix (the U-Net record of an
    /// action model, σ_data and the schedule, is the base preset's).
    pub fn base_preset(name: &str) -> &str {
        name.strip_suffix("-ops").unwrap_or(name)
    }

    pub fn preset(name: &str) -> Option<Self> {
        let base = Self::base_preset(name);
        if base != name {
            return Self::preset(base).filter(|a| !a.operators).map(|a| ActionArch { operators: true, ..a });
        }
        match name {
            "tiny" => Some(Self::tiny()),
            "local" => Some(Self::local()),
            "small" => Some(Self::small()),
            _ => None,
        }
    }
}

/// Parameter indices (into the layout's entries) of one hidden layer.
#[derive(Clone, Debug)]
struct Layer {
    w: usize,
    b: usize,
    film_w: usize,
    film_b: usize,
    cin: usize,
}

#[derive(Clone, Debug)]
pub struct ActionNet {
    pub arch: ActionArch,
    pub layout: ParamLayout,
    freqs: Vec<f64>,
    layers: Vec<Layer>,
    head_w: usize,
    head_b: usize,
    /// (weight [N_OPS, OPS_DEGREE], bias [N_OPS]) of the operator coefficients, with `operators`.
    ops: Option<(usize, usize)>,
}

/// Activations and their gradients for one (batch, lattice); layer l's tensors are
/// [B, C, V] except h_0 = gh_0 = x's shape [B, 1, V].
pub struct ActionWorkspace<T> {
    pub batch: usize,
    pub lt: usize,
    pub lx: usize,
    conv: Conv3Scratch<T>,
    fourier: Vec<T>,
    /// [B, 2C] per layer: (γ, β) of m = a (1 + γ) + β.
    film: Vec<Vec<T>>,
    a: Vec<Vec<T>>,
    m: Vec<Vec<T>>,
    h: Vec<Vec<T>>,
    gh: Vec<Vec<T>>,
    gm: Vec<Vec<T>>,
    ga: Vec<Vec<T>>,
    dfilm: Vec<Vec<T>>,
    dm: Vec<Vec<T>>,
    /// Two [B, C, V] and one [B, C, V] scratch of the second-order pass.
    dgh: Vec<T>,
    dgh_next: Vec<T>,
    scratch: Vec<T>,
    /// [B, N_OPS] coefficients c_k(σ_b) of the explicit operators and [B, OPS_DEGREE] their
    /// σ features (empty without them).
    coef: Vec<T>,
    ops_feat: Vec<T>,
    /// S_b of the last forward pass.
    pub action: Vec<T>,
    /// The score-matching loss's residual a_b F + e_b and its scales a_b.
    resid: Vec<T>,
    scale: Vec<T>,
}

impl<T: Float> ActionWorkspace<T> {
    pub fn new(net: &ActionNet, batch: usize, lt: usize, lx: usize) -> Self {
        let (c, l, v) = (net.arch.channels, net.arch.layers, lt * lx);
        let z = |n: usize| vec![T::ZERO; n];
        let per_layer = |n: usize| (0..l).map(|_| z(n)).collect::<Vec<_>>();
        let with_input = || (0..=l).map(|i| z(batch * v * if i == 0 { 1 } else { c })).collect::<Vec<_>>();
        ActionWorkspace {
            batch,
            lt,
            lx,
            conv: Conv3Scratch::default(),
            fourier: z(batch * 2 * net.arch.fourier_features),
            film: per_layer(batch * 2 * c),
            a: per_layer(batch * c * v),
            m: per_layer(batch * c * v),
            h: with_input(),
            gh: with_input(),
            gm: per_layer(batch * c * v),
            ga: per_layer(batch * c * v),
            dfilm: per_layer(batch * 2 * c),
            dm: per_layer(batch * c * v),
            dgh: z(batch * c * v),
            dgh_next: z(batch * c * v),
            scratch: z(batch * c * v),
            coef: z(if net.arch.operators { batch * N_OPS } else { 0 }),
            ops_feat: z(if net.arch.operators { batch * OPS_DEGREE } else { 0 }),
            action: z(batch),
            resid: z(batch * v),
            scale: z(batch),
        }
    }

    pub fn bytes(&self) -> usize {
        let n: usize = [&self.film, &self.a, &self.m, &self.h, &self.gh, &self.gm, &self.ga, &self.dfilm, &self.dm]
            .iter()
            .flat_map(|v| v.iter().map(Vec::len))
            .sum::<usize>()
            + self.dgh.len() * 3
            + self.resid.len();
        n * std::mem::size_of::<T>() + self.conv.bytes()
    }
}

impl ActionNet {
    pub fn new(arch: ActionArch) -> Self {
        let (c, f) = (arch.channels, arch.fourier_features);
        let mut layout = ParamLayout::default();
        let layers = (0..arch.layers)
            .map(|l| {
                let cin = if l == 0 { 1 } else { c };
                Layer {
                    w: layout.push(format!("conv{l}.w"), &[c, cin, 3, 3]),
                    b: layout.push(format!("conv{l}.b"), &[c]),
                    film_w: layout.push(format!("film{l}.w"), &[2 * c, 2 * f]),
                    film_b: layout.push(format!("film{l}.b"), &[2 * c]),
                    cin,
                }
            })
            .collect();
        let head_w = layout.push("head.w", &[c]);
        let head_b = layout.push("head.b", &[1]);
        let ops = arch.operators.then(|| (layout.push("ops.w", &[N_OPS, OPS_DEGREE]), layout.push("ops.b", &[N_OPS])));
        let freqs = fourier_frequencies(f, arch.fourier_scale, arch.fourier_seed);
        ActionNet { arch, layout, freqs, layers, head_w, head_b, ops }
    }

    pub fn num_params(&self) -> usize {
        self.layout.len()
    }

    /// Multiply-adds of the convolutions per training step (forward, input gradient and its
    /// backward: 1 + 1 + 5 convolution passes per layer, the first layer's input pass aside).
    pub fn train_macs(&self, batch: usize, lt: usize, lx: usize) -> f64 {
        self.layers.iter().map(|l| 7.0 * self.shape(l, batch, lt, lx).macs()).sum()
    }

    fn shape(&self, l: &Layer, b: usize, lt: usize, lx: usize) -> Conv3Shape {
        Conv3Shape { b, cin: l.cin, cout: self.arch.channels, lt, lx }
    }

    /// Convolution weights N(0, 1/fan_in); FiLM weights small (0.1/√fan_in) so that every
    /// noise level starts from nearly the same energy density; biases and the operator
    /// coefficients zero.
    pub fn init_params<T: Float>(&self, seed: u64) -> Vec<T> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p = vec![T::ZERO; self.layout.len()];
        let mut fill = |idx: usize, fan: usize, gain: f64| {
            let std = gain / (fan as f64).sqrt();
            for v in &mut p[self.layout.range(idx)] {
                let z: f64 = StandardNormal.sample(&mut rng);
                *v = T::from_f64(std * z);
            }
        };
        for l in &self.layers {
            fill(l.w, l.cin * TAPS, 1.0);
            fill(l.film_w, 2 * self.arch.fourier_features, 0.1);
        }
        // With explicit operators e_θ starts at zero (head weights 0; its gradient still
        // reaches them), so the explicit terms take what they can represent before e_θ,
        // which can mimic them only approximately, learns the rest.
        fill(self.head_w, self.arch.channels, if self.ops.is_some() { 0.0 } else { 1.0 });
        p
    }

    /// action[b] = S_θ(x_b, σ_b) for x [B, L_t, L_x]; keeps the activations in `ws`.
    pub fn forward<T: Float>(&self, action: &mut [T], params: &[T], x: &[T], sigma: &[T], ws: &mut ActionWorkspace<T>) {
        let (bsz, c, v) = (ws.batch, self.arch.channels, ws.lt * ws.lx);
        assert_eq!(x.len(), bsz * v, "action network: input is not [{bsz}, {}, {}]", ws.lt, ws.lx);
        fourier_forward(&mut ws.fourier, sigma, &self.freqs);
        ws.h[0].copy_from_slice(x);
        for (i, l) in self.layers.iter().enumerate() {
            let s = self.shape(l, bsz, ws.lt, ws.lx);
            let film_w = &params[self.layout.range(l.film_w)];
            dense_forward(&mut ws.film[i], &ws.fourier, film_w, &params[self.layout.range(l.film_b)], 2 * c);
            let bias = &params[self.layout.range(l.b)];
            conv3_forward(&mut ws.a[i], &ws.h[i], &params[self.layout.range(l.w)], Some(bias), &s, &mut ws.conv);
            film_forward(&mut ws.m[i], &ws.a[i], &ws.film[i], c, v);
            silu_forward(&mut ws.h[i + 1], &ws.m[i]);
        }
        let hw = &params[self.layout.range(self.head_w)];
        let hb = params[self.layout.range(self.head_b)][0];
        let top = &ws.h[self.arch.layers];
        for (b, s) in ws.action.iter_mut().enumerate() {
            let mut e = T::ZERO;
            for (ch, w) in hw.iter().enumerate() {
                e += *w * top[(b * c + ch) * v..][..v].iter().copied().sum::<T>();
            }
            *s = e + hb * T::from_f64(v as f64);
        }
        if let Some((w, b)) = self.ops {
            ops_sigma_features(&mut ws.ops_feat, sigma);
            dense_forward(
                &mut ws.coef,
                &ws.ops_feat,
                &params[self.layout.range(w)],
                &params[self.layout.range(b)],
                N_OPS,
            );
            for (bi, s) in ws.action.iter_mut().enumerate() {
                let o = ops_forward(&ws.h[0][bi * v..(bi + 1) * v], ws.lt, ws.lx);
                *s += (0..N_OPS).map(|k| ws.coef[bi * N_OPS + k] * o[k]).sum::<T>();
            }
        }
        action[..bsz].copy_from_slice(&ws.action);
    }

    /// gx = ∂S_b/∂x for the last `forward` on `ws` (the network's score is −gx, in units
    /// of its input). Keeps the pass's tensors for `input_grad_backward`.
    pub fn input_grad<T: Float>(&self, gx: &mut [T], params: &[T], ws: &mut ActionWorkspace<T>) {
        let (bsz, c, v) = (ws.batch, self.arch.channels, ws.lt * ws.lx);
        let hw = &params[self.layout.range(self.head_w)];
        let top = &mut ws.gh[self.arch.layers];
        top.par_chunks_mut(v).enumerate().for_each(|(i, g)| g.fill(hw[i % c]));
        for (i, l) in self.layers.iter().enumerate().rev() {
            let s = self.shape(l, bsz, ws.lt, ws.lx);
            ws.gm[i].fill(T::ZERO);
            silu_backward(&mut ws.gm[i], &ws.gh[i + 1], &ws.m[i]);
            film_scale(&mut ws.ga[i], &ws.gm[i], &ws.film[i], c, v);
            ws.gh[i].fill(T::ZERO);
            conv3_backward_input(&mut ws.gh[i], &ws.ga[i], &params[self.layout.range(l.w)], &s, &mut ws.conv);
        }
        gx[..bsz * v].copy_from_slice(&ws.gh[0]);
        if self.ops.is_some() {
            let (x, coef, (lt, lx)) = (&ws.h[0], &ws.coef, (ws.lt, ws.lx));
            gx[..bsz * v].par_chunks_mut(v).enumerate().for_each(|(b, g)| {
                ops_input_grad(g, &x[b * v..(b + 1) * v], &coef[b * N_OPS..(b + 1) * N_OPS], lt, lx)
            });
        }
    }

    /// Accumulates into `dparams` the gradient of a loss L whose gradient in gx is `dgx`,
    /// for the last `forward` + `input_grad` on `ws`.
    pub fn input_grad_backward<T: Float>(
        &self,
        dparams: &mut [T],
        dgx: &[T],
        params: &[T],
        ws: &mut ActionWorkspace<T>,
    ) {
        let (bsz, c, v) = (ws.batch, self.arch.channels, ws.lt * ws.lx);
        if let Some((w, b)) = self.ops {
            let mut dcoef = vec![T::ZERO; bsz * N_OPS];
            dcoef.par_chunks_mut(N_OPS).enumerate().for_each(|(bi, dc)| {
                let r = bi * v..(bi + 1) * v;
                ops_input_grad_backward(dc, &dgx[r.clone()], &ws.h[0][r], ws.lt, ws.lx)
            });
            let (dw, db) = pair(dparams, self.layout.range(w), self.layout.range(b));
            dense_backward(dw, db, &dcoef, &ws.ops_feat, N_OPS);
        }
        ws.dgh[..bsz * v].copy_from_slice(&dgx[..bsz * v]);
        ws.dfilm.iter_mut().for_each(|d| d.fill(T::ZERO));
        ws.dm.iter_mut().for_each(|d| d.fill(T::ZERO));
        // Back through the input-gradient pass, first layer first (it ran last).
        for (i, l) in self.layers.iter().enumerate() {
            let s = self.shape(l, bsz, ws.lt, ws.lx);
            let n_in = bsz * l.cin * v;
            let w = &params[self.layout.range(l.w)];
            // gh_i = conv3ᵀ(ga_i, w): linear in ga_i (adjoint conv3) and in w.
            let dga = &mut ws.scratch;
            conv3_forward(dga, &ws.dgh[..n_in], w, None, &s, &mut ws.conv);
            conv3_backward_weight(&mut dparams[self.layout.range(l.w)], &ws.ga[i], &ws.dgh[..n_in], &s, &mut ws.conv);
            // ga_i = gm_i (1 + γ_i).
            film_scale_backward(&mut ws.dfilm[i], dga, &ws.gm[i], c, v);
            film_scale_in_place(dga, &ws.film[i], c, v);
            // gm_i = gh_{i+1} u'(m_i).
            ws.dgh_next.fill(T::ZERO);
            silu_backward_backward(&mut ws.dgh_next, &mut ws.dm[i], &ws.scratch, &ws.gh[i + 1], &ws.m[i]);
            std::mem::swap(&mut ws.dgh, &mut ws.dgh_next);
        }
        // gh_L is the head's weight, broadcast over batch and sites.
        let dhw = &mut dparams[self.layout.range(self.head_w)];
        for (i, plane) in ws.dgh.chunks(v).enumerate() {
            dhw[i % c] += plane.iter().copied().sum::<T>();
        }
        // Back through the forward pass; S's own value is not in the loss, so dh_L = 0.
        for (i, l) in self.layers.iter().enumerate().rev() {
            if i + 1 < self.arch.layers {
                silu_backward(&mut ws.dm[i], &ws.dgh, &ws.m[i]);
            }
            let s = self.shape(l, bsz, ws.lt, ws.lx);
            film_backward(&mut ws.scratch, &mut ws.dfilm[i], &ws.dm[i], &ws.a[i], &ws.film[i], c, v);
            let da = &ws.scratch;
            conv3_backward_weight(&mut dparams[self.layout.range(l.w)], da, &ws.h[i], &s, &mut ws.conv);
            conv3_backward_bias(&mut dparams[self.layout.range(l.b)], da, &s);
            if i > 0 {
                // dh_i, consumed by the next iteration's silu_backward (kept in dgh).
                ws.dgh.fill(T::ZERO);
                conv3_backward_input(&mut ws.dgh, da, &params[self.layout.range(l.w)], &s, &mut ws.conv);
            }
            let (dw, db) = pair(dparams, self.layout.range(l.film_w), self.layout.range(l.film_b));
            dense_backward(dw, db, &ws.dfilm[i], &ws.fourier, 2 * c);
        }
    }

    /// The score-matching loss on the network's score: with F = −∂S/∂x,
    /// ℓ_b = Σ_s (a_b F + e_b)², written to `per_sample`; returns L = mean_b ℓ_b.
    /// (`diffusion` prepares x = c_in φ_σ, a_b and e_b, as for the U-Net's output F.)
    #[allow(clippy::too_many_arguments)]
    pub fn score_loss_forward<T: Float>(
        &self,
        per_sample: &mut [T],
        params: &[T],
        x: &[T],
        sigma: &[T],
        scale: &[T],
        offset: &[T],
        ws: &mut ActionWorkspace<T>,
    ) -> T {
        let (bsz, v) = (ws.batch, ws.lt * ws.lx);
        let mut action = vec![T::ZERO; bsz];
        self.forward(&mut action, params, x, sigma, ws);
        let mut gx = std::mem::take(&mut ws.resid);
        self.input_grad(&mut gx, params, ws);
        ws.scale.copy_from_slice(&scale[..bsz]);
        let mut total = T::ZERO;
        for b in 0..bsz {
            let mut l = T::ZERO;
            for i in b * v..(b + 1) * v {
                let r = offset[i] - scale[b] * gx[i];
                gx[i] = r;
                l += r * r;
            }
            per_sample[b] = l;
            total += l;
        }
        ws.resid = gx;
        total / T::from_f64(bsz as f64)
    }

    /// Accumulates dL/dθ of the last `score_loss_forward` on `ws`.
    pub fn score_loss_backward<T: Float>(&self, dparams: &mut [T], params: &[T], ws: &mut ActionWorkspace<T>) {
        let v = ws.lt * ws.lx;
        let f = T::from_f64(-2.0 / ws.batch as f64);
        let dgx: Vec<T> = ws.resid.iter().enumerate().map(|(i, r)| f * ws.scale[i / v] * *r).collect();
        self.input_grad_backward(dparams, &dgx, params, ws);
    }
}

/// Two adjacent ranges of one buffer, mutably.
fn pair<T>(buf: &mut [T], a: std::ops::Range<usize>, b: std::ops::Range<usize>) -> (&mut [T], &mut [T]) {
    assert_eq!(a.end, b.start);
    buf[a.start..b.end].split_at_mut(a.len())
}

/// Powers of the σ feature of the explicit operators' coefficients.
const OPS_DEGREE: usize = 3;

/// feat[b, j] = u_b^(j+1) with u = σ²/(σ² + 1): the coefficients c_k(σ) = b_k + Σ_j w_kj u^j
/// are analytic in σ² and tend to b_k as σ → 0, as the couplings of the noised action
/// p_σ = p ∗ N(0, σ²) do (they move by O(σ²)). Fourier features of log σ, which e_θ's FiLM
/// uses, oscillate without a limit there; with these, training over σ ∈ [σ_min, σ_max]
/// fixes the σ → 0 couplings as the constant of a smooth fit instead of leaving them to the
/// embedding at the range's noisy lower end. u is bounded, so large σ stay tame.
fn ops_sigma_features<T: Float>(feat: &mut [T], sigma: &[T]) {
    for (f, s) in feat.chunks_mut(OPS_DEGREE).zip(sigma) {
        let s2 = s.to_f64() * s.to_f64();
        let u = s2 / (s2 + 1.0);
        let mut p = 1.0;
        for fj in f.iter_mut() {
            p *= u;
            *fj = T::from_f64(p);
        }
    }
}

/// out[b, j] = Σ_k w[j, k] fourier[b, k] + bias[j], j < n_out (FiLM's (γ, β), the operator
/// coefficients).
fn dense_forward<T: Float>(out: &mut [T], fourier: &[T], w: &[T], bias: &[T], n_out: usize) {
    let nf = fourier.len() / (out.len() / n_out);
    for (fb, four) in out.chunks_mut(n_out).zip(fourier.chunks(nf)) {
        for (j, o) in fb.iter_mut().enumerate() {
            *o = bias[j] + w[j * nf..][..nf].iter().zip(four).map(|(a, b)| *a * *b).sum::<T>();
        }
    }
}

fn dense_backward<T: Float>(dw: &mut [T], dbias: &mut [T], dfilm: &[T], fourier: &[T], n_out: usize) {
    let nf = dw.len() / n_out;
    for (db, four) in dfilm.chunks(n_out).zip(fourier.chunks(nf)) {
        for (j, d) in db.iter().enumerate() {
            dbias[j] += *d;
            dw[j * nf..][..nf].iter_mut().zip(four).for_each(|(w, f)| *w += *d * *f);
        }
    }
}

/// m[b, c] = a[b, c] (1 + γ[b, c]) + β[b, c].
fn film_forward<T: Float>(m: &mut [T], a: &[T], film: &[T], c: usize, v: usize) {
    m.par_chunks_mut(v).zip(a.par_chunks(v)).enumerate().for_each(|(i, (m, a))| {
        let (b, ch) = (i / c, i % c);
        let (g, beta) = (T::ONE + film[b * 2 * c + ch], film[b * 2 * c + c + ch]);
        m.iter_mut().zip(a).for_each(|(m, a)| *m = *a * g + beta);
    });
}

/// out[b, c] = inp[b, c] (1 + γ[b, c]) (the FiLM's linear part, as the gradients see it).
fn film_scale<T: Float>(out: &mut [T], inp: &[T], film: &[T], c: usize, v: usize) {
    out.par_chunks_mut(v).zip(inp.par_chunks(v)).enumerate().for_each(|(i, (o, x))| {
        let g = T::ONE + film[(i / c) * 2 * c + i % c];
        o.iter_mut().zip(x).for_each(|(o, x)| *o = *x * g);
    });
}

fn film_scale_in_place<T: Float>(x: &mut [T], film: &[T], c: usize, v: usize) {
    x.par_chunks_mut(v).enumerate().for_each(|(i, x)| {
        let g = T::ONE + film[(i / c) * 2 * c + i % c];
        x.iter_mut().for_each(|x| *x *= g);
    });
}

/// Per plane of `v` sites, in parallel: (Σ_s f(x_s, y_s).0, Σ_s f(x_s, y_s).1), each sum
/// over interleaved lanes in a fixed order (vectorised, and the same for any thread count).
fn plane_sums<T: Float>(x: &[T], y: &[T], v: usize, f: impl Fn(T, T) -> (T, T) + Sync) -> Vec<(T, T)> {
    x.par_chunks(v).zip(y.par_chunks(v)).map(|(x, y)| lane_sum2(x, y, &f)).collect()
}

/// dγ[b, c] += Σ_s dout · inp for out = inp (1 + γ).
fn film_scale_backward<T: Float>(dfilm: &mut [T], dout: &[T], inp: &[T], c: usize, v: usize) {
    for (i, (s, _)) in plane_sums(dout, inp, v, |d, x| (d * x, T::ZERO)).into_iter().enumerate() {
        dfilm[(i / c) * 2 * c + i % c] += s;
    }
}

/// The backward of `film_forward`: da = dm (1 + γ) (overwrites), dγ += Σ_s dm a, dβ += Σ_s dm.
fn film_backward<T: Float>(da: &mut [T], dfilm: &mut [T], dm: &[T], a: &[T], film: &[T], c: usize, v: usize) {
    film_scale(da, dm, film, c, v);
    for (i, (dg, db)) in plane_sums(dm, a, v, |d, a| (d * a, d)).into_iter().enumerate() {
        dfilm[(i / c) * 2 * c + i % c] += dg;
        dfilm[(i / c) * 2 * c + c + i % c] += db;
    }
}

#[cfg(test)]
#[path = "action_tests.rs"]
mod tests;
