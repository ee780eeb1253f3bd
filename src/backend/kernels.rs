//! The CUDA kernels in `kernels/`, embedded in the binary and compiled at run time by NVRTC.
//!
//! Shared headers (`*.cuh`) are inlined textually (each `#include "x.cuh"` line is replaced
//! by the header once per program), so NVRTC needs no include paths and no CUDA headers.
//! Nothing here needs a GPU: `compile_ptx` only needs libnvrtc (the check in
//! `jobscripts/check-kernels.sh` runs it for sm_80 and sm_90 and assembles with ptxas).

use cudarc::nvrtc::{CompileOptions, Ptx};

/// A kernel source file and the `extern "C"` entry points the host code launches from it.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
}

/// Headers that kernel files `#include "…"`.
pub const HEADERS: &[(&str, &str)] = &[
    ("philox.cuh", include_str!("../../kernels/philox.cuh")),
    ("block_reduce.cuh", include_str!("../../kernels/block_reduce.cuh")),
];

macro_rules! kfile {
    ($name:literal, [$($e:literal),* $(,)?]) => {
        KernelFile { name: $name, source: include_str!(concat!("../../kernels/", $name, ".cu")), entries: &[$($e),*] }
    };
}

/// Every kernel file; the compile check iterates over this list.
pub const KERNELS: &[KernelFile] = &[
    kfile!("hmc", ["hmc_momenta", "hmc_restore"]),
    kfile!("phi4_md", ["phi4_kick", "phi4_kick_drift"]),
    kfile!("u1_md", ["u1_kick", "u1_kick_drift", "u1_energy"]),
    kfile!("reduce", ["phi4_energy", "sum_sq_partial_f32", "row_sum_f32"]),
    kfile!("conv_im2col", ["im2col_periodic", "col2im_periodic_add", "cn_to_nchw_bias", "nchw_to_cn"]),
    kfile!(
        "bias_silu",
        ["silu_fwd", "silu_bwd", "bias_silu_fwd", "add_fwd", "accumulate_f32", "concat_fwd", "concat_bwd"]
    ),
    kfile!("groupnorm", ["groupnorm_fwd", "groupnorm_bwd_input", "groupnorm_bwd_affine"]),
    kfile!("film", ["film_fwd", "film_bwd"]),
    kfile!("resample", ["down_fwd", "down_bwd", "up_fwd", "up_bwd"]),
    kfile!("sde_step", ["sde_em_step"]),
    kfile!("dsm_loss", ["dsm_input", "dsm_residual"]),
    kfile!("adamw", ["adamw_ema"]),
];

pub fn find(name: &str) -> Option<&'static KernelFile> {
    KERNELS.iter().find(|k| k.name == name)
}

/// The source with every `#include "header"` of `HEADERS` inlined (once per program).
pub fn expand(src: &str) -> Result<String, String> {
    let mut done: Vec<&str> = Vec::new();
    expand_into(src, &mut done)
}

fn expand_into(src: &str, done: &mut Vec<&str>) -> Result<String, String> {
    let mut out = String::with_capacity(src.len() + 4096);
    for line in src.lines() {
        let t = line.trim();
        if t == "#pragma once" {
            continue;
        }
        if let Some(rest) = t.strip_prefix("#include") {
            let inc = rest.trim().trim_matches('"');
            let (hname, htext) = HEADERS
                .iter()
                .find(|(n, _)| *n == inc)
                .ok_or_else(|| format!("#include \"{inc}\": not one of the embedded headers"))?;
            if !done.contains(hname) {
                done.push(hname);
                out.push_str(&format!("// ---- begin {hname} ----\n"));
                out.push_str(&expand_into(htext, done)?);
                out.push_str(&format!("// ---- end {hname} ----\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Whether libnvrtc can be loaded (cudarc panics instead of failing when it cannot).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the shared library.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// Compiles one kernel file to PTX for a virtual architecture, e.g. `compute_90`.
/// The error names the kernel file and carries the NVRTC log.
pub fn compile_ptx(k: &KernelFile, arch: &str) -> Result<Ptx, String> {
    let src = expand(k.source).map_err(|e| format!("kernel {}: {e}", k.name))?;
    let opts = CompileOptions {
        name: Some(format!("{}.cu", k.name)),
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++14".into()],
        ..Default::default()
    };
    let r = std::panic::catch_unwind(move || cudarc::nvrtc::compile_ptx_with_opts(src, opts));
    match r {
        Ok(Ok(ptx)) => Ok(ptx),
        Ok(Err(cudarc::nvrtc::CompileError::CompileError { nvrtc, options, log })) => Err(format!(
            "kernel {}.cu failed to compile for {arch} ({nvrtc:?}, options {options:?}):\n{}",
            k.name,
            log.to_string_lossy()
        )),
        Ok(Err(e)) => Err(format!("kernel {}.cu: NVRTC error for {arch}: {e:?}", k.name)),
        Err(_) => Err(format!("kernel {}.cu: libnvrtc could not be loaded", k.name)),
    }
}

/// Entry points of `k` missing from its PTX (a typo between host and kernel names).
pub fn missing_entries(k: &KernelFile, ptx_text: &str) -> Vec<&'static str> {
    k.entries.iter().copied().filter(|e| !ptx_text.contains(&format!(".entry {e}("))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_inlined_once() {
        for k in KERNELS {
            let s = expand(k.source).unwrap();
            assert!(!s.lines().any(|l| l.trim_start().starts_with("#include")), "{}", k.name);
            assert!(s.matches("begin philox.cuh").count() <= 1);
            for e in k.entries {
                assert!(s.contains(&format!("void {e}(")), "{}: no entry {e}", k.name);
            }
        }
        assert!(expand("#include \"nope.cuh\"").is_err());
    }
}
