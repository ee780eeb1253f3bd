//! The layering, the choices parsed once, and the stored text, against what the outputs of
//! this version's predecessor hold for the same flags.

use super::*;
use crate::nn::{ActionArch, Arch};

fn train_flags(preset: Option<&str>, form: Option<&str>) -> TrainOptions {
    TrainOptions {
        data: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into()),
        preset: preset.map(str::to_string),
        score_form: form.map(str::to_string),
        ..TrainOptions::default()
    }
}

fn sample_flags() -> SampleOptions {
    SampleOptions { model: Some("free:kappa=0.2".into()), ..SampleOptions::default() }
}

/// The configuration stored in outputs is the text the string-typed configuration wrote
/// (copied from a file `latdiff sample` wrote before the choices were enums).
#[test]
fn stored_sample_configuration_is_unchanged() {
    let flags = SampleOptions {
        lattice: Some("8".parse().unwrap()),
        n_configs: Some(32),
        steps: Some(12),
        seed: Some(3),
        sampler: Some("smc".into()),
        replicas: Some(2),
        smc_target: Some("learnt".into()),
        learnt_above: Some(1.0),
        out: Some("s_smc_hybrid.h5".into()),
        ..sample_flags()
    };
    let cfg = SampleConfig::from_layers(&SampleOptions::default(), &flags).unwrap();
    assert_eq!((cfg.sampler, cfg.kernel, cfg.smc_target), (SamplerKind::Smc, Kernel::Matched, SmcTarget::Learnt));
    let stored = to_toml(&cfg).replace("free:kappa=0.2", "m_act.h5");
    assert_eq!(
        stored,
        "model = \"m_act.h5\"\nlattice = \"8x8\"\nn_configs = 32\nsampler = \"smc\"\nkernel = \"matched\"\nsteps = 12\ncorrector_steps = 1\nsnr = 0.16\nmetropolis = false\nhmc_refine = 0\nno_ema = false\nreplicas = 2\nresample_ess = 0.5\nrejuvenate = 5\nrejuvenate_always = false\nsmc_target = \"learnt\"\nlearnt_above = 1.0\nexact_magnetisation = false\ncoarsest = 8\ncess = 0.8\nlevel_trajectories = 20\nlevel_flips = 4\nseed = 3\nout = \"s_smc_hybrid.h5\"\nforce = false\n"
    );
}

#[test]
fn stored_train_configuration_is_unchanged() {
    let flags = TrainOptions {
        out: Some("m_act.h5".into()),
        steps: Some(30),
        batch: Some(16),
        seed: Some(1),
        ..train_flags(Some("tiny"), Some("action"))
    };
    let cfg = TrainConfig::from_layers(&TrainOptions::default(), &flags).unwrap();
    let stored = to_toml(&cfg).replace(&cfg.data.display().to_string(), "hmc.h5");
    assert_eq!(
        stored,
        "data = \"hmc.h5\"\nout = \"m_act.h5\"\npreset = \"tiny\"\nscore_form = \"action\"\nsteps = 30\nbatch = 16\nlr = 0.002\nlr_min = 0.00001\nwarmup = 200\nweight_decay = 0.0\nclip = 1.0\nema_decay = 0.999\nsigma_min = 0.01\nsigma_max = 0.0\naugment = true\nantithetic = false\nval_fraction = 0.05\ncheckpoint_every = 1000\nchecksum_every = 200\nseed = 1\nresume = false\nforce = false\n"
    );
}

/// Flags over file over defaults, key by key; a switch is on when either layer turns it on.
#[test]
fn flags_over_file_over_defaults() {
    let file = SampleOptions { sampler: Some("pc".into()), snr: Some(0.3), steps: Some(7), ..SampleOptions::default() };
    let flags = SampleOptions { steps: Some(9), no_ema: Some(true), ..sample_flags() };
    let cfg = SampleConfig::from_layers(&file, &flags).unwrap();
    assert_eq!((cfg.sampler, cfg.snr, cfg.steps, cfg.no_ema), (SamplerKind::Pc, 0.3, 9, true));
    assert_eq!((cfg.kernel, cfg.n_configs, cfg.smc_target), (Kernel::Matched, 1024, SmcTarget::Cumulant));
    let file = SampleOptions { no_ema: Some(true), ..SampleOptions::default() };
    assert!(SampleConfig::from_layers(&file, &sample_flags()).unwrap().no_ema);
}

/// A bad choice is refused once, on the way in, naming the key, the value and the choices.
#[test]
fn bad_choices_name_key_value_and_choices() {
    let err = |o: SampleOptions| format!("{:#}", SampleConfig::from_layers(&SampleOptions::default(), &o).unwrap_err());
    assert_eq!(
        err(SampleOptions { sampler: Some("rk4".into()), ..sample_flags() }),
        "sampler: 'rk4' is not one of em, pc, ode, smc, multilevel"
    );
    assert_eq!(
        err(SampleOptions { kernel: Some("fancy".into()), ..sample_flags() }),
        "kernel: 'fancy' is not one of em, matched"
    );
    assert_eq!(
        err(SampleOptions { smc_target: Some("learned".into()), ..sample_flags() }),
        "smc_target: 'learned' is not one of prior, cumulant, learnt"
    );
    assert_eq!(err(SampleOptions { snr: Some(f64::NAN), ..sample_flags() }), "snr: NaN is not a finite number");
}

/// `--preset` is read with the score form: the U-Net presets for plain and physics, the
/// action networks (and the U-Net each builds on) for action.
#[test]
fn preset_means_the_networks_of_the_score_form() {
    let cfg = |p, f| TrainConfig::from_layers(&TrainOptions::default(), &train_flags(p, f));
    let local = cfg(None, None).unwrap();
    assert_eq!(
        (local.preset.name(), local.preset.unet.clone(), local.preset.action.clone()),
        ("local", Arch::local(), None)
    );
    let ops = cfg(Some("small-ops"), Some("action")).unwrap();
    assert_eq!(ops.preset.unet, Arch::small());
    assert_eq!(ops.preset.action, Some(ActionArch { operators: true, ..ActionArch::small() }));
    assert_eq!(cfg(None, Some("action")).unwrap().preset.action, Some(ActionArch::local()));
    let err = |p, f| format!("{:#}", cfg(p, f).unwrap_err());
    assert_eq!(err(Some("huge"), None), format!("preset: 'huge' is not one of {}", Arch::PRESETS));
    assert_eq!(err(Some("local-ops"), Some("plain")), format!("preset: 'local-ops' is not one of {}", Arch::PRESETS));
    assert_eq!(
        err(Some("dmassq"), Some("action")),
        format!("preset: 'dmassq' is not one of {} (score form action)", ActionArch::NAMES)
    );
    assert_eq!(err(Some("tiny"), Some("energy")), "score_form: 'energy' is not one of plain, physics, action");
}

/// The learnt levels' limits: one message source for the configuration and the sampler.
#[test]
fn learnt_levels_checked_once() {
    let learnt = SampleOptions { sampler: Some("smc".into()), smc_target: Some("learnt".into()), ..sample_flags() };
    let err = |o| format!("{:#}", SampleConfig::from_layers(&SampleOptions::default(), &o).unwrap_err());
    let e = err(SampleOptions { learnt_above: Some(1.0), network_below: Some(2.0), ..learnt.clone() });
    assert_eq!(e, check_learnt_levels(Some(2.0), 1.0, false).unwrap_err());
    let e = err(SampleOptions { exact_magnetisation: Some(true), ..learnt.clone() });
    assert_eq!(e, check_learnt_levels(None, 0.0, true).unwrap_err());
    assert!(SampleConfig::from_layers(
        &SampleOptions::default(),
        &SampleOptions { network_below: Some(0.5), learnt_above: Some(1.0), ..learnt }
    )
    .is_ok());
}
