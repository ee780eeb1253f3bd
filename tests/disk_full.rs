//! A full file system under hmc, train and sample: each must fail (exit ≠ 0) with one
//! error line that says the disk is full and names the file, and leave no temporary
//! (`.OUT.partial`, `.OUT.tmp.*`, `.OUT.lock`) behind; only an HMC checkpoint and the
//! partial output it refers to are kept, and the line says to resume.
//!
//! The full disk is a small tmpfs mounted for the test; where mounting is not permitted
//! (not root, no CAP_SYS_ADMIN in the container) the tests are skipped with the reason.

mod common;
use common::latdiff;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: usize) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => skip(&String::from_utf8_lossy(&o.stderr)),
            Err(e) => skip(&e.to_string()),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of it, so that the next write fails at once.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4096"])
            .arg(format!("of={}", self.path().join("fill").display()))
            .output();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn skip(why: &str) -> Option<SmallDisk> {
    eprintln!("skipped: cannot mount a tmpfs to fill ({})", why.trim());
    None
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// Runs `args` in `dir`; asserts a failure with exactly one error line, the last line,
/// saying the disk is full; returns that line.
fn fails_full(dir: &Path, args: &[&str]) -> String {
    let o = latdiff().current_dir(dir).args(["--threads", "1"]).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{args:?} succeeded on a full disk: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one error line: {err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{args:?}: the error is not the last line: {err}");
    assert!(errors[0].contains("No space left on device") || errors[0].contains("no space left on device"), "{err}");
    errors[0].to_string()
}

/// A small ensemble and a model trained on it, outside the full disk.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let hmc = ["hmc", "--lattice", "8", "--n-configs", "64", "--n-chains", "4", "--n-therm", "10", "--out", "e.h5"];
    assert!(latdiff().current_dir(dir).args(hmc).output().unwrap().status.success());
    let train = ["train", "--data", "e.h5", "--preset", "tiny", "--batch", "8", "--steps", "2", "--out", "m.h5"];
    let o = latdiff().current_dir(dir).args(train).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir.join("e.h5"), dir.join("m.h5"))
}

const HMC: [&str; 9] = ["hmc", "--lattice", "16", "--n-configs", "512", "--n-chains", "4", "--n-therm", "10"];

#[test]
fn hmc_filling_the_disk_fails_on_one_line_and_leaves_nothing() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    let line = fails_full(disk.path(), &[&HMC[..], &["--out", "e.h5"]].concat());
    assert!(line.contains(".e.h5.partial"), "the file being written is named: {line}");
    assert_eq!(files_in(disk.path()), Vec::<String>::new());
    // Full before it starts: the lock file is the first write.
    disk.fill();
    fails_full(disk.path(), &[&HMC[..], &["--out", "e.h5"]].concat());
    assert_eq!(files_in(disk.path()), ["fill"]);
}

#[test]
fn hmc_with_a_checkpoint_keeps_it_and_its_partial_output_and_says_resume() {
    let Some(disk) = SmallDisk::mount(400) else { return };
    let args = ["--lattice", "8", "--n-configs", "8192", "--checkpoint-every", "1", "--out", "e.h5"];
    let line = fails_full(disk.path(), &[&HMC[..1], &HMC[5..], &args].concat());
    assert!(line.contains("continue with --resume"), "{line}");
    assert_eq!(files_in(disk.path()), [".e.h5.partial", "e.h5.ckpt"]);
}

#[test]
fn train_and_sample_filling_the_disk_fail_on_one_line_and_leave_nothing() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    let work = tempfile::tempdir().unwrap();
    let (ens, model) = inputs(work.path());
    let (ens, model) = (ens.to_str().unwrap(), model.to_str().unwrap());
    let train = ["train", "--data", ens, "--preset", "tiny", "--batch", "8", "--steps", "2", "--out", "m.h5"];
    let line = fails_full(disk.path(), &train);
    assert!(line.contains(".m.h5.tmp."), "the file being written is named: {line}");
    assert_eq!(files_in(disk.path()), Vec::<String>::new());
    let sample = ["sample", "--model", model, "--n-configs", "2048", "--steps", "20", "--out", "s.h5"];
    let line = fails_full(disk.path(), &sample);
    assert!(line.contains(".s.h5.tmp."), "the file being written is named: {line}");
    assert_eq!(files_in(disk.path()), Vec::<String>::new());
    disk.fill();
    for args in [&train[..], &sample[..]] {
        fails_full(disk.path(), args);
        assert_eq!(files_in(disk.path()), ["fill"], "{args:?}");
    }
}

/// The disk fills while `sample` closes its file (a short run whose rows all sit in HDF5's
/// cache until then): one line, and the temporary is removed, not left behind.
#[test]
fn sample_failing_at_the_final_flush_leaves_no_temporary() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    let sample = ["sample", "--model", "free:kappa=0.2", "--lattice", "8", "--n-configs", "64", "--steps", "20"];
    fails_full(disk.path(), &[&sample[..], &["--out", "s.h5"]].concat());
    assert_eq!(files_in(disk.path()), Vec::<String>::new());
}

/// `analyze --plot` into a directory on a full disk: one line, and no truncated figure
/// under its name nor a temporary (the figures written before the disk filled are whole).
#[test]
fn plots_on_a_full_disk_leave_no_truncated_figure() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    let work = tempfile::tempdir().unwrap();
    let hmc = ["hmc", "--lattice", "8", "--n-configs", "64", "--n-chains", "4", "--n-therm", "10", "--out", "e.h5"];
    assert!(latdiff().current_dir(work.path()).args(hmc).output().unwrap().status.success());
    let ens = work.path().join("e.h5");
    let figs = disk.path().join("figs");
    fails_full(disk.path(), &["analyze", ens.to_str().unwrap(), "--plot", figs.to_str().unwrap()]);
    for name in files_in(&figs) {
        assert!(!name.starts_with('.'), "temporary left: {name}");
        let bytes = std::fs::read(figs.join(&name)).unwrap();
        let whole = match name.rsplit('.').next() {
            Some("png") => bytes.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]),
            Some("svg") => String::from_utf8_lossy(&bytes).trim_end().ends_with("</svg>"),
            _ => false,
        };
        assert!(whole, "{name} is truncated ({} bytes)", bytes.len());
    }
}
