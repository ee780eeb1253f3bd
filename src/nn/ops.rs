//! The network's backend interface: every layer kernel the U-Net plan uses, on one
//! device's buffers. `Network::forward_on` / `backward_on` (unet.rs) interpret the plan once
//! against this trait; [`CpuOps`] runs the reference layers of this module (rayon + gemm),
//! `backend::cuda_nn::CudaOps` the kernels of `kernels/` and cuBLAS.
//!
//! Conventions follow the layer functions: outputs first, forward overwrites, backward
//! accumulates into `d*`. Parameters are the flat buffer plus the range of each tensor, so
//! that a device keeps one parameter and one gradient allocation (llm.c's layout).

use super::conv::{self, ConvScratch, ConvShape};
use super::float::Float;
pub use super::groupnorm::NormShape;
use super::optim::{AdamW, AdamWConfig, StepInfo};
use super::params::ParamLayout;
use super::{activation as act, embed, fused, groupnorm as gn, sample};
use anyhow::Result;
use std::borrow::BorrowMut;
use std::ops::Range;

pub trait NetOps: Send {
    /// Host element type of inputs, outputs and parameters.
    type Elem: Float;
    /// An activation or gradient tensor on the device.
    type Buf: Send;
    /// A view of the flat parameter (or parameter-gradient) buffer.
    type Params: ?Sized;
    /// Owned storage of a flat parameter buffer.
    type ParamBuf: BorrowMut<Self::Params> + Send;
    /// AdamW moments and EMA on the device.
    type Adam: Send;

    fn describe(&self) -> String;
    /// Another handle on the same device, with its own scratch (one per workspace).
    fn fork(&self) -> Result<Self>
    where
        Self: Sized;
    /// A zeroed tensor of `n` elements.
    fn alloc(&mut self, n: usize) -> Result<Self::Buf>;
    fn zero(&mut self, t: &mut Self::Buf) -> Result<()>;
    fn upload(&mut self, dst: &mut Self::Buf, src: &[Self::Elem]) -> Result<()>;
    fn download(&mut self, src: &Self::Buf, dst: &mut [Self::Elem]) -> Result<()>;
    fn upload_params(&mut self, src: &[Self::Elem]) -> Result<Self::ParamBuf>;
    fn download_params(&mut self, src: &Self::Params, dst: &mut [Self::Elem]) -> Result<()>;
    /// Overwrites an existing parameter-sized buffer from the host (no allocation).
    fn copy_params(&mut self, dst: &mut Self::Params, src: &[Self::Elem]) -> Result<()>;
    fn zero_params(&mut self, p: &mut Self::Params) -> Result<()>;
    /// Grows the convolution scratch to fit `s` (done once per plan, before any step).
    fn reserve_conv(&mut self, s: &ConvShape) -> Result<()>;
    /// Bytes of convolution scratch held.
    fn scratch_bytes(&self) -> usize;

    /// out[B, 2F] = (sin, cos)(2π f log σ_b); σ is a host array.
    fn fourier_forward(&mut self, out: &mut Self::Buf, sigma: &[Self::Elem], freqs: &[f64]) -> Result<()>;
    /// Weight at `w`, bias at `bias` in `params`.
    fn conv2d_forward(
        &mut self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        params: &Self::Params,
        w: Range<usize>,
        bias: Range<usize>,
        s: &ConvShape,
    ) -> Result<()>;
    /// dweight, dbias are adjacent in `dparams` (`w.end == bias.start`).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &mut self,
        dinp: Option<&mut Self::Buf>,
        dparams: &mut Self::Params,
        w: Range<usize>,
        bias: Range<usize>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        params: &Self::Params,
        s: &ConvShape,
    ) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn groupnorm_forward(
        &mut self,
        out: &mut Self::Buf,
        stats: &mut Self::Buf,
        inp: &Self::Buf,
        params: &Self::Params,
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()>;
    /// dgamma, dbeta are adjacent in `dparams`.
    #[allow(clippy::too_many_arguments)]
    fn groupnorm_backward(
        &mut self,
        dinp: &mut Self::Buf,
        dparams: &mut Self::Params,
        gamma: Range<usize>,
        beta: Range<usize>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        stats: &Self::Buf,
        params: &Self::Params,
        n: NormShape,
    ) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn film_forward(
        &mut self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        ss: &Self::Buf,
        b: usize,
        c: usize,
        hw: usize,
    ) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn film_backward(
        &mut self,
        dinp: &mut Self::Buf,
        dss: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        ss: &Self::Buf,
        b: usize,
        c: usize,
        hw: usize,
    ) -> Result<()>;
    /// out = SiLU(FiLM(GroupNorm(inp))), FiLM skipped when `ss` is None (the head). `tmp`
    /// receives the GroupNorm and FiLM outputs where a backend composes the three layers
    /// (the default, [`compose_norm_film_silu_forward`]); a fused backend may leave it alone.
    #[allow(clippy::too_many_arguments)]
    fn norm_film_silu_forward(
        &mut self,
        out: &mut Self::Buf,
        stats: &mut Self::Buf,
        tmp: [&mut Self::Buf; 2],
        inp: &Self::Buf,
        ss: Option<&Self::Buf>,
        params: &Self::Params,
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()> {
        compose_norm_film_silu_forward(self, out, stats, tmp, inp, ss, params, gamma, beta, n)
    }
    /// Backward of `norm_film_silu_forward`: accumulates dinp, dss (with FiLM) and dγ, dβ
    /// (adjacent in `dparams`); `tmp` as the forward left it, `dtmp` scratch of its size.
    #[allow(clippy::too_many_arguments)]
    fn norm_film_silu_backward(
        &mut self,
        dinp: &mut Self::Buf,
        dss: Option<&mut Self::Buf>,
        dparams: &mut Self::Params,
        dtmp: [&mut Self::Buf; 2],
        dout: &Self::Buf,
        inp: &Self::Buf,
        ss: Option<&Self::Buf>,
        stats: &Self::Buf,
        tmp: [&Self::Buf; 2],
        params: &Self::Params,
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()> {
        compose_norm_film_silu_backward(
            self, dinp, dss, dparams, dtmp, dout, inp, ss, stats, tmp, params, gamma, beta, n,
        )
    }
    fn silu_forward(&mut self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()>;
    fn silu_backward(&mut self, dinp: &mut Self::Buf, dout: &Self::Buf, inp: &Self::Buf) -> Result<()>;
    fn add_forward(&mut self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()>;
    fn accumulate(&mut self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// 2×2 average pool of `bc` planes of h×w (h, w of the input).
    fn down_forward(&mut self, out: &mut Self::Buf, inp: &Self::Buf, bc: usize, h: usize, w: usize) -> Result<()>;
    fn down_backward(&mut self, dinp: &mut Self::Buf, dout: &Self::Buf, bc: usize, h: usize, w: usize) -> Result<()>;
    /// Nearest 2× up-sampling of `bc` planes of h×w (h, w of the input).
    fn up_forward(&mut self, out: &mut Self::Buf, inp: &Self::Buf, bc: usize, h: usize, w: usize) -> Result<()>;
    fn up_backward(&mut self, dinp: &mut Self::Buf, dout: &Self::Buf, bc: usize, h: usize, w: usize) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn concat_forward(
        &mut self,
        out: &mut Self::Buf,
        a: &Self::Buf,
        ca: usize,
        c: &Self::Buf,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn concat_backward(
        &mut self,
        da: &mut Self::Buf,
        dc: &mut Self::Buf,
        dout: &Self::Buf,
        ca: usize,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()>;

    /// AdamW + EMA state for `params`, fresh or restored from a host copy (`from`).
    fn adamw_new(
        &mut self,
        cfg: AdamWConfig,
        layout: &ParamLayout,
        params: &Self::Params,
        from: Option<&AdamW<Self::Elem>>,
    ) -> Result<Self::Adam>;
    /// One AdamW + EMA update of `params` from the (already all-reduced) gradient.
    fn adamw_update(
        &mut self,
        opt: &mut Self::Adam,
        params: &mut Self::Params,
        grads: &Self::Params,
    ) -> Result<StepInfo>;
    /// The EMA weights held by the optimiser.
    fn adamw_ema(opt: &Self::Adam) -> &Self::Params;
    /// Host copy of the optimiser state (checkpoints).
    fn adamw_state(&mut self, opt: &Self::Adam, layout: &ParamLayout) -> Result<AdamW<Self::Elem>>;
}

/// `norm_film_silu_forward` as the three layers, through `tmp` = [GroupNorm out, FiLM out]:
/// the reference for a fused kernel, and what a backend without one runs.
#[allow(clippy::too_many_arguments)]
pub fn compose_norm_film_silu_forward<B: NetOps + ?Sized>(
    dev: &mut B,
    out: &mut B::Buf,
    stats: &mut B::Buf,
    [normed, filmed]: [&mut B::Buf; 2],
    inp: &B::Buf,
    ss: Option<&B::Buf>,
    params: &B::Params,
    gamma: Range<usize>,
    beta: Range<usize>,
    n: NormShape,
) -> Result<()> {
    dev.groupnorm_forward(normed, stats, inp, params, gamma, beta, n)?;
    match ss {
        Some(ss) => {
            dev.film_forward(filmed, normed, ss, n.b, n.c, n.hw)?;
            dev.silu_forward(out, filmed)
        }
        None => dev.silu_forward(out, normed),
    }
}

/// The backward of [`compose_norm_film_silu_forward`], layer by layer.
#[allow(clippy::too_many_arguments)]
pub fn compose_norm_film_silu_backward<B: NetOps + ?Sized>(
    dev: &mut B,
    dinp: &mut B::Buf,
    dss: Option<&mut B::Buf>,
    dparams: &mut B::Params,
    [dnormed, dfilmed]: [&mut B::Buf; 2],
    dout: &B::Buf,
    inp: &B::Buf,
    ss: Option<&B::Buf>,
    stats: &B::Buf,
    [normed, filmed]: [&B::Buf; 2],
    params: &B::Params,
    gamma: Range<usize>,
    beta: Range<usize>,
    n: NormShape,
) -> Result<()> {
    // The layer backwards accumulate; dtmp is scratch that nothing else zeroes.
    dev.zero(dnormed)?;
    match (ss, dss) {
        (Some(ss), Some(dss)) => {
            dev.zero(dfilmed)?;
            dev.silu_backward(dfilmed, dout, filmed)?;
            dev.film_backward(dnormed, dss, dfilmed, normed, ss, n.b, n.c, n.hw)?;
        }
        (None, None) => dev.silu_backward(dnormed, dout, normed)?,
        _ => anyhow::bail!("norm_film_silu_backward: ss and dss must both be given or both not"),
    }
    dev.groupnorm_backward(dinp, dparams, gamma, beta, dnormed, inp, stats, params, n)
}

/// Two disjoint mutable ranges that the plan laid out back to back.
fn pair<'a, T>(buf: &'a mut [T], a: &Range<usize>, b: &Range<usize>) -> (&'a mut [T], &'a mut [T]) {
    assert_eq!(a.end, b.start);
    buf[a.start..b.end].split_at_mut(a.len())
}

/// The reference backend: the layer functions of this module on host vectors.
#[derive(Default)]
pub struct CpuOps<T> {
    scratch: ConvScratch<T>,
    /// Per-(sample, channel) sums of the fused GroupNorm + FiLM + SiLU backward.
    norm_sums: Vec<T>,
    /// Runs GroupNorm + FiLM + SiLU as the three unfused layers (tests of the fused kernel).
    unfused: bool,
}

impl<T: Float> CpuOps<T> {
    /// The backend with GroupNorm + FiLM + SiLU as three layers: the reference of the fused
    /// kernel.
    pub fn unfused() -> Self {
        Self { unfused: true, ..Self::default() }
    }
}

impl<T: Float> NetOps for CpuOps<T> {
    type Elem = T;
    type Buf = Vec<T>;
    type Params = [T];
    type ParamBuf = Vec<T>;
    type Adam = AdamW<T>;

    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn fork(&self) -> Result<Self> {
        Ok(Self { unfused: self.unfused, ..Self::default() })
    }
    fn alloc(&mut self, n: usize) -> Result<Vec<T>> {
        Ok(vec![T::ZERO; n])
    }
    fn zero(&mut self, t: &mut Vec<T>) -> Result<()> {
        t.fill(T::ZERO);
        Ok(())
    }
    fn upload(&mut self, dst: &mut Vec<T>, src: &[T]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }
    fn download(&mut self, src: &Vec<T>, dst: &mut [T]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }
    fn upload_params(&mut self, src: &[T]) -> Result<Vec<T>> {
        Ok(src.to_vec())
    }
    fn download_params(&mut self, src: &[T], dst: &mut [T]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }
    fn copy_params(&mut self, dst: &mut [T], src: &[T]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }
    fn zero_params(&mut self, p: &mut [T]) -> Result<()> {
        p.fill(T::ZERO);
        Ok(())
    }
    fn reserve_conv(&mut self, s: &ConvShape) -> Result<()> {
        self.scratch.reserve(s);
        Ok(())
    }
    fn scratch_bytes(&self) -> usize {
        self.scratch.bytes()
    }

    fn fourier_forward(&mut self, out: &mut Vec<T>, sigma: &[T], freqs: &[f64]) -> Result<()> {
        embed::fourier_forward(out, sigma, freqs);
        Ok(())
    }
    fn conv2d_forward(
        &mut self,
        out: &mut Vec<T>,
        inp: &Vec<T>,
        params: &[T],
        w: Range<usize>,
        bias: Range<usize>,
        s: &ConvShape,
    ) -> Result<()> {
        conv::conv2d_forward(out, inp, &params[w], &params[bias], s, &mut self.scratch);
        Ok(())
    }
    fn conv2d_backward(
        &mut self,
        dinp: Option<&mut Vec<T>>,
        dparams: &mut [T],
        w: Range<usize>,
        bias: Range<usize>,
        dout: &Vec<T>,
        inp: &Vec<T>,
        params: &[T],
        s: &ConvShape,
    ) -> Result<()> {
        let (dw, db) = pair(dparams, &w, &bias);
        conv::conv2d_backward(dinp.map(|d| &mut d[..]), dw, db, dout, inp, &params[w], s, &mut self.scratch);
        Ok(())
    }
    fn groupnorm_forward(
        &mut self,
        out: &mut Vec<T>,
        stats: &mut Vec<T>,
        inp: &Vec<T>,
        params: &[T],
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()> {
        gn::groupnorm_forward(out, stats, inp, &params[gamma], &params[beta], n.b, n.c, n.hw, n.groups);
        Ok(())
    }
    fn groupnorm_backward(
        &mut self,
        dinp: &mut Vec<T>,
        dparams: &mut [T],
        gamma: Range<usize>,
        beta: Range<usize>,
        dout: &Vec<T>,
        inp: &Vec<T>,
        stats: &Vec<T>,
        params: &[T],
        n: NormShape,
    ) -> Result<()> {
        let (dg, db) = pair(dparams, &gamma, &beta);
        gn::groupnorm_backward(dinp, dg, db, dout, inp, stats, &params[gamma], n.b, n.c, n.hw, n.groups);
        Ok(())
    }
    fn film_forward(
        &mut self,
        out: &mut Vec<T>,
        inp: &Vec<T>,
        ss: &Vec<T>,
        b: usize,
        c: usize,
        hw: usize,
    ) -> Result<()> {
        act::film_forward(out, inp, ss, b, c, hw);
        Ok(())
    }
    fn film_backward(
        &mut self,
        dinp: &mut Vec<T>,
        dss: &mut Vec<T>,
        dout: &Vec<T>,
        inp: &Vec<T>,
        ss: &Vec<T>,
        b: usize,
        c: usize,
        hw: usize,
    ) -> Result<()> {
        act::film_backward(dinp, dss, dout, inp, ss, b, c, hw);
        Ok(())
    }
    fn norm_film_silu_forward(
        &mut self,
        out: &mut Vec<T>,
        stats: &mut Vec<T>,
        tmp: [&mut Vec<T>; 2],
        inp: &Vec<T>,
        ss: Option<&Vec<T>>,
        params: &[T],
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()> {
        if self.unfused {
            return compose_norm_film_silu_forward(self, out, stats, tmp, inp, ss, params, gamma, beta, n);
        }
        let ss = ss.map(|v| &v[..]);
        fused::norm_film_silu_forward(out, stats, inp, &params[gamma], &params[beta], ss, n);
        Ok(())
    }
    fn norm_film_silu_backward(
        &mut self,
        dinp: &mut Vec<T>,
        dss: Option<&mut Vec<T>>,
        dparams: &mut [T],
        dtmp: [&mut Vec<T>; 2],
        dout: &Vec<T>,
        inp: &Vec<T>,
        ss: Option<&Vec<T>>,
        stats: &Vec<T>,
        tmp: [&Vec<T>; 2],
        params: &[T],
        gamma: Range<usize>,
        beta: Range<usize>,
        n: NormShape,
    ) -> Result<()> {
        if self.unfused {
            let (g, b) = (gamma, beta);
            return compose_norm_film_silu_backward(
                self, dinp, dss, dparams, dtmp, dout, inp, ss, stats, tmp, params, g, b, n,
            );
        }
        let (dg, db) = pair(dparams, &gamma, &beta);
        let (dss, ss) = (dss.map(|v| &mut v[..]), ss.map(|v| &v[..]));
        let (ga, be) = (&params[gamma], &params[beta]);
        fused::norm_film_silu_backward(dinp, dss, dg, db, dout, inp, ss, stats, ga, be, n, &mut self.norm_sums);
        Ok(())
    }
    fn silu_forward(&mut self, out: &mut Vec<T>, inp: &Vec<T>) -> Result<()> {
        act::silu_forward(out, inp);
        Ok(())
    }
    fn silu_backward(&mut self, dinp: &mut Vec<T>, dout: &Vec<T>, inp: &Vec<T>) -> Result<()> {
        act::silu_backward(dinp, dout, inp);
        Ok(())
    }
    fn add_forward(&mut self, out: &mut Vec<T>, a: &Vec<T>, b: &Vec<T>) -> Result<()> {
        act::add_forward(out, a, b);
        Ok(())
    }
    fn accumulate(&mut self, dst: &mut Vec<T>, src: &Vec<T>) -> Result<()> {
        act::accumulate(dst, src);
        Ok(())
    }
    fn down_forward(&mut self, out: &mut Vec<T>, inp: &Vec<T>, bc: usize, h: usize, w: usize) -> Result<()> {
        sample::down_forward(out, inp, bc, h, w);
        Ok(())
    }
    fn down_backward(&mut self, dinp: &mut Vec<T>, dout: &Vec<T>, bc: usize, h: usize, w: usize) -> Result<()> {
        sample::down_backward(dinp, dout, bc, h, w);
        Ok(())
    }
    fn up_forward(&mut self, out: &mut Vec<T>, inp: &Vec<T>, bc: usize, h: usize, w: usize) -> Result<()> {
        sample::up_forward(out, inp, bc, h, w);
        Ok(())
    }
    fn up_backward(&mut self, dinp: &mut Vec<T>, dout: &Vec<T>, bc: usize, h: usize, w: usize) -> Result<()> {
        sample::up_backward(dinp, dout, bc, h, w);
        Ok(())
    }
    fn concat_forward(
        &mut self,
        out: &mut Vec<T>,
        a: &Vec<T>,
        ca: usize,
        c: &Vec<T>,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()> {
        act::concat_forward(out, a, ca, c, cb, b, hw);
        Ok(())
    }
    fn concat_backward(
        &mut self,
        da: &mut Vec<T>,
        dc: &mut Vec<T>,
        dout: &Vec<T>,
        ca: usize,
        cb: usize,
        b: usize,
        hw: usize,
    ) -> Result<()> {
        act::concat_backward(da, dc, dout, ca, cb, b, hw);
        Ok(())
    }

    fn adamw_new(
        &mut self,
        cfg: AdamWConfig,
        layout: &ParamLayout,
        params: &[T],
        from: Option<&AdamW<T>>,
    ) -> Result<AdamW<T>> {
        let mut opt = AdamW::new(cfg, layout, params);
        if let Some(f) = from {
            opt.m.clone_from(&f.m);
            opt.v.clone_from(&f.v);
            opt.ema.clone_from(&f.ema);
            opt.step = f.step;
        }
        Ok(opt)
    }
    fn adamw_update(&mut self, opt: &mut AdamW<T>, params: &mut [T], grads: &[T]) -> Result<StepInfo> {
        Ok(opt.update(params, grads))
    }
    fn adamw_ema(opt: &AdamW<T>) -> &[T] {
        &opt.ema
    }
    fn adamw_state(&mut self, opt: &AdamW<T>, _layout: &ParamLayout) -> Result<AdamW<T>> {
        Ok(opt.clone())
    }
}
