//! Thermalisation is checked, not assumed.
//!
//! For each chain we keep the action density and the theory's observable (φ⁴: |M|,
//! `Theory::monitor_name`) of every thermalisation trajectory.
//! At the end we compare their means over the third and the fourth quarter: an
//! equilibrated chain shows no difference beyond the errors. With several chains the
//! error comes from the spread of the per-chain differences (chains are independent, so
//! this is honest whatever the autocorrelation); with fewer than four chains it comes
//! from block means within each chain.
//!
//! Mixed starts (even chains ordered, odd chains random) also compare the two groups.

use serde::{Deserialize, Serialize};

/// Differences beyond this many standard errors count as drift.
pub const DRIFT_SIGMAS: f64 = 3.0;

/// HMC acceptance below this over the last quarter of thermalisation fails the verdict:
/// chains that (almost) never move pass the drift check trivially.
pub const LOW_ACCEPTANCE: f64 = 0.05;

/// Per-chain history of the thermalisation phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChainHistory {
    pub hot_start: bool,
    pub action_density: Vec<f64>,
    /// The theory's |density| of its thermalisation observable (φ⁴: |M|).
    pub monitor: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub observable: String,
    pub first: f64,
    pub second: f64,
    pub diff: f64,
    pub err: f64,
}

impl Comparison {
    pub fn sigmas(&self) -> f64 {
        if self.err > 0.0 {
            self.diff.abs() / self.err
        } else if self.diff == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    }
    /// NaN (a history with NaN in it) fails: no verdict says yes over numbers that are not.
    pub fn fails(&self) -> bool {
        !(self.sigmas() <= DRIFT_SIGMAS)
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// Mean and squared standard error from `n_blocks` block means.
fn block_mean_err2(x: &[f64], n_blocks: usize) -> (f64, f64) {
    let b = (x.len() / n_blocks).max(1);
    let means: Vec<f64> = x.chunks(b).filter(|c| c.len() == b).map(mean).collect();
    let m = mean(&means);
    let k = means.len();
    if k < 2 {
        return (mean(x), 0.0);
    }
    let var = means.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (k - 1) as f64;
    (mean(x), var / k as f64)
}

/// Third-quarter against fourth-quarter means of one observable over all chains.
pub fn quarter_drift(observable: &str, series: &[&[f64]]) -> Comparison {
    let n = series.first().map_or(0, |s| s.len());
    let (q3, q4) = (n / 2..3 * n / 4, 3 * n / 4..n);
    let firsts: Vec<f64> = series.iter().map(|s| mean(&s[q3.clone()])).collect();
    let seconds: Vec<f64> = series.iter().map(|s| mean(&s[q4.clone()])).collect();
    let diffs: Vec<f64> = firsts.iter().zip(&seconds).map(|(a, b)| b - a).collect();
    let k = series.len();
    let err = if k >= 4 {
        let d = mean(&diffs);
        (diffs.iter().map(|x| (x - d).powi(2)).sum::<f64>() / ((k - 1) * k) as f64).sqrt()
    } else {
        let e2: f64 =
            series.iter().map(|s| block_mean_err2(&s[q3.clone()], 5).1 + block_mean_err2(&s[q4.clone()], 5).1).sum();
        e2.sqrt() / k as f64
    };
    Comparison { observable: observable.into(), first: mean(&firsts), second: mean(&seconds), diff: mean(&diffs), err }
}

/// Ordered-start chains against random-start chains, last-quarter means.
pub fn start_comparison(observable: &str, series: &[&[f64]], hot: &[bool]) -> Option<Comparison> {
    let n = series.first().map_or(0, |s| s.len());
    let q4 = 3 * n / 4..n;
    let group = |want: bool| -> Vec<f64> {
        series.iter().zip(hot).filter(|(_, &h)| h == want).map(|(s, _)| mean(&s[q4.clone()])).collect()
    };
    let (cold, hotm) = (group(false), group(true));
    if cold.len() < 2 || hotm.len() < 2 {
        return None;
    }
    let se2 = |v: &[f64]| {
        let m = mean(v);
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ((v.len() - 1) * v.len()) as f64
    };
    let (a, b) = (mean(&cold), mean(&hotm));
    Some(Comparison {
        observable: observable.into(),
        first: a,
        second: b,
        diff: b - a,
        err: (se2(&cold) + se2(&hotm)).sqrt(),
    })
}

/// The verdict on a thermalisation phase, logged and stored in the output file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThermReport {
    pub n_therm: usize,
    pub drift: Vec<Comparison>,
    pub starts: Vec<Comparison>,
    /// HMC acceptance over the last quarter (absent in reports written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<f64>,
}

impl ThermReport {
    /// `monitor` names the histories' second observable (`Theory::monitor_name`).
    pub fn from_histories(hist: &[ChainHistory], monitor: &str) -> Self {
        let n_therm = hist.first().map_or(0, |h| h.action_density.len());
        let s: Vec<&[f64]> = hist.iter().map(|h| h.action_density.as_slice()).collect();
        let m: Vec<&[f64]> = hist.iter().map(|h| h.monitor.as_slice()).collect();
        let hot: Vec<bool> = hist.iter().map(|h| h.hot_start).collect();
        let mut starts = Vec::new();
        if n_therm >= 8 {
            starts.extend(start_comparison("action_density", &s, &hot));
            starts.extend(start_comparison(monitor, &m, &hot));
        }
        let drift = if n_therm >= 8 {
            vec![quarter_drift("action_density", &s), quarter_drift(monitor, &m)]
        } else {
            Vec::new()
        };
        ThermReport { n_therm, drift, starts, acceptance: None }
    }

    pub fn drifting(&self) -> bool {
        self.drift.iter().any(Comparison::fails)
    }

    pub fn starts_disagree(&self) -> bool {
        self.starts.iter().any(Comparison::fails)
    }

    pub fn low_acceptance(&self) -> bool {
        self.acceptance.is_some_and(|a| a < LOW_ACCEPTANCE)
    }

    /// The verdict stored as `therm_ok`. Not what `auto` extends on: more trajectories do
    /// not raise the acceptance.
    pub fn ok(&self) -> bool {
        self.equilibrated() && !self.low_acceptance()
    }

    pub fn equilibrated(&self) -> bool {
        !self.drifting() && !self.starts_disagree()
    }

    /// Why `ok` is false, in words (empty when it is true).
    pub fn failures(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.drifting() {
            v.push("the drift check failed".to_string());
        }
        if self.starts_disagree() {
            v.push("cold and hot starts disagree".to_string());
        }
        if self.low_acceptance() {
            v.push(format!("acceptance {:.4} is below {} %", self.acceptance.unwrap_or(0.0), 100.0 * LOW_ACCEPTANCE));
        }
        v
    }

    pub fn lines(&self) -> Vec<String> {
        let line = |c: &Comparison, first: &str, second: &str, alarm: &str| {
            format!(
                "  {:<15} {first} {:.6}, {second} {:.6}: diff {:+.2e} ± {:.1e} ({:.1} σ){}",
                c.observable,
                c.first,
                c.second,
                c.diff,
                c.err,
                c.sigmas(),
                if c.fails() { alarm } else { "" }
            )
        };
        let drift = self.drift.iter().map(|c| line(c, "3rd quarter", "4th quarter", "  <-- STILL DRIFTING"));
        let starts = self.starts.iter().map(|c| line(c, "cold starts", "hot starts", "  <-- STARTS DISAGREE"));
        let acc = self.acceptance.map(|a| {
            let alarm = if self.low_acceptance() { "  <-- ACCEPTANCE TOO LOW" } else { "" };
            format!("  {:<15} {a:.4} over the last quarter{alarm}", "acceptance")
        });
        drift.chain(starts).chain(acc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_series_pass_and_trends_fail() {
        // Deterministic pseudo-noise around a constant: no drift.
        let noise = |c: usize, t: usize| (((c * 7919 + t * 104729) % 1000) as f64 / 1000.0 - 0.5) * 0.1;
        let flat: Vec<Vec<f64>> = (0..8).map(|c| (0..400).map(|t| 1.0 + noise(c, t)).collect()).collect();
        let refs: Vec<&[f64]> = flat.iter().map(|v| v.as_slice()).collect();
        assert!(!quarter_drift("x", &refs).fails());
        // A relaxation that is still going: exp(-t/300) approach.
        let relax: Vec<Vec<f64>> =
            (0..8).map(|c| (0..400).map(|t| 1.0 - (-(t as f64) / 300.0).exp() + noise(c, t)).collect()).collect();
        let refs: Vec<&[f64]> = relax.iter().map(|v| v.as_slice()).collect();
        assert!(quarter_drift("x", &refs).fails());
        // The same with two chains uses block errors and still sees it.
        assert!(quarter_drift("x", &refs[..2]).fails());
    }

    #[test]
    fn start_groups_compared() {
        let hist: Vec<ChainHistory> = (0..8)
            .map(|c| ChainHistory {
                hot_start: c % 2 == 1,
                action_density: (0..100)
                    .map(|t| if c % 2 == 1 { 2.0 } else { 1.0 } + 0.01 * ((c + t) % 3) as f64)
                    .collect(),
                monitor: vec![1.0; 100],
            })
            .collect();
        let r = ThermReport::from_histories(&hist, "abs_m");
        assert!(r.starts_disagree());
        assert!(!r.drifting());
    }

    /// Chains that never move pass the drift check; the acceptance fails the verdict.
    #[test]
    fn frozen_chains_fail_on_acceptance() {
        let hist: Vec<ChainHistory> = (0..8)
            .map(|c| ChainHistory { hot_start: false, action_density: vec![c as f64; 100], monitor: vec![1.0; 100] })
            .collect();
        let mut r = ThermReport::from_histories(&hist, "abs_m");
        assert!(r.ok());
        r.acceptance = Some(0.0);
        assert!(!r.ok() && r.equilibrated() && r.low_acceptance());
        assert!(r.failures()[0].contains("acceptance 0.0000"), "{:?}", r.failures());
        assert!(r.lines().last().unwrap().contains("ACCEPTANCE TOO LOW"));
        r.acceptance = Some(0.5);
        assert!(r.ok() && r.failures().is_empty());
    }
}
