//! What training needs from the theory of its data (values per configuration, the
//! network's channels, augmentation, the data statistics behind σ_data and the schedule),
//! through the theory's [`DiffusionTheory`].

use crate::config::TrainConfig;
use crate::diffusion::objective::SigmaSchedule;
use crate::diffusion::theories;
use crate::diffusion::theory::DiffusionTheory;
use crate::lattice::Lattice;
use crate::nn::Arch;
use crate::rng::Stream;
use crate::theory::{Action, Couplings};

/// The theory of the training data on its lattice.
pub(super) struct DataTheory {
    pub couplings: Couplings,
    pub lattice: Lattice,
    /// Values per configuration.
    pub dof: usize,
    /// The action whose force the score at σ_min is compared with.
    pub action: Box<dyn Action + Send>,
    /// What the model file records of the theory (`Theory::attrs`).
    pub labels: Vec<(&'static str, String)>,
    pub diffusion: Box<dyn DiffusionTheory>,
}

impl DataTheory {
    pub fn new(lattice: Lattice, couplings: Couplings) -> Self {
        let diffusion = theories::of(couplings);
        DataTheory {
            couplings,
            lattice,
            dof: diffusion.dof(lattice),
            action: diffusion.target(lattice).into_action(),
            labels: diffusion.labels(lattice),
            diffusion,
        }
    }

    /// The preset's network with the theory's channels.
    pub fn network_arch(&self, preset: Arch) -> Arch {
        self.diffusion.network_arch(preset)
    }

    /// A random symmetry image of a configuration (`data::Augment`).
    pub fn augment(&self, dst: &mut [f32], src: &[f32], rng: &mut Stream) {
        self.diffusion.augment(self.lattice, dst, src, rng)
    }

    /// σ_data, the default noise range and the data's two-point function G(p).
    pub fn statistics(&self, cfg: &TrainConfig, stat_cfgs: &[f32], rows: &[f32]) -> (f64, SigmaSchedule, Vec<f64>) {
        self.diffusion.statistics(self.lattice, cfg, stat_cfgs, rows)
    }
}
