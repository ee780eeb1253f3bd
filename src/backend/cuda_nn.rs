//! Host-side wrappers of the network kernels: the same shapes and semantics as the CPU
//! layer functions in `nn::*` (forward writes, backward accumulates), on device buffers.
//! Activations are f32 NCHW; parameters are views into the flat f32 buffer. GEMMs of the
//! convolutions go to cuBLAS (one sgemm over the whole batch, as on the CPU, optionally TF32).
//!
//! These are the building blocks of a GPU `Network`; the full network / training / sampling
//! on the GPU is not wired yet (see docs/cuda.md). tests/cuda_parity.rs checks each against
//! the CPU layer.

use super::cuda::CudaBackend;
use crate::cuda_launch;
use crate::nn::conv::ConvShape;
use crate::nn::groupnorm::GN_EPS;
use crate::nn::optim::{AdamWConfig, StepInfo};
use crate::nn::ParamLayout;
use anyhow::{anyhow, Result};
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

pub type DView<'a> = CudaView<'a, f32>;
pub type DViewMut<'a> = CudaViewMut<'a, f32>;

fn drv<T>(what: &str, r: Result<T, cudarc::driver::DriverError>) -> Result<T> {
    r.map_err(|e| anyhow!("CUDA: {what}: {e}"))
}

/// Column matrix and GEMM output of the convolutions, grown to the largest layer.
pub struct GpuConvScratch {
    pub col: CudaSlice<f32>,
    pub tmp: CudaSlice<f32>,
}

impl GpuConvScratch {
    pub fn new(be: &CudaBackend) -> Result<Self> {
        Ok(GpuConvScratch {
            col: drv("alloc", be.stream.alloc_zeros(1))?,
            tmp: drv("alloc", be.stream.alloc_zeros(1))?,
        })
    }
    pub fn reserve(&mut self, be: &CudaBackend, s: &ConvShape) -> Result<()> {
        let (nc, nt) = (s.kdim() * s.cols(), s.cout * s.cols());
        if self.col.len() < nc {
            self.col = drv("alloc col", be.stream.alloc_zeros(nc))?;
        }
        if self.tmp.len() < nt {
            self.tmp = drv("alloc tmp", be.stream.alloc_zeros(nt))?;
        }
        Ok(())
    }
}

/// Row-major C[m×n] (=|+=) op(A)·op(B) with cuBLAS (column-major), all f32.
#[allow(clippy::too_many_arguments)]
fn sgemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
    be: &CudaBackend,
    what: &str,
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &A,
    lda: usize,
    b: &B,
    ldb: usize,
    beta: f32,
    c: &mut C,
    ldc: usize,
) -> Result<()> {
    let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let cfg = GemmConfig {
        transa: op(ta),
        transb: op(tb),
        m: m as i32,
        n: n as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: lda as i32,
        ldb: ldb as i32,
        beta,
        ldc: ldc as i32,
    };
    // SAFETY: the callers pass buffers of at least the sizes implied by (m, n, k, ld*).
    unsafe { be.blas.gemm(cfg, a, b, c) }.map_err(|e| anyhow!("cuBLAS sgemm ({what}, m={m} n={n} k={k}): {e:?}"))
}

fn i(x: usize) -> i32 {
    x as i32
}

/// out[B, Cout, H, W] = conv(inp, weight[Cout, Cin, k, k]) + bias (periodic), as `conv2d_forward`.
pub fn conv2d_forward(
    be: &CudaBackend,
    out: &mut DViewMut,
    inp: &DView,
    weight: &DView,
    bias: &DView,
    s: &ConvShape,
    scratch: &mut GpuConvScratch,
) -> Result<()> {
    scratch.reserve(be, s)?;
    let (kd, nc) = (s.kdim(), s.cols());
    let mut col = scratch.col.slice_mut(..kd * nc);
    cuda_launch!(
        be,
        "conv_im2col",
        "im2col_periodic",
        be.grid(kd * nc),
        &mut col,
        inp,
        &i(s.b),
        &i(s.cin),
        &i(s.h),
        &i(s.w),
        &i(s.k)
    )?;
    let mut tmp = scratch.tmp.slice_mut(..s.cout * nc);
    // Column-major: tmpᵀ[N×Cout] = colᵀ[N×K] · Wᵀ[K×Cout].
    sgemm(be, "conv forward", false, false, nc, s.cout, kd, &col, nc, weight, kd, 0.0, &mut tmp, nc)?;
    let n = s.b * s.cout * s.h * s.w;
    cuda_launch!(
        be,
        "conv_im2col",
        "cn_to_nchw_bias",
        be.grid(n),
        out,
        &tmp.as_view(),
        bias,
        &i(s.b),
        &i(s.cout),
        &i(s.h * s.w)
    )
}

/// Accumulates dweight, dbias and (when given) dinp from dout, as `conv2d_backward`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    be: &CudaBackend,
    dinp: Option<&mut DViewMut>,
    dweight: &mut DViewMut,
    dbias: &mut DViewMut,
    dout: &DView,
    inp: &DView,
    weight: &DView,
    s: &ConvShape,
    scratch: &mut GpuConvScratch,
) -> Result<()> {
    scratch.reserve(be, s)?;
    let (kd, nc, hw) = (s.kdim(), s.cols(), s.h * s.w);
    let mut tmp = scratch.tmp.slice_mut(..s.cout * nc);
    cuda_launch!(be, "conv_im2col", "nchw_to_cn", be.grid(s.cout * nc), &mut tmp, dout, &i(s.b), &i(s.cout), &i(hw))?;
    let one = 1i32;
    cuda_launch!(be, "reduce", "row_sum_f32", be.rows(s.cout), dbias, &tmp.as_view(), &(nc as i64), &one)?;
    let mut col = scratch.col.slice_mut(..kd * nc);
    cuda_launch!(
        be,
        "conv_im2col",
        "im2col_periodic",
        be.grid(kd * nc),
        &mut col,
        inp,
        &i(s.b),
        &i(s.cin),
        &i(s.h),
        &i(s.w),
        &i(s.k)
    )?;
    // dW[Cout×K] += dout[Cout×N]·colᵀ  ⇔  column-major dWᵀ[K×Cout] += col[K×N](T) · tmpᵀ[N×Cout].
    sgemm(be, "conv dweight", true, false, kd, s.cout, nc, &col, nc, &tmp, nc, 1.0, dweight, kd)?;
    if let Some(dinp) = dinp {
        // dcol[K×N] = Wᵀ·dout  ⇔  column-major dcolᵀ[N×K] = tmpᵀ[N×Cout] · W[Cout×K](T).
        sgemm(be, "conv dinp", false, true, nc, kd, s.cout, &tmp, nc, weight, kd, 0.0, &mut col, nc)?;
        let n = s.b * s.cin * hw;
        cuda_launch!(
            be,
            "conv_im2col",
            "col2im_periodic_add",
            be.grid(n),
            dinp,
            &col.as_view(),
            &i(s.b),
            &i(s.cin),
            &i(s.h),
            &i(s.w),
            &i(s.k)
        )?;
    }
    Ok(())
}

pub fn silu_forward(be: &CudaBackend, out: &mut DViewMut, inp: &DView) -> Result<()> {
    let n = inp.len();
    cuda_launch!(be, "bias_silu", "silu_fwd", be.grid(n), out, inp, &(n as i64))
}

pub fn silu_backward(be: &CudaBackend, dinp: &mut DViewMut, dout: &DView, inp: &DView) -> Result<()> {
    let n = inp.len();
    cuda_launch!(be, "bias_silu", "silu_bwd", be.grid(n), dinp, dout, inp, &(n as i64))
}

/// pre += bias (per channel), out = SiLU(pre).
pub fn bias_silu_forward(
    be: &CudaBackend,
    out: &mut DViewMut,
    pre: &mut DViewMut,
    bias: &DView,
    b: usize,
    c: usize,
    hw: usize,
) -> Result<()> {
    cuda_launch!(be, "bias_silu", "bias_silu_fwd", be.grid(b * c * hw), out, pre, bias, &i(b), &i(c), &i(hw))
}

pub fn add_forward(be: &CudaBackend, out: &mut DViewMut, a: &DView, b: &DView) -> Result<()> {
    let n = a.len();
    cuda_launch!(be, "bias_silu", "add_fwd", be.grid(n), out, a, b, &(n as i64))
}

pub fn accumulate(be: &CudaBackend, dst: &mut DViewMut, src: &DView) -> Result<()> {
    let n = src.len();
    cuda_launch!(be, "bias_silu", "accumulate_f32", be.grid(n), dst, src, &(n as i64))
}

#[allow(clippy::too_many_arguments)]
pub fn concat_forward(
    be: &CudaBackend,
    out: &mut DViewMut,
    a: &DView,
    ca: usize,
    c: &DView,
    cb: usize,
    b: usize,
    hw: usize,
) -> Result<()> {
    cuda_launch!(be, "bias_silu", "concat_fwd", be.grid(b * (ca + cb) * hw), out, a, &i(ca), c, &i(cb), &i(b), &i(hw))
}

#[allow(clippy::too_many_arguments)]
pub fn concat_backward(
    be: &CudaBackend,
    da: &mut DViewMut,
    dc: &mut DViewMut,
    dout: &DView,
    ca: usize,
    cb: usize,
    b: usize,
    hw: usize,
) -> Result<()> {
    cuda_launch!(
        be,
        "bias_silu",
        "concat_bwd",
        be.grid(b * (ca + cb) * hw),
        da,
        dc,
        dout,
        &i(ca),
        &i(cb),
        &i(b),
        &i(hw)
    )
}

pub fn film_forward(
    be: &CudaBackend,
    out: &mut DViewMut,
    inp: &DView,
    ss: &DView,
    b: usize,
    c: usize,
    hw: usize,
) -> Result<()> {
    cuda_launch!(be, "film", "film_fwd", be.grid(b * c * hw), out, inp, ss, &i(b), &i(c), &i(hw))
}

#[allow(clippy::too_many_arguments)]
pub fn film_backward(
    be: &CudaBackend,
    dinp: &mut DViewMut,
    dss: &mut DViewMut,
    dout: &DView,
    inp: &DView,
    ss: &DView,
    b: usize,
    c: usize,
    hw: usize,
) -> Result<()> {
    cuda_launch!(be, "film", "film_bwd", be.rows(b * c), dinp, dss, dout, inp, ss, &i(c), &i(hw))
}

#[allow(clippy::too_many_arguments)]
pub fn groupnorm_forward(
    be: &CudaBackend,
    out: &mut DViewMut,
    stats: &mut DViewMut,
    inp: &DView,
    gamma: &DView,
    beta: &DView,
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
) -> Result<()> {
    assert_eq!(c % groups, 0, "GroupNorm: {c} channels not divisible by {groups} groups");
    let eps = GN_EPS as f32;
    cuda_launch!(
        be,
        "groupnorm",
        "groupnorm_fwd",
        be.rows(b * groups),
        out,
        stats,
        inp,
        gamma,
        beta,
        &i(c),
        &i(hw),
        &i(groups),
        &eps
    )
}

#[allow(clippy::too_many_arguments)]
pub fn groupnorm_backward(
    be: &CudaBackend,
    dinp: &mut DViewMut,
    dgamma: &mut DViewMut,
    dbeta: &mut DViewMut,
    dout: &DView,
    inp: &DView,
    stats: &DView,
    gamma: &DView,
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
) -> Result<()> {
    cuda_launch!(
        be,
        "groupnorm",
        "groupnorm_bwd_input",
        be.rows(b * groups),
        dinp,
        dout,
        inp,
        stats,
        gamma,
        &i(c),
        &i(hw),
        &i(groups)
    )?;
    cuda_launch!(
        be,
        "groupnorm",
        "groupnorm_bwd_affine",
        be.rows(c),
        dgamma,
        dbeta,
        dout,
        inp,
        stats,
        &i(b),
        &i(c),
        &i(hw),
        &i(groups)
    )
}

pub fn down_forward(be: &CudaBackend, out: &mut DViewMut, inp: &DView, bc: usize, h: usize, w: usize) -> Result<()> {
    cuda_launch!(be, "resample", "down_fwd", be.grid(bc * h * w / 4), out, inp, &(bc as i64), &i(h), &i(w))
}

pub fn down_backward(be: &CudaBackend, dinp: &mut DViewMut, dout: &DView, bc: usize, h: usize, w: usize) -> Result<()> {
    cuda_launch!(be, "resample", "down_bwd", be.grid(bc * h * w), dinp, dout, &(bc as i64), &i(h), &i(w))
}

pub fn up_forward(be: &CudaBackend, out: &mut DViewMut, inp: &DView, bc: usize, h: usize, w: usize) -> Result<()> {
    cuda_launch!(be, "resample", "up_fwd", be.grid(bc * h * w * 4), out, inp, &(bc as i64), &i(h), &i(w))
}

pub fn up_backward(be: &CudaBackend, dinp: &mut DViewMut, dout: &DView, bc: usize, h: usize, w: usize) -> Result<()> {
    cuda_launch!(be, "resample", "up_bwd", be.grid(bc * h * w), dinp, dout, &(bc as i64), &i(h), &i(w))
}

/// x_in = c_in(σ_b)·(φ0 + σ_b z), the network input of the DSM objective.
pub fn dsm_input(
    be: &CudaBackend,
    x_in: &mut DViewMut,
    phi0: &DView,
    z: &DView,
    sigma: &DView,
    v: usize,
    sigma_data: f64,
) -> Result<()> {
    let bsz = sigma.len();
    cuda_launch!(be, "dsm_loss", "dsm_input", be.grid(bsz * v), x_in, phi0, z, sigma, &i(bsz), &i(v), &sigma_data)
}

/// resid = F + z, dout = (2/B) resid, per_sample[b] = Σ resid²; returns L = mean_b ℓ_b.
pub fn dsm_residual(
    be: &CudaBackend,
    resid: &mut DViewMut,
    dout: &mut DViewMut,
    per_sample: &mut CudaSlice<f32>,
    f: &DView,
    z: &DView,
    v: usize,
) -> Result<f32> {
    let bsz = per_sample.len();
    cuda_launch!(be, "dsm_loss", "dsm_residual", be.rows(bsz), resid, dout, &mut *per_sample, f, z, &i(bsz), &i(v))?;
    let ls = drv("download per-sample loss", be.stream.clone_dtoh(&*per_sample))?;
    Ok(ls.iter().copied().sum::<f32>() / bsz as f32)
}

/// One em reverse-SDE step for every sample (f64), noise from Philox keyed by
/// (seed, first_index + b, step), log-weights accumulated when `weights`.
#[allow(clippy::too_many_arguments)]
pub fn sde_em_step(
    be: &CudaBackend,
    phi: &mut CudaSlice<f64>,
    logw: &mut CudaSlice<f64>,
    score: &CudaSlice<f64>,
    v: usize,
    delta: f64,
    step_const: f64,
    seed: u64,
    first_index: u32,
    step: u32,
    weights: bool,
) -> Result<()> {
    let bsz = phi.len() / v;
    let (k0, k1) = (seed as u32, (seed >> 32) as u32);
    let w = i32::from(weights);
    cuda_launch!(
        be,
        "sde_step",
        "sde_em_step",
        be.rows(bsz),
        phi,
        logw,
        score,
        &i(v),
        &delta,
        &step_const,
        &k0,
        &k1,
        &first_index,
        &step,
        &w
    )
}

/// AdamW + EMA on the GPU, same update as `nn::optim::AdamW<f32>`.
pub struct CudaAdamW {
    pub cfg: AdamWConfig,
    pub step: u64,
    pub m: CudaSlice<f32>,
    pub v: CudaSlice<f32>,
    pub ema: CudaSlice<f32>,
    decays: CudaSlice<u8>,
    partial: CudaSlice<f64>,
}

impl CudaAdamW {
    pub fn new(be: &CudaBackend, cfg: AdamWConfig, layout: &ParamLayout, params: &CudaSlice<f32>) -> Result<Self> {
        let n = params.len();
        assert_eq!(layout.len(), n);
        let mut mask = vec![0u8; n];
        for e in &layout.entries {
            if e.shape.len() >= 2 {
                mask[e.offset..e.offset + e.len()].iter_mut().for_each(|d| *d = 1);
            }
        }
        let s = &be.stream;
        Ok(CudaAdamW {
            cfg,
            step: 0,
            m: drv("alloc", s.alloc_zeros(n))?,
            v: drv("alloc", s.alloc_zeros(n))?,
            ema: drv("copy params", s.clone_dtod(params))?,
            decays: drv("upload mask", s.clone_htod(&mask))?,
            partial: drv("alloc", s.alloc_zeros(be.grid(n).grid_dim.0 as usize))?,
        })
    }

    /// Global L2 norm of an f32 buffer (f64 accumulation).
    pub fn norm(&mut self, be: &CudaBackend, x: &CudaSlice<f32>) -> Result<f64> {
        let n = x.len();
        let cfg = be.grid(n);
        cuda_launch!(be, "reduce", "sum_sq_partial_f32", cfg, x, &(n as i64), &mut self.partial)?;
        let p = drv("download partial sums", be.stream.clone_dtoh(&self.partial))?;
        Ok(p[..cfg.grid_dim.0 as usize].iter().sum::<f64>().sqrt())
    }

    pub fn update(
        &mut self,
        be: &CudaBackend,
        params: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
    ) -> Result<StepInfo> {
        assert_eq!(params.len(), grads.len());
        self.step += 1;
        let grad_norm = self.norm(be, grads)?;
        let k = self.cfg.scalars(self.step, grad_norm);
        let n = params.len() as i64;
        let (b1, b2, eps) = (self.cfg.beta1 as f32, self.cfg.beta2 as f32, self.cfg.eps as f32);
        let (gs, step_size, inv_sqrt_bc2) = (k.clip_scale as f32, k.step_size as f32, k.inv_sqrt_bc2 as f32);
        let (shrink, ed) = (k.shrink as f32, k.ema_decay as f32);
        let cfg = be.grid(params.len());
        cuda_launch!(
            be,
            "adamw",
            "adamw_ema",
            cfg,
            params,
            &mut self.m,
            &mut self.v,
            &mut self.ema,
            grads,
            &self.decays,
            &n,
            &b1,
            &b2,
            &gs,
            &step_size,
            &inv_sqrt_bc2,
            &eps,
            &shrink,
            &ed
        )?;
        Ok(StepInfo { step: self.step, lr: k.lr, grad_norm, clip_scale: k.clip_scale })
    }
}

/// The network backend on one GPU: the wrappers above behind `nn::NetOps`, so that the
/// U-Net plan (`Network::forward_on` / `backward_on`), the objective, training and sampling
/// run unchanged. f32 tensors; the flat parameter and gradient buffers are one allocation each.
pub struct CudaOps {
    pub be: std::sync::Arc<CudaBackend>,
    scratch: GpuConvScratch,
}

impl CudaOps {
    /// Opens GPU `ordinal` (context, stream, cuBLAS); kernels compile on first use.
    pub fn new(ordinal: usize) -> Result<Self> {
        let be = std::sync::Arc::new(CudaBackend::new(ordinal)?);
        let scratch = GpuConvScratch::new(&be)?;
        Ok(CudaOps { be, scratch })
    }
}

type Buf = CudaSlice<f32>;
type Range = std::ops::Range<usize>;

impl crate::nn::NetOps for CudaOps {
    type Elem = f32;
    type Buf = CudaSlice<f32>;
    type Params = CudaSlice<f32>;
    type ParamBuf = CudaSlice<f32>;
    type Adam = CudaAdamW;

    fn describe(&self) -> String {
        format!("cuda:{} {} ({})", self.be.ordinal, self.be.name, self.be.arch)
    }
    fn fork(&self) -> Result<Self> {
        Ok(CudaOps { be: self.be.clone(), scratch: GpuConvScratch::new(&self.be)? })
    }
    fn alloc(&mut self, n: usize) -> Result<Buf> {
        drv("alloc tensor", self.be.stream.alloc_zeros(n.max(1)))
    }
    fn zero(&mut self, t: &mut Buf) -> Result<()> {
        drv("memset", self.be.stream.memset_zeros(t))
    }
    fn upload(&mut self, dst: &mut Buf, src: &[f32]) -> Result<()> {
        drv("upload", self.be.stream.memcpy_htod(src, dst))
    }
    fn download(&mut self, src: &Buf, dst: &mut [f32]) -> Result<()> {
        let v = src.slice(..dst.len());
        drv("download", self.be.stream.memcpy_dtoh(&v, dst))
    }
    fn upload_params(&mut self, src: &[f32]) -> Result<Buf> {
        drv("upload parameters", self.be.stream.clone_htod(src))
    }
    fn download_params(&mut self, src: &Buf, dst: &mut [f32]) -> Result<()> {
        drv("download parameters", self.be.stream.memcpy_dtoh(src, dst))
    }
    fn copy_params(&mut self, dst: &mut Buf, src: &[f32]) -> Result<()> {
        drv("upload parameters", self.be.stream.memcpy_htod(src, dst))
    }
    fn zero_params(&mut self, p: &mut Buf) -> Result<()> {
        drv("memset", self.be.stream.memset_zeros(p))
    }
    fn reserve_conv(&mut self, s: &ConvShape) -> Result<()> {
        self.scratch.reserve(&self.be, s)
    }
    fn scratch_bytes(&self) -> usize {
        (self.scratch.col.len() + self.scratch.tmp.len()) * 4
    }

    fn fourier_forward(&mut self, out: &mut Buf, sigma: &[f32], freqs: &[f64]) -> Result<()> {
        // B × 2F numbers: computed on the host by the reference code and uploaded.
        let mut host = vec![0.0f32; sigma.len() * 2 * freqs.len()];
        crate::nn::embed::fourier_forward(&mut host, sigma, freqs);
        self.upload(out, &host)
    }
    fn conv2d_forward(
        &mut self,
        out: &mut Buf,
        inp: &Buf,
        p: &Buf,
        w: Range,
        bias: Range,
        s: &ConvShape,
    ) -> Result<()> {
        let be = self.be.clone();
        conv2d_forward(&be, &mut out.as_view_mut(), &inp.as_view(), &p.slice(w), &p.slice(bias), s, &mut self.scratch)
    }
    fn conv2d_backward(
        &mut self,
        dinp: Option<&mut Buf>,
        dp: &mut Buf,
        w: Range,
        bias: Range,
        dout: &Buf,
        inp: &Buf,
        p: &Buf,
        s: &ConvShape,
    ) -> Result<()> {
        let be = self.be.clone();
        // dweight and dbias are adjacent in the flat gradient (the plan lays them out so).
        assert_eq!(w.end, bias.start);
        let mut region = dp.slice_mut(w.start..bias.end);
        let (mut dw, mut db) = region.split_at_mut(w.len());
        let mut di = dinp.map(|d| d.as_view_mut());
        conv2d_backward(
            &be,
            di.as_mut(),
            &mut dw,
            &mut db,
            &dout.as_view(),
            &inp.as_view(),
            &p.slice(w),
            s,
            &mut self.scratch,
        )
    }
    fn groupnorm_forward(
        &mut self,
        out: &mut Buf,
        stats: &mut Buf,
        inp: &Buf,
        p: &Buf,
        gamma: Range,
        beta: Range,
        n: crate::nn::ops::NormShape,
    ) -> Result<()> {
        groupnorm_forward(
            &self.be,
            &mut out.as_view_mut(),
            &mut stats.as_view_mut(),
            &inp.as_view(),
            &p.slice(gamma),
            &p.slice(beta),
            n.b,
            n.c,
            n.hw,
            n.groups,
        )
    }
    fn groupnorm_backward(
        &mut self,
        dinp: &mut Buf,
        dp: &mut Buf,
        gamma: Range,
        beta: Range,
        dout: &Buf,
        inp: &Buf,
        stats: &Buf,
        p: &Buf,
        n: crate::nn::ops::NormShape,
    ) -> Result<()> {
        assert_eq!(gamma.end, beta.start);
        let mut region = dp.slice_mut(gamma.start..beta.end);
        let (mut dg, mut db) = region.split_at_mut(gamma.len());
        groupnorm_backward(
            &self.be,
            &mut dinp.as_view_mut(),
            &mut dg,
            &mut db,
            &dout.as_view(),
            &inp.as_view(),
            &stats.as_view(),
            &p.slice(gamma),
            n.b,
            n.c,
            n.hw,
            n.groups,
        )
    }
    fn film_forward(&mut self, out: &mut Buf, inp: &Buf, ss: &Buf, b: usize, c: usize, hw: usize) -> Result<()> {
        film_forward(&self.be, &mut out.as_view_mut(), &inp.as_view(), &ss.as_view(), b, c, hw)
    }
    fn film_backward(
        &mut self,
        dinp: &mut Buf,
        dss: &mut Buf,
        dout: &Buf,
        inp: &Buf,
        ss: &Buf,
        b: usize,
        c: usize,
        hw: usize,
    ) -> Result<()> {
        let (mut di, mut ds) = (dinp.as_view_mut(), dss.as_view_mut());
        film_backward(&self.be, &mut di, &mut ds, &dout.as_view(), &inp.as_view(), &ss.as_view(), b, c, hw)
    }
    fn silu_forward(&mut self, out: &mut Buf, inp: &Buf) -> Result<()> {
        silu_forward(&self.be, &mut out.as_view_mut(), &inp.as_view())
    }
    fn silu_backward(&mut self, dinp: &mut Buf, dout: &Buf, inp: &Buf) -> Result<()> {
        silu_backward(&self.be, &mut dinp.as_view_mut(), &dout.as_view(), &inp.as_view())
    }
    fn add_forward(&mut self, out: &mut Buf, a: &Buf, b: &Buf) -> Result<()> {
        add_forward(&self.be, &mut out.as_view_mut(), &a.as_view(), &b.as_view())
    }
    fn accumulate(&mut self, dst: &mut Buf, src: &Buf) -> Result<()> {
        accumulate(&self.be, &mut dst.as_view_mut(), &src.as_view())
    }
    fn down_forward(&mut self, out: &mut Buf, inp: &Buf, bc: usize, h: usize, w: usize) -> Result<()> {
        down_forward(&self.be, &mut out.as_view_mut(), &inp.as_view(), bc, h, w)
    }
    fn down_backward(&mut self, dinp: &mut Buf, dout: &Buf, bc: usize, h: usize, w: usize) -> Result<()> {
        down_backward(&self.be, &mut dinp.as_view_mut(), &dout.as_view(), bc, h, w)
    }
    fn up_forward(&mut self, out: &mut Buf, inp: &Buf, bc: usize, h: usize, w: usize) -> Result<()> {
        up_forward(&self.be, &mut out.as_view_mut(), &inp.as_view(), bc, h, w)
    }
    fn up_backward(&mut self, dinp: &mut Buf, dout: &Buf, bc: usize, h: usize, w: usize) -> Result<()> {
        up_backward(&self.be, &mut dinp.as_view_mut(), &dout.as_view(), bc, h, w)
    }
    fn concat_forward(
        &mut self,
        out: &mut Buf,
        a: &Buf,
        ca: usize,
        c: &Buf,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()> {
        concat_forward(&self.be, &mut out.as_view_mut(), &a.as_view(), ca, &c.as_view(), cb, b, hw)
    }
    fn concat_backward(
        &mut self,
        da: &mut Buf,
        dc: &mut Buf,
        dout: &Buf,
        ca: usize,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()> {
        let (mut x, mut y) = (da.as_view_mut(), dc.as_view_mut());
        concat_backward(&self.be, &mut x, &mut y, &dout.as_view(), ca, cb, b, hw)
    }

    fn adamw_new(
        &mut self,
        cfg: AdamWConfig,
        layout: &ParamLayout,
        params: &Buf,
        from: Option<&crate::nn::optim::AdamW<f32>>,
    ) -> Result<CudaAdamW> {
        let mut opt = CudaAdamW::new(&self.be, cfg, layout, params)?;
        if let Some(f) = from {
            let s = &self.be.stream;
            drv("upload Adam m", s.memcpy_htod(&f.m, &mut opt.m))?;
            drv("upload Adam v", s.memcpy_htod(&f.v, &mut opt.v))?;
            drv("upload EMA", s.memcpy_htod(&f.ema, &mut opt.ema))?;
            opt.step = f.step;
        }
        Ok(opt)
    }
    fn adamw_update(&mut self, opt: &mut CudaAdamW, params: &mut Buf, grads: &Buf) -> Result<StepInfo> {
        opt.update(&self.be, params, grads)
    }
    fn adamw_ema(opt: &CudaAdamW) -> &Buf {
        &opt.ema
    }
    fn adamw_state(&mut self, opt: &CudaAdamW, layout: &ParamLayout) -> Result<crate::nn::optim::AdamW<f32>> {
        let s = &self.be.stream;
        let p = drv("download EMA", s.clone_dtoh(&opt.ema))?;
        let mut st = crate::nn::optim::AdamW::new(opt.cfg.clone(), layout, &p);
        st.m = drv("download Adam m", s.clone_dtoh(&opt.m))?;
        st.v = drv("download Adam v", s.clone_dtoh(&opt.v))?;
        st.step = opt.step;
        Ok(st)
    }
}
