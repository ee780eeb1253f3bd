//! The CUDA backend: one context, stream and cuBLAS handle per process (per rank: the GPU
//! of the rank's node-local index), and the kernels of `kernels/` compiled by NVRTC for the
//! device's own compute capability the first time they are needed, then cached.
//!
//! Everything here is reached only after `cuda_usable()` succeeded (cudarc panics when
//! libcuda.so is missing); `CudaBackend::new` checks it again. Every CUDA call returns an
//! error that names the kernel or operation. With `LATDIFF_CUDA_SYNC=1` every launch is
//! followed by a synchronisation, so asynchronous faults are attributed to their kernel.

use super::kernels::{self, KernelFile};
use anyhow::{anyhow, bail, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// PTX per (virtual architecture, kernel file), compiled once per process.
fn ptx_cache() -> &'static Mutex<HashMap<(String, &'static str), Ptx>> {
    static C: OnceLock<Mutex<HashMap<(String, &'static str), Ptx>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles (or fetches) the PTX of one kernel file for `arch` (e.g. `compute_90`).
pub fn cached_ptx(k: &'static KernelFile, arch: &str) -> Result<Ptx> {
    let key = (arch.to_string(), k.name);
    if let Some(p) = ptx_cache().lock().unwrap().get(&key) {
        return Ok(p.clone());
    }
    let ptx = kernels::compile_ptx(k, arch).map_err(|e| anyhow!(e))?;
    ptx_cache().lock().unwrap().insert(key, ptx.clone());
    Ok(ptx)
}

pub struct CudaBackend {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub ordinal: usize,
    pub name: String,
    /// Virtual architecture the kernels are compiled for, `compute_<major><minor>`.
    pub arch: String,
    pub sm_count: usize,
    sync_each_launch: bool,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
}

/// Threads per block of every launch.
pub const BLOCK: u32 = 256;

impl CudaBackend {
    pub fn new(ordinal: usize) -> Result<Self> {
        super::cuda_usable().map_err(|e| anyhow!("CUDA: {e}"))?;
        if !kernels::nvrtc_available() {
            bail!(
                "CUDA: libnvrtc (NVRTC) not found; install the CUDA toolkit or put libnvrtc.so.12 on LD_LIBRARY_PATH"
            );
        }
        let ctx = CudaContext::new(ordinal).with_context(|| format!("CUDA: creating a context on GPU {ordinal}"))?;
        let (major, minor) = ctx.compute_capability().context("CUDA: querying the compute capability")?;
        let sm_count = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .context("CUDA: querying the SM count")? as usize;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).context("cuBLAS: creating the handle")?;
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            ordinal,
            name,
            arch: format!("compute_{major}{minor}"),
            sm_count,
            sync_each_launch: std::env::var("LATDIFF_CUDA_SYNC").as_deref() == Ok("1"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// TF32 tensor-core math for the cuBLAS sgemms (10-bit mantissa products; off by default).
    pub fn set_tf32(&self, on: bool) -> Result<()> {
        use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode, cublasStatus_t};
        let mode = if on { cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH } else { cublasMath_t::CUBLAS_DEFAULT_MATH };
        // SAFETY: the handle is valid for the lifetime of `self.blas`.
        let st = unsafe { cublasSetMathMode(*self.blas.handle(), mode) };
        if st != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            bail!("cuBLAS: cublasSetMathMode({mode:?}) failed: {st:?}");
        }
        Ok(())
    }

    /// The loaded function `entry` of kernel file `file` (compiled and loaded on first use).
    pub fn function(&self, file: &'static str, entry: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap().get(&(file, entry)) {
            return Ok(f.clone());
        }
        let k = kernels::find(file).ok_or_else(|| anyhow!("kernel file {file}.cu is not embedded"))?;
        let module = {
            let mut mods = self.modules.lock().unwrap();
            match mods.get(file) {
                Some(m) => m.clone(),
                None => {
                    let ptx = cached_ptx(k, &self.arch)?;
                    let m = self
                        .ctx
                        .load_module(ptx)
                        .map_err(|e| anyhow!("kernel {file}.cu: loading the PTX for {} failed: {e}", self.arch))?;
                    mods.insert(file, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(entry).map_err(|e| anyhow!("kernel {file}.cu: no function {entry}: {e}"))?;
        self.functions.lock().unwrap().insert((file, entry), f.clone());
        Ok(f)
    }

    /// Grid-stride launch over `n` elements: enough blocks to fill the GPU, no more.
    pub fn grid(&self, n: usize) -> LaunchConfig {
        let blocks = n.div_ceil(BLOCK as usize).clamp(1, 32 * self.sm_count.max(1));
        LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    /// One block per row (reductions).
    pub fn rows(&self, rows: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (rows.max(1) as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    /// Checks a launch result; with LATDIFF_CUDA_SYNC=1 also waits for the kernel to finish.
    pub fn check<T>(&self, entry: &str, r: Result<T, cudarc::driver::DriverError>) -> Result<()> {
        r.map_err(|e| anyhow!("kernel {entry}: launch failed: {e}"))?;
        if self.sync_each_launch {
            self.stream.synchronize().map_err(|e| anyhow!("kernel {entry}: execution failed: {e}"))?;
        }
        Ok(())
    }

    /// Peak DRAM bandwidth in bytes/s: LATDIFF_PEAK_BW if set, else 2 × memory clock ×
    /// bus width from the device attributes (H100 SXM ≈ 3.35e12, H200 ≈ 4.8e12).
    pub fn peak_bandwidth(&self) -> Option<f64> {
        if let Some(v) = std::env::var("LATDIFF_PEAK_BW").ok().and_then(|s| s.parse::<f64>().ok()) {
            return Some(v);
        }
        use cudarc::driver::sys::CUdevice_attribute::*;
        let khz = self.ctx.attribute(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).ok()? as f64;
        let bits = self.ctx.attribute(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH).ok()? as f64;
        (khz > 0.0 && bits > 0.0).then(|| 2.0 * khz * 1e3 * bits / 8.0)
    }

    pub fn synchronize(&self, what: &str) -> Result<()> {
        self.stream.synchronize().map_err(|e| anyhow!("CUDA: {what}: {e}"))
    }
}

/// `launch!(backend, "file", "entry", config, arg, …)`: loads the function (cached), launches
/// it on the backend's stream and names the kernel in any error. Arguments are passed as
/// references (`&slice`, `&mut slice`, `&scalar`).
#[macro_export]
macro_rules! cuda_launch {
    ($be:expr, $file:literal, $entry:literal, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let be: &$crate::backend::cuda::CudaBackend = $be;
        let f = be.function($file, $entry)?;
        // One expression, so temporaries among the arguments live until the launch.
        // SAFETY: argument lists match the kernel signatures in kernels/*.cu (parity tests).
        #[allow(clippy::macro_metavars_in_unsafe)]
        let r = unsafe { be.stream.launch_builder(&f)$(.arg($arg))*.launch($cfg) };
        be.check($entry, r)
    }};
}
