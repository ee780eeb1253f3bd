//! Periodic U-Net score network F_θ(x, log σ) built from the layers of this module.
//!
//! Block structure (pre-activation residual unit, one 3×3 conv each):
//!   h → GroupNorm → FiLM(scale, shift from the σ embedding) → SiLU → conv3×3 → + skip(h)
//! with skip = identity, or a 1×1 conv when the channel count changes. Down path: stem
//! conv, `blocks_per_level` blocks per level, 2×2 average pool between levels. Up path:
//! nearest up-sampling, concat with the down path's skip of that level, blocks. Head:
//! GroupNorm → SiLU → conv3×3 to one channel. Every conv is periodic, so the network is
//! fully convolutional on any H×W divisible by 2^(levels−1) (`Arch::stride`) and exactly
//! equivariant under translations by multiples of that stride.

use super::activation::*;
use super::conv::{conv2d_backward, conv2d_forward, ConvScratch, ConvShape};
use super::embed::{fourier_forward, fourier_frequencies};
use super::float::Float;
use super::groupnorm::{groupnorm_backward, groupnorm_forward};
use super::params::ParamLayout;
use super::sample::{down_backward, down_forward, up_backward, up_forward};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// Channels per resolution level; `channels.len() − 1` down-samplings.
    pub channels: Vec<usize>,
    pub blocks_per_level: usize,
    /// GroupNorm groups; must divide every normalised channel count (c_l and c_l + c_{l+1}).
    pub groups: usize,
    pub embed_dim: usize,
    pub fourier_features: usize,
    /// Standard deviation of the fixed Fourier frequencies (in units of log σ).
    pub fourier_scale: f64,
    pub fourier_seed: u64,
    /// σ_data of the input preconditioning c_in = 1/√(σ_data² + σ²).
    pub sigma_data: f64,
}

impl Arch {
    /// CI-sized: trains in seconds at L = 8.
    pub fn tiny() -> Self {
        Arch {
            channels: vec![8, 16],
            blocks_per_level: 1,
            groups: 4,
            embed_dim: 16,
            fourier_features: 8,
            fourier_scale: 1.0,
            fourier_seed: 0x5eed,
            sigma_data: 1.0,
        }
    }

    pub fn small() -> Self {
        Arch {
            channels: vec![16, 32, 64],
            blocks_per_level: 2,
            groups: 8,
            embed_dim: 64,
            fourier_features: 16,
            ..Self::tiny()
        }
    }

    /// Size of the published network (channels 32, 64, 128, 256; ≈1.1 M parameters).
    pub fn dmassq() -> Self {
        Arch {
            channels: vec![32, 64, 128, 256],
            blocks_per_level: 1,
            groups: 8,
            embed_dim: 32,
            fourier_features: 16,
            ..Self::tiny()
        }
    }

    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "small" => Some(Self::small()),
            "dmassq" => Some(Self::dmassq()),
            _ => None,
        }
    }

    /// Lattice extents must be multiples of this; translations by it commute exactly.
    pub fn stride(&self) -> usize {
        1 << (self.channels.len() - 1)
    }
}

impl Default for Arch {
    fn default() -> Self {
        Self::small()
    }
}

/// A tensor of the plan: `[B, c, h, w]`.
#[derive(Clone, Copy, Debug)]
struct TSpec {
    c: usize,
    h: usize,
    w: usize,
}

#[derive(Clone, Debug)]
enum Op {
    Fourier { out: usize },
    Conv { w: usize, b: usize, cout: usize, k: usize, inp: usize, out: usize },
    Norm { g: usize, b: usize, inp: usize, out: usize, stats: usize },
    Film { inp: usize, ss: usize, out: usize },
    Silu { inp: usize, out: usize },
    Add { a: usize, b: usize, out: usize },
    Down { inp: usize, out: usize },
    Up { inp: usize, out: usize },
    Concat { a: usize, b: usize, out: usize },
}

struct Plan {
    layout: ParamLayout,
    /// Per parameter tensor: fan-in and an init gain (0 marks a GroupNorm γ = 1 / β = 0).
    init: Vec<(usize, f64)>,
    tensors: Vec<TSpec>,
    ops: Vec<Op>,
    out: usize,
    groups: usize,
}

const X: usize = 0;

impl Plan {
    fn tensor(&mut self, c: usize, h: usize, w: usize) -> usize {
        self.tensors.push(TSpec { c, h, w });
        self.tensors.len() - 1
    }
    fn param(&mut self, name: String, shape: &[usize], fan_in: usize, gain: f64) -> usize {
        self.init.push((fan_in, gain));
        self.layout.push(name, shape)
    }
    fn conv(&mut self, name: &str, inp: usize, cout: usize, k: usize, gain: f64) -> usize {
        let t = self.tensors[inp];
        let fan = t.c * k * k;
        let w = self.param(format!("{name}.weight"), &[cout, t.c, k, k], fan, gain);
        let b = self.param(format!("{name}.bias"), &[cout], fan, -1.0);
        let out = self.tensor(cout, t.h, t.w);
        self.ops.push(Op::Conv { w, b, cout, k, inp, out });
        out
    }
    fn norm(&mut self, name: &str, inp: usize) -> usize {
        let t = self.tensors[inp];
        let g = self.param(format!("{name}.gamma"), &[t.c], 0, 0.0);
        let b = self.param(format!("{name}.beta"), &[t.c], 0, -1.0);
        let out = self.tensor(t.c, t.h, t.w);
        let stats = self.tensor(2 * self.groups, 1, 1);
        self.ops.push(Op::Norm { g, b, inp, out, stats });
        out
    }
    fn unary(&mut self, inp: usize, c: usize, h: usize, w: usize, f: impl Fn(usize, usize) -> Op) -> usize {
        let out = self.tensor(c, h, w);
        self.ops.push(f(inp, out));
        out
    }
    fn silu(&mut self, inp: usize) -> usize {
        let t = self.tensors[inp];
        self.unary(inp, t.c, t.h, t.w, |inp, out| Op::Silu { inp, out })
    }
    fn block(&mut self, name: &str, inp: usize, emb: usize, cout: usize) -> usize {
        let t = self.tensors[inp];
        let g = self.norm(&format!("{name}.norm"), inp);
        let ss = self.conv(&format!("{name}.film"), emb, 2 * t.c, 1, 0.1);
        let f = self.tensor(t.c, t.h, t.w);
        self.ops.push(Op::Film { inp: g, ss, out: f });
        let a = self.silu(f);
        let c = self.conv(&format!("{name}.conv"), a, cout, 3, 1.0);
        let skip = if t.c == cout { inp } else { self.conv(&format!("{name}.skip"), inp, cout, 1, 1.0) };
        let out = self.tensor(cout, t.h, t.w);
        self.ops.push(Op::Add { a: c, b: skip, out });
        out
    }

    fn build(arch: &Arch, h: usize, w: usize) -> Plan {
        let s = arch.stride();
        assert!(h % s == 0 && w % s == 0 && h > 0 && w > 0, "lattice {h}×{w} not divisible by 2^(levels−1) = {s}");
        let mut p = Plan {
            layout: ParamLayout::default(),
            init: vec![],
            tensors: vec![],
            ops: vec![],
            out: 0,
            groups: arch.groups,
        };
        let x = p.tensor(1, h, w);
        debug_assert_eq!(x, X);
        let e0 = p.tensor(2 * arch.fourier_features, 1, 1);
        p.ops.push(Op::Fourier { out: e0 });
        let e1 = p.conv("embed.0", e0, arch.embed_dim, 1, 1.0);
        let e2 = p.silu(e1);
        let emb = p.conv("embed.1", e2, arch.embed_dim, 1, 1.0);

        let ch = &arch.channels;
        let nl = ch.len();
        let mut hcur = p.conv("stem", x, ch[0], 3, 1.0);
        let mut skips = vec![];
        for (l, &c) in ch.iter().enumerate() {
            for j in 0..arch.blocks_per_level {
                hcur = p.block(&format!("down{l}.{j}"), hcur, emb, c);
            }
            if l + 1 < nl {
                skips.push(hcur);
                let t = p.tensors[hcur];
                hcur = p.unary(hcur, t.c, t.h / 2, t.w / 2, |inp, out| Op::Down { inp, out });
            }
        }
        for l in (0..nl - 1).rev() {
            let t = p.tensors[hcur];
            let u = p.unary(hcur, t.c, 2 * t.h, 2 * t.w, |inp, out| Op::Up { inp, out });
            let sk = skips[l];
            let cat = p.tensor(t.c + ch[l], 2 * t.h, 2 * t.w);
            p.ops.push(Op::Concat { a: u, b: sk, out: cat });
            hcur = cat;
            for j in 0..arch.blocks_per_level {
                hcur = p.block(&format!("up{l}.{j}"), hcur, emb, ch[l]);
            }
        }
        let g = p.norm("head.norm", hcur);
        let a = p.silu(g);
        p.out = p.conv("head.conv", a, 1, 3, 0.1);
        p
    }
}

/// The score network: architecture, parameter layout and the fixed Fourier frequencies.
#[derive(Clone, Debug)]
pub struct Network {
    pub arch: Arch,
    pub layout: ParamLayout,
    freqs: Vec<f64>,
    init: Vec<(usize, f64)>,
}

/// Activations, their gradients and GEMM scratch for one (arch, B, H, W); reused per step.
pub struct Workspace<T> {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    tensors: Vec<TSpec>,
    ops: Vec<Op>,
    out: usize,
    acts: Vec<Vec<T>>,
    grads: Vec<Vec<T>>,
    sigma: Vec<T>,
    scratch: ConvScratch<T>,
}

impl<T: Float> Workspace<T> {
    pub fn new(net: &Network, batch: usize, h: usize, w: usize) -> Self {
        let plan = Plan::build(&net.arch, h, w);
        assert_eq!(plan.layout, net.layout);
        let n = |t: &TSpec| batch * t.c * t.h * t.w;
        let mut scratch = ConvScratch::default();
        for op in &plan.ops {
            if let Op::Conv { cout, k, inp, .. } = *op {
                let t = plan.tensors[inp];
                scratch.reserve(&ConvShape { b: batch, cin: t.c, cout, h: t.h, w: t.w, k });
            }
        }
        Workspace {
            batch,
            h,
            w,
            acts: plan.tensors.iter().map(|t| vec![T::ZERO; n(t)]).collect(),
            grads: plan.tensors.iter().map(|t| vec![T::ZERO; n(t)]).collect(),
            tensors: plan.tensors,
            ops: plan.ops,
            out: plan.out,
            sigma: vec![T::ZERO; batch],
            scratch,
        }
    }

    /// Bytes held by activations, gradients and scratch.
    pub fn bytes(&self) -> usize {
        let a: usize = self.acts.iter().map(|v| v.len()).sum();
        (2 * a + self.scratch.col.len() + self.scratch.tmp.len()) * std::mem::size_of::<T>()
    }

    fn cshape(&self, inp: usize, cout: usize, k: usize) -> ConvShape {
        let t = self.tensors[inp];
        ConvShape { b: self.batch, cin: t.c, cout, h: t.h, w: t.w, k }
    }

    /// GEMM FLOPs of one forward pass (2·M·N·K per convolution).
    pub fn forward_flops(&self) -> f64 {
        self.ops
            .iter()
            .map(|op| match *op {
                Op::Conv { cout, k, inp, .. } => self.cshape(inp, cout, k).gemm_flops(),
                _ => 0.0,
            })
            .sum()
    }

    /// GEMM FLOPs of one backward pass: dW everywhere, dinp except for the input conv
    /// and the first embedding layer.
    pub fn backward_flops(&self) -> f64 {
        self.ops
            .iter()
            .map(|op| match *op {
                Op::Conv { cout, k, inp, .. } => {
                    let f = self.cshape(inp, cout, k).gemm_flops();
                    if inp == X || matches!(self.ops[0], Op::Fourier { out } if out == inp) {
                        f
                    } else {
                        2.0 * f
                    }
                }
                _ => 0.0,
            })
            .sum()
    }
}

/// Two disjoint mutable parameter slices that the plan laid out back to back.
fn pair<'a, T>(buf: &'a mut [T], l: &ParamLayout, a: usize, b: usize) -> (&'a mut [T], &'a mut [T]) {
    let (ra, rb) = (l.range(a), l.range(b));
    assert_eq!(ra.end, rb.start);
    buf[ra.start..rb.end].split_at_mut(ra.len())
}

impl Network {
    pub fn new(arch: Arch) -> Self {
        let s = arch.stride();
        let plan = Plan::build(&arch, s, s);
        let freqs = fourier_frequencies(arch.fourier_features, arch.fourier_scale, arch.fourier_seed);
        Network { arch, layout: plan.layout, freqs, init: plan.init }
    }

    pub fn num_params(&self) -> usize {
        self.layout.len()
    }

    /// Conv / dense weights N(0, gain²/fan_in), biases and GroupNorm β zero, γ one.
    /// FiLM and head weights start small (gain 0.1) so the initial net is near identity
    /// modulation and near-zero output, i.e. the DSM loss starts near its zero-output value.
    pub fn init_params<T: Float>(&self, seed: u64) -> Vec<T> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p = vec![T::ZERO; self.layout.len()];
        for (e, &(fan, gain)) in self.layout.entries.iter().zip(&self.init) {
            let dst = &mut p[e.range()];
            if gain > 0.0 {
                let std = gain / (fan as f64).sqrt();
                for v in dst {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *v = T::from_f64(std * z);
                }
            } else if gain == 0.0 {
                dst.fill(T::ONE);
            }
        }
        p
    }

    /// out[B,1,H,W] = F_θ(x[B,1,H,W], log σ[B]). Keeps what backward needs in `ws`.
    pub fn forward<T: Float>(&self, params: &[T], x: &[T], sigma: &[T], out: &mut [T], ws: &mut Workspace<T>) {
        assert_eq!(params.len(), self.layout.len());
        assert_eq!(x.len(), ws.acts[X].len());
        assert_eq!(sigma.len(), ws.batch);
        ws.acts[X].copy_from_slice(x);
        ws.sigma.copy_from_slice(sigma);
        let bsz = ws.batch;
        let l = &self.layout;
        for i in 0..ws.ops.len() {
            let op = ws.ops[i].clone();
            let o = match op {
                Op::Fourier { out } | Op::Conv { out, .. } | Op::Norm { out, .. } => out,
                Op::Film { out, .. } | Op::Silu { out, .. } | Op::Add { out, .. } => out,
                Op::Down { out, .. } | Op::Up { out, .. } | Op::Concat { out, .. } => out,
            };
            let mut dst = std::mem::take(&mut ws.acts[o]);
            let a = &ws.acts;
            match op {
                Op::Fourier { .. } => fourier_forward(&mut dst, &ws.sigma, &self.freqs),
                Op::Conv { w, b, cout, k, inp, .. } => {
                    let s = ws.cshape(inp, cout, k);
                    conv2d_forward(&mut dst, &a[inp], &params[l.range(w)], &params[l.range(b)], &s, &mut ws.scratch)
                }
                Op::Norm { g, b, inp, stats, .. } => {
                    let t = ws.tensors[inp];
                    let mut st = std::mem::take(&mut ws.acts[stats]);
                    groupnorm_forward(
                        &mut dst,
                        &mut st,
                        &ws.acts[inp],
                        &params[l.range(g)],
                        &params[l.range(b)],
                        bsz,
                        t.c,
                        t.h * t.w,
                        self.arch.groups,
                    );
                    ws.acts[stats] = st;
                }
                Op::Film { inp, ss, .. } => {
                    let t = ws.tensors[inp];
                    film_forward(&mut dst, &a[inp], &a[ss], bsz, t.c, t.h * t.w)
                }
                Op::Silu { inp, .. } => silu_forward(&mut dst, &a[inp]),
                Op::Add { a: x1, b: x2, .. } => add_forward(&mut dst, &a[x1], &a[x2]),
                Op::Down { inp, .. } => {
                    let t = ws.tensors[inp];
                    down_forward(&mut dst, &a[inp], bsz * t.c, t.h, t.w)
                }
                Op::Up { inp, .. } => {
                    let t = ws.tensors[inp];
                    up_forward(&mut dst, &a[inp], bsz * t.c, t.h, t.w)
                }
                Op::Concat { a: x1, b: x2, .. } => {
                    let (t1, t2) = (ws.tensors[x1], ws.tensors[x2]);
                    concat_forward(&mut dst, &a[x1], t1.c, &a[x2], t2.c, bsz, t1.h * t1.w)
                }
            }
            ws.acts[o] = dst;
        }
        out.copy_from_slice(&ws.acts[ws.out]);
    }

    /// Accumulates dL/dθ into `dparams` (and writes dL/dx into `dx` if given) for the
    /// last `forward` on `ws`, given dout = dL/d(out).
    pub fn backward<T: Float>(
        &self,
        params: &[T],
        dparams: &mut [T],
        dx: Option<&mut [T]>,
        dout: &[T],
        ws: &mut Workspace<T>,
    ) {
        assert_eq!(dparams.len(), self.layout.len());
        let want_dx = dx.is_some();
        ws.grads.par_iter_mut().for_each(|g| g.fill(T::ZERO));
        ws.grads[ws.out].copy_from_slice(dout);
        let bsz = ws.batch;
        let l = &self.layout;
        let fourier = match ws.ops[0] {
            Op::Fourier { out } => out,
            _ => unreachable!(),
        };
        for i in (0..ws.ops.len()).rev() {
            let op = ws.ops[i].clone();
            let a = &ws.acts;
            match op {
                Op::Fourier { .. } => {}
                Op::Conv { w, b, cout, k, inp, out } => {
                    let s = ws.cshape(inp, cout, k);
                    let (dw, db) = pair(dparams, l, w, b);
                    let need = !(inp == fourier || (inp == X && !want_dx));
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    conv2d_backward(
                        need.then_some(&mut din[..]),
                        dw,
                        db,
                        &ws.grads[out],
                        &a[inp],
                        &params[l.range(w)],
                        &s,
                        &mut ws.scratch,
                    );
                    ws.grads[inp] = din;
                }
                Op::Norm { g, b, inp, out, stats } => {
                    let t = ws.tensors[inp];
                    let (dg, db) = pair(dparams, l, g, b);
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    groupnorm_backward(
                        &mut din,
                        dg,
                        db,
                        &ws.grads[out],
                        &a[inp],
                        &a[stats],
                        &params[l.range(g)],
                        bsz,
                        t.c,
                        t.h * t.w,
                        self.arch.groups,
                    );
                    ws.grads[inp] = din;
                }
                Op::Film { inp, ss, out } => {
                    let t = ws.tensors[inp];
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    let mut dss = std::mem::take(&mut ws.grads[ss]);
                    film_backward(&mut din, &mut dss, &ws.grads[out], &a[inp], &a[ss], bsz, t.c, t.h * t.w);
                    ws.grads[inp] = din;
                    ws.grads[ss] = dss;
                }
                Op::Silu { inp, out } => {
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    silu_backward(&mut din, &ws.grads[out], &a[inp]);
                    ws.grads[inp] = din;
                }
                Op::Add { a: x1, b: x2, out } => {
                    for src in [x1, x2] {
                        let mut din = std::mem::take(&mut ws.grads[src]);
                        accumulate(&mut din, &ws.grads[out]);
                        ws.grads[src] = din;
                    }
                }
                Op::Down { inp, out } => {
                    let t = ws.tensors[inp];
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    down_backward(&mut din, &ws.grads[out], bsz * t.c, t.h, t.w);
                    ws.grads[inp] = din;
                }
                Op::Up { inp, out } => {
                    let t = ws.tensors[inp];
                    let mut din = std::mem::take(&mut ws.grads[inp]);
                    up_backward(&mut din, &ws.grads[out], bsz * t.c, t.h, t.w);
                    ws.grads[inp] = din;
                }
                Op::Concat { a: x1, b: x2, out } => {
                    let (t1, t2) = (ws.tensors[x1], ws.tensors[x2]);
                    let mut d1 = std::mem::take(&mut ws.grads[x1]);
                    let mut d2 = std::mem::take(&mut ws.grads[x2]);
                    concat_backward(&mut d1, &mut d2, &ws.grads[out], t1.c, t2.c, bsz, t1.h * t1.w);
                    ws.grads[x1] = d1;
                    ws.grads[x2] = d2;
                }
            }
        }
        if let Some(dx) = dx {
            dx.copy_from_slice(&ws.grads[X]);
        }
    }
}

#[cfg(test)]
#[path = "unet_tests.rs"]
mod tests;
