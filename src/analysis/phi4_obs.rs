//! φ⁴ observables for `latdiff analyze` (definitions also in README.md, "Analysis").
//!
//! Lattice L_t × L_x, V = L_t L_x, site (t, x), field φ as stored (f32, promoted to f64).
//!
//! Primaries per configuration:
//! * `m` M = (1/V) Σ φ, `abs_m` |M|, `m2` M², `m4` M⁴;
//! * `phi2` (1/V) Σ φ²;
//! * `action_density` S[φ]/V with S recomputed in f64 from the stored configuration and
//!   the file's couplings by [`Phi4`] (never read from /action, so HMC files, which store
//!   S of the f64 field, and sampler files are treated identically);
//! * `gp_x` |φ̃(0, 2π/L_x)|²/V and `gp_t` |φ̃(2π/L_t, 0)|²/V with φ̃(p) = Σ_x e^{ip·x} φ_x;
//! * `c_t{t}` (1/V) Σ_{t0} Φ(t0) Φ(t0+t) for t = 0..=L_t/2, Φ(t) = Σ_x φ(t, x) the
//!   time-slice sum (C(t) = C(L_t − t) per configuration, so only half is stored).
//!
//! Derived quantities (functions of the weighted means ⟨·⟩):
//! * `m`, `abs_m`, `m2`, `phi2`, `action_density`: the means themselves;
//! * `chi` = V (⟨M²⟩ − ⟨M⟩²) (connected susceptibility), `chi_abs` = V (⟨M²⟩ − ⟨|M|⟩²);
//! * `binder` U_L = 1 − ⟨M⁴⟩ / (3 ⟨M²⟩²) (0 for Gaussian M, 2/3 for M = ±const);
//! * `xi2` ξ₂ = sqrt(G̃(0)/G̃(p_min) − 1) / (2 sin(p_min/2)), p_min = 2π/L_x, with the
//!   connected G̃(0) = χ and G̃(p_min) = ⟨gp_x⟩, averaged with ⟨gp_t⟩ on square lattices;
//!   undefined (NaN, JSON null, with a reason) when G̃(p_min) ≤ 0 or the ratio is ≤ 1,
//!   i.e. when the connected correlator does not fall off with momentum (e.g. the broken
//!   phase): a zero or imaginary length is not a measurement;
//! * `g_t` the connected zero-momentum correlator, t = 0..L_t−1:
//!   G(t) = ⟨C(t)⟩ − L_x ⟨M⟩² = Σ_x ⟨φ(t, x) φ(0, 0)⟩_c, so Σ_t G(t) = χ;
//! * `m_eff` for t = 1..=L_t/2: arccosh((G(t−1) + G(t+1)) / (2 G(t))), the cosh form that
//!   is exact for G(t) ∝ cosh(m (t − L_t/2)) on the periodic lattice; NaN when G(t) ≤ 0
//!   or the argument is < 1.

use super::observables::{DerivedSpec, Observables};
use crate::io::Ensemble;
use crate::lattice::Lattice;
use crate::theory::{Parametrisation, Phi4, Theory, TheoryAttrs};
use anyhow::{anyhow, Result};
use std::f64::consts::PI;

/// Indices of the fixed primaries.
pub const M: usize = 0;
pub const ABS_M: usize = 1;
pub const M2: usize = 2;
pub const M4: usize = 3;
pub const PHI2: usize = 4;
pub const ACTION_DENSITY: usize = 5;
pub const GP_X: usize = 6;
pub const GP_T: usize = 7;
/// First time-slice product C(0); C(t) is at `C_T + t` for t = 0..=L_t/2.
pub const C_T: usize = 8;
/// Index of ξ₂ in the output of `derived`.
const XI2: usize = 8;

/// φ⁴ observables on one lattice with one set of couplings.
#[derive(Clone, Debug)]
pub struct Phi4Observables {
    theory: Phi4,
    lat: Lattice,
    /// cos / sin of p_min x for x = 0..L_x, and of 2π t / L_t for t = 0..L_t.
    cx: Vec<f64>,
    sx: Vec<f64>,
    ct: Vec<f64>,
    st: Vec<f64>,
}

impl Phi4Observables {
    pub fn new(lat: Lattice, param: Parametrisation) -> Self {
        let trig = |l: usize| -> (Vec<f64>, Vec<f64>) {
            (0..l).map(|i| ((2.0 * PI * i as f64 / l as f64).cos(), (2.0 * PI * i as f64 / l as f64).sin())).unzip()
        };
        let (cx, sx) = trig(lat.lx);
        let (ct, st) = trig(lat.lt);
        Phi4Observables { theory: Phi4::new(lat, param), lat, cx, sx, ct, st }
    }

    /// Observables for an ensemble file, from its `theory`, `parametrisation` and coupling
    /// attributes (`kappa`/`lambda` or `m2`/`lambda`). Errors name the missing attribute.
    pub fn from_ensemble(e: &Ensemble) -> Result<Self> {
        Ok(Self::new(e.lattice, param_from_attrs(e)?))
    }

    pub fn lattice(&self) -> Lattice {
        self.lat
    }

    pub fn param(&self) -> Parametrisation {
        self.theory.param
    }

    fn n_c(&self) -> usize {
        self.lat.lt / 2 + 1
    }

    /// p_min = 2π/L_x.
    pub fn p_min(&self) -> f64 {
        2.0 * PI / self.lat.lx as f64
    }
}

/// The φ⁴ couplings recorded in an ensemble's attributes (read by the theory).
pub fn param_from_attrs(e: &Ensemble) -> Result<Parametrisation> {
    e.theory().map_err(|err| anyhow!("{err} (analyze supports phi4 only)"))
}

impl Observables for Phi4Observables {
    fn volume(&self) -> usize {
        self.lat.volume()
    }

    fn primary_names(&self) -> Vec<String> {
        let mut v: Vec<String> = ["m", "abs_m", "m2", "m4", "phi2", "action_density", "gp_x", "gp_t"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend((0..self.n_c()).map(|t| format!("c_t{t}")));
        v
    }

    fn primaries(&self, cfg: &[f64], out: &mut [f64]) {
        let (lt, lx) = (self.lat.lt, self.lat.lx);
        let vf = self.lat.volume() as f64;
        let mut slice = vec![0.0; lt]; // Φ(t)
        let mut column = vec![0.0; lx]; // Σ_t φ(t, x)
        let mut sum2 = 0.0;
        for t in 0..lt {
            let row = &cfg[t * lx..][..lx];
            let mut s = 0.0;
            for (x, &p) in row.iter().enumerate() {
                s += p;
                sum2 += p * p;
                column[x] += p;
            }
            slice[t] = s;
        }
        let m = slice.iter().sum::<f64>() / vf;
        let (s, _) = self.theory.action_and_sum(cfg);
        let mode = |vals: &[f64], c: &[f64], sn: &[f64]| -> f64 {
            let re: f64 = vals.iter().zip(c).map(|(v, c)| v * c).sum();
            let im: f64 = vals.iter().zip(sn).map(|(v, s)| v * s).sum();
            // Below the rounding noise of the sums the mode is zero (e.g. a constant field),
            // not a tiny number that would make ξ₂ astronomically large instead of undefined.
            let noise = 16.0 * f64::EPSILON * vals.iter().map(|v| v.abs()).sum::<f64>();
            let re = if re.abs() <= noise { 0.0 } else { re };
            let im = if im.abs() <= noise { 0.0 } else { im };
            (re * re + im * im) / vf
        };
        out[M] = m;
        out[ABS_M] = m.abs();
        out[M2] = m * m;
        out[M4] = m * m * m * m;
        out[PHI2] = sum2 / vf;
        out[ACTION_DENSITY] = s / vf;
        out[GP_X] = mode(&column, &self.cx, &self.sx);
        out[GP_T] = mode(&slice, &self.ct, &self.st);
        for dt in 0..self.n_c() {
            let c: f64 = (0..lt).map(|t0| slice[t0] * slice[(t0 + dt) % lt]).sum();
            out[C_T + dt] = c / vf;
        }
    }

    fn derived_specs(&self) -> Vec<DerivedSpec> {
        let lt = self.lat.lt;
        vec![
            DerivedSpec::scalar("m", "<M>"),
            DerivedSpec::scalar("abs_m", "<|M|>"),
            DerivedSpec::scalar("m2", "<M^2>"),
            DerivedSpec::scalar("chi", "chi = V(<M^2>-<M>^2)"),
            DerivedSpec::scalar("chi_abs", "chi_abs = V(<M^2>-<|M|>^2)"),
            DerivedSpec::scalar("binder", "U_L = 1-<M^4>/(3<M^2>^2)"),
            DerivedSpec::scalar("phi2", "<phi^2>"),
            DerivedSpec::scalar("action_density", "<S>/V"),
            DerivedSpec::scalar("xi2", "xi_2"),
            DerivedSpec::array("g_t", "G(t)", (0..lt).map(|t| t as f64).collect()),
            DerivedSpec::array("m_eff", "m_eff(t)", (1..=lt / 2).map(|t| t as f64).collect()),
        ]
    }

    fn derived(&self, a: &[f64]) -> Vec<f64> {
        let (lt, lx) = (self.lat.lt, self.lat.lx);
        let vf = self.lat.volume() as f64;
        let chi = vf * (a[M2] - a[M] * a[M]);
        let chi_abs = vf * (a[M2] - a[ABS_M] * a[ABS_M]);
        let binder = 1.0 - a[M4] / (3.0 * a[M2] * a[M2]);
        let gp = self.g_p_min(a);
        let ratio = chi / gp;
        let xi2 =
            if gp > 0.0 && ratio > 1.0 { (ratio - 1.0).sqrt() / (2.0 * (self.p_min() / 2.0).sin()) } else { f64::NAN };
        let disc = lx as f64 * a[M] * a[M];
        let g: Vec<f64> = (0..lt).map(|t| a[C_T + t.min(lt - t)] - disc).collect();
        let mut out = vec![a[M], a[ABS_M], a[M2], chi, chi_abs, binder, a[PHI2], a[ACTION_DENSITY], xi2];
        out.extend(&g);
        for t in 1..=lt / 2 {
            let (gm, g0, gp) = (g[t - 1], g[t], g[(t + 1) % lt]);
            let arg = (gm + gp) / (2.0 * g0);
            // Rounding may put an exactly flat correlator a hair below 1.
            let arg = if arg < 1.0 && arg > 1.0 - 1e-12 { 1.0 } else { arg };
            out.push(if g0 > 0.0 && arg >= 1.0 { arg.acosh() } else { f64::NAN });
        }
        out
    }

    fn binning_primaries(&self) -> Vec<usize> {
        vec![ABS_M, M2, ACTION_DENSITY]
    }

    fn undefined_reason(&self, j: usize, a: &[f64]) -> Option<String> {
        if j != XI2 {
            return None;
        }
        let gp = self.g_p_min(a);
        let chi = self.lat.volume() as f64 * (a[M2] - a[M] * a[M]);
        if !(gp > 0.0) {
            Some(format!("G(p_min) = {gp:.4e} <= 0: no fluctuation at the lowest momentum"))
        } else if !(chi / gp > 1.0) {
            Some(format!(
                "G(p_min) = {gp:.4e} >= G(0) = chi = {chi:.4e}: the connected correlator does not fall off with momentum (e.g. broken phase)"
            ))
        } else {
            None
        }
    }

    fn values_per_site(&self) -> usize {
        1
    }

    fn theory_attrs(&self) -> TheoryAttrs {
        self.theory.attrs()
    }
}

impl Phi4Observables {
    /// G̃(p_min) from the means, averaged over both directions on square lattices.
    fn g_p_min(&self, a: &[f64]) -> f64 {
        if self.lat.is_square() {
            0.5 * (a[GP_X] + a[GP_T])
        } else {
            a[GP_X]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::Action;

    fn field(lat: Lattice, f: impl Fn(usize, usize) -> f64) -> Vec<f64> {
        (0..lat.lt).flat_map(|t| (0..lat.lx).map(move |x| (t, x))).map(|(t, x)| f(t, x)).collect()
    }

    /// Primaries against brute-force definitions on a random field (rectangular lattice).
    #[test]
    fn primaries_match_brute_force() {
        let lat = Lattice::new(6, 5);
        let p = Parametrisation::Hopping { kappa: 0.27, lambda: 0.1 };
        let o = Phi4Observables::new(lat, p);
        let phi = field(lat, |t, x| ((t * 7 + x * 3) as f64 * 0.37).sin() + 0.2);
        let mut out = vec![0.0; o.primary_names().len()];
        o.primaries(&phi, &mut out);
        let v = 30.0;
        let at = |t: usize, x: usize| phi[(t % 6) * 5 + x % 5];
        let m = phi.iter().sum::<f64>() / v;
        assert!((out[M] - m).abs() < 1e-14 && (out[M4] - m.powi(4)).abs() < 1e-14);
        assert!((out[ACTION_DENSITY] - Phi4::new(lat, p).action(&phi) / v).abs() < 1e-13);
        // |φ̃(p)|²/V by direct double sum.
        let dft = |pt: f64, px: f64| {
            let (mut re, mut im) = (0.0, 0.0);
            for t in 0..6 {
                for x in 0..5 {
                    let arg = pt * t as f64 + px * x as f64;
                    re += at(t, x) * arg.cos();
                    im += at(t, x) * arg.sin();
                }
            }
            (re * re + im * im) / v
        };
        assert!((out[GP_X] - dft(0.0, 2.0 * PI / 5.0)).abs() < 1e-12);
        assert!((out[GP_T] - dft(2.0 * PI / 6.0, 0.0)).abs() < 1e-12);
        // C(t) = (1/V) Σ_{t0} Σ_{x,y} φ(t0,x) φ(t0+t,y).
        for dt in 0..=3 {
            let mut c = 0.0;
            for t0 in 0..6 {
                for x in 0..5 {
                    for y in 0..5 {
                        c += at(t0, x) * at(t0 + dt, y);
                    }
                }
            }
            assert!((out[C_T + dt] - c / v).abs() < 1e-12, "C({dt})");
        }
    }

    /// A field with one Fourier mode: ξ₂ is known in closed form.
    #[test]
    fn xi2_of_single_fourier_mode() {
        let l = 8;
        let lat = Lattice::square(l);
        let o = Phi4Observables::new(lat, Parametrisation::Hopping { kappa: 0.1, lambda: 0.0 });
        // φ = ±1 + cos(2π x / L): two configurations so that ⟨M⟩ = 0, ⟨M²⟩ = 1.
        let mut sums = vec![0.0; o.primary_names().len()];
        for sign in [1.0, -1.0] {
            let phi = field(lat, |_, x| sign + (2.0 * PI * x as f64 / l as f64).cos());
            let mut out = vec![0.0; sums.len()];
            o.primaries(&phi, &mut out);
            for (s, v) in sums.iter_mut().zip(out) {
                *s += v / 2.0;
            }
        }
        let d = o.derived(&sums);
        // χ = V; G̃(p_x) = V/4, G̃(p_t) = 0, averaged: V/8; ξ₂ = sqrt(8 − 1)/(2 sin(π/L)).
        let xi = 7f64.sqrt() / (2.0 * (PI / l as f64).sin());
        assert!((d[8] - xi).abs() < 1e-10 * xi, "{} vs {xi}", d[8]);
    }

    /// ξ₂ is a length only where G̃(p) falls off from p = 0 to p_min; at and beyond equality
    /// (a zero or imaginary length) it is undefined, and says why.
    #[test]
    fn xi2_undefined_unless_the_correlator_falls_off() {
        let lat = Lattice::square(8);
        let o = Phi4Observables::new(lat, Parametrisation::Hopping { kappa: 0.1, lambda: 0.0 });
        let mut a = vec![0.0; o.primary_names().len()];
        a[M2] = 1.0; // χ = G̃(0) = V = 64
        for (gp, defined, why) in [
            (32.0, true, ""),
            (64.0, false, "does not fall off"),
            (100.0, false, "does not fall off"),
            (0.0, false, "<= 0"),
        ] {
            a[GP_X] = gp;
            a[GP_T] = gp;
            let xi = o.derived(&a)[XI2];
            assert_eq!(xi.is_finite(), defined, "G(p_min) = {gp}: xi2 = {xi}");
            let reason = o.undefined_reason(XI2, &a);
            assert_eq!(reason.is_none(), defined, "G(p_min) = {gp}: {reason:?}");
            assert!(reason.unwrap_or_default().contains(why));
        }
        assert_eq!(o.undefined_reason(XI2 - 1, &a), None);
    }
}
