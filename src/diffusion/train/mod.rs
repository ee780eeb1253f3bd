//! `latdiff train`: denoising score matching, data-parallel over MPI ranks.
//!
//! Every rank holds identical parameters. Per step each rank fills its batch slots (see
//! `data`), computes the gradient of its slots' mean loss, and one all-reduce (sum) of one
//! flat buffer — the gradient followed by a few scalars (loss sums per σ band and the stop
//! flag) — makes every rank's AdamW update identical. A parameter checksum is compared
//! every `checksum_every` steps; a mismatch stops the job with an error, never silently.
//!
//! The steps, a file each: `plan` (the input checked before any work), `trainer` (statistics,
//! parameters, slots, engine, held-out set), `steps` (the loop), `checkpoint` (the model
//! file), `report` (final diagnostics and summary); `theory` is what training needs of the
//! data's theory, `validation` the held-out losses.

mod checkpoint;
mod plan;
mod report;
mod steps;
mod theory;
mod trainer;
mod validation;

pub use validation::{score_force_deviation, Validation};

use crate::backend::Device;
use crate::config::TrainConfig;
use crate::dist::Comm;
use crate::util::StopFlag;
use anyhow::Result;

/// Consecutive steps with a non-finite loss or gradient after which training stops as
/// diverged (exit code 1, no model written). Such a step is skipped, parameters unchanged:
/// an isolated overflow costs one batch, while K in a row means the parameters themselves
/// no longer give finite losses and more steps cannot help.
pub const MAX_NONFINITE_STEPS: u64 = 5;

#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub steps_done: u64,
    pub finished: bool,
    pub stopped_by_signal: bool,
    pub final_val_loss: f64,
    pub samples_per_s: f64,
    pub allreduce_share: f64,
}

pub fn train(cfg: &TrainConfig, comm: &Comm, stop: &StopFlag, device: Device) -> Result<TrainSummary> {
    let plan = plan::Plan::check(cfg, comm)?;
    if comm.is_root() {
        crate::backend::announce();
    }
    let mut trainer = trainer::Trainer::new(cfg, comm, device, plan)?;
    if comm.is_root() {
        trainer.announce();
    }
    let outcome = trainer.run_steps(stop)?;
    trainer.finish(outcome)
}
