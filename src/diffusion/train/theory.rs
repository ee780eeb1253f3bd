//! What training needs from the theory of its data: values per configuration, the
//! network's channels, augmentation, the data statistics behind σ_data and the schedule.

use crate::diffusion::data;
use crate::diffusion::objective::SigmaSchedule;
use crate::config::TrainConfig;
use crate::lattice::Lattice;
use crate::nn::Arch;
use crate::rng::Stream;
use crate::theory::{Action, Couplings, Phi4, Theory, U1};

/// What training needs from the theory of its data.
pub(super) struct DataTheory {
    pub couplings: Couplings,
    lattice: Lattice,
    /// Values per configuration: V for φ⁴, 2V link angles for U(1).
    pub dof: usize,
    /// The action whose force the score at σ_min is compared with.
    pub action: Box<dyn Action + Send>,
    /// What the model file records of the theory (`Theory::attrs`).
    pub labels: Vec<(&'static str, String)>,
}

impl DataTheory {
    pub fn new(lattice: Lattice, couplings: Couplings) -> Self {
        let v = lattice.volume();
        match couplings {
            Couplings::Phi4(p) => {
                let t = Phi4::new(lattice, p);
                DataTheory { couplings, lattice, dof: v, labels: t.attrs().labels, action: Box::new(t) }
            }
            Couplings::U1 { beta } => {
                let t = U1::new(lattice, beta);
                DataTheory { couplings, lattice, dof: 2 * v, labels: t.attrs().labels, action: Box::new(t) }
            }
        }
    }

    /// The preset's network with the theory's channels (U(1): plaquette cos/sin in, one
    /// score per link direction out, the bounded input unscaled).
    pub fn network_arch(&self, preset: Arch) -> Arch {
        match self.couplings {
            Couplings::Phi4(_) => preset,
            Couplings::U1 { .. } => Arch {
                in_channels: crate::diffusion::u1::IN_CHANNELS,
                out_channels: crate::diffusion::u1::OUT_CHANNELS,
                scaled_input: false,
                ..preset
            },
        }
    }

    /// A random symmetry image of a configuration (`data::Augment`).
    pub fn augment(&self, dst: &mut [f32], src: &[f32], rng: &mut Stream) {
        match self.couplings {
            Couplings::Phi4(_) => data::augment(dst, src, self.lattice, &|v| -v, rng),
            Couplings::U1 { .. } => crate::diffusion::u1::symmetry::augment_links(dst, src, self.lattice, rng),
        }
    }

    /// σ_data, the default noise range and the data's two-point function G(p) (U(1): of the
    /// plaquette angles, recorded for information; no sampler kernel uses it).
    pub fn statistics(&self, cfg: &TrainConfig, stat_cfgs: &[f32], rows: &[f32]) -> (f64, SigmaSchedule, Vec<f64>) {
        let lat = self.lattice;
        match self.couplings {
            Couplings::Phi4(_) => {
                let (rms, dmax) = data::field_scales(stat_cfgs, self.dof);
                let sigma_max = if cfg.sigma_max > 0.0 { cfg.sigma_max } else { dmax.max(10.0 * cfg.sigma_min) };
                let sched = SigmaSchedule { sigma_min: cfg.sigma_min, sigma_max, t_eps: 1e-5 };
                (if rms > 0.0 { rms } else { 1.0 }, sched, data::two_point(rows, lat))
            }
            Couplings::U1 { .. } => {
                let u = U1::new(lat, 1.0);
                let plaq: Vec<f32> = rows
                    .chunks(self.dof)
                    .flat_map(|c| {
                        let t: Vec<f64> = c.iter().map(|&x| x as f64).collect();
                        u.plaquette_angles(&t).into_iter().map(|a| crate::theory::manifold::wrap_angle(a) as f32)
                    })
                    .collect();
                let sched = crate::diffusion::u1::prior::default_schedule(cfg.sigma_min, cfg.sigma_max);
                (crate::diffusion::u1::prior::link_scale(lat, stat_cfgs), sched, data::two_point(&plaq, lat))
            }
        }
    }
}
