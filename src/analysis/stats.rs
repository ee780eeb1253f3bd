//! Statistics for Markov-chain Monte Carlo time series.
//!
//! * [`gamma_method`] / [`gamma_method_replicas`]: error of the mean of a *primary*
//!   observable (a per-configuration series such as the magnetisation M) from its
//!   integrated autocorrelation time, following U. Wolff, "Monte Carlo errors with
//!   less errors", Comput. Phys. Commun. 156 (2004) 143 (hep-lat/0306017).
//! * [`jackknife`] / [`jackknife_vec`]: errors of *derived* quantities (susceptibility,
//!   Binder cumulant, correlator G(t), ...) that are functions of the means of several
//!   primaries, with binning against autocorrelations and optional importance weights.
//! * [`ess`], [`log_sum_exp`], [`normalized_weights`]: self-normalised importance
//!   reweighting with log-weights (e.g. log p_target − log q_model for diffusion
//!   samples).
//!
//! Everything is `f64`: autocorrelation sums and jackknife differences subtract
//! nearly equal numbers, which single precision cannot resolve.
//!
//! Degenerate input (empty, a single value, constant series, all weights zero) never
//! panics and never yields NaN: the documented fallbacks apply and the returned
//! structs carry counts (`n`, `n_bins`) or a [`Windowing`] status saying so. Non-finite
//! *data values* (NaN/inf observables) do propagate into the results.

use std::collections::HashMap;

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

/// Wolff's default S_τ: the window W is chosen where the estimated truncation bias
/// exp(−W/τ) and the statistical error ~ sqrt(W/N) of the summed Γ balance, assuming
/// τ_exp ≈ S_τ τ_int. 1.5 is Wolff's recommendation; larger values suit slowly
/// decaying modes (critical slowing down), smaller ones short chains.
pub const DEFAULT_S_TAU: f64 = 1.5;

/// How the summation window of the Γ-method was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windowing {
    /// Wolff's criterion g(W) < 0 was met at `window`: the normal case.
    Converged,
    /// The criterion never triggered up to the largest usable lag (half the longest
    /// chain); `window` is that lag and τ_int is probably underestimated, i.e. the
    /// chain is too short for its autocorrelation time.
    NotConverged,
    /// Zero variance (constant series): τ_int = 1/2 and err = 0 by convention.
    Constant,
    /// Fewer than two data per chain (or no data at all): no autocorrelation function can
    /// be formed; the naive error sqrt(var/N) with τ_int = 1/2 is returned (0 for N < 2).
    TooShort,
    /// Γ(0) + 2 Σ Γ(t) up to the window was ≤ 0 (strongly anticorrelated data or pure
    /// noise in Γ); the naive error with τ_int = 1/2 is returned instead of a NaN.
    Anticorrelated,
}

/// Result of the Γ-method for one primary observable.
#[derive(Debug, Clone, PartialEq)]
pub struct GammaResult {
    /// Mean over all configurations of all replicas.
    pub mean: f64,
    /// Error of the mean, sqrt(2 τ_int Γ(0) / N) with the bias-corrected Γ.
    pub err: f64,
    /// Statistical error of `err` itself, err · sqrt((W + 1/2)/N) (Wolff eq. 44).
    pub err_err: f64,
    /// Integrated autocorrelation time τ_int = 1/2 + Σ_{t=1}^{W} ρ(t) (1/2 for
    /// uncorrelated data), bias-corrected for the estimated mean.
    pub tau_int: f64,
    /// Error of τ_int, Madras–Sokal δτ ≈ τ_int sqrt((4W + 2)/N).
    pub tau_int_err: f64,
    /// Summation window W chosen by the automatic windowing procedure.
    pub window: usize,
    /// Total number of configurations N (all replicas).
    pub n: usize,
    /// Normalised autocorrelation function ρ(t) = Γ(t)/Γ(0) for t = 0, 1, ...,
    /// max(2W, 20) (capped at the largest usable lag), for plotting. Empty when no Γ
    /// could be formed (constant or too short series).
    pub gamma: Vec<f64>,
    /// τ_int(W') = 1/2 + Σ_{t=1}^{W'} ρ(t) for the same lags as `gamma`, to plot the
    /// plateau and check the window.
    pub tau_int_of_w: Vec<f64>,
    /// How the window was found (and whether a fallback applied).
    pub status: Windowing,
}

impl GammaResult {
    /// Statistical error of each ρ(t) in [`Self::gamma`], by Wolff's approximation
    /// (eq. E.11 of hep-lat/0306017, as in his UWerr):
    /// δρ(t)² ≈ (1/N) Σ_{k=max(1,t−W)}^{t+W} [ρ(k+t) + ρ(|k−t|) − 2ρ(k)ρ(t)]²,
    /// with ρ taken as 0 beyond the stored lags. δρ(0) = 0 (ρ(0) = 1 by definition).
    pub fn rho_errors(&self) -> Vec<f64> {
        let rho = |t: usize| self.gamma.get(t).copied().unwrap_or(0.0);
        let w = self.window;
        (0..self.gamma.len())
            .map(|t| {
                if t == 0 || self.n == 0 {
                    return 0.0;
                }
                let sum: f64 = (t.saturating_sub(w).max(1)..=t + w)
                    .map(|k| (rho(k + t) + rho(k.abs_diff(t)) - 2.0 * rho(k) * rho(t)).powi(2))
                    .sum();
                (sum / self.n as f64).sqrt()
            })
            .collect()
    }
}

/// Γ-method for a single chain with the default S_τ = 1.5. See [`gamma_method_replicas`].
pub fn gamma_method(chain: &[f64]) -> GammaResult {
    gamma_method_replicas(&[chain], DEFAULT_S_TAU)
}

/// Γ-method for configurations stored with a chain label per configuration (e.g. the
/// HDF5 round-major layout `row = round * n_chains + chain`). Configurations are grouped
/// by label; within a chain the given order is the Monte Carlo time order. Labels need
/// not be contiguous or sorted.
///
/// # Panics
/// If `values` and `chain_ids` differ in length.
pub fn gamma_method_labelled(values: &[f64], chain_ids: &[usize], s_tau: f64) -> GammaResult {
    assert_eq!(values.len(), chain_ids.len(), "gamma_method_labelled: one chain id per value");
    let replicas: Vec<Vec<f64>> =
        group_by_chain(chain_ids).into_iter().map(|idx| idx.into_iter().map(|i| values[i]).collect()).collect();
    gamma_method_replicas(&replicas, s_tau)
}

/// Wolff's Γ-method with automatic windowing for a primary observable measured on one or
/// several independent replica chains.
///
/// With replicas r of lengths N_r, N = Σ N_r and the overall mean ā,
/// Γ(t) = Σ_r Σ_{i<N_r−t} (a_i − ā)(a_{i+t} − ā) / Σ_r max(N_r − t, 0)
/// (Wolff eq. 31, with the count generalised so that chains of unequal length all
/// contribute at every lag they cover). The window W is the first W with
/// g(W) = exp(−W/τ(W)) − τ(W)/sqrt(W N) < 0, τ(W) = S_τ / ln((2τ_int(W)+1)/(2τ_int(W)−1)),
/// which balances the truncation bias against the noise of the summed Γ. Γ is then
/// corrected for the bias from estimating the mean, Γ(t) += C_F(W)/N (Wolff eq. 49),
/// and err = sqrt(C_F(W)/N), C_F(W) = Γ(0) + 2 Σ_{t=1}^{W} Γ(t).
///
/// `s_tau` ≤ 0 or NaN is replaced by [`DEFAULT_S_TAU`]. Empty replicas are ignored.
/// Γ is computed by FFT, O(N log N), so long chains with large τ are cheap.
pub fn gamma_method_replicas<C: AsRef<[f64]>>(replicas: &[C], s_tau: f64) -> GammaResult {
    let s_tau = if s_tau > 0.0 { s_tau } else { DEFAULT_S_TAU };
    let chains: Vec<&[f64]> = replicas.iter().map(|r| r.as_ref()).filter(|r| !r.is_empty()).collect();
    let n: usize = chains.iter().map(|c| c.len()).sum();
    if n == 0 {
        return naive_result(0.0, 0.0, 0, Windowing::TooShort);
    }
    let nf = n as f64;
    let mean = chains.iter().flat_map(|c| c.iter()).sum::<f64>() / nf;
    // Two-pass variance about the mean (no catastrophic cancellation).
    let sum_sq_dev: f64 = chains.iter().flat_map(|c| c.iter()).map(|&a| (a - mean) * (a - mean)).sum();
    let max_abs = chains.iter().flat_map(|c| c.iter()).fold(0.0f64, |m, &a| m.max(a.abs()));
    // A constant series still shows rounding noise ~ε|a| in a − ā; treat that as zero
    // variance rather than as a (meaningless) autocorrelation function.
    let noise = 64.0 * f64::EPSILON * max_abs;
    if sum_sq_dev <= nf * noise * noise {
        return naive_result(mean, 0.0, n, Windowing::Constant);
    }
    // Unbiased variance for the naive fallbacks (needs N ≥ 2, which holds here since a
    // single value is constant).
    let naive_var = sum_sq_dev / (nf - 1.0);

    let n_longest = chains.iter().map(|c| c.len()).max().unwrap_or(0);
    // Γ(t) for t beyond half the chain is too noisy to be of use (Wolff: W_max = N/2).
    let w_max = n_longest / 2;
    if w_max < 1 {
        return naive_result(mean, (naive_var / nf).sqrt(), n, Windowing::TooShort);
    }

    let mut gamma = autocovariance(&chains, mean, w_max);
    let g0 = gamma[0];

    // Automatic windowing (Wolff section 3.3).
    let mut c_f = g0;
    let mut window = None;
    for (w, &g_w) in gamma.iter().enumerate().skip(1) {
        c_f += 2.0 * g_w;
        let tau_w = c_f / (2.0 * g0);
        // For τ_int(W) ≤ 1/2 there is no decay left to resolve: stop at once.
        let tau = if tau_w <= 0.5 { f64::EPSILON } else { s_tau / ((2.0 * tau_w + 1.0) / (2.0 * tau_w - 1.0)).ln() };
        let wf = w as f64;
        let g = (-wf / tau).exp() - tau / (wf * nf).sqrt();
        if g < 0.0 {
            window = Some(w);
            break;
        }
    }
    let (window, status) = match window {
        Some(w) => (w, Windowing::Converged),
        None => (w_max, Windowing::NotConverged),
    };
    let c_f: f64 = g0 + 2.0 * gamma[1..=window].iter().sum::<f64>();
    if c_f <= 0.0 {
        return naive_result(mean, (naive_var / nf).sqrt(), n, Windowing::Anticorrelated);
    }
    // The mean is estimated from the same data, which biases every Γ(t) by −C_F/N to
    // leading order (Wolff eq. 49); undo that before forming τ_int and the error.
    for g in gamma.iter_mut() {
        *g += c_f / nf;
    }
    let g0 = gamma[0];
    let c_f: f64 = g0 + 2.0 * gamma[1..=window].iter().sum::<f64>();
    let tau_int = c_f / (2.0 * g0);
    let wf = window as f64;
    let err = (c_f / nf).sqrt();

    let n_plot = (2 * window).max(20).min(w_max);
    let rho: Vec<f64> = gamma[..=n_plot].iter().map(|g| g / g0).collect();
    let mut tau_int_of_w = Vec::with_capacity(rho.len());
    let mut acc = 0.5;
    for (t, r) in rho.iter().enumerate() {
        if t > 0 {
            acc += r;
        }
        tau_int_of_w.push(acc);
    }
    GammaResult {
        mean,
        err,
        err_err: err * ((wf + 0.5) / nf).sqrt(),
        tau_int,
        tau_int_err: tau_int * ((4.0 * wf + 2.0) / nf).sqrt(),
        window,
        n,
        gamma: rho,
        tau_int_of_w,
        status,
    }
}

/// Fallback result with τ_int = 1/2 (no autocorrelation information).
fn naive_result(mean: f64, err: f64, n: usize, status: Windowing) -> GammaResult {
    let nf = (n.max(1)) as f64;
    GammaResult {
        mean,
        err,
        err_err: err * (0.5 / nf).sqrt(),
        tau_int: 0.5,
        tau_int_err: 0.5 * (2.0 / nf).sqrt(),
        window: 0,
        n,
        gamma: Vec::new(),
        tau_int_of_w: Vec::new(),
        status,
    }
}

/// Γ(t), t = 0..=max_lag, summed over replicas with per-lag pair counts.
fn autocovariance(chains: &[&[f64]], mean: f64, max_lag: usize) -> Vec<f64> {
    let mut sums = vec![0.0; max_lag + 1];
    let mut counts = vec![0usize; max_lag + 1];
    let mut planner = RealFftPlanner::<f64>::new();
    for chain in chains {
        let dev: Vec<f64> = chain.iter().map(|a| a - mean).collect();
        let lags = max_lag.min(dev.len() - 1);
        let part = if dev.len() <= 64 {
            lagged_products_direct(&dev, lags)
        } else {
            lagged_products_fft(&dev, lags, &mut planner)
        };
        for t in 0..=lags {
            sums[t] += part[t];
            counts[t] += dev.len() - t;
        }
    }
    sums.iter().zip(&counts).map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 }).collect()
}

/// Σ_i d_i d_{i+t} for t = 0..=lags, by direct summation (O(N·lags)).
fn lagged_products_direct(dev: &[f64], lags: usize) -> Vec<f64> {
    (0..=lags).map(|t| dev[..dev.len() - t].iter().zip(&dev[t..]).map(|(a, b)| a * b).sum()).collect()
}

/// Σ_i d_i d_{i+t} for t = 0..=lags via the Wiener–Khinchin theorem: zero-padding to
/// ≥ N + lags makes the circular correlation equal the linear one for those lags.
fn lagged_products_fft(dev: &[f64], lags: usize, planner: &mut RealFftPlanner<f64>) -> Vec<f64> {
    let len = (dev.len() + lags + 1).next_power_of_two();
    let r2c = planner.plan_fft_forward(len);
    let c2r = planner.plan_fft_inverse(len);
    let mut input = r2c.make_input_vec();
    input[..dev.len()].copy_from_slice(dev);
    let mut spectrum = r2c.make_output_vec();
    r2c.process(&mut input, &mut spectrum).expect("FFT buffers sized by the planner");
    for z in spectrum.iter_mut() {
        // |F|² is real; an exactly zero imaginary part is required by the inverse.
        *z = Complex::new(z.norm_sqr(), 0.0);
    }
    let mut out = c2r.make_output_vec();
    c2r.process(&mut spectrum, &mut out).expect("FFT buffers sized by the planner");
    // realfft's inverse is unnormalised.
    let scale = 1.0 / len as f64;
    out[..=lags].iter().map(|v| v * scale).collect()
}

/// Indices of each chain, grouped by label in order of first appearance; within a chain
/// the original order is kept (it is the Monte Carlo time order). Works for any layout:
/// round-major (`row = round * n_chains + chain`), chain-major, or mixed.
fn group_by_chain(chain_ids: &[usize]) -> Vec<Vec<usize>> {
    let mut slot: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, &c) in chain_ids.iter().enumerate() {
        let g = *slot.entry(c).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Bin size for the jackknife from the integrated autocorrelation time of the most
/// correlated primary, for chains of `n_per_chain` configurations.
///
/// B = 1 + ⌈10 (τ_int − 1/2)⌉, clamped to 1 ≤ B ≤ max(1, ⌊n_per_chain/20⌋).
///
/// Why: for an exponential autocorrelation the binned variance of the mean is too small
/// by a factor ≈ 1 − τ/B, so B ≈ 10 τ_int keeps the error ≲ 5 % low, while uncorrelated
/// data (τ_int = 1/2) need no binning at all (B = 1). The cap keeps at least ~20 bins
/// per chain, because the jackknife error itself has a relative uncertainty
/// ≈ 1/sqrt(2 n_bins); when the cap binds the chain is short compared with τ_int and the
/// error may be underestimated. NaN or +inf τ_int give the cap (most conservative).
pub fn bin_size_from_tau(tau_int: f64, n_per_chain: usize) -> usize {
    let cap = (n_per_chain / 20).max(1);
    if tau_int.is_nan() || tau_int == f64::INFINITY {
        return cap;
    }
    if tau_int <= 0.5 {
        return 1;
    }
    let b = 1.0 + (10.0 * (tau_int - 0.5)).ceil();
    if b >= cap as f64 {
        cap
    } else {
        (b as usize).max(1)
    }
}

/// Jackknife estimate of a scalar derived quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct JackknifeEstimate {
    /// f evaluated on the (weighted) means over all configurations.
    pub value: f64,
    /// Jackknife error sqrt((G−1)/G Σ_b (f_b − f̄)²) over G bins.
    pub err: f64,
    /// Jackknife estimate of the bias of `value`, (G−1)(f̄ − value); `value − bias` is
    /// the bias-corrected estimate (useful for strongly nonlinear f on few bins).
    pub bias: f64,
    /// Number of jackknife samples used; < 2 means no error could be estimated (err = 0);
    /// 0 also means no data (or zero total weight), with value = 0.
    pub n_bins: usize,
}

/// Jackknife estimate of an array-valued derived quantity (e.g. a correlator G(t)).
#[derive(Debug, Clone, PartialEq)]
pub struct JackknifeVecEstimate {
    /// f evaluated on the (weighted) means over all configurations.
    pub value: Vec<f64>,
    /// Per-component jackknife error.
    pub err: Vec<f64>,
    /// Per-component jackknife bias estimate (see [`JackknifeEstimate::bias`]).
    pub bias: Vec<f64>,
    /// As in [`JackknifeEstimate::n_bins`]; with no data all vectors are empty.
    pub n_bins: usize,
}

/// Binned (and optionally reweighted) jackknife for a scalar function of the means of
/// several primary series. See [`jackknife_vec`] for the conventions.
///
/// Example: Binder cumulant from primaries [M², M⁴]:
/// `jackknife(&[m2, m4], Some(&chain), None, b, |m| 1.0 - m[1] / (3.0 * m[0] * m[0]))`.
pub fn jackknife<C, F>(
    primaries: &[C],
    chain_ids: Option<&[usize]>,
    log_weights: Option<&[f64]>,
    bin_size: usize,
    mut f: F,
) -> JackknifeEstimate
where
    C: AsRef<[f64]>,
    F: FnMut(&[f64]) -> f64,
{
    let r = jackknife_vec(primaries, chain_ids, log_weights, bin_size, |m| vec![f(m)]);
    JackknifeEstimate {
        value: r.value.first().copied().unwrap_or(0.0),
        err: r.err.first().copied().unwrap_or(0.0),
        bias: r.bias.first().copied().unwrap_or(0.0),
        n_bins: r.n_bins,
    }
}

/// Binned, optionally reweighted jackknife for an array-valued function of the means of
/// several primary series.
///
/// * `primaries[k][i]`: primary k on configuration i (all the same length N).
/// * `chain_ids[i]`: chain label of configuration i (`None`: one chain in time order).
///   Configurations are grouped by label (any layout; round-major
///   `row = round * n_chains + chain` included) and keep their order within a chain.
///   Bins are `bin_size` consecutive configurations of one chain and never straddle two
///   chains; the remainder N_c mod B of a chain is merged into its last bin (so no data
///   are dropped; a chain shorter than B is a single bin).
/// * `log_weights[i]`: log importance weight (`None`: unweighted). Means are the
///   self-normalised ⟨O⟩_w = Σ w O / Σ w, with w = exp(log w − max log w) for stability;
///   −inf and NaN log-weights count as zero weight. A jackknife sample removes a bin's
///   numerator *and* denominator, so the error includes the fluctuations of the weights.
/// * `f(means)`: the derived quantity; it must return the same length every call.
///
/// The error is the standard delete-one-bin formula. Bins whose removal leaves zero total
/// weight are skipped (their sample is undefined).
///
/// # Panics
/// If the series, `chain_ids` or `log_weights` differ in length, or `f` changes the
/// length of its output.
pub fn jackknife_vec<C, F>(
    primaries: &[C],
    chain_ids: Option<&[usize]>,
    log_weights: Option<&[f64]>,
    bin_size: usize,
    mut f: F,
) -> JackknifeVecEstimate
where
    C: AsRef<[f64]>,
    F: FnMut(&[f64]) -> Vec<f64>,
{
    let series: Vec<&[f64]> = primaries.iter().map(|p| p.as_ref()).collect();
    let n =
        series.first().map(|s| s.len()).or(chain_ids.map(|c| c.len())).or(log_weights.map(|w| w.len())).unwrap_or(0);
    assert!(series.iter().all(|s| s.len() == n), "jackknife: all primary series must have the same length");
    if let Some(c) = chain_ids {
        assert_eq!(c.len(), n, "jackknife: one chain id per configuration");
    }
    if let Some(w) = log_weights {
        assert_eq!(w.len(), n, "jackknife: one log-weight per configuration");
    }
    let empty = JackknifeVecEstimate { value: Vec::new(), err: Vec::new(), bias: Vec::new(), n_bins: 0 };
    // Weights are kept as log w: each bin stores (m, sums scaled by e^{−m}) with m its largest
    // log-weight, and bins combine with a common rescaling. Leaving out the bin that
    // carries nearly all the weight then still gives a finite, correctly normalised
    // estimate from the rest, instead of 0/0 from weights that underflowed.
    let lw: Vec<f64> = match log_weights {
        Some(l) => l.iter().map(|&x| if x.is_nan() { f64::NEG_INFINITY } else { x }).collect(),
        None => vec![0.0; n],
    };
    let k = series.len();
    let bin_size = bin_size.max(1);
    let groups = match chain_ids {
        Some(c) => group_by_chain(c),
        None => vec![(0..n).collect()],
    };

    // Per bin: (m, [Σ w e^{−m}, Σ w e^{−m} O_0, ..., Σ w e^{−m} O_{k−1}]).
    let mut bins: Vec<(f64, Vec<f64>)> = Vec::new();
    for idx in groups.iter().filter(|g| !g.is_empty()) {
        let n_bins_chain = (idx.len() / bin_size).max(1);
        for b in 0..n_bins_chain {
            let start = b * bin_size;
            let end = if b + 1 == n_bins_chain { idx.len() } else { start + bin_size };
            let m = idx[start..end].iter().map(|&i| lw[i]).fold(f64::NEG_INFINITY, f64::max);
            let mut acc = vec![0.0; k + 1];
            if m > f64::NEG_INFINITY {
                for &i in &idx[start..end] {
                    let w = (lw[i] - m).exp();
                    if w == 0.0 {
                        continue; // also keeps 0 · inf observables out
                    }
                    acc[0] += w;
                    for (a, s) in acc[1..].iter_mut().zip(&series) {
                        *a += w * s[i];
                    }
                }
            }
            bins.push((m, acc));
        }
    }
    let combine = |a: &(f64, Vec<f64>), b: &(f64, Vec<f64>)| -> (f64, Vec<f64>) {
        let m = a.0.max(b.0);
        if m == f64::NEG_INFINITY {
            return (m, vec![0.0; k + 1]);
        }
        let (fa, fb) = ((a.0 - m).exp(), (b.0 - m).exp());
        (m, a.1.iter().zip(&b.1).map(|(x, y)| x * fa + y * fb).collect())
    };
    let g = bins.len();
    let zero = (f64::NEG_INFINITY, vec![0.0; k + 1]);
    // Prefix/suffix combinations give each leave-one-bin-out total without subtracting from
    // the grand total, which would cancel badly when one bin carries most of the weight.
    let mut prefix = vec![zero.clone(); g + 1];
    let mut suffix = vec![zero.clone(); g + 1];
    for b in 0..g {
        prefix[b + 1] = combine(&prefix[b], &bins[b]);
        suffix[g - 1 - b] = combine(&suffix[g - b], &bins[g - 1 - b]);
    }
    let total = prefix[g].1.clone();
    if !(total[0] > 0.0) {
        return empty;
    }
    let means = |sums: &[f64]| -> Vec<f64> { sums[1..].iter().map(|s| s / sums[0]).collect() };
    let value = f(&means(&total));
    let dim = value.len();

    let mut samples: Vec<Vec<f64>> = Vec::with_capacity(g);
    if g >= 2 {
        for b in 0..g {
            let rest = combine(&prefix[b], &suffix[b + 1]).1;
            if !(rest[0] > 0.0) {
                continue;
            }
            let theta = f(&means(&rest));
            assert_eq!(theta.len(), dim, "jackknife: f changed its output length");
            samples.push(theta);
        }
    }
    let gs = samples.len();
    if gs < 2 {
        return JackknifeVecEstimate { err: vec![0.0; dim], bias: vec![0.0; dim], value, n_bins: gs };
    }
    let gf = gs as f64;
    let mut err = vec![0.0; dim];
    let mut bias = vec![0.0; dim];
    for d in 0..dim {
        let avg = samples.iter().map(|s| s[d]).sum::<f64>() / gf;
        let ss: f64 = samples.iter().map(|s| (s[d] - avg) * (s[d] - avg)).sum();
        err[d] = ((gf - 1.0) / gf * ss).sqrt();
        bias[d] = (gf - 1.0) * (avg - value[d]);
    }
    JackknifeVecEstimate { value, err, bias, n_bins: gs }
}

/// Γ-method, bin size and binned jackknife of the mean of one series in a single call.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// Γ-method analysis (τ_int, window, ρ(t), error of the mean).
    pub gamma: GammaResult,
    /// Bin size from [`bin_size_from_tau`] with the shortest chain's length.
    pub bin_size: usize,
    /// Binned jackknife of the mean (should agree with `gamma.err` within errors).
    pub jackknife: JackknifeEstimate,
}

/// Analyse one primary series: Γ-method (default S_τ), bin size from its τ_int, and the
/// binned jackknife of its mean. `chain_ids` as in [`jackknife_vec`].
///
/// # Panics
/// If `chain_ids` is given with a different length than `values`.
pub fn series_summary(values: &[f64], chain_ids: Option<&[usize]>) -> SeriesSummary {
    let (gamma, shortest) = match chain_ids {
        Some(c) => {
            let gamma = gamma_method_labelled(values, c, DEFAULT_S_TAU);
            let shortest = group_by_chain(c).iter().map(|g| g.len()).min();
            (gamma, shortest.unwrap_or(0))
        }
        None => (gamma_method(values), values.len()),
    };
    let bin_size = bin_size_from_tau(gamma.tau_int, shortest);
    let jackknife = jackknife(&[values], chain_ids, None, bin_size, |m| m[0]);
    SeriesSummary { gamma, bin_size, jackknife }
}

/// ln Σ exp(log_w_i), computed as m + ln Σ exp(log_w_i − m) with m = max log_w so that
/// no term overflows (log-weights of lattice actions are O(volume)). NaN entries are
/// ignored; empty or all −inf input gives −inf.
pub fn log_sum_exp(log_w: &[f64]) -> f64 {
    let m = log_w.iter().filter(|x| !x.is_nan()).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    if !m.is_finite() {
        return m;
    }
    m + log_w.iter().filter(|x| !x.is_nan()).map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Weights w_i = exp(log_w_i − max log_w) ∈ [0, 1], largest exactly 1: the common factor
/// cancels in every self-normalised average. NaN and −inf give 0; if some log-weights
/// are +inf those share the weight equally (w = 1) and all others get 0; empty or all
/// −inf input gives all zeros.
pub fn normalized_weights(log_w: &[f64]) -> Vec<f64> {
    let m = log_w.iter().filter(|x| !x.is_nan()).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    log_w
        .iter()
        .map(|&x| {
            if x.is_nan() || m == f64::NEG_INFINITY {
                0.0
            } else if m == f64::INFINITY {
                if x == f64::INFINITY {
                    1.0
                } else {
                    0.0
                }
            } else {
                (x - m).exp()
            }
        })
        .collect()
}

/// Kish effective sample size ESS = (Σ w)² / Σ w² of importance weights given as
/// log-weights (scale-free, so computed from [`normalized_weights`]). Equals N for equal
/// weights and 1 when one weight dominates; the variance of a reweighted mean is roughly
/// that of ESS independent samples. 0 for empty or all-zero weights.
pub fn ess(log_w: &[f64]) -> f64 {
    let w = normalized_weights(log_w);
    let s1: f64 = w.iter().sum();
    let s2: f64 = w.iter().map(|x| x * x).sum();
    if s2 > 0.0 {
        s1 * s1 / s2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
        StandardNormal.sample(rng)
    }

    /// Stationary AR(1): x_{t+1} = ρ x_t + sqrt(1−ρ²) η, x_0 ~ N(0,1), so Var x = 1 and
    /// ρ(t) = ρ^t, τ_int = (1+ρ)/(2(1−ρ)).
    fn ar1(rng: &mut Xoshiro256PlusPlus, rho: f64, n: usize) -> Vec<f64> {
        let s = (1.0 - rho * rho).sqrt();
        let mut x = normal(rng);
        (0..n)
            .map(|_| {
                let out = x;
                x = rho * x + s * normal(rng);
                out
            })
            .collect()
    }

    fn tau_exact(rho: f64) -> f64 {
        (1.0 + rho) / (2.0 * (1.0 - rho))
    }

    #[test]
    fn tau_int_of_ar1_matches_exact() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for (rho, n) in [(0.5, 200_000), (0.9, 1_000_000)] {
            let x = ar1(&mut rng, rho, n);
            let r = gamma_method(&x);
            let tau = tau_exact(rho);
            assert_eq!(r.status, Windowing::Converged);
            assert!(
                (r.tau_int - tau).abs() < 3.0 * r.tau_int_err,
                "rho={rho}: tau_int {} ± {} vs exact {tau}",
                r.tau_int,
                r.tau_int_err
            );
            // Error of the mean: sqrt(2 τ Var/N) with Var = 1.
            let exact_err = (2.0 * tau / n as f64).sqrt();
            assert!((r.err / exact_err - 1.0).abs() < 0.05, "rho={rho}: err {} vs {exact_err}", r.err);
            assert!(r.mean.abs() < 4.0 * exact_err);
            // ρ(t) of AR(1) is ρ^t; check the first lags loosely.
            assert!((r.gamma[0] - 1.0).abs() < 1e-12);
            assert!((r.gamma[1] - rho).abs() < 0.02, "rho(1) = {}", r.gamma[1]);
            assert!(r.gamma.len() > r.window);
            assert!((r.tau_int_of_w[r.window] - r.tau_int).abs() < 1e-9);
        }
    }

    #[test]
    fn replicas_combine_to_the_same_tau_and_correct_error() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let rho = 0.8;
        let n_chain = 50_000;
        let chains: Vec<Vec<f64>> = (0..4).map(|_| ar1(&mut rng, rho, n_chain)).collect();
        let r = gamma_method_replicas(&chains, DEFAULT_S_TAU);
        let tau = tau_exact(rho);
        assert_eq!(r.n, 4 * n_chain);
        assert!((r.tau_int - tau).abs() < 3.0 * r.tau_int_err, "tau {} ± {} vs {tau}", r.tau_int, r.tau_int_err);
        let exact_err = (2.0 * tau / r.n as f64).sqrt();
        assert!((r.err / exact_err - 1.0).abs() < 0.05);
        let all: Vec<f64> = chains.iter().flatten().copied().collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        assert!((r.mean - mean).abs() < 1e-12);

        // Same data in the HDF5 round-major layout, grouped by chain label.
        let mut values = Vec::new();
        let mut ids = Vec::new();
        for t in 0..n_chain {
            for (c, chain) in chains.iter().enumerate() {
                values.push(chain[t]);
                ids.push(10 + c); // labels need not start at 0
            }
        }
        let l = gamma_method_labelled(&values, &ids, DEFAULT_S_TAU);
        assert!((l.tau_int - r.tau_int).abs() < 1e-9);
        assert!((l.err - r.err).abs() < 1e-12);
        // Treating the interleaved rows as one chain would see ρ(1) ≈ 0 instead.
        let wrong = gamma_method(&values);
        assert!((wrong.tau_int - r.tau_int).abs() > 3.0 * r.tau_int_err);
    }

    #[test]
    fn error_of_mean_is_calibrated_over_independent_runs() {
        // The spread of the means of many independent chains must match the error the
        // Γ-method predicts from each chain alone.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let runs = 200;
        let (mut sum_m, mut sum_m2, mut sum_err2) = (0.0, 0.0, 0.0);
        for _ in 0..runs {
            let r = gamma_method(&ar1(&mut rng, 0.7, 5_000));
            sum_m += r.mean;
            sum_m2 += r.mean * r.mean;
            sum_err2 += r.err * r.err;
        }
        let var = (sum_m2 - sum_m * sum_m / runs as f64) / (runs as f64 - 1.0);
        let ratio = (var / (sum_err2 / runs as f64)).sqrt();
        // Relative uncertainty of the spread from 200 runs is ≈ 5 %.
        assert!((ratio - 1.0).abs() < 0.15, "spread/err = {ratio}");
    }

    #[test]
    fn fft_autocovariance_equals_direct_sum() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let x = ar1(&mut rng, 0.6, 1000);
        let mut planner = RealFftPlanner::<f64>::new();
        let a = lagged_products_direct(&x, 300);
        let b = lagged_products_fft(&x, 300, &mut planner);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-9 * a[0], "{p} vs {q}");
        }
    }

    #[test]
    fn jackknife_error_of_iid_mean_is_sigma_over_sqrt_n() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let n = 20_000;
        let sigma = 2.5;
        let x: Vec<f64> = (0..n).map(|_| 1.0 + sigma * normal(&mut rng)).collect();
        for bin in [1, 10] {
            let r = jackknife(&[&x[..]], None, None, bin, |m| m[0]);
            let exact = sigma / (n as f64).sqrt();
            assert!((r.err / exact - 1.0).abs() < 0.1, "bin {bin}: {} vs {exact}", r.err);
            assert_eq!(r.n_bins, n / bin);
            assert!(r.bias.abs() < 1e-9);
        }
    }

    #[test]
    fn jackknife_binder_cumulant_of_gaussian_is_zero() {
        // For zero-mean Gaussian x, ⟨x⁴⟩ = 3⟨x²⟩², so U = 1 − ⟨x⁴⟩/(3⟨x²⟩²) = 0 exactly.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
        let x = ar1(&mut rng, 0.5, 100_000);
        let x2: Vec<f64> = x.iter().map(|v| v * v).collect();
        let x4: Vec<f64> = x2.iter().map(|v| v * v).collect();
        let b = bin_size_from_tau(gamma_method(&x2).tau_int, x.len());
        let u = jackknife(&[x2, x4], None, None, b, |m| 1.0 - m[1] / (3.0 * m[0] * m[0]));
        assert!(u.err > 0.0 && u.err < 0.02);
        assert!(u.value.abs() < 4.0 * u.err, "U = {} ± {}", u.value, u.err);
    }

    #[test]
    fn jackknife_error_of_ratio_is_calibrated() {
        // R = ⟨x²⟩/⟨x⟩² for x ~ N(2, 1): exact (4 + 1)/4 = 1.25. Check both the value and
        // that the jackknife error matches the spread over independent samples.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let runs = 200;
        let n = 2_000;
        let (mut s, mut s2, mut e2) = (0.0, 0.0, 0.0);
        for _ in 0..runs {
            let x: Vec<f64> = (0..n).map(|_| 2.0 + normal(&mut rng)).collect();
            let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
            let r = jackknife(&[x, xx], None, None, 5, |m| m[1] / (m[0] * m[0]));
            s += r.value;
            s2 += r.value * r.value;
            e2 += r.err * r.err;
        }
        let rf = runs as f64;
        let mean = s / rf;
        let spread = ((s2 - s * s / rf) / (rf - 1.0)).sqrt();
        let err = (e2 / rf).sqrt();
        assert!((spread / err - 1.0).abs() < 0.15, "spread {spread} err {err}");
        assert!((mean - 1.25).abs() < 4.0 * spread / rf.sqrt());
    }

    #[test]
    fn jackknife_bins_never_straddle_chains() {
        // Two interleaved (round-major) chains: chain 0 is all 0, chain 1 all 1. Bins of
        // consecutive *rows* would each hold one 0 and one 1 and give zero error; bins
        // within a chain have means 0 or 1 and a nonzero error.
        let n_rounds = 100;
        let values: Vec<f64> = (0..2 * n_rounds).map(|i| (i % 2) as f64).collect();
        let ids: Vec<usize> = (0..2 * n_rounds).map(|i| i % 2).collect();
        let r = jackknife(&[&values[..]], Some(&ids), None, 2, |m| m[0]);
        assert_eq!(r.n_bins, 100);
        assert!((r.value - 0.5).abs() < 1e-12);
        // G bins of mean 0 or 1 (half each): err = sqrt((G−1)/G · G · (1/(G−1))² / 4 ·…)
        // = 0.5/sqrt(G−1).
        let expect = 0.5 / (99.0f64).sqrt();
        assert!((r.err - expect).abs() < 1e-12, "{} vs {expect}", r.err);
        let wrong = jackknife(&[&values[..]], None, None, 2, |m| m[0]);
        assert!(wrong.err < 1e-12);
    }

    #[test]
    fn jackknife_remainder_joins_last_bin() {
        let x: Vec<f64> = (0..23).map(|i| i as f64).collect();
        let r = jackknife(&[&x[..]], None, None, 5, |m| m[0]);
        assert_eq!(r.n_bins, 4); // 5 + 5 + 5 + 8
        assert!((r.value - 11.0).abs() < 1e-12);
    }

    #[test]
    fn jackknife_vec_matches_scalar_components() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let a: Vec<f64> = (0..1000).map(|_| normal(&mut rng)).collect();
        let b: Vec<f64> = (0..1000).map(|_| 3.0 + normal(&mut rng)).collect();
        let v = jackknife_vec(&[&a[..], &b[..]], None, None, 4, |m| vec![m[0], m[1] * m[1]]);
        let s = jackknife(&[&a[..], &b[..]], None, None, 4, |m| m[1] * m[1]);
        assert_eq!(v.value.len(), 2);
        assert!((v.value[1] - s.value).abs() < 1e-12 && (v.err[1] - s.err).abs() < 1e-12);
    }

    #[test]
    fn reweighting_normal_to_shifted_normal() {
        // Samples from p = N(0,1) reweighted to q = N(μ, s²):
        // log w = log q − log p = −(x−μ)²/(2s²) − ln s + x²/2 (constants cancel anyway).
        let (mu, s) = (0.5, 0.8);
        let n = 200_000;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let x: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let lw: Vec<f64> = x.iter().map(|v| -(v - mu) * (v - mu) / (2.0 * s * s) - s.ln() + v * v / 2.0).collect();
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let prim = [&x[..], &xx[..]];
        let mean = jackknife(&prim, None, Some(&lw), 10, |m| m[0]);
        let var = jackknife(&prim, None, Some(&lw), 10, |m| m[1] - m[0] * m[0]);
        assert!((mean.value - mu).abs() < 4.0 * mean.err, "{mean:?}");
        assert!((var.value - s * s).abs() < 4.0 * var.err, "{var:?}");
        // The weights must enlarge the error over the naive σ_q/sqrt(N) = s/sqrt(N).
        assert!(mean.err > s / (n as f64).sqrt());

        // ESS/N → E_p[w]²/E_p[w²] with E_p[w] = 1 and
        // E_p[w²] = ∫ q²/p dx = 1/(s sqrt(2−s²)) · exp(μ²/(2−s²))   (finite for s² < 2),
        // from completing the square in −(x−μ)²/s² + x²/2. Hence
        // ESS/N = s sqrt(2−s²) exp(−μ²/(2−s²)) ≈ 0.7763 for μ = 0.5, s = 0.8.
        let ess_exact = s * (2.0 - s * s).sqrt() * (-mu * mu / (2.0 - s * s)).exp();
        let ratio = ess(&lw) / n as f64;
        assert!((ratio / ess_exact - 1.0).abs() < 0.02, "{ratio} vs {ess_exact}");
        // Scale invariance: a huge common offset changes nothing.
        let shifted: Vec<f64> = lw.iter().map(|v| v + 1e4).collect();
        assert!((ess(&shifted) / n as f64 - ratio).abs() < 1e-9);
    }

    #[test]
    fn log_sum_exp_and_weights_are_stable() {
        let lw = [1000.0, 1000.0, f64::NEG_INFINITY];
        assert!((log_sum_exp(&lw) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(normalized_weights(&lw), vec![1.0, 1.0, 0.0]);
        assert!((ess(&lw) - 2.0).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(ess(&[]), 0.0);
        assert_eq!(ess(&[f64::NEG_INFINITY; 3]), 0.0);
        assert_eq!(normalized_weights(&[f64::INFINITY, 0.0, f64::NAN]), vec![1.0, 0.0, 0.0]);
        assert!((ess(&[0.0; 7]) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs_do_not_panic_or_nan() {
        fn finite(r: &GammaResult) -> bool {
            [r.mean, r.err, r.err_err, r.tau_int, r.tau_int_err]
                .iter()
                .chain(&r.gamma)
                .chain(&r.tau_int_of_w)
                .all(|v| v.is_finite())
        }
        let empty: [f64; 0] = [];
        let r = gamma_method(&empty);
        assert!(finite(&r) && r.n == 0 && r.status == Windowing::TooShort);
        let r = gamma_method(&[3.0]);
        assert!(finite(&r) && r.mean == 3.0 && r.err == 0.0);
        let r = gamma_method(&[1.0, 2.0]);
        assert!(finite(&r) && r.err > 0.0);
        let r = gamma_method(&[1.0, 2.0, 4.0, 3.0]);
        assert!(finite(&r));
        // Constant series, including one whose mean has rounding noise.
        for c in [0.0, 0.1, -7.3e5] {
            let r = gamma_method(&vec![c; 1000]);
            assert!(finite(&r));
            assert_eq!(r.status, Windowing::Constant);
            assert_eq!((r.tau_int, r.err), (0.5, 0.0));
        }
        // Alternating series: perfectly anticorrelated.
        let alt: Vec<f64> = (0..1000).map(|i| (i % 2) as f64).collect();
        let r = gamma_method(&alt);
        assert!(finite(&r) && r.err >= 0.0);
        // Many replicas of length one and empty replicas.
        let reps: Vec<Vec<f64>> = vec![vec![1.0], vec![], vec![2.0], vec![5.0]];
        assert!(finite(&gamma_method_replicas(&reps, 0.0)));
        // A linear trend or a step (thermalisation not discarded, tunnelling): τ_int is
        // of the order of the series length, which the error must reflect.
        for len in [3, 5, 20, 200, 2000] {
            let trend: Vec<f64> = (0..len).map(|i| i as f64).collect();
            let step: Vec<f64> = (0..len).map(|i| (2 * i / len) as f64).collect();
            for r in [gamma_method(&trend), gamma_method(&step)] {
                assert!(finite(&r));
                assert!(r.tau_int > len as f64 / 10.0, "{len}: {r:?}");
            }
        }

        // Jackknife.
        let no_series: [&[f64]; 1] = [&[]];
        let j = jackknife(&no_series, None, None, 3, |m| m[0]);
        assert_eq!((j.value, j.err, j.n_bins), (0.0, 0.0, 0));
        let j = jackknife(&[&[2.0][..]], None, None, 3, |m| m[0]);
        assert_eq!((j.value, j.err, j.n_bins), (2.0, 0.0, 0));
        let j = jackknife(&[&[2.0, 4.0][..]], None, None, 0, |m| m[0]);
        assert!((j.value - 3.0).abs() < 1e-12 && j.err > 0.0 && j.n_bins == 2);
        let j = jackknife(&[vec![1.0; 50]], None, None, 5, |m| m[0]);
        assert_eq!((j.value, j.err), (1.0, 0.0));
        let lw = [f64::NEG_INFINITY; 4];
        let j = jackknife(&[&[1.0, 2.0, 3.0, 4.0][..]], None, Some(&lw), 1, |m| m[0]);
        assert_eq!((j.value, j.err, j.n_bins), (0.0, 0.0, 0));
        // All weight in one bin: the sample without it is skipped, no NaN.
        let lw = [0.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        let j = jackknife(&[&[1.0, 2.0, 3.0, 4.0][..]], None, Some(&lw), 1, |m| m[0]);
        assert!(j.value == 1.0 && j.err.is_finite());

        // Bin size helper.
        assert_eq!(bin_size_from_tau(0.5, 10_000), 1);
        assert_eq!(bin_size_from_tau(0.3, 10_000), 1);
        assert_eq!(bin_size_from_tau(5.0, 10_000), 46);
        assert_eq!(bin_size_from_tau(1e9, 10_000), 500);
        assert_eq!(bin_size_from_tau(f64::NAN, 10_000), 500);
        assert_eq!(bin_size_from_tau(3.0, 0), 1);

        let s = series_summary(&[], None);
        assert!(finite(&s.gamma) && s.bin_size == 1 && s.jackknife.n_bins == 0);
    }

    #[test]
    fn series_summary_agrees_with_gamma_method() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
        let a = ar1(&mut rng, 0.9, 20_000);
        let b = ar1(&mut rng, 0.9, 20_000);
        let values: Vec<f64> = a.iter().zip(&b).flat_map(|(p, q)| [*p, *q]).collect();
        let ids: Vec<usize> = (0..values.len()).map(|i| i % 2).collect();
        let s = series_summary(&values, Some(&ids));
        assert_eq!(s.bin_size, bin_size_from_tau(s.gamma.tau_int, 20_000));
        assert!(s.bin_size > 50);
        assert!((s.jackknife.value - s.gamma.mean).abs() < 1e-12);
        // Jackknife with ≈ 10 τ bins: error ≈ 5 % low, plus ≈ 1/sqrt(2·G) noise.
        let ratio = s.jackknife.err / s.gamma.err;
        assert!(ratio > 0.75 && ratio < 1.15, "jackknife/gamma = {ratio}");
    }

    /// One configuration carrying e^{1000} times the weight of the rest: the estimate is that
    /// configuration's value, and its jackknife error must show that one draw decides it
    /// (leaving it out gives the rest's mean), not collapse to zero through underflow.
    #[test]
    fn dominant_weight_gives_a_large_error_not_zero() {
        let n = 200;
        let x: Vec<f64> = (0..n).map(|i| if i == 17 { 5.0 } else { (i % 7) as f64 / 7.0 }).collect();
        let lw: Vec<f64> = (0..n).map(|i| if i == 17 { 1000.0 } else { 0.0 }).collect();
        let est = jackknife(&[x.clone()], None, Some(&lw), 1, |m| m[0]);
        assert!((est.value - 5.0).abs() < 1e-9, "{}", est.value);
        assert!(est.err > 0.1, "error {} should reflect the single dominant draw", est.err);
    }

    /// Wolff's δρ(t) is the spread of the estimated ρ(t) over independent chains: 200 AR(1)
    /// chains (ρ = 0.7, N = 2000), at t = 1 and t = 4. The sample standard deviation of 200
    /// draws is itself uncertain by 5 %; 20 % allows four of those and the approximation.
    #[test]
    fn rho_errors_match_the_spread_of_rho_over_chains() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let runs: Vec<GammaResult> = (0..200).map(|_| gamma_method(&ar1(&mut rng, 0.7, 2000))).collect();
        for t in [1, 4] {
            let est: Vec<f64> = runs.iter().map(|r| r.gamma[t]).collect();
            let mean = est.iter().sum::<f64>() / est.len() as f64;
            let sd = (est.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (est.len() - 1) as f64).sqrt();
            let predicted = runs.iter().map(|r| r.rho_errors()[t]).sum::<f64>() / runs.len() as f64;
            assert!((predicted / sd - 1.0).abs() < 0.2, "t = {t}: predicted {predicted:.4}, spread {sd:.4}");
            assert_eq!(runs[0].rho_errors()[0], 0.0);
        }
    }
}
