//! Bad input across every command, as a table: each invocation must exit with code 2 within
//! a wall-time bound far below the work it asks for, print one line (after notices such as
//! the device fallback) naming the bad value, leave nothing in its output directory, and
//! stay small (peak RSS under 100 MB: refused work is refused before it is allocated).

mod common;
use common::{bin, latdiff};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Refusals must come well before any work: most take milliseconds, those after MPI's
/// start-up (memory estimates) about half a second. The CPU time a refusal spends is the
/// firm bound; the wall-time bound is looser because the test may share the machine with
/// other work (measured on 2 loaded cores: a clap error took 4.5 s of wall time).
const CPU_LIMIT: Duration = Duration::from_secs(1);
const WALL_LIMIT: Duration = Duration::from_secs(10);
const RSS_LIMIT_KB: i64 = 100 * 1024;

/// (arguments, files placed in the run's directory first, text the line must contain).
/// `{ENS}`, `{MODEL}` and `{TEXT}` are a valid ensemble, a valid model and a file that is
/// not HDF5, outside the run's directory.
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);

const NONE: &[(&str, &str)] = &[];
const EXISTING: &[(&str, &str)] = &[("existing.h5", "precious")];
const DIR: &[(&str, &str)] = &[("dd/", "")];

const CASES: &[Case] = &[
    // global
    ("--threads 0 info x.h5", NONE, "threads"),
    ("--device gpu hmc", NONE, "'gpu'"),
    ("bogus", NONE, "'bogus'"),
    ("hmc --n-mdd 3", NONE, "'--n-md'"),
    ("hmc --lattice", NONE, "--lattice"),
    // hmc: sizes and counts
    ("hmc --lattice 1", NONE, "lattice"),
    ("hmc --lattice 8y8", NONE, "'8y8'"),
    ("hmc --lattice 4x100000000", NONE, "4x100000000"),
    ("hmc --lattice 100000 --n-configs 16", NONE, "100000x100000"),
    ("hmc --lattice 65536x8192", NONE, "largest volume"),
    ("hmc --n-md 18446744073709551615", NONE, "n_md: 18446744073709551615"),
    ("hmc --n-md 18446744073709551616", NONE, "--n-md"),
    ("hmc --n-md 0", NONE, "n_md"),
    ("hmc --n-configs -5", NONE, "--n-configs"),
    ("hmc --n-configs 0", NONE, "n_configs"),
    ("hmc --n-configs 4294967296", NONE, "n_configs: 4294967296"),
    ("hmc --n-chains 0", NONE, "n_chains"),
    ("hmc --n-chains 2000000 --n-configs 2000000", NONE, "n_chains: 2000000"),
    ("hmc --n-chains 8 --n-configs 4", NONE, "n_chains"),
    ("hmc --n-sep 0", NONE, "n_sep"),
    ("hmc --n-sep 100000000", NONE, "n_sep: 100000000"),
    ("hmc --n-therm often", NONE, "'often'"),
    ("hmc --n-therm 100000000", NONE, "n_therm: 100000000"),
    ("hmc --n-therm-max 4", NONE, "n_therm_max"),
    ("hmc --n-therm-max 100000000", NONE, "n_therm_max: 100000000"),
    ("hmc --cluster-updates 100000000", NONE, "cluster_updates"),
    ("hmc --seed -1", NONE, "--seed"),
    // hmc: theory and integrator
    ("hmc --kappa nan", NONE, "kappa"),
    ("hmc --kappa inf", NONE, "kappa"),
    ("hmc --kappa 1e200", NONE, "kappa = 1e200"),
    ("hmc --m2 -1e300 --lambda 1", NONE, "m2 = -1e300"),
    ("hmc --lambda -1", NONE, "lambda"),
    ("hmc --kappa 0.2 --m2 1.0", NONE, "kappa and m2"),
    ("hmc --m2 -1.0", NONE, "lambda"),
    ("hmc --kappa 0.3 --lambda 0", NONE, "unstable"),
    ("hmc --tau 0", NONE, "tau"),
    ("hmc --tau -1", NONE, "tau"),
    ("hmc --tau-jitter 1.5", NONE, "tau_jitter"),
    ("hmc --integrator euler", NONE, "'euler'"),
    ("hmc --start warm", NONE, "'warm'"),
    // hmc: memory, outputs, files
    ("hmc --max-memory 0", NONE, "max_memory"),
    ("hmc --lattice 4096 --n-configs 16 --max-memory 100", NONE, "4096x4096"),
    ("hmc --lattice 512 --n-chains 4096 --n-configs 4096", NONE, "max_memory: lattice 512x512"),
    ("hmc --n-therm-max 10000000 --n-chains 100000 --n-configs 100000", NONE, "max_memory"),
    ("hmc --out dd", DIR, "is a directory"),
    ("hmc --out dd --force", DIR, "is a directory"),
    ("hmc --out no/such/dir/x.h5", NONE, "no/such/dir"),
    ("hmc --out existing.h5", EXISTING, "--force"),
    ("hmc --resume", NONE, "resume"),
    ("hmc --config missing.toml", NONE, "missing.toml"),
    ("hmc --config run.toml", &[("run.toml", "kapa = 0.2\n")], "kapa"),
    ("hmc --config run.toml", &[("run.toml", "n_configs = 1.5\n")], "n_configs"),
    ("hmc --config run.toml", &[("run.toml", "n_md = 18446744073709551615\n")], "n_md"),
    ("hmc --config run.toml", &[("run.toml", "this is not toml")], "run.toml"),
    // train
    ("train", NONE, "data"),
    ("train --data missing.h5", NONE, "missing.h5"),
    ("train --data {TEXT}", NONE, "not an HDF5 file"),
    ("train --data {ENS} --preset huge", NONE, "'huge'"),
    ("train --data {ENS} --score-form fancy", NONE, "fancy"),
    ("train --data {ENS} --steps 0", NONE, "steps"),
    ("train --data {ENS} --steps 4294967296", NONE, "steps: 4294967296"),
    ("train --data {ENS} --batch 0", NONE, "batch"),
    ("train --data {ENS} --batch 100000", NONE, "batch: 100000"),
    ("train --data {ENS} --batch 2000000", NONE, "batch: 2000000"),
    ("train --data {ENS} --lr 0", NONE, "lr"),
    ("train --data {ENS} --lr nan", NONE, "lr"),
    ("train --data {ENS} --lr-min 1", NONE, "lr_min"),
    ("train --data {ENS} --ema-decay 1", NONE, "ema_decay"),
    ("train --data {ENS} --sigma-min 0", NONE, "sigma_min"),
    ("train --data {ENS} --sigma-max 0.001", NONE, "sigma_max"),
    ("train --data {ENS} --val-fraction 0.7", NONE, "val_fraction"),
    ("train --data {ENS} --checkpoint-every 0", NONE, "checkpoint_every"),
    ("train --data {ENS} --out {ENS}", NONE, "same file"),
    ("train --data {ENS} --resume --out none.h5", NONE, "resume"),
    ("train --data {ENS} --batch 4 --max-memory 1", NONE, "max_memory: training on lattice 8x8"),
    ("train --data {ENS} --out dd", DIR, "is a directory"),
    // sample
    ("sample", NONE, "model"),
    ("sample --model missing.h5", NONE, "missing.h5"),
    ("sample --model free:kappa=0.2", NONE, "lattice"),
    ("sample --model free:kappa=0.2 --lattice 8 --n-configs 0", NONE, "n_configs"),
    ("sample --model free:kappa=0.2 --lattice 8 --n-configs 4294967296", NONE, "n_configs: 4294967296"),
    ("sample --model free:kappa=0.2 --lattice 8 --steps 0", NONE, "steps"),
    ("sample --model free:kappa=0.2 --lattice 8 --steps 2000000", NONE, "steps: 2000000"),
    ("sample --model free:kappa=0.2 --lattice 8 --sampler rk4", NONE, "rk4"),
    ("sample --model free:kappa=0.2 --lattice 8 --kernel fancy", NONE, "fancy"),
    ("sample --model free:kappa=0.2 --lattice 8 --metropolis --sampler ode", NONE, "metropolis"),
    ("sample --model free:kappa=0.2 --lattice 8 --batch 0", NONE, "batch"),
    ("sample --model free:kappa=0.2 --lattice 8 --max-memory 0", NONE, "max_memory"),
    ("sample --model free:kappa=0.2 --lattice 8 --kappa nan", NONE, "kappa"),
    ("sample --model free:kappa=0.2 --lattice 8 --hmc-refine 100000000", NONE, "hmc_refine"),
    ("sample --model free:kappa=0.2 --lattice 8 --sampler pc --corrector-steps 100000000", NONE, "corrector_steps"),
    ("sample --model free:kappa=0.2 --lattice 4096 --max-memory 100", NONE, "max_memory: sampling on lattice 4096"),
    ("sample --model free:kappa=0.2 --lattice 8192 --batch 256", NONE, "in batches of 256"),
    ("sample --model free:kappa=0.2 --lattice 8 --out dd", DIR, "is a directory"),
    ("sample --model {MODEL} --lattice 15", NONE, "15"),
    ("sample --model {MODEL} --out {MODEL}", NONE, "same file"),
    ("sample --model prior:missing.h5 --lattice 8", NONE, "missing.h5"),
    // analyze, info, bench
    ("analyze", NONE, "<FILE"),
    ("analyze missing.h5", NONE, "missing.h5"),
    ("analyze {TEXT}", NONE, "not an HDF5 file"),
    ("info", NONE, "<FILE>"),
    ("info missing.h5", NONE, "no such file"),
    ("info {TEXT}", NONE, "not an HDF5 file"),
    ("bench sample --preset tiny --lattice 15", NONE, "15"),
    ("bench bogus", NONE, "'bogus'"),
];

/// A small ensemble, a model trained on it for two steps and a text file, made once.
struct Fixtures {
    _dir: tempfile::TempDir,
    ens: String,
    model: String,
    text: String,
}

fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &str| {
        let o = latdiff().current_dir(d).args(args.split_whitespace()).output().unwrap();
        assert!(o.status.success(), "{args}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run("hmc --lattice 8 --n-configs 32 --n-chains 4 --n-therm 20 --out ens.h5");
    run("train --data ens.h5 --preset tiny-local --steps 2 --batch 2 --checkpoint-every 1 --out model.h5");
    std::fs::write(d.join("notes.txt"), "not hdf5").unwrap();
    let p = |f: &str| d.join(f).to_string_lossy().to_string();
    Fixtures { ens: p("ens.h5"), model: p("model.h5"), text: p("notes.txt"), _dir: dir }
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
}

/// A run that is not refused grows: it is killed at this size (the test then fails), so
/// that a regression cannot take the machine's memory.
const KILL_RSS_KB: i64 = 1024 * 1024;

fn rss_kb(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap_or("0");
    line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

/// Runs `latdiff args` in `dir`, reaping it with wait4 to read its own peak RSS; killed
/// past the wall-time bound or `KILL_RSS_KB`.
fn run_measured(dir: &Path, args: &[String]) -> Outcome {
    let mut cmd = Command::new(bin());
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    let t0 = Instant::now();
    let mut child = cmd.current_dir(dir).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let (mut status, mut ru): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    let pid = child.id() as libc::pid_t;
    let mut killed = false;
    loop {
        let flags = if killed { 0 } else { libc::WNOHANG };
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "wait4");
        if t0.elapsed() > WALL_LIMIT || rss_kb(child.id()) > KILL_RSS_KB {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let stderr = reader.join().unwrap();
    let wall = t0.elapsed();
    let code = std::process::ExitStatus::from_raw(status).code();
    let secs = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Outcome { code, stderr, wall, cpu: secs(ru.ru_utime) + secs(ru.ru_stime), max_rss_kb: ru.ru_maxrss }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// Lines that are notices, not the error (printed before the checks that run under MPI).
fn is_notice(l: &str) -> bool {
    l.starts_with("device auto:") || l.trim().is_empty()
}

fn check_case(fx: &Fixtures, (args, files, key): &Case) -> Result<(Duration, i64), String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in *files {
        match name.strip_suffix('/') {
            Some(d) => std::fs::create_dir(dir.path().join(d)).unwrap(),
            None => std::fs::write(dir.path().join(name), text).unwrap(),
        }
    }
    let before = files_in(dir.path());
    let expand = |a: &str| a.replace("{ENS}", &fx.ens).replace("{MODEL}", &fx.model).replace("{TEXT}", &fx.text);
    let argv: Vec<String> = args.split_whitespace().map(expand).collect();
    let o = run_measured(dir.path(), &argv);
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !is_notice(l)).collect();
    let fail = |why: String| Err(format!("`latdiff {args}`: {why}\n  stderr: {:?}", o.stderr));
    if o.code != Some(2) {
        return fail(format!("exit code {:?}, not 2", o.code));
    }
    if lines.len() != 1 {
        return fail(format!("{} lines, not one", lines.len()));
    }
    if !lines[0].starts_with("error: ") || !lines[0].contains(key) {
        return fail(format!("the line does not name '{key}'"));
    }
    if o.cpu > CPU_LIMIT || o.wall > WALL_LIMIT {
        return fail(format!("took {:?} of CPU time, {:?} of wall time", o.cpu, o.wall));
    }
    if o.max_rss_kb > RSS_LIMIT_KB {
        return fail(format!("peak RSS {} MB", o.max_rss_kb / 1024));
    }
    let after = files_in(dir.path());
    if after != before {
        return fail(format!("left {after:?} (had {before:?})"));
    }
    Ok((o.cpu, o.max_rss_kb))
}

#[test]
fn bad_invocations_exit_2_with_one_line_fast_small_and_leave_nothing() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let fx = fixtures();
    let mut failures = Vec::new();
    let (mut slowest, mut largest) = ((Duration::ZERO, ""), (0, ""));
    for case in CASES {
        match check_case(&fx, case) {
            Ok((w, rss)) => {
                if w > slowest.0 {
                    slowest = (w, case.0);
                }
                if rss > largest.0 {
                    largest = (rss, case.0);
                }
            }
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "{} bad invocations; most CPU time {:?} (`{}`), largest peak RSS {} MB (`{}`)",
        CASES.len(),
        slowest.0,
        slowest.1,
        largest.0 / 1024,
        largest.1
    );
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
