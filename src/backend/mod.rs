//! Device selection. `--device auto` picks CUDA only when a GPU is really usable and the
//! command has a CUDA path; otherwise the CPU (rayon) path, the readable reference, runs.

use anyhow::{bail, Result};

pub mod cuda;
pub mod cuda_nn;
pub mod kernels;
pub mod philox;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda { ordinal: usize },
}

/// Whether a CUDA driver is installed and at least one device answers. cudarc panics when
/// libcuda.so is missing, so the library's presence is checked first.
pub fn cuda_usable() -> Result<usize, String> {
    // SAFETY: only probes whether the shared library can be loaded.
    let present = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err("no CUDA driver (libcuda.so) found".into());
    }
    match std::panic::catch_unwind(cudarc::driver::CudaContext::device_count) {
        Ok(Ok(n)) if n > 0 => Ok(n as usize),
        Ok(Ok(_)) => Err("the CUDA driver reports no devices".into()),
        Ok(Err(e)) => Err(format!("the CUDA driver failed: {e}")),
        Err(_) => Err("the CUDA driver could not be loaded".into()),
    }
}

static NOTICE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Prints the device notice kept by `select` (once). Commands call this after their input
/// checks, so that bad input still gets exactly one line.
pub fn announce() {
    if let Some(n) = NOTICE.lock().ok().and_then(|mut g| g.take()) {
        eprintln!("{n}");
    }
}

fn notice(announce: bool, text: String) {
    if announce {
        if let Ok(mut g) = NOTICE.lock() {
            *g = Some(text);
        }
    }
}

/// Resolves the request for a command. `cuda_path` is `Err(why)` when the command, with
/// these options, cannot run on a GPU; `local_rank` picks the GPU of this rank on its node.
pub fn select(req: DeviceRequest, cuda_path: Result<(), &str>, local_rank: usize, announce: bool) -> Result<Device> {
    match req {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda => {
            let n = cuda_usable().map_err(|e| anyhow::anyhow!("device cuda: {e}"))?;
            if let Err(why) = cuda_path {
                bail!("device cuda: {why} (use --device cpu)");
            }
            Ok(Device::Cuda { ordinal: local_rank % n })
        }
        DeviceRequest::Auto => match cuda_usable() {
            Ok(n) if cuda_path.is_ok() => Ok(Device::Cuda { ordinal: local_rank % n }),
            Ok(_) => {
                notice(
                    announce,
                    format!("device auto: a GPU is present but {}; running on the CPU", cuda_path.unwrap_err()),
                );
                Ok(Device::Cpu)
            }
            Err(why) => {
                notice(announce, format!("device auto: {why}; running on the CPU"));
                Ok(Device::Cpu)
            }
        },
    }
}
