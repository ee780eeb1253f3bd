//! What `latdiff hmc` holds in memory, estimated from its configuration before any of it
//! is allocated (`limits::check` compares it with the rank's budget).

use crate::config::{HmcConfig, NTherm};

/// Bytes per site of one chain on its rank: the field, the momenta and the field saved for
/// a rejection (f64 each), the copy an interrupted batch rolls back to and the state a
/// checkpoint gathers (f64), the f32 row written and the row sent to rank 0.
const CHAIN_BYTES_PER_SITE: f64 = 3.0 * 8.0 + 8.0 + 8.0 + 4.0 + 4.0;
/// A Wolff flip's cluster marks, stack and member list, which can span the lattice; one
/// flip runs per thread at a time.
const CLUSTER_BYTES_PER_SITE: f64 = 1.0 + 8.0 + 8.0;
/// Rank 0 per site of every chain: the gathered f32 rows, and a checkpoint's gathered f64
/// fields with the chain states rebuilt from them.
const ROOT_BYTES_PER_SITE: f64 = 4.0 + 8.0 + 8.0;

/// (estimate in bytes for this rank, the work it describes) for a run on `ranks` ranks
/// where this rank holds `local_chains` chains and `root` says whether it is rank 0.
pub fn estimate(cfg: &HmcConfig, local_chains: usize, root: bool, threads: usize) -> (u64, String) {
    // Stored values per configuration: one per site, two (link angles) for U(1), eight
    // (two quaternions) for SU(2).
    let per_site = match cfg.theory {
        crate::config::TheoryName::Phi4 => 1.0,
        crate::config::TheoryName::U1 => 2.0,
        crate::config::TheoryName::Su2 => 8.0,
    };
    let v = per_site * cfg.lattice().volume() as f64;
    let c = local_chains as f64;
    // Thermalisation keeps two numbers per chain and trajectory, gathered to rank 0 and
    // rebuilt there at every check.
    let therm = match cfg.n_therm {
        NTherm::Fixed(n) => n,
        NTherm::Auto => cfg.n_therm_max,
    } as f64;
    let hist = 2.0 * 8.0 * therm;
    let mut bytes = c * (v * CHAIN_BYTES_PER_SITE + hist) + c.min(threads as f64) * v * CLUSTER_BYTES_PER_SITE;
    if root {
        bytes += cfg.n_chains as f64 * (v * ROOT_BYTES_PER_SITE + 2.0 * hist);
    }
    bytes += crate::limits::BASE_BYTES as f64;
    let what = format!("lattice {} with {local_chains} chain(s) on this rank", cfg.lattice());
    (bytes.min(u64::MAX as f64) as u64, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LatticeSpec;
    use crate::lattice::Lattice;

    #[test]
    fn grows_with_volume_and_chains_and_names_the_lattice() {
        let cfg = |l: usize, n: usize| HmcConfig {
            lattice: LatticeSpec(Lattice::square(l)),
            n_chains: n,
            n_configs: n,
            ..HmcConfig::default()
        };
        let (small, what) = estimate(&cfg(16, 16), 16, true, 2);
        assert!(what.contains("16x16") && what.contains("16 chain"), "{what}");
        assert!(small < 2 * crate::limits::BASE_BYTES, "a default run is small: {small}");
        // The case: L = 100000 cannot be refused here (the lattice bound refuses
        // it first), but 8192² with 16 chains is ~ 16 × 8192² × 56 B ≈ 60 GB.
        let (big, _) = estimate(&cfg(8192, 16), 16, true, 2);
        assert!(big > 50 << 30 && big < 100 << 30, "{big}");
        let (half, _) = estimate(&cfg(8192, 16), 8, false, 2);
        assert!(half < big / 2, "a non-root rank with half the chains: {half} vs {big}");
    }
}
