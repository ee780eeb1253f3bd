//! The `latdiff sample` driver: batches of samples spread over ranks, streamed to one file.
//!
//! Global sample i always uses `rng::stream(seed, Domain::Sample, i)`. Round r covers the
//! indices [r·R·b, (r+1)·R·b) and rank k draws the k-th block of b of them, so rank 0
//! receives every round's samples in index order: the file is the same for any rank count.

pub mod batches;
pub mod multilevel;
pub mod output;
pub mod plan;
pub mod smc;
pub mod smc_report;

use crate::backend::Device;
use crate::config::SampleConfig;
use crate::dist::Comm;
use crate::util::StopFlag;
use anyhow::Result;

pub use self::batches::METROPOLIS_STREAM;
pub use self::output::SampleSummary;
pub use self::plan::{plan, Plan};

/// `latdiff sample`: the plan (every check before work), then the batches of the em, pc or
/// ode sampler, or SMC's replicas.
pub fn run(cfg: &SampleConfig, comm: &Comm, stop: &StopFlag, device: Device) -> Result<SampleSummary> {
    let p = plan(cfg, device, comm)?;
    use crate::diffusion::sample::sampler::SamplerKind;
    match p.settings.sampler {
        SamplerKind::Smc => return smc::run(cfg, comm, stop, p),
        SamplerKind::Multilevel => return multilevel::run(cfg, comm, stop, p),
        _ => {}
    }
    batches::run(cfg, comm, stop, p)
}
