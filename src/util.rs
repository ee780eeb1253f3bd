//! Progress reporting and Slurm signals.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress of long work, shown by rank 0 only: a bar on a terminal, plain lines with
/// rate and ETA every `LATDIFF_LOG_SECONDS` (default 30 s) in batch logs.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    unit: &'static str,
    start: Instant,
    last_line: Instant,
    interval: Duration,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64, unit: &'static str, enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        let secs = std::env::var("LATDIFF_LOG_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(30.0);
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            unit,
            start: Instant::now(),
            last_line: Instant::now(),
            interval: Duration::from_secs_f64(secs.max(0.0)),
            bar,
            enabled,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.inc_with(n, "");
    }

    /// Advances by `n`; `extra` is appended to batch-log lines (e.g. the current loss).
    pub fn inc_with(&mut self, n: u64, extra: &str) {
        self.done += n;
        if !self.enabled {
            return;
        }
        if let Some(b) = &self.bar {
            b.set_position(self.done);
            return;
        }
        if self.last_line.elapsed() >= self.interval && self.done < self.total {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(extra));
        }
    }

    fn line(&self, extra: &str) -> String {
        let el = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / el.max(1e-9);
        let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-12);
        format!(
            "[{}] {}/{} {} ({:.1}%), {:.3} {}/s, elapsed {}, eta {}{}{}",
            self.label,
            self.done,
            self.total,
            self.unit,
            100.0 * self.done as f64 / self.total.max(1) as f64,
            rate,
            self.unit,
            hms(el),
            hms(eta),
            if extra.is_empty() { "" } else { ", " },
            extra
        )
    }

    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Set by SIGTERM or SIGUSR1 (Slurm's warning before the time limit); long loops poll it,
/// finish their step, checkpoint and exit 0.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn install() -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        StopFlag(flag)
    }

    pub fn none() -> Self {
        StopFlag(Arc::new(AtomicBool::new(false)))
    }

    /// Raises the flag by hand (tests; a wrapper that wants a clean stop).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// "value ± error" rounded to the error: the error to two significant digits and the value
/// to the same decimal place (`1.0000 ± 0.0011`); "value ± n/a" with six significant digits
/// when the error is zero, negligible (below 1e-10 of the value) or undefined, so that no
/// bar reads as exact; "undefined" for an undefined value.
pub fn fmt_pm(value: f64, err: f64) -> String {
    if !value.is_finite() {
        return "undefined".into();
    }
    if !(err.is_finite() && err > 1e-10 * value.abs()) {
        return format!("{} ± n/a", fmt_sig(value, 6));
    }
    let mag = err.log10().floor() as i32;
    if (-6..4).contains(&mag) && value.abs() < 1e6 {
        let dec = (1 - mag).max(0) as usize;
        format!("{value:.dec$} ± {err:.dec$}")
    } else {
        format!("{value:.4e} ± {err:.1e}")
    }
}

/// `x` to `digits` significant digits, in plain decimals between 1e-4 and 1e6 and in
/// exponent form outside; 0 is "0".
pub fn fmt_sig(x: f64, digits: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if (-4..6).contains(&mag) {
        let dec = (digits as i32 - 1 - mag).max(0) as usize;
        format!("{x:.dec$}")
    } else {
        format!("{x:.prec$e}", prec = digits.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::{fmt_pm, fmt_sig};

    /// Rounded to the error; an undefined or zero error is n/a, never an exact-looking bar.
    #[test]
    fn values_are_rounded_to_their_errors() {
        assert_eq!(fmt_pm(1.000004686579223, 0.000010818242639809385), "1.000005 ± 0.000011");
        assert_eq!(fmt_pm(1.0000, 0.0011), "1.0000 ± 0.0011");
        assert_eq!(fmt_pm(1.2346, 0.012), "1.235 ± 0.012");
        assert_eq!(fmt_pm(123.456, 2.5), "123.5 ± 2.5");
        assert_eq!(fmt_pm(12345.6, 250.0), "12346 ± 250");
        assert_eq!(fmt_pm(1.5e7, 3.0e5), "1.5000e7 ± 3.0e5");
        assert_eq!(fmt_pm(1.25, f64::NAN), "1.25000 ± n/a");
        assert_eq!(fmt_pm(1.25, 0.0), "1.25000 ± n/a");
        assert_eq!(fmt_pm(1.25, 7.9e-17), "1.25000 ± n/a");
        assert_eq!(fmt_pm(0.0, 0.0), "0 ± n/a");
        assert_eq!(fmt_pm(f64::NAN, 0.1), "undefined");
        assert_eq!(fmt_sig(0.4892367906066536, 3), "0.489");
        assert_eq!(fmt_sig(2.5e-7, 3), "2.50e-7");
    }
}
