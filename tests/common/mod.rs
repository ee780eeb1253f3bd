//! Shared helpers for the integration tests.
#![allow(dead_code)]

use latdiff::config::{HmcConfig, HmcOptions, LatticeSpec, NTherm};
use latdiff::dist::Comm;
use latdiff::io::Ensemble;
use latdiff::lattice::Lattice;
use latdiff::mc::hmc::Start;
use latdiff::util::StopFlag;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_latdiff"))
}

/// `latdiff` with the environment OpenMPI needs as root in a container.
pub fn latdiff() -> Command {
    let mut c = Command::new(bin());
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

pub fn mpirun() -> Option<Command> {
    let found = Command::new("mpirun").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok() {
            panic!("mpirun not found, but CI must run the MPI tests (install openmpi-bin)");
        }
        eprintln!("skipped: mpirun not found");
        return None;
    }
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .args(["--bind-to", "none"]);
    Some(c)
}

/// `latdiff ARGS` twice in `dir`: under `mpirun -n 2` with batch 5 (r2.h5) and on one rank
/// with batch 16 (r1.h5); the two files opened, (one rank, two ranks). None when mpirun is
/// missing outside CI. Batches that do not divide the work on either side make the
/// comparison cover the split of work as well as the rank count.
pub fn one_and_two_ranks(dir: &Path, args: &[&str]) -> Option<(Ensemble, Ensemble)> {
    let mut mpi = mpirun()?;
    let o = mpi
        .current_dir(dir)
        .args(["-n", "2"])
        .arg(bin())
        .args(args)
        .args(["--out", "r2.h5", "--batch", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "2 ranks: {}", String::from_utf8_lossy(&o.stderr));
    let o = latdiff().current_dir(dir).args(args).args(["--out", "r1.h5", "--batch", "16"]).output().unwrap();
    assert!(o.status.success(), "1 rank: {}", String::from_utf8_lossy(&o.stderr));
    Some((Ensemble::open(&dir.join("r1.h5")).unwrap(), Ensemble::open(&dir.join("r2.h5")).unwrap()))
}

/// `latdiff ARGS --ranks-per-replica N` under `mpirun -n N` in `dir` (batch 5), written to
/// `spread{N}.h5` and opened; None when mpirun is missing outside CI.
pub fn spread_over_ranks(dir: &Path, args: &[&str], n_ranks: usize) -> Option<Ensemble> {
    let out = format!("spread{n_ranks}.h5");
    let n = n_ranks.to_string();
    let o = mpirun()?
        .current_dir(dir)
        .args(["-n", &n])
        .arg(bin())
        .args(args)
        .args(["--ranks-per-replica", &n, "--out", &out, "--batch", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{n_ranks} ranks per replica: {}", String::from_utf8_lossy(&o.stderr));
    Some(Ensemble::open(&dir.join(out)).unwrap())
}

pub struct HmcRun {
    pub lattice: Lattice,
    pub kappa: Option<f64>,
    pub m2: Option<f64>,
    pub lambda: f64,
    pub n_chains: usize,
    pub per_chain: usize,
    pub n_therm: usize,
    pub n_sep: usize,
    pub n_md: usize,
    pub tau: f64,
    pub start: Start,
    pub cluster_updates: usize,
    pub seed: u64,
}

impl Default for HmcRun {
    fn default() -> Self {
        HmcRun {
            lattice: Lattice::square(8),
            kappa: Some(0.2),
            m2: None,
            lambda: 0.0,
            n_chains: 32,
            per_chain: 100,
            n_therm: 100,
            n_sep: 2,
            n_md: 8,
            tau: 1.0,
            start: Start::Cold,
            cluster_updates: 0,
            seed: 1,
        }
    }
}

impl HmcRun {
    pub fn config(&self, out: &Path) -> HmcConfig {
        let o = HmcOptions {
            lattice: Some(LatticeSpec(self.lattice)),
            kappa: self.kappa,
            m2: self.m2,
            lambda: Some(self.lambda),
            n_configs: Some(self.n_chains * self.per_chain),
            n_chains: Some(self.n_chains),
            n_therm: Some(NTherm::Fixed(self.n_therm)),
            n_sep: Some(self.n_sep),
            n_md: Some(self.n_md),
            tau: Some(self.tau),
            start: Some(self.start),
            cluster_updates: Some(self.cluster_updates),
            seed: Some(self.seed),
            out: Some(out.to_path_buf()),
            force: Some(true),
            ..Default::default()
        };
        latdiff::cli::hmc::resolve(&o).unwrap()
    }

    /// Runs in-process (single rank) and returns the per-chain observables.
    pub fn run(&self, dir: &Path, name: &str) -> (latdiff::mc::ensemble::HmcSummary, ChainSeries) {
        let out = dir.join(name);
        let s = latdiff::mc::ensemble::run(&self.config(&out), &Comm::single(), &StopFlag::none()).unwrap();
        (s, ChainSeries::read(&out))
    }
}

/// Per-configuration primaries grouped by chain: M, |M|, M², M⁴ (M = mean field), φ².
pub struct ChainSeries {
    pub volume: f64,
    /// chain → list of [M, |M|, M², M⁴, φ²]
    pub chains: Vec<Vec<[f64; 5]>>,
}

impl ChainSeries {
    pub fn read(path: &Path) -> Self {
        let e = Ensemble::open(path).unwrap();
        let v = e.lattice.volume();
        let cfgs = e.read_configs(0, e.n).unwrap();
        let chain = e.read_i64("chain").unwrap();
        let n_chains = *chain.iter().max().unwrap() as usize + 1;
        let mut chains = vec![Vec::new(); n_chains];
        for (i, c) in cfgs.chunks(v).enumerate() {
            let m = c.iter().map(|&x| x as f64).sum::<f64>() / v as f64;
            let p2 = c.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v as f64;
            chains[chain[i] as usize].push([m, m.abs(), m * m, m.powi(4), p2]);
        }
        ChainSeries { volume: v as f64, chains }
    }

    /// Estimate and error of f(means of the primaries) by jackknife over whole chains:
    /// chains are independent, so this error is honest whatever the autocorrelation.
    pub fn estimate(&self, f: impl Fn(&[f64; 5]) -> f64) -> (f64, f64) {
        let k = self.chains.len();
        let sums: Vec<[f64; 6]> = self
            .chains
            .iter()
            .map(|c| {
                let mut s = [0.0; 6];
                for row in c {
                    for j in 0..5 {
                        s[j] += row[j];
                    }
                }
                s[5] = c.len() as f64;
                s
            })
            .collect();
        let mut tot = [0.0; 6];
        for s in &sums {
            for j in 0..6 {
                tot[j] += s[j];
            }
        }
        let means = |t: &[f64; 6]| -> [f64; 5] { std::array::from_fn(|j| t[j] / t[5]) };
        let full = f(&means(&tot));
        let jk: Vec<f64> = sums
            .iter()
            .map(|s| {
                let mut t = tot;
                for j in 0..6 {
                    t[j] -= s[j];
                }
                f(&means(&t))
            })
            .collect();
        let jm = jk.iter().sum::<f64>() / k as f64;
        let err = ((k - 1) as f64 / k as f64 * jk.iter().map(|x| (x - jm).powi(2)).sum::<f64>()).sqrt();
        (full, err)
    }
}

/// Asserts |a − b| ≤ n_sigma · err, with a readable message.
pub fn assert_within(what: &str, got: (f64, f64), expect: f64, n_sigma: f64) {
    let (m, e) = got;
    let dev = (m - expect).abs() / e.max(1e-300);
    eprintln!("{what}: {m:.6} ± {e:.6}, expected {expect:.6} ({dev:.2} σ)");
    assert!(e > 0.0 && dev <= n_sigma, "{what}: {m} ± {e} deviates from {expect} by {dev:.2} σ (> {n_sigma})");
}

pub fn assert_agree(what: &str, a: (f64, f64), b: (f64, f64), n_sigma: f64) {
    let err = (a.1 * a.1 + b.1 * b.1).sqrt();
    let dev = (a.0 - b.0).abs() / err.max(1e-300);
    eprintln!("{what}: {:.6} ± {:.6} vs {:.6} ± {:.6} ({dev:.2} σ)", a.0, a.1, b.0, b.1);
    assert!(err > 0.0 && dev <= n_sigma, "{what}: {a:?} vs {b:?} differ by {dev:.2} σ (> {n_sigma})");
}

pub fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill").args(["-s", "TERM", &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -s TERM {pid}");
}

/// Starts `latdiff args` in `dir` and returns once its stderr shows `marker` (work has
/// begun: a signal before the handler is installed would just kill it), with the rest
/// of its stderr.
pub fn spawn_until(
    dir: &Path,
    args: &[String],
    marker: &str,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let mut child =
        latdiff().current_dir(dir).env("LATDIFF_LOG_SECONDS", "0").args(args).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = lines.by_ref().map(|l| l.unwrap()).any(|l| l.starts_with(marker));
    assert!(seen, "no line starting with '{marker}'");
    (child, lines)
}

/// Waits for `child` at most `limit` (killing it and failing the test after that).
pub fn wait_within(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {limit:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}
