//! Resource limits: bounds on integer inputs and a memory budget per rank that every run
//! command checks its estimate against before any large allocation.
//!
//! An oversized run must be refused with one line, not found by the kernel's OOM killer:
//! on a shared node that killer may take other users' jobs with it. The bounds are far
//! above any sensible run; they exist so that a typo (`--n-md 18446744073709551615`) is a
//! message rather than a run that never ends.

use crate::dist::Comm;
use anyhow::{bail, Result};

pub use crate::lattice::{MAX_EXTENT, MAX_VOLUME};
/// Largest number of configurations one run writes (and of training steps, warm-up).
pub const MAX_CONFIGS: u64 = 1 << 31;
/// Largest number of HMC chains.
pub const MAX_CHAINS: u64 = 1 << 20;
/// Largest number of MD steps per trajectory (and of sampler noise levels).
pub const MAX_STEPS: u64 = 1_000_000;
/// Largest trajectory count of one phase (n_therm, n_therm_max, n_sep), cluster flips per
/// update, corrector steps and HMC refinement trajectories.
pub const MAX_TRAJECTORIES: u64 = 10_000_000;
/// Largest training or sampling batch.
pub const MAX_BATCH: u64 = 1 << 20;
/// Share of the node's available memory the ranks on it may plan to use by default: the
/// rest is head-room for the page cache, MPI buffers and whatever else runs on the node.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.8;
/// Allowance for what every process holds whatever the run: the binary, MPI, HDF5 and
/// rayon's thread stacks.
pub const BASE_BYTES: u64 = 64 << 20;

/// Refuses `value` above `max` with one line naming the key.
pub fn bound(key: &str, value: u64, max: u64) -> Result<()> {
    if value > max {
        bail!("{key}: {value} exceeds the limit {max} (see README, Limits)");
    }
    Ok(())
}

/// The memory a rank may plan to use, and where that figure comes from (for the message).
#[derive(Clone, Debug)]
pub struct Budget {
    pub bytes: u64,
    pub source: String,
}

/// `--max-memory` (MiB per rank) when given; otherwise `DEFAULT_MEMORY_FRACTION` of what
/// the node (or its cgroup, under Slurm) has available, shared among the node's ranks.
/// None when neither is known (no /proc): then nothing is refused.
pub fn budget(max_memory_mib: Option<usize>, ranks_on_node: usize) -> Option<Budget> {
    if let Some(m) = max_memory_mib {
        return Some(Budget { bytes: (m as u64) << 20, source: format!("--max-memory {m} MiB") });
    }
    let avail = available_bytes()?;
    let n = ranks_on_node.max(1);
    Some(Budget {
        bytes: (avail as f64 * DEFAULT_MEMORY_FRACTION / n as f64) as u64,
        source: format!(
            "{:.0} % of the {} available on this node{}; set --max-memory",
            100.0 * DEFAULT_MEMORY_FRACTION,
            human(avail),
            if n > 1 { format!(", shared by {n} ranks") } else { String::new() }
        ),
    })
}

/// MemAvailable from /proc/meminfo, lowered to the cgroup's remaining allowance when the
/// process runs in a cgroup (v2) with a limit.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut avail = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb << 10)?;
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<u64>().ok();
    if let (Some(max), Some(cur)) = (read("memory.max"), read("memory.current")) {
        avail = avail.min(max.saturating_sub(cur));
    }
    Some(avail)
}

pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=0xFFFFF => format!("{:.0} KiB", b / 1024.0),
        0x100000..=0x3FFF_FFFF => format!("{:.1} MiB", b / 1048576.0),
        _ => format!("{:.2} GiB", b / 1073741824.0),
    }
}

/// Whether `estimate` bytes (what this rank would hold; `what` names the work) fit this
/// rank's budget; collective, because nodes differ in memory and a rank that refused alone
/// would leave the others waiting in a collective. Every rank returns the same verdict:
/// the first refusing rank's line, as bad input (rank 0 prints it).
pub fn check(comm: &Comm, estimate: u64, what: &str, max_memory_mib: Option<usize>) -> Result<()> {
    let b = budget(max_memory_mib, comm.node_local_size());
    let mine = [estimate as f64, b.as_ref().map_or(f64::INFINITY, |b| b.bytes as f64)];
    let all = comm.gather(&mine, &vec![2; comm.size()]);
    let mut line = Vec::new();
    if comm.is_root() {
        if let Some(k) = all.chunks(2).position(|p| p[0] > p[1]) {
            let text = match k {
                0 => refusal(estimate, what, b.as_ref()).unwrap_or_default(),
                _ => format!(
                    "max_memory: {what} needs about {} on rank {k}, over its budget of {} (set --max-memory)",
                    human(all[2 * k] as u64),
                    human(all[2 * k + 1] as u64)
                ),
            };
            line = text.into_bytes();
        }
    }
    comm.broadcast_bytes(&mut line);
    if line.is_empty() {
        return Ok(());
    }
    Err(crate::error::input_err(anyhow::anyhow!("{}", String::from_utf8_lossy(&line))))
}

/// The one line refusing `estimate` over `budget`, or None when it fits.
pub fn refusal(estimate: u64, what: &str, budget: Option<&Budget>) -> Option<String> {
    let b = budget?;
    (estimate > b.bytes).then(|| {
        format!(
            "max_memory: {what} needs about {} per rank, over the budget of {} ({})",
            human(estimate),
            human(b.bytes),
            b.source
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_work_estimate_and_budget() {
        let b = Budget { bytes: 100 << 20, source: "--max-memory 100 MiB".into() };
        assert!(refusal(50 << 20, "x", Some(&b)).is_none());
        let line = refusal(3 << 30, "lattice 8x8, 2 chains", Some(&b)).unwrap();
        assert!(line.contains("lattice 8x8, 2 chains") && line.contains("3.00 GiB") && line.contains("100.0 MiB"));
        assert!(refusal(u64::MAX, "x", None).is_none());
    }

    #[test]
    fn default_budget_is_a_share_of_available_memory() {
        let (Some(avail), Some(b)) = (available_bytes(), budget(None, 4)) else { return };
        // Memory moves between the two reads; a 10 % band is plenty.
        let want = avail as f64 * DEFAULT_MEMORY_FRACTION / 4.0;
        assert!((b.bytes as f64 - want).abs() < 0.1 * want, "{} vs {want}", b.bytes);
        assert_eq!(budget(Some(3), 4).unwrap().bytes, 3 << 20);
    }
}
