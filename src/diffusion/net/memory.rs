//! What `latdiff train` and `latdiff sample` hold in memory, estimated before any of it is
//! allocated (`limits::check` compares it with the rank's budget). Lattice-sized buffers
//! dominate; the allowances below count each one a run keeps at the same time.

use crate::lattice::Lattice;
use crate::limits::BASE_BYTES;
use crate::nn::{Arch, Network};

/// Per site of the lattice, independent of the batch: the physics prior and the data's G(p)
/// (complex FFT buffers and their f64 copies; generous: they are small beside a batch).
const PRIOR_BYTES_PER_SITE: f64 = 8.0 * 16.0;
/// Per site of one configuration beside the network: the objective's input, residual and
/// output gradient (f32) in its workspace.
const OBJECTIVE_BYTES_PER_SITE: f64 = 3.0 * 4.0;
/// Per site of one training batch slot: clean field, noise, noised input and offset, and
/// the augmented copy (f32).
const TRAIN_SLOT_BYTES_PER_SITE: f64 = 6.0 * 4.0;
/// Per site of one sampled configuration: the sampler's f64 state (as generate.rs sizes
/// its batches).
const SAMPLE_BYTES_PER_SITE: f64 = 16.0 * 8.0;

/// Network workspace per configuration (0 without a network) plus the objective's buffers.
fn per_config(arch: Option<&Arch>, lat: Lattice) -> f64 {
    let ws = arch.map_or(0, |a| crate::diffusion::net::model::workspace_bytes_per_config(a, lat)) as f64;
    ws + OBJECTIVE_BYTES_PER_SITE * lat.volume() as f64
}

/// The shape of a training run, as far as memory goes.
pub struct TrainShape<'a> {
    pub arch: &'a Arch,
    pub lattice: Lattice,
    /// Rows of the data file, training rows and held-out rows used.
    pub n_rows: usize,
    pub n_train: usize,
    pub n_val: usize,
    /// Global batch and this rank's slots of it.
    pub batch: usize,
    pub local: usize,
    pub root: bool,
}

/// (bytes for this rank, the work it describes).
pub fn train_bytes(s: &TrainShape) -> (u64, String) {
    let v = s.lattice.volume() as f64;
    let cfg_bytes = 4.0 * v;
    let params = Network::new(s.arch.clone()).num_params() as f64;
    // This rank's shard is read as one span of rows (held-out rows included) and copied.
    let frac = s.local as f64 / s.batch.max(1) as f64;
    let shard = cfg_bytes * ((s.n_rows as f64 * frac).ceil() + 1.0 + (s.n_train as f64 * frac).ceil());
    // Rows read for σ_data and for G(p), then the prior built from G(p).
    let stats = cfg_bytes * (s.n_train.min(256) + s.n_train.min(1024)) as f64 + PRIOR_BYTES_PER_SITE * v;
    // Parameters, gradient, the two Adam moments, the EMA and the all-reduce buffer.
    let optimiser = 6.0 * 4.0 * params;
    let slots = s.local as f64 * (per_config(Some(s.arch), s.lattice) + TRAIN_SLOT_BYTES_PER_SITE * v);
    let mut bytes = BASE_BYTES as f64 + shard + stats + optimiser + slots;
    if s.root {
        // The held-out set (clean, noise, noised input, offset) and the workspace its loss
        // is evaluated in, in chunks of the global batch.
        let chunk = s.batch.min(s.n_val) as f64;
        bytes += 4.0 * cfg_bytes * s.n_val as f64 + chunk * per_config(Some(s.arch), s.lattice);
    }
    let what = format!("training on lattice {} with {} batch slot(s) on this rank", s.lattice, s.local);
    (bytes.min(u64::MAX as f64) as u64, what)
}

/// The shape of a sampling run; `batch` is per rank, as every rank runs one per round.
pub struct SampleShape<'a> {
    pub arch: Option<&'a Arch>,
    pub n_params: usize,
    pub lattice: Lattice,
    pub n_configs: usize,
    pub ranks: usize,
    pub threads: usize,
    pub hmc_refine: bool,
    pub root: bool,
}

impl SampleShape<'_> {
    /// Bytes held whatever the batch.
    pub fn fixed_bytes(&self) -> f64 {
        let v = self.lattice.volume() as f64;
        let refine = if self.hmc_refine { self.threads as f64 * 4.0 * 8.0 * v } else { 0.0 };
        // Every proposal's log-weight and index stay on rank 0 for the ESS.
        let weights = if self.root { 16.0 * self.n_configs as f64 } else { 0.0 };
        BASE_BYTES as f64 + 3.0 * 4.0 * self.n_params as f64 + PRIOR_BYTES_PER_SITE * v + refine + weights
    }

    /// Bytes per configuration of this rank's batch; rank 0 also receives every rank's
    /// rows of a round (and with --metropolis builds the chain's rows beside them).
    pub fn per_config_bytes(&self) -> f64 {
        let v = self.lattice.volume() as f64;
        let gathered = if self.root { self.ranks as f64 * 2.0 * 4.0 * v } else { 0.0 };
        per_config(self.arch, self.lattice) + SAMPLE_BYTES_PER_SITE * v + gathered
    }

    pub fn bytes(&self, batch: usize) -> (u64, String) {
        let b = self.fixed_bytes() + batch as f64 * self.per_config_bytes();
        let what = format!("sampling on lattice {} in batches of {batch}", self.lattice);
        (b.min(u64::MAX as f64) as u64, what)
    }

    /// The largest batch (at most 256) whose estimate fits `budget` bytes; at least 1.
    pub fn batch_for(&self, budget: u64) -> usize {
        let room = budget as f64 - self.fixed_bytes();
        ((room / self.per_config_bytes()).floor().max(1.0) as usize).min(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace estimate is the line through two small lattices: it must equal what a
    /// workspace of another shape really holds.
    #[test]
    fn workspace_estimate_matches_an_allocation() {
        for name in ["tiny-local", "tiny"] {
            let arch = Arch::preset(name).unwrap();
            let lat = Lattice::new(8 * arch.stride(), 3 * arch.stride());
            let net = Network::new(arch.clone());
            let real = crate::diffusion::objective::CpuDsmWorkspace::<f32>::new(&net, 1, lat.lt, lat.lx).net.bytes();
            let est = crate::diffusion::net::model::workspace_bytes_per_config(&arch, lat);
            let rel = (est as f64 - real as f64).abs() / real as f64;
            assert!(rel < 0.01, "{name} on {lat}: estimate {est}, allocated {real}");
        }
    }

    #[test]
    fn sample_batches_fit_their_budget() {
        let arch = Arch::preset("local").unwrap();
        let s = SampleShape {
            arch: Some(&arch),
            n_params: 70000,
            lattice: Lattice::square(64),
            n_configs: 1024,
            ranks: 2,
            threads: 2,
            hmc_refine: false,
            root: true,
        };
        let b = s.batch_for(512 << 20);
        assert!(b >= 1 && s.bytes(b).0 <= 512 << 20, "batch {b}: {}", s.bytes(b).0);
        assert!(s.bytes(b + 1).0 > 512 << 20 || b == 256);
        let (big, what) = SampleShape { lattice: Lattice::square(4096), ..s }.bytes(1);
        assert!(big > 4 << 30, "one 4096² configuration of the local network: {big}");
        assert!(what.contains("4096x4096") && what.contains("batches of 1"), "{what}");
    }
}
