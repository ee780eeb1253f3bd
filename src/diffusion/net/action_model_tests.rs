//! The action network as a score model: its score against its energies, and the model's
//! passes against the engine's.

use super::*;
use crate::diffusion::net::action_engine::*;
use crate::diffusion::objective::c_in;
use crate::diffusion::ScoreModel;
use crate::nn::ActionNet;

/// Fields on multiples of 2⁻¹², so that φ ± h (h a power of two) is exact in f32.
fn field(n: usize, seed: u64) -> Vec<f64> {
    crate::nn::gradcheck::rand_vec(n, seed).iter().map(|x| (x * 4096.0).round() / 4096.0).collect()
}

/// The score of an action model is minus the gradient of the energies it returns
/// (fourth-order central differences; the network runs in f32, whose rounding of S ~ 10
/// gives difference quotients good to ~2e-5 of the largest component at h = 2⁻⁵), the
/// energies are the f64 network's forward at x = c_in(σ) φ to f32 rounding, and the
/// score that comes with them is `score`'s bit for bit.
#[test]
fn action_model_score_is_minus_the_gradient_of_its_energies() {
    let lat = Lattice::new(4, 6);
    let v = lat.volume();
    let m = random_action_model(lat, 3);
    assert!(m.has_action());
    let sigma = [0.05, 0.7, 3.0];
    let mut phi = field(3 * v, 4);
    let (mut u, mut s) = (vec![0.0; 3], vec![0.0; 3 * v]);
    m.action_values(lat, &phi, &sigma, &mut u, Some(&mut s)).unwrap();
    let mut s_plain = vec![0.0; 3 * v];
    m.score(lat, &phi, &sigma, &mut s_plain).unwrap();
    assert_eq!(s, s_plain, "the score beside the energies is not score()'s");

    let net = ActionNet::new(ActionArch::tiny());
    let p64: Vec<f64> = random_action_params(3).iter().map(|&x| x as f64).collect();
    let x: Vec<f64> = phi.iter().enumerate().map(|(i, p)| p * c_in(0.8, sigma[i / v])).collect();
    let mut ws = crate::nn::ActionWorkspace::new(&net, 3, lat.lt, lat.lx);
    let mut want = vec![0.0; 3];
    net.forward(&mut want, &p64, &x, &sigma, &mut ws);
    for b in 0..3 {
        assert!((u[b] - want[b]).abs() < 1e-5 * (1.0 + want[b].abs()), "S[{b}] = {} vs f64 forward {}", u[b], want[b]);
    }

    let h = 1.0 / 32.0;
    let at = |phi: &[f64]| {
        let mut a = vec![0.0; 3];
        m.action_values(lat, phi, &sigma, &mut a, None).unwrap();
        a
    };
    let mut worst = 0.0f64;
    let scale = s.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for i in 0..3 * v {
        let x0 = phi[i];
        let mut f = |d: f64| {
            phi[i] = x0 + d;
            at(&phi)[i / v]
        };
        let fd = (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h);
        phi[i] = x0;
        worst = worst.max((s[i] + fd).abs() / scale);
    }
    println!("largest |s + dS/dphi| / max|s| = {worst:.2e}");
    assert!(worst < 2e-4, "score vs -dS/dphi: {worst:.2e} of the largest component");
}

/// pc with an action model: each corrector step is one MALA step against S_θ (one
/// evaluation per step plus one per level), its mean acceptance is reported, there are
/// no weights, and the samples do not depend on the batching.
#[test]
fn pc_with_an_action_model_corrects_with_mala() {
    use crate::diffusion::sample::sampler::{sample_batch, SamplerKind, SamplerSettings};
    let lat = Lattice::new(4, 6);
    let m = random_action_model(lat, 3);
    let st = SamplerSettings { corrector_steps: 2, ..SamplerSettings::new(SamplerKind::Pc, 6, 0.05, 5.0) };
    let target = crate::theory::Phi4::new(lat, crate::theory::Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
    let b = sample_batch(&m, Some(&target), lat, &st, 1, 0, 8).unwrap();
    assert_eq!(b.score_calls, 6 + 3 * 5);
    assert!(b.log_weight.is_none());
    let a = b.corrector_acceptance.unwrap();
    assert!(a > 0.0 && a < 1.0, "acceptance {a}");
    let halves =
        [sample_batch(&m, None, lat, &st, 1, 0, 3).unwrap(), sample_batch(&m, None, lat, &st, 1, 3, 5).unwrap()];
    assert_eq!(b.configs, [&halves[0].configs[..], &halves[1].configs[..]].concat());
    let plain = sample_batch(
        &crate::diffusion::phi4::free::FreeScoreModel::parse("free:kappa=0.2").unwrap(),
        None,
        lat,
        &st,
        1,
        0,
        2,
    );
    assert_eq!(plain.unwrap().corrector_acceptance, None);
}

/// Models without a learnt action say so in one line.
#[test]
fn models_without_an_action_refuse_energies() {
    let lat = Lattice::new(4, 4);
    let free = crate::diffusion::phi4::free::FreeScoreModel::parse("free:kappa=0.2").unwrap();
    assert!(!free.has_action());
    let e = free.action_values(lat, &[0.0; 16], &[1.0], &mut [0.0], None).unwrap_err();
    assert!(e.contains("no learnt action") && !e.contains('\n'), "{e}");
}

/// With an action network's learnt SMC targets and resampling off, the particles and
/// weights are still the em sampler's bit for bit (random weights: the weights vary widely).
#[test]
fn learnt_targets_with_resampling_off_reproduce_the_em_path_weights_exactly() {
    use crate::config::SmcTarget;
    use crate::diffusion::phi4::levels::Levels;
    use crate::diffusion::sample::kernel::ReverseKernel;
    use crate::diffusion::sample::sampler::{sample_batch, SamplerKind, SamplerSettings};
    use crate::diffusion::smc::{resample, run_replica, SmcSettings};
    use crate::theory::{Parametrisation, Phi4};
    let lat = Lattice::new(4, 6);
    let m = random_action_model(lat, 7);
    let n = 24;
    let s = SamplerSettings::new(SamplerKind::Em, 12, 0.01, 20.0);
    let target = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
    let smc = SmcSettings {
        n_particles: n,
        resample_ess: 0.0,
        rejuvenate: 3,
        batch: 5,
        network_below: f64::INFINITY,
        exact_magnetisation: false,
        rejuvenate_always: false,
    };
    let k = ReverseKernel::new(&m, lat, &s).unwrap();
    let levels = Levels::new(&m, target.clone(), s.sigma_ladder(), SmcTarget::Learnt).unwrap();
    let replicas: Vec<_> = (0..2).map(|r| run_replica(&m, &k, &levels, &smc, 11, r, &|| false).unwrap()).collect();
    let b = sample_batch(&m, Some(&target), lat, &s, 11, 0, 2 * n).unwrap();
    let lw = b.log_weight.unwrap();
    for (i, rep) in replicas.iter().enumerate() {
        assert_eq!(rep.resamplings, 0);
        assert_eq!(rep.configs, b.configs[i * n * lat.volume()..][..n * lat.volume()], "replica {i}");
        assert_eq!(rep.log_weight, lw[i * n..][..n], "replica {i}: weights differ");
        assert_eq!(rep.log_z, resample::log_mean_exp(&lw[i * n..][..n]));
    }
    let spread = lw.iter().fold(0.0f64, |a, w| a.max((w - lw[0]).abs()));
    assert!(spread > 0.1, "random weights should give varying weights ({spread})");
}
