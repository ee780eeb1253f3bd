//! HMC under real `mpirun`: the ensemble does not depend on the rank count.

mod common;
use common::{bin, mpirun};
use latdiff::io::Ensemble;

fn run_hmc(ranks: usize, dir: &std::path::Path, name: &str, extra: &[&str]) -> Option<Ensemble> {
    run_with(ranks, dir, name, 17, extra)
}

fn run_hmc_seed(ranks: usize, dir: &std::path::Path, name: &str, seed: u64) -> Option<Ensemble> {
    run_with(ranks, dir, name, seed, &[])
}

fn run_with(ranks: usize, dir: &std::path::Path, name: &str, seed: u64, extra: &[&str]) -> Option<Ensemble> {
    let seed = seed.to_string();
    let mut cmd = mpirun()?;
    cmd.current_dir(dir).args(["-n", &ranks.to_string()]).arg(bin()).args([
        "hmc",
        "--lattice",
        "8x12",
        "--kappa",
        "0.26",
        "--lambda",
        "0.022",
        "--n-configs",
        "40",
        "--n-chains",
        "5",
        "--n-therm",
        "20",
        "--n-sep",
        "2",
        "--seed",
        &seed,
        "--out",
        name,
    ]);
    cmd.args(extra);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "mpirun -n {ranks} failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(Ensemble::open(&dir.join(name)).unwrap())
}

#[test]
fn one_two_and_three_ranks_write_identical_configs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(e1) = run_hmc(1, dir.path(), "r1.h5", &[]) else { return };
    let e2 = run_hmc(2, dir.path(), "r2.h5", &[]).unwrap();
    let e3 = run_hmc(3, dir.path(), "r3.h5", &["--cluster-updates", "2"]).unwrap();
    let e3b = run_hmc(1, dir.path(), "r3b.h5", &["--cluster-updates", "2"]).unwrap();
    assert_eq!(e1.attr_f64("n_ranks"), Some(1.0));
    assert_eq!(e2.attr_f64("n_ranks"), Some(2.0));
    let c1 = e1.read_configs(0, 40).unwrap();
    assert_eq!(c1, e2.read_configs(0, 40).unwrap(), "1 vs 2 ranks");
    assert_eq!(e1.read_f64("action").unwrap(), e2.read_f64("action").unwrap());
    assert_eq!(e1.read_i64("chain").unwrap(), e2.read_i64("chain").unwrap());
    assert_eq!(e3.read_configs(0, 40).unwrap(), e3b.read_configs(0, 40).unwrap(), "clusters: 3 vs 1 ranks");
    assert_ne!(c1, e3.read_configs(0, 40).unwrap(), "cluster updates change the chain");
}

#[test]
fn a_different_seed_gives_a_different_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let Some(a) = run_hmc(2, dir.path(), "a.h5", &[]) else { return };
    let b = run_hmc_seed(2, dir.path(), "b.h5", 18).unwrap();
    assert_ne!(a.read_configs(0, 40).unwrap(), b.read_configs(0, 40).unwrap());
}
