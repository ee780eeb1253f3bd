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
        let c = self.cfg.clone();
        let lr = c.lr_at(self.step);
        let grad_norm = self.norm(be, grads)?;
        let clip_scale = if c.clip_norm > 0.0 && grad_norm > c.clip_norm { c.clip_norm / grad_norm } else { 1.0 };
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let n = params.len() as i64;
        let (b1, b2, gs) = (c.beta1 as f32, c.beta2 as f32, clip_scale as f32);
        let (step_size, inv_sqrt_bc2, eps) = ((lr / bc1) as f32, (1.0 / bc2.sqrt()) as f32, c.eps as f32);
        let (shrink, ed) = ((1.0 - lr * c.weight_decay) as f32, c.ema_decay as f32);
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
        Ok(StepInfo { step: self.step, lr, grad_norm, clip_scale })
    }
}
