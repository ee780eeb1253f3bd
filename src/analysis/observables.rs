//! Observables behind one small trait, and the theory-independent analysis pipeline.
//!
//! A theory supplies an [`Observables`] implementation: the *primaries* measured on every
//! configuration (a fixed number of `f64` per configuration, e.g. M, M², S/V, time-slice
//! products) and the *derived* quantities, functions of the (weighted) means of the
//! primaries (χ, Binder cumulant, G(t), ξ₂, ...). Everything statistical lives here and
//! knows nothing about the theory:
//!
//! * [`measure`] streams the configurations of an [`Ensemble`] in chunks and keeps only
//!   the primaries (never the whole file in memory);
//! * [`analyze`] estimates every derived quantity by the binned, reweighted jackknife
//!   ([`jackknife_vec`]) with chains kept apart, the bin size from the Γ-method τ_int of
//!   the most autocorrelated *binning primary*, and a τ_int for every scalar derived
//!   quantity from the Γ-method applied to its linearised projection (Wolff 2004, eq. 39:
//!   a_i = Σ_k ∂f/∂ā_k (a_{k,i} − ā_k), times w_i/w̄ for weighted ensembles).
//!
//! A new theory (e.g. U(1) gauge: plaquette, topological charge) implements the trait and
//! reuses [`measure`] and [`analyze`] unchanged.

use super::stats::{
    bin_size_from_tau, ess, gamma_method_labelled, gamma_method_replicas, jackknife_vec, normalized_weights,
    GammaResult, DEFAULT_S_TAU,
};
use super::topology::Topology;
use crate::io::Ensemble;
use crate::theory::TheoryAttrs;
use anyhow::{bail, Result};
use rayon::prelude::*;

/// One output quantity of an [`Observables`] implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedSpec {
    /// Stable machine-readable key (JSON), e.g. `"chi"` or `"g_t"`.
    pub key: String,
    /// Short human label for tables and plots, e.g. `"chi = V(<M^2>-<M>^2)"`.
    pub label: String,
    /// `None` for a scalar; for an array, the abscissae (e.g. t = 0, 1, ...): the array
    /// has `x.len()` components.
    pub x: Option<Vec<f64>>,
}

impl DerivedSpec {
    pub fn scalar(key: &str, label: &str) -> Self {
        DerivedSpec { key: key.into(), label: label.into(), x: None }
    }
    pub fn array(key: &str, label: &str, x: Vec<f64>) -> Self {
        DerivedSpec { key: key.into(), label: label.into(), x: Some(x) }
    }
    /// Number of components in the concatenated output of [`Observables::derived`].
    pub fn len(&self) -> usize {
        self.x.as_ref().map_or(1, |x| x.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a theory measures. Implementations must be cheap to call from many threads.
pub trait Observables: Sync {
    /// Number of stored values per configuration (sites × values per site).
    fn volume(&self) -> usize;
    /// Names of the per-configuration primaries, one per column.
    fn primary_names(&self) -> Vec<String>;
    /// Writes the primaries of one configuration (`cfg.len() == volume()`) into `out`
    /// (`out.len() == primary_names().len()`).
    fn primaries(&self, cfg: &[f64], out: &mut [f64]);
    /// The derived quantities, in the order [`Self::derived`] concatenates them.
    fn derived_specs(&self) -> Vec<DerivedSpec>;
    /// All derived quantities, concatenated in `derived_specs` order, from the (weighted)
    /// means of the primaries. Undefined values (e.g. ξ₂ of a constant field) are NaN.
    fn derived(&self, means: &[f64]) -> Vec<f64>;
    /// Indices of the primaries whose Γ-method τ_int may set the jackknife bin size (the
    /// largest τ_int wins).
    fn binning_primaries(&self) -> Vec<usize>;
    /// Why component `j` of [`Self::derived`] is undefined (NaN) at these means, in words
    /// for the report; `None` leaves a generic "undefined".
    fn undefined_reason(&self, _j: usize, _means: &[f64]) -> Option<String> {
        None
    }
    /// Values stored per lattice site (φ⁴: 1, U(1): the 2 link angles).
    fn values_per_site(&self) -> usize;
    /// The attributes naming the theory and its couplings, as its files record them.
    fn theory_attrs(&self) -> TheoryAttrs;
    /// For a theory with an integer charge: the charge of every configuration (from the
    /// measured primaries), how often it changed along each chain (`chain`: dense chain
    /// index per row, `None` one chain), and the exact values on this torus. `None` for a
    /// theory without one; `Err` names the first configuration whose charge is no integer.
    fn topology(&self, _prim: &Primaries, _chain: Option<&[usize]>) -> Result<Option<Topology>, String> {
        Ok(None)
    }
    /// Whether one configuration read from a file is a field of the theory at all (SU(2):
    /// unit quaternions); the error names what is wrong, [`measure`] adds file and row.
    fn check(&self, _cfg: &[f64]) -> Result<(), String> {
        Ok(())
    }
    /// Exact values of scalar derived quantities on this torus, by key (SU(2): the
    /// character expansion), which `analyze` prints beside the estimates. (U(1)'s come
    /// with its topology.)
    fn exact(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// Per-configuration primaries of an ensemble, column-major: `columns[k][i]` is primary k
/// on configuration (row) i.
#[derive(Debug, Clone, PartialEq)]
pub struct Primaries {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
}

impl Primaries {
    pub fn n_configs(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.names.iter().position(|n| n == name).map(|k| &self.columns[k][..])
    }
}

/// Configurations read per chunk: at most 1024 and at most ~64 MB of f32 (and the same again
/// as f64 while converting).
pub fn chunk_configs(volume: usize) -> usize {
    (64 * 1024 * 1024 / (4 * volume.max(1))).clamp(1, 1024)
}

/// Measures the primaries of every configuration of `ens`, reading [`chunk_configs`]
/// configurations at a time (converted to f64, measured in parallel), so memory stays
/// bounded by the chunk plus the primaries themselves.
pub fn measure(ens: &Ensemble, obs: &dyn Observables) -> Result<Primaries> {
    let v = obs.volume();
    if ens.shape.len() != v {
        bail!("{}: {} values per configuration, the observables expect {v}", ens.path.display(), ens.shape.len());
    }
    let names = obs.primary_names();
    let k = names.len();
    let mut columns: Vec<Vec<f64>> = (0..k).map(|_| Vec::with_capacity(ens.n)).collect();
    let chunk = chunk_configs(v);
    let mut a = 0;
    while a < ens.n {
        let b = (a + chunk).min(ens.n);
        let raw = ens.read_configs(a, b)?;
        let rows: Vec<Vec<f64>> = raw
            .par_chunks(v)
            .enumerate()
            .map(|(i, c)| {
                let cfg: Vec<f64> = c.iter().map(|&x| f64::from(x)).collect();
                obs.check(&cfg).map_err(|e| {
                    crate::error::input_err(anyhow::anyhow!("{}: configuration {}: {e}", ens.path.display(), a + i))
                })?;
                let mut out = vec![0.0; k];
                obs.primaries(&cfg, &mut out);
                Ok(out)
            })
            .collect::<Result<_>>()?;
        for row in rows {
            for (col, x) in columns.iter_mut().zip(row) {
                col.push(x);
            }
        }
        a = b;
    }
    Ok(Primaries { names, columns })
}

/// Mean, error and τ_int of a scalar derived quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarEstimate {
    /// f(weighted means of the primaries).
    pub mean: f64,
    /// Binned jackknife error.
    pub err: f64,
    /// Γ-method τ_int of the linearised projection of f (1/2 when f does not fluctuate;
    /// NaN when f is undefined, e.g. NaN).
    pub tau_int: f64,
    /// Why the value, or only its error, is undefined (NaN), e.g. ξ₂ of a correlator that
    /// does not fall off; `None` when both are numbers.
    pub undefined: Option<String>,
}

/// Mean and error of each component of an array-valued derived quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayEstimate {
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub err: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Estimate {
    Scalar(ScalarEstimate),
    Array(ArrayEstimate),
}

impl Estimate {
    pub fn scalar(&self) -> Option<&ScalarEstimate> {
        match self {
            Estimate::Scalar(s) => Some(s),
            Estimate::Array(_) => None,
        }
    }
    pub fn array(&self) -> Option<&ArrayEstimate> {
        match self {
            Estimate::Array(a) => Some(a),
            Estimate::Scalar(_) => None,
        }
    }
}

/// Fewest Kish effective samples for which reweighted estimates are reported as reliable.
/// With a handful of effective samples the few largest weights decide every average, and
/// the jackknife error only sees how those few move when a bin is left out, not the weight
/// that was never sampled: it comes out confidently small while the value may be far off.
/// 50 is a floor, not a guarantee.
pub const MIN_RELIABLE_ESS: f64 = 50.0;

/// Fewest independent configurations, and fewest jackknife bins, on which an error bar is
/// reported as reliable. Independent configurations are N / (2 τ_int) with the τ_int of the
/// most autocorrelated binning primary; bins are jackknife samples (with replicas, one per
/// replica). The jackknife error is itself uncertain by ≈ 1/sqrt(2 G) over G bins: at 20 it
/// is known to ±16 %, with 2 to ±50 %, and with one bin not at all; and fewer independent
/// configurations than bins means the bins are not independent. Below this floor the values
/// are printed, marked unreliable, and no σ drawn from them is evidence.
pub const MIN_INDEPENDENT_CONFIGS: usize = 20;

/// Why an ensemble whose chains never moved is unreliable: each chain repeats one
/// configuration, so its errors see at most the spread of the starting points.
pub const FROZEN: &str = "no chain moved (every configuration repeats the one before it in its chain)";

/// Result of [`analyze`].
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Derived quantities with their estimates, in `derived_specs` order.
    pub quantities: Vec<(DerivedSpec, Estimate)>,
    pub n_configs: usize,
    pub n_chains: usize,
    /// Jackknife bin size actually used (configurations of one chain per bin).
    pub bin_size: usize,
    /// Number of jackknife samples.
    pub n_bins: usize,
    /// Name and Γ-method τ_int of the binning primary with the largest τ_int (what set the
    /// bin size, unless it was given).
    pub binning: (String, f64),
    /// Γ-method result of every binning primary (unweighted series), by name: ρ(t) for plots.
    pub primary_gamma: Vec<(String, GammaResult)>,
    /// Kish effective sample size (Σw)²/Σw² for weighted ensembles.
    pub ess: Option<f64>,
    /// SMC: the fewest distinct starting particles any replica's particles descend from.
    pub lineages: Option<usize>,
    /// Every chain of more than one configuration repeats a single configuration ([`FROZEN`]).
    pub frozen: bool,
    /// Further reasons not to trust the errors, known from outside the measurements (e.g.
    /// the file's failed thermalisation verdict); part of [`Analysis::unreliable`].
    pub caveats: Vec<String>,
}

impl Analysis {
    pub fn get(&self, key: &str) -> Option<&Estimate> {
        self.quantities.iter().find(|(s, _)| s.key == key).map(|(_, e)| e)
    }
    pub fn scalar(&self, key: &str) -> Option<&ScalarEstimate> {
        self.get(key).and_then(Estimate::scalar)
    }
    pub fn gamma(&self, primary: &str) -> Option<&GammaResult> {
        self.primary_gamma.iter().find(|(n, _)| n == primary).map(|(_, g)| g)
    }
    /// `Some("ESS 3.2 < 50")` when the weights leave fewer than [`MIN_RELIABLE_ESS`]
    /// effective samples: the reweighted values and their errors are not to be trusted.
    /// Likewise an SMC replica whose particles all descend from fewer than
    /// [`MIN_RELIABLE_ESS`] starting particles: resampling made the weights even, but the
    /// particles explored only what those few lineages reached, and replicas that all
    /// missed the same region agree with each other (small replica errors) and are wrong.
    pub fn unreliable(&self) -> Option<String> {
        let few_ess =
            self.ess.filter(|e| !(*e >= MIN_RELIABLE_ESS)).map(|e| format!("ESS {e:.1} < {MIN_RELIABLE_ESS}"));
        let few_lineages = self
            .lineages
            .filter(|l| (*l as f64) < MIN_RELIABLE_ESS)
            .map(|l| format!("a replica descends from {l} < {MIN_RELIABLE_ESS} starting particles"));
        let why: Vec<String> = self
            .too_few_independent()
            .into_iter()
            .chain(few_ess)
            .chain(few_lineages)
            .chain(self.frozen.then(|| FROZEN.to_string()))
            .chain(self.caveats.iter().cloned())
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// `Some(reason)` when fewer than [`MIN_INDEPENDENT_CONFIGS`] independent configurations
    /// or jackknife bins carry the errors. An undefined τ_int (replicas, NaN data) leaves the
    /// bins to decide.
    fn too_few_independent(&self) -> Option<String> {
        let floor = MIN_INDEPENDENT_CONFIGS;
        let tau = self.binning.1;
        if tau.is_finite() || tau == f64::INFINITY {
            let independent = self.n_configs as f64 / (2.0 * tau.max(0.5));
            if independent < floor as f64 {
                return Some(if tau > 0.5 {
                    format!(
                        "{independent:.1} independent configurations ({} / 2 tau_int {tau:.2}) < {floor}",
                        self.n_configs
                    )
                } else {
                    format!("{} configurations < {floor}", self.n_configs)
                });
            }
        }
        (self.n_bins < floor).then(|| format!("{} jackknife bins < {floor}", self.n_bins))
    }
}

/// Whether every chain of more than one configuration repeats one configuration in every
/// primary (and at least one chain has more than one).
fn chains_frozen(cols: &[Vec<f64>], chain_ids: Option<&[usize]>) -> bool {
    let n = cols.first().map_or(0, Vec::len);
    // (first row of the chain, whether the chain has moved, whether it has a second row)
    let mut first: std::collections::HashMap<usize, (usize, bool, bool)> = std::collections::HashMap::new();
    for i in 0..n {
        let c = chain_ids.map_or(0, |ids| ids[i]);
        let e = first.entry(c).or_insert((i, false, false));
        if e.0 != i {
            e.2 = true;
            e.1 |= cols.iter().any(|col| col[i].to_bits() != col[e.0].to_bits());
        }
    }
    first.values().any(|e| e.2) && first.values().all(|e| !e.1)
}

/// Dense chain index (0, 1, ...) per configuration, in order of first appearance.
pub fn dense_chain_ids(labels: &[i64]) -> Vec<usize> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(*l).or_insert(next)
        })
        .collect()
}

/// Statistical analysis of measured primaries.
///
/// * `chain_ids`: chain of each configuration (`None`: one chain in row order). Rows keep
///   their Monte Carlo order within a chain; bins never straddle chains.
/// * `log_weights`: self-normalised importance reweighting of every estimate.
/// * `bin_size`: overrides the automatic choice
///   `min(bin_size_from_tau(max τ_int over the binning primaries, N), shortest chain)`
///   (B ≈ 10 τ_int, at least ~20 bins in total over all chains).
///
/// # Panics
/// If the lengths of the columns, `chain_ids` and `log_weights` disagree.
pub fn analyze(
    obs: &dyn Observables,
    prim: &Primaries,
    chain_ids: Option<&[usize]>,
    log_weights: Option<&[f64]>,
    bin_size: Option<usize>,
) -> Analysis {
    let n = prim.n_configs();
    let cols = &prim.columns;
    let groups = group_sizes(chain_ids, n);
    let n_chains = groups.len();
    let shortest = groups.iter().copied().min().unwrap_or(0);

    // Γ-method of the binning primaries (raw series, chains separate).
    let gamma_of = |series: &[f64]| match chain_ids {
        Some(c) => gamma_method_labelled(series, c, DEFAULT_S_TAU),
        None => gamma_method_replicas(&[series], DEFAULT_S_TAU),
    };
    let primary_gamma: Vec<(String, GammaResult)> =
        obs.binning_primaries().into_iter().map(|k| (prim.names[k].clone(), gamma_of(&cols[k]))).collect();
    let binning = primary_gamma
        .iter()
        .map(|(name, g)| (name.clone(), g.tau_int))
        .fold((String::new(), 0.5), |best, cur| if cur.1 > best.1 || cur.1.is_nan() { cur } else { best });
    // With several chains the ≥ 20-bins cap of `bin_size_from_tau` applies to all bins
    // together; a bin never exceeds the shortest chain.
    let auto = || bin_size_from_tau(binning.1, n).min(shortest.max(1));
    let bin_size = bin_size.unwrap_or_else(auto).max(1);

    let jk = jackknife_vec(cols, chain_ids, log_weights, bin_size, |m| obs.derived(m));

    // Weighted means and the weights relative to their mean, for the projections.
    let w: Vec<f64> = match log_weights {
        Some(lw) => normalized_weights(lw),
        None => vec![1.0; n],
    };
    let w_sum: f64 = w.iter().sum();
    let w_rel: Vec<f64> = w.iter().map(|x| if w_sum > 0.0 { x * n as f64 / w_sum } else { 0.0 }).collect();
    let means: Vec<f64> = cols
        .iter()
        .map(|c| {
            if w_sum > 0.0 {
                c.iter().zip(&w).map(|(a, w)| if *w > 0.0 { a * w } else { 0.0 }).sum::<f64>() / w_sum
            } else {
                0.0
            }
        })
        .collect();
    let spread: Vec<f64> = cols
        .iter()
        .zip(&means)
        .map(|(c, m)| (c.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n.max(1) as f64).sqrt())
        .collect();

    let specs = obs.derived_specs();
    let mut quantities = Vec::with_capacity(specs.len());
    let mut off = 0;
    for spec in specs {
        let len = spec.len();
        let slice = |v: &[f64]| -> Vec<f64> {
            if v.len() >= off + len {
                v[off..off + len].to_vec()
            } else {
                vec![f64::NAN; len]
            }
        };
        let est = match &spec.x {
            None => {
                let mean = slice(&jk.value)[0];
                let err = slice(&jk.err)[0];
                let tau_int =
                    if n == 0 { f64::NAN } else { projected_tau(obs, off, &means, &spread, cols, &w_rel, &gamma_of) };
                let undefined = if !mean.is_finite() {
                    Some(obs.undefined_reason(off, &means).unwrap_or_else(|| "undefined".into()))
                } else if err.is_nan() {
                    Some("error undefined: the estimator is undefined in some jackknife samples".into())
                } else {
                    None
                };
                Estimate::Scalar(ScalarEstimate { mean, err, tau_int, undefined })
            }
            Some(x) => Estimate::Array(ArrayEstimate { x: x.clone(), mean: slice(&jk.value), err: slice(&jk.err) }),
        };
        quantities.push((spec, est));
        off += len;
    }
    Analysis {
        quantities,
        n_configs: n,
        n_chains,
        bin_size,
        n_bins: jk.n_bins,
        binning,
        primary_gamma,
        ess: log_weights.map(ess),
        lineages: None,
        frozen: chains_frozen(cols, chain_ids),
        caveats: Vec::new(),
    }
}

/// Sizes of the chains (one chain of n when no ids).
fn group_sizes(chain_ids: Option<&[usize]>, n: usize) -> Vec<usize> {
    match chain_ids {
        None => {
            if n > 0 {
                vec![n]
            } else {
                vec![]
            }
        }
        Some(c) => {
            let mut counts = std::collections::HashMap::new();
            for id in c {
                *counts.entry(*id).or_insert(0usize) += 1;
            }
            counts.into_values().collect()
        }
    }
}

/// τ_int of derived component `j` from the Γ-method on its linearised projection
/// p_i = (w_i/w̄) Σ_k ∂f_j/∂ā_k (a_{k,i} − ā_k), the gradient by central differences with
/// steps 10⁻⁶ × max(|ā_k|, spread_k).
fn projected_tau(
    obs: &dyn Observables,
    j: usize,
    means: &[f64],
    spread: &[f64],
    cols: &[Vec<f64>],
    w_rel: &[f64],
    gamma_of: &dyn Fn(&[f64]) -> GammaResult,
) -> f64 {
    let f0 = obs.derived(means)[j];
    if !f0.is_finite() {
        return f64::NAN;
    }
    let mut grad = vec![0.0; means.len()];
    let mut m = means.to_vec();
    for k in 0..means.len() {
        if spread[k] == 0.0 {
            continue; // a constant primary contributes nothing to the projection
        }
        let h = 1e-6 * means[k].abs().max(spread[k]);
        m[k] = means[k] + h;
        let fp = obs.derived(&m)[j];
        m[k] = means[k] - h;
        let fm = obs.derived(&m)[j];
        m[k] = means[k];
        grad[k] = (fp - fm) / (2.0 * h);
    }
    if grad.iter().any(|g| !g.is_finite()) {
        return f64::NAN;
    }
    let n = w_rel.len();
    let mut proj = vec![0.0; n];
    for (k, g) in grad.iter().enumerate() {
        if *g == 0.0 {
            continue;
        }
        for (p, (a, w)) in proj.iter_mut().zip(cols[k].iter().zip(w_rel)) {
            *p += w * g * (a - means[k]);
        }
    }
    gamma_of(&proj).tau_int
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Primaries x and x²; derived: mean of x and the variance ⟨x²⟩ − ⟨x⟩², plus an array.
    struct Toy;
    impl Observables for Toy {
        fn volume(&self) -> usize {
            1
        }
        fn primary_names(&self) -> Vec<String> {
            vec!["x".into(), "x2".into()]
        }
        fn primaries(&self, cfg: &[f64], out: &mut [f64]) {
            out[0] = cfg[0];
            out[1] = cfg[0] * cfg[0];
        }
        fn derived_specs(&self) -> Vec<DerivedSpec> {
            vec![
                DerivedSpec::scalar("x", "x"),
                DerivedSpec::scalar("var", "var"),
                DerivedSpec::array("both", "both", vec![0.0, 1.0]),
            ]
        }
        fn derived(&self, m: &[f64]) -> Vec<f64> {
            vec![m[0], m[1] - m[0] * m[0], m[0], m[1]]
        }
        fn binning_primaries(&self) -> Vec<usize> {
            vec![0]
        }
        fn values_per_site(&self) -> usize {
            1
        }
        fn theory_attrs(&self) -> crate::theory::TheoryAttrs {
            crate::theory::TheoryAttrs::default()
        }
    }

    #[test]
    fn toy_pipeline_exact_values_and_tau() {
        // AR(1)-like deterministic series with strong correlation: a slow sine.
        let n = 4000;
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.01).sin() + 0.1 * ((i * 7919 % 13) as f64 - 6.0)).collect();
        let mut p = Primaries { names: Toy.primary_names(), columns: vec![vec![], vec![]] };
        for &v in &x {
            let mut out = [0.0; 2];
            Toy.primaries(&[v], &mut out);
            p.columns[0].push(out[0]);
            p.columns[1].push(out[1]);
        }
        let a = analyze(&Toy, &p, None, None, None);
        let mean = x.iter().sum::<f64>() / n as f64;
        let var = x.iter().map(|v| v * v).sum::<f64>() / n as f64 - mean * mean;
        let sx = a.scalar("x").unwrap();
        assert!((sx.mean - mean).abs() < 1e-12);
        assert!((a.scalar("var").unwrap().mean - var).abs() < 1e-12);
        // The projection of ⟨x⟩ is x itself: same τ as the primary's Γ-method.
        assert!((sx.tau_int - a.gamma("x").unwrap().tau_int).abs() < 1e-6 * sx.tau_int);
        assert!(sx.tau_int > 5.0 && a.bin_size > 1);
        let arr = a.get("both").unwrap().array().unwrap();
        assert_eq!(arr.mean.len(), 2);
        assert!((arr.mean[0] - mean).abs() < 1e-12);
        assert_eq!(a.n_chains, 1);
        assert!(a.ess.is_none());
        // Given bin size is used.
        assert_eq!(analyze(&Toy, &p, None, None, Some(7)).bin_size, 7);
    }

    #[test]
    fn dense_ids_and_chunks() {
        assert_eq!(dense_chain_ids(&[5, 9, 5, -1, 9]), vec![0, 1, 0, 2, 1]);
        assert_eq!(chunk_configs(16), 1024);
        assert_eq!(chunk_configs(128 * 128 * 1024), 1);
        assert!(chunk_configs(512 * 512) * 512 * 512 * 4 <= 64 * 1024 * 1024);
    }
}
