//! Periodic U-Net score network F_θ(x, log σ) built from the layers of this module.
//!
//! Block structure (pre-activation residual unit, one 3×3 conv each):
//!   h → [GroupNorm] → FiLM(scale, shift from the σ embedding) → SiLU → conv3×3 → + skip(h)
//! with skip = identity, or a 1×1 conv when the channel count changes. Down path: stem
//! conv, `blocks_per_level` blocks per level, 2×2 average pool between levels. Up path:
//! nearest up-sampling, concat with the down path's skip of that level, blocks. Head:
//! [GroupNorm] → SiLU → conv3×3 to `out_channels` (one for a scalar field). Every conv is periodic, so the network is
//! fully convolutional on any H×W divisible by 2^(levels−1) (`Arch::stride`) and exactly
//! equivariant under translations by multiples of that stride.
//!
//! GroupNorm (`Arch::norm`) normalises over the whole lattice per configuration, so with it
//! the output at a site depends on volume-wide statistics (the magnetisation among them) and
//! what the network learnt on one volume does not carry to another. Without it the network
//! is local: the output at a site depends only on the input within
//! `Arch::receptive_radius` sites (Chebyshev distance), on any lattice.

use super::conv::ConvShape;
use super::embed::fourier_frequencies;
use super::float::Float;
use super::ops::{CpuOps, NetOps, NormShape};
use super::params::ParamLayout;
use anyhow::Result;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// Channels per resolution level; `channels.len() − 1` down-samplings.
    pub channels: Vec<usize>,
    pub blocks_per_level: usize,
    /// GroupNorm groups; must divide every normalised channel count (c_l and c_l + c_{l+1}).
    pub groups: usize,
    /// Whether blocks and head normalise (GroupNorm over the whole lattice). Without it the
    /// network is local (module docs). Files written before this option normalised.
    #[serde(default = "normalised")]
    pub norm: bool,
    pub embed_dim: usize,
    pub fourier_features: usize,
    /// Standard deviation of the fixed Fourier frequencies (in units of log σ).
    pub fourier_scale: f64,
    pub fourier_seed: u64,
    /// σ_data of the input preconditioning c_in = 1/√(σ_data² + σ²).
    pub sigma_data: f64,
    /// Input channels per site: 1 for a scalar field; a field with several values per site,
    /// or features of one (cos θ_P, sin θ_P of U(1) plaquettes), has more.
    #[serde(default = "one")]
    pub in_channels: usize,
    /// Output channels per site (one score component per degree of freedom).
    #[serde(default = "one")]
    pub out_channels: usize,
    /// Whether the diffusion objective feeds c_in(σ)·φ (a field of unbounded range) or the
    /// input as given (bounded features such as cos/sin of angles, which need no scaling).
    #[serde(default = "normalised")]
    pub scaled_input: bool,
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
            norm: true,
            in_channels: 1,
            out_channels: 1,
            scaled_input: true,
        }
    }

    /// The local network of the physics-informed score (the default of `latdiff train`): no
    /// normalisation, one down-sampling, receptive radius 7 < L/2 at the training lattice
    /// L = 16, so the learnt correction is a local function of the field that transfers to
    /// any volume.
    pub fn local() -> Self {
        Arch {
            channels: vec![32, 64],
            blocks_per_level: 1,
            groups: 1,
            embed_dim: 32,
            fourier_features: 16,
            norm: false,
            ..Self::tiny()
        }
    }

    /// CI-sized local network (`tiny` without normalisation).
    pub fn tiny_local() -> Self {
        Arch { norm: false, ..Self::tiny() }
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
            "local" => Some(Self::local()),
            "tiny-local" => Some(Self::tiny_local()),
            _ => None,
        }
    }

    pub const PRESETS: &'static str = "local, tiny-local, tiny, small, dmassq";

    /// How far (Chebyshev distance, in sites) an input can influence an output of a network
    /// without normalisation: a 3×3 conv at resolution stride s reaches s sites; a 2×2
    /// pooling from stride s followed by the nearest up-sampling back to it, s more.
    /// `None` with normalisation (then every site sees the whole lattice).
    pub fn receptive_radius(&self) -> Option<usize> {
        if self.norm {
            return None;
        }
        let nl = self.channels.len();
        let b = self.blocks_per_level;
        // stem and head; down-path blocks; per pooled level its pool/up pair and up blocks.
        let down: usize = (0..nl).map(|l| b << l).sum();
        let up: usize = (0..nl - 1).map(|l| (1 << l) + (b << l)).sum();
        Some(2 + down + up)
    }

    /// Lattice extents must be multiples of this; translations by it commute exactly.
    pub fn stride(&self) -> usize {
        1 << (self.channels.len() - 1)
    }
}

fn normalised() -> bool {
    true
}

fn one() -> usize {
    1
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

/// The plan's layers. `Nfs` is SiLU(FiLM(GroupNorm(inp))) (no FiLM without `ss`); its `tmp`
/// receive the GroupNorm and FiLM outputs where a backend composes the three layers.
#[derive(Clone, Debug)]
enum Op {
    Fourier { out: usize },
    Conv { w: usize, b: usize, cout: usize, k: usize, inp: usize, out: usize },
    Nfs { g: usize, b: usize, inp: usize, ss: Option<usize>, stats: usize, tmp: [usize; 2], out: usize },
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
    norm: bool,
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
    /// SiLU(FiLM(GroupNorm(inp))); FiLM's (scale, shift) from `film(self)`, which registers
    /// its parameters after the norm's (the layout of the unfused plan).
    fn norm_film_silu(&mut self, name: &str, inp: usize, film: impl FnOnce(&mut Self) -> Option<usize>) -> usize {
        let t = self.tensors[inp];
        let g = self.param(format!("{name}.gamma"), &[t.c], 0, 0.0);
        let b = self.param(format!("{name}.beta"), &[t.c], 0, -1.0);
        let ss = film(self);
        let stats = self.tensor(2 * self.groups, 1, 1);
        let tmp = [self.tensor(t.c, t.h, t.w), self.tensor(t.c, t.h, t.w)];
        let out = self.tensor(t.c, t.h, t.w);
        self.ops.push(Op::Nfs { g, b, inp, ss, stats, tmp, out });
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
        let film = |p: &mut Self| p.conv(&format!("{name}.film"), emb, 2 * t.c, 1, 0.1);
        let a = if self.norm {
            self.norm_film_silu(&format!("{name}.norm"), inp, |p| Some(film(p)))
        } else {
            let ss = film(self);
            let f = self.tensor(t.c, t.h, t.w);
            self.ops.push(Op::Film { inp, ss, out: f });
            self.silu(f)
        };
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
            norm: arch.norm,
        };
        let x = p.tensor(arch.in_channels, h, w);
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
        let a = if p.norm { p.norm_film_silu("head.norm", hcur, |_| None) } else { p.silu(hcur) };
        p.out = p.conv("head.conv", a, arch.out_channels, 3, 0.1);
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

/// Activations, their gradients and the backend (with its GEMM scratch) for one
/// (arch, B, H, W) on one device; reused per step. A tensor is `None` only while an op
/// writes it.
pub struct Workspace<B: NetOps> {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    tensors: Vec<TSpec>,
    ops: Vec<Op>,
    out: usize,
    acts: Vec<Option<B::Buf>>,
    grads: Vec<Option<B::Buf>>,
    /// Tensors that an op uses as its own scratch (not zeroed before a backward pass).
    scratch: Vec<bool>,
    sigma: Vec<B::Elem>,
    /// The device the tensors live on.
    pub dev: B,
}

/// The reference workspace: host vectors, rayon + gemm layers.
pub type CpuWorkspace<T> = Workspace<CpuOps<T>>;

impl<T: Float> Workspace<CpuOps<T>> {
    pub fn new(net: &Network, batch: usize, h: usize, w: usize) -> Self {
        Self::on(CpuOps::default(), net, batch, h, w).expect("host allocation")
    }
}

impl<B: NetOps> Workspace<B> {
    /// Allocates every tensor of the plan on `dev` and sizes its convolution scratch.
    pub fn on(mut dev: B, net: &Network, batch: usize, h: usize, w: usize) -> Result<Self> {
        let plan = Plan::build(&net.arch, h, w);
        assert_eq!(plan.layout, net.layout);
        let n = |t: &TSpec| batch * t.c * t.h * t.w;
        for op in &plan.ops {
            if let Op::Conv { cout, k, inp, .. } = *op {
                let t = plan.tensors[inp];
                dev.reserve_conv(&ConvShape { b: batch, cin: t.c, cout, h: t.h, w: t.w, k })?;
            }
        }
        let alloc = |dev: &mut B| -> Result<Vec<Option<B::Buf>>> {
            plan.tensors.iter().map(|t| dev.alloc(n(t)).map(Some)).collect()
        };
        let acts = alloc(&mut dev)?;
        let grads = alloc(&mut dev)?;
        let mut scratch = vec![false; plan.tensors.len()];
        for op in &plan.ops {
            if let Op::Nfs { tmp, .. } = op {
                tmp.iter().for_each(|&i| scratch[i] = true);
            }
        }
        Ok(Workspace {
            batch,
            h,
            w,
            acts,
            grads,
            scratch,
            tensors: plan.tensors,
            ops: plan.ops,
            out: plan.out,
            sigma: vec![B::Elem::ZERO; batch],
            dev,
        })
    }

    /// Bytes held by activations, gradients and scratch.
    pub fn bytes(&self) -> usize {
        let a: usize = self.tensors.iter().map(|t| self.batch * t.c * t.h * t.w).sum();
        2 * a * std::mem::size_of::<B::Elem>() + self.dev.scratch_bytes()
    }

    /// Copies the network input x[B,C_in,H,W] to the device.
    pub fn set_input(&mut self, x: &[B::Elem]) -> Result<()> {
        let t = self.acts[X].as_mut().expect("input tensor");
        self.dev.upload(t, x)
    }

    /// Copies the output of the last forward pass to the host.
    pub fn get_output(&mut self, out: &mut [B::Elem]) -> Result<()> {
        let t = self.acts[self.out].as_ref().expect("output tensor");
        self.dev.download(t, out)
    }

    /// Copies dL/dx of the last backward pass to the host.
    pub fn get_dinput(&mut self, dx: &mut [B::Elem]) -> Result<()> {
        let t = self.grads[X].as_ref().expect("input gradient");
        self.dev.download(t, dx)
    }
}

/// The tensor `i` of a workspace (present: only the op's own output is ever taken out).
fn t<X>(v: &[Option<X>], i: usize) -> &X {
    v[i].as_ref().expect("tensor in use by another op")
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

    /// The fixed Fourier frequencies of the σ embedding (an independent implementation of
    /// the network must use these to reproduce its output).
    pub fn fourier_freqs(&self) -> &[f64] {
        &self.freqs
    }

    /// GEMM FLOPs (2·M·N·K per convolution) of one forward and one backward pass over a
    /// batch on an h×w lattice. Backward: dW everywhere, dinp except for the input conv and
    /// the first embedding layer.
    pub fn gemm_flops(&self, batch: usize, h: usize, w: usize) -> (f64, f64) {
        let plan = Plan::build(&self.arch, h, w);
        let (mut fwd, mut bwd) = (0.0, 0.0);
        for op in &plan.ops {
            if let Op::Conv { cout, k, inp, .. } = *op {
                let t = plan.tensors[inp];
                let f = ConvShape { b: batch, cin: t.c, cout, h: t.h, w: t.w, k }.gemm_flops();
                let first = inp == X || matches!(plan.ops[0], Op::Fourier { out } if out == inp);
                fwd += f;
                bwd += if first { f } else { 2.0 * f };
            }
        }
        (fwd, bwd)
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

    /// out[B,C_out,H,W] = F_θ(x[B,C_in,H,W], log σ[B]) on the CPU. Keeps what backward needs in `ws`.
    pub fn forward<T: Float>(&self, params: &[T], x: &[T], sigma: &[T], out: &mut [T], ws: &mut CpuWorkspace<T>) {
        let r = ws.set_input(x).and_then(|_| self.forward_on(params, sigma, ws)).and_then(|_| ws.get_output(out));
        r.expect("CPU layers cannot fail");
    }

    /// Accumulates dL/dθ into `dparams` (and writes dL/dx into `dx` if given) for the
    /// last `forward` on `ws`, given dout = dL/d(out). CPU.
    pub fn backward<T: Float>(
        &self,
        params: &[T],
        dparams: &mut [T],
        dx: Option<&mut [T]>,
        dout: &[T],
        ws: &mut CpuWorkspace<T>,
    ) {
        let want_dx = dx.is_some();
        let mut r = self.backward_on(params, dparams, want_dx, dout, ws);
        if let Some(dx) = dx {
            r = r.and_then(|_| ws.get_dinput(dx));
        }
        r.expect("CPU layers cannot fail");
    }

    /// The forward pass on any device: the input is in `ws` (`set_input`), the output stays
    /// there (`get_output`); σ is a host array.
    pub fn forward_on<B: NetOps>(&self, params: &B::Params, sigma: &[B::Elem], ws: &mut Workspace<B>) -> Result<()> {
        assert_eq!(sigma.len(), ws.batch);
        ws.sigma.copy_from_slice(sigma);
        let bsz = ws.batch;
        let l = &self.layout;
        let Workspace { tensors, ops, acts, sigma, dev, .. } = ws;
        let cshape = |inp: usize, cout: usize, k: usize| {
            let t = tensors[inp];
            ConvShape { b: bsz, cin: t.c, cout, h: t.h, w: t.w, k }
        };
        for op in ops.iter() {
            let o = match *op {
                Op::Fourier { out } | Op::Conv { out, .. } => out,
                Op::Nfs { out, .. } => out,
                Op::Film { out, .. } | Op::Silu { out, .. } | Op::Add { out, .. } => out,
                Op::Down { out, .. } | Op::Up { out, .. } | Op::Concat { out, .. } => out,
            };
            let mut dst = acts[o].take().expect("output tensor");
            let a = &*acts;
            let r = match *op {
                Op::Fourier { .. } => dev.fourier_forward(&mut dst, sigma, &self.freqs),
                Op::Conv { w, b, cout, k, inp, .. } => {
                    dev.conv2d_forward(&mut dst, t(a, inp), params, l.range(w), l.range(b), &cshape(inp, cout, k))
                }
                Op::Nfs { g, b, inp, ss, stats, tmp: [t0, t1], .. } => {
                    let tt = tensors[inp];
                    let n = NormShape { b: bsz, c: tt.c, hw: tt.h * tt.w, groups: self.arch.groups };
                    let [mut st, mut m0, mut m1] = [stats, t0, t1].map(|i| acts[i].take().expect("scratch tensor"));
                    let ssb = ss.map(|i| t(acts, i));
                    let r = dev.norm_film_silu_forward(
                        &mut dst,
                        &mut st,
                        [&mut m0, &mut m1],
                        t(acts, inp),
                        ssb,
                        params,
                        l.range(g),
                        l.range(b),
                        n,
                    );
                    [acts[stats], acts[t0], acts[t1]] = [Some(st), Some(m0), Some(m1)];
                    r
                }
                Op::Film { inp, ss, .. } => {
                    let tt = tensors[inp];
                    dev.film_forward(&mut dst, t(a, inp), t(a, ss), bsz, tt.c, tt.h * tt.w)
                }
                Op::Silu { inp, .. } => dev.silu_forward(&mut dst, t(a, inp)),
                Op::Add { a: x1, b: x2, .. } => dev.add_forward(&mut dst, t(a, x1), t(a, x2)),
                Op::Down { inp, .. } => {
                    let tt = tensors[inp];
                    dev.down_forward(&mut dst, t(a, inp), bsz * tt.c, tt.h, tt.w)
                }
                Op::Up { inp, .. } => {
                    let tt = tensors[inp];
                    dev.up_forward(&mut dst, t(a, inp), bsz * tt.c, tt.h, tt.w)
                }
                Op::Concat { a: x1, b: x2, .. } => {
                    let (t1, t2) = (tensors[x1], tensors[x2]);
                    dev.concat_forward(&mut dst, t(a, x1), t1.c, t(a, x2), t2.c, bsz, t1.h * t1.w)
                }
            };
            acts[o] = Some(dst);
            r?;
        }
        Ok(())
    }

    /// The backward pass on any device for the last `forward_on`: dout = dL/d(out) is a host
    /// array; dL/dθ is accumulated into `dparams`; dL/dx is computed when `want_dx`
    /// (`Workspace::get_dinput`).
    pub fn backward_on<B: NetOps>(
        &self,
        params: &B::Params,
        dparams: &mut B::Params,
        want_dx: bool,
        dout: &[B::Elem],
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let Workspace { tensors, ops, acts, grads, dev, out, scratch, batch, .. } = ws;
        for (i, g) in grads.iter_mut().enumerate() {
            if !scratch[i] {
                dev.zero(g.as_mut().expect("gradient tensor"))?;
            }
        }
        dev.upload(grads[*out].as_mut().expect("output gradient"), dout)?;
        let fourier = match ops[0] {
            Op::Fourier { out } => out,
            _ => unreachable!(),
        };
        let mut pass = Backward {
            dacts: grads,
            dparams,
            dev,
            acts,
            params,
            tensors,
            layout: &self.layout,
            bsz: *batch,
            groups: self.arch.groups,
            fourier,
            want_dx,
        };
        for op in ops.iter().rev() {
            pass.op(op)?;
        }
        Ok(())
    }
}

/// One backward pass over a workspace's plan, op by op in reverse: `dacts[i]` = dL/d(tensor
/// i), seeded at the output, and dL/dθ accumulated into `dparams`.
struct Backward<'w, B: NetOps> {
    dacts: &'w mut [Option<B::Buf>],
    dparams: &'w mut B::Params,
    dev: &'w mut B,
    acts: &'w [Option<B::Buf>],
    params: &'w B::Params,
    tensors: &'w [TSpec],
    layout: &'w ParamLayout,
    bsz: usize,
    groups: usize,
    /// The Fourier features: nothing upstream of them has a gradient.
    fourier: usize,
    want_dx: bool,
}

/// Takes gradient tensor `i` out for writing; the caller puts it back.
fn take<X>(g: &mut [Option<X>], i: usize) -> X {
    g[i].take().expect("gradient tensor")
}

impl<B: NetOps> Backward<'_, B> {
    fn op(&mut self, op: &Op) -> Result<()> {
        match *op {
            Op::Fourier { .. } => Ok(()),
            Op::Conv { w, b, cout, k, inp, out } => self.conv(inp, [w, b], out, cout, k),
            Op::Nfs { g, b, inp, ss, stats, tmp, out } => self.norm_film_silu(inp, ss, [g, b], tmp, out, stats),
            Op::Film { inp, ss, out } => self.film(inp, ss, out),
            Op::Silu { inp, out } => self.silu(inp, out),
            Op::Add { a, b, out } => self.add([a, b], out),
            Op::Down { inp, out } => self.down(inp, out),
            Op::Up { inp, out } => self.up(inp, out),
            Op::Concat { a, b, out } => self.concat(a, b, out),
        }
    }

    /// dinp (unless nothing reads it: the Fourier features, or x when dL/dx is not wanted)
    /// and d[weight, bias] += from dout.
    fn conv(&mut self, inp: usize, [w, b]: [usize; 2], out: usize, cout: usize, k: usize) -> Result<()> {
        let tt = self.tensors[inp];
        let s = ConvShape { b: self.bsz, cin: tt.c, cout, h: tt.h, w: tt.w, k };
        let need = !(inp == self.fourier || (inp == X && !self.want_dx));
        let mut dinp = take(self.dacts, inp);
        let r = self.dev.conv2d_backward(
            need.then_some(&mut dinp),
            self.dparams,
            self.layout.range(w),
            self.layout.range(b),
            t(self.dacts, out),
            t(self.acts, inp),
            self.params,
            &s,
        );
        self.dacts[inp] = Some(dinp);
        r
    }

    /// SiLU(FiLM(GroupNorm(inp))): dinp, dss (with FiLM), d[γ, β]; `tmp`'s gradients are
    /// the backend's scratch.
    fn norm_film_silu(
        &mut self,
        inp: usize,
        ss: Option<usize>,
        [g, b]: [usize; 2],
        [t0, t1]: [usize; 2],
        out: usize,
        stats: usize,
    ) -> Result<()> {
        let tt = self.tensors[inp];
        let n = NormShape { b: self.bsz, c: tt.c, hw: tt.h * tt.w, groups: self.groups };
        let d = &mut *self.dacts;
        let (mut dinp, mut dss) = (take(d, inp), ss.map(|i| take(d, i)));
        let (mut d0, mut d1) = (take(d, t0), take(d, t1));
        let a = self.acts;
        let r = self.dev.norm_film_silu_backward(
            &mut dinp,
            dss.as_mut(),
            self.dparams,
            [&mut d0, &mut d1],
            t(d, out),
            t(a, inp),
            ss.map(|i| t(a, i)),
            t(a, stats),
            [t(a, t0), t(a, t1)],
            self.params,
            self.layout.range(g),
            self.layout.range(b),
            n,
        );
        d[inp] = Some(dinp);
        if let (Some(i), Some(dss)) = (ss, dss) {
            d[i] = Some(dss);
        }
        [d[t0], d[t1]] = [Some(d0), Some(d1)];
        r
    }

    /// FiLM without the norm: dinp and dss from dout.
    fn film(&mut self, inp: usize, ss: usize, out: usize) -> Result<()> {
        let tt = self.tensors[inp];
        let d = &mut *self.dacts;
        let (mut dinp, mut dss) = (take(d, inp), take(d, ss));
        let (a, bsz) = (self.acts, self.bsz);
        let r = self.dev.film_backward(&mut dinp, &mut dss, t(d, out), t(a, inp), t(a, ss), bsz, tt.c, tt.h * tt.w);
        d[inp] = Some(dinp);
        d[ss] = Some(dss);
        r
    }

    fn silu(&mut self, inp: usize, out: usize) -> Result<()> {
        let mut dinp = take(self.dacts, inp);
        let r = self.dev.silu_backward(&mut dinp, t(self.dacts, out), t(self.acts, inp));
        self.dacts[inp] = Some(dinp);
        r
    }

    /// Both summands receive dout.
    fn add(&mut self, summands: [usize; 2], out: usize) -> Result<()> {
        for src in summands {
            let mut dsrc = take(self.dacts, src);
            let r = self.dev.accumulate(&mut dsrc, t(self.dacts, out));
            self.dacts[src] = Some(dsrc);
            r?;
        }
        Ok(())
    }

    fn down(&mut self, inp: usize, out: usize) -> Result<()> {
        let tt = self.tensors[inp];
        let mut dinp = take(self.dacts, inp);
        let r = self.dev.down_backward(&mut dinp, t(self.dacts, out), self.bsz * tt.c, tt.h, tt.w);
        self.dacts[inp] = Some(dinp);
        r
    }

    fn up(&mut self, inp: usize, out: usize) -> Result<()> {
        let tt = self.tensors[inp];
        let mut dinp = take(self.dacts, inp);
        let r = self.dev.up_backward(&mut dinp, t(self.dacts, out), self.bsz * tt.c, tt.h, tt.w);
        self.dacts[inp] = Some(dinp);
        r
    }

    /// The up-sampled path `x1` and the skip `x2` each get their channels of dout.
    fn concat(&mut self, x1: usize, x2: usize, out: usize) -> Result<()> {
        let (t1, t2) = (self.tensors[x1], self.tensors[x2]);
        let d = &mut *self.dacts;
        let (mut d1, mut d2) = (take(d, x1), take(d, x2));
        let r = self.dev.concat_backward(&mut d1, &mut d2, t(d, out), t1.c, t2.c, self.bsz, t1.h * t1.w);
        d[x1] = Some(d1);
        d[x2] = Some(d2);
        r
    }
}

#[cfg(test)]
#[path = "unet_tests.rs"]
mod tests;
