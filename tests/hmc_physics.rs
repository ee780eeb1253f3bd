//! HMC against exact results: the free field (λ = 0), ⟨exp(−ΔH)⟩ = 1, and the
//! thermalisation check. Fixed seeds; tolerances are 4 standard errors from
//! chain-jackknife errors (independent chains, so autocorrelation is accounted for).

mod common;
use common::*;
use latdiff::lattice::Lattice;
use latdiff::theory::{free, Parametrisation};

#[test]
fn free_field_hopping_form_matches_exact_propagator() {
    let dir = tempfile::tempdir().unwrap();
    // Few, long MD steps: acceptance well below 1, so <exp(-dH)> = 1 is a real check.
    let run = HmcRun { lattice: Lattice::square(16), kappa: Some(0.2), lambda: 0.0, n_md: 1, ..Default::default() };
    let (summary, s) = run.run(dir.path(), "free.h5");
    let p = Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 };
    let v = s.volume;
    assert_within("<phi^2>", s.estimate(|m| m[4]), free::phi2(&p, &run.lattice), 4.0);
    assert_within("chi = V<M^2>", s.estimate(|m| v * m[2]), 1.0 / (2.0 - 8.0 * 0.2), 4.0);
    assert_within("<exp(-dH)>", (summary.exp_mdh, summary.exp_mdh_err), 1.0, 4.0);
    assert!(summary.acceptance > 0.3 && summary.acceptance < 0.97, "acceptance {}", summary.acceptance);
}

#[test]
fn free_field_mass_form_on_a_rectangle() {
    let dir = tempfile::tempdir().unwrap();
    let lat = Lattice::new(6, 10);
    let run = HmcRun { lattice: lat, kappa: None, m2: Some(0.3), lambda: 0.0, n_md: 6, ..Default::default() };
    let (_, s) = run.run(dir.path(), "free.h5");
    let p = Parametrisation::Mass { m2: 0.3, lambda: 0.0 };
    let v = s.volume;
    assert_within("<phi^2>", s.estimate(|m| m[4]), free::phi2(&p, &lat), 4.0);
    assert_within("chi", s.estimate(|m| v * m[2]), free::chi(&p, &lat), 4.0);
}

/// The exactness checks above must be able to fail: a wrong coupling is detected.
#[test]
fn free_field_check_detects_a_wrong_coupling() {
    let dir = tempfile::tempdir().unwrap();
    let run = HmcRun { lattice: Lattice::square(8), kappa: Some(0.21), lambda: 0.0, ..Default::default() };
    let (_, s) = run.run(dir.path(), "free.h5");
    let p = Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 };
    let (m, e) = s.estimate(|m| m[4]);
    let expect_wrong = free::phi2(&p, &run.lattice);
    assert!((m - expect_wrong).abs() > 4.0 * e, "<phi^2> at kappa=0.21 ({m} ± {e}) should not match kappa=0.2's");
}

/// A thermalisation too short for a random start in the broken phase is reported as
/// drifting; an ordered start, given a little longer, passes.
#[test]
fn thermalisation_check_flags_drift() {
    use latdiff::mc::hmc::Start;
    let dir = tempfile::tempdir().unwrap();
    let base = HmcRun {
        lattice: Lattice::square(32),
        kappa: Some(0.5),
        lambda: 0.022,
        n_chains: 8,
        per_chain: 1,
        n_therm: 40,
        n_sep: 1,
        ..Default::default()
    };
    let hot = HmcRun { start: Start::Hot, ..base };
    let (s_hot, _) = hot.run(dir.path(), "hot.h5");
    assert!(
        s_hot.therm.drifting(),
        "random start at kappa=0.5 after 40 trajectories must drift: {:?}",
        s_hot.therm.lines()
    );
    let cold = HmcRun { start: Start::Cold, n_therm: 200, ..base };
    let (s_cold, _) = cold.run(dir.path(), "cold.h5");
    assert!(!s_cold.therm.drifting(), "ordered start must pass: {:?}", s_cold.therm.lines());
}
