//! U(1) gauge observables for `latdiff analyze` (definitions also in README.md, "Analysis").
//!
//! Configuration: link angles θ_μ(t, x), stored [2, L_t, L_x] (see `theory::u1`), promoted
//! to f64; V = L_t L_x plaquettes.
//!
//! Primaries per configuration:
//! * `plaquette` (1/V) Σ_P cos θ_P, `action_density` S/V = −β · plaquette;
//! * `q` the topological charge Q = (1/2π) Σ_P wrap(θ_P) (an integer), `q2` Q²;
//! * `w_r{R}_t{T}` the Wilson loop W(R, T) = (1/V) Σ_{t,x} cos(Σ of the angles around the
//!   R × T rectangle with corner (t, x)), R along x, T along t, for 1 ≤ R, T ≤ r_max =
//!   min(L/2, 8) (beyond 8 the loops of 2-D U(1) are ~⟨cos θ_P⟩^{RT}: noise).
//!
//! Derived quantities: the means `plaquette`, `action_density`, `q`; `chi_t` = ⟨Q²⟩/V
//! (⟨Q⟩ = 0 by charge conjugation, so not subtracted, as is usual); `wilson_r{R}` W(R, T)
//! for T = 1..=r_max; `creutz` χ(R, R) = −ln[W(R,R) W(R−1,R−1) / (W(R,R−1) W(R−1,R))] for
//! R = 2..=r_max (the string tension for large loops; in 2-D U(1) exactly
//! −ln⟨cos θ_P⟩ in infinite volume).

use super::observables::{DerivedSpec, Observables, Primaries};
use super::topology::{Topology, Q_EXACT};
use crate::lattice::Lattice;
use crate::theory::{u1_exact, Theory, TheoryAttrs, U1};

pub const PLAQUETTE: usize = 0;
pub const ACTION_DENSITY: usize = 1;
pub const Q: usize = 2;
pub const Q2: usize = 3;
/// First Wilson loop primary, W(1, 1); W(R, T) is at `W0 + (R−1) r_max + (T−1)`.
const W0: usize = 4;
const R_MAX_CAP: usize = 8;

#[derive(Clone, Debug)]
pub struct U1Observables {
    theory: U1,
    r_max: usize,
}

impl U1Observables {
    pub fn new(lat: Lattice, beta: f64) -> Self {
        U1Observables { theory: U1::new(lat, beta), r_max: (lat.lt.min(lat.lx) / 2).clamp(1, R_MAX_CAP) }
    }

    pub fn beta(&self) -> f64 {
        self.theory.beta
    }

    pub fn r_max(&self) -> usize {
        self.r_max
    }

    fn w_index(&self, r: usize, t: usize) -> usize {
        W0 + (r - 1) * self.r_max + (t - 1)
    }

    /// W(R, T) for every 1 ≤ R, T ≤ r_max, in `w_index` order. Straight lines first (the
    /// sum of R x-links from (t, x), of T t-links from (t, x)), then each rectangle is four
    /// lines: O(V r_max²) instead of O(V r_max³).
    fn wilson_loops(&self, theta: &[f64], out: &mut [f64]) {
        let lat = self.theory.lattice;
        let (lt, lx, v, n) = (lat.lt, lat.lx, lat.volume(), self.r_max);
        let (time, space) = theta.split_at(v);
        let site = |t: usize, x: usize| (t % lt) * lx + x % lx;
        // x_line[R−1][s]: Σ_{i<R} θ_1(t, x+i); t_line[T−1][s]: Σ_{j<T} θ_0(t+j, x).
        let mut x_line = vec![space.to_vec()];
        let mut t_line = vec![time.to_vec()];
        for k in 1..n {
            let (px, pt) = (&x_line[k - 1], &t_line[k - 1]);
            let nx: Vec<f64> = (0..v).map(|s| px[s] + space[site(s / lx, s % lx + k)]).collect();
            let nt: Vec<f64> = (0..v).map(|s| pt[s] + time[site(s / lx + k, s % lx)]).collect();
            x_line.push(nx);
            t_line.push(nt);
        }
        for r in 1..=n {
            for t in 1..=n {
                let (xl, tl) = (&x_line[r - 1], &t_line[t - 1]);
                let mut c = 0.0;
                for s in 0..v {
                    let (st, sx) = (s / lx, s % lx);
                    // Counter-clockwise: along t at x, along x at t+T, back along t at x+R,
                    // back along x at t (the plaquette's orientation for R = T = 1).
                    let a = tl[s] + xl[site(st + t, sx)] - tl[site(st, sx + r)] - xl[s];
                    c += a.cos();
                }
                out[self.w_index(r, t)] = c / v as f64;
            }
        }
    }
}

impl Observables for U1Observables {
    fn volume(&self) -> usize {
        2 * self.theory.lattice.volume()
    }

    fn primary_names(&self) -> Vec<String> {
        let mut v: Vec<String> = ["plaquette", "action_density", "q", "q2"].iter().map(|s| s.to_string()).collect();
        for r in 1..=self.r_max {
            v.extend((1..=self.r_max).map(|t| format!("w_r{r}_t{t}")));
        }
        v
    }

    fn primaries(&self, theta: &[f64], out: &mut [f64]) {
        let th = &self.theory;
        let plaq = th.mean_plaquette(theta);
        let q = th.topological_charge(theta);
        out[PLAQUETTE] = plaq;
        out[ACTION_DENSITY] = -th.beta * plaq;
        out[Q] = q;
        out[Q2] = q * q;
        self.wilson_loops(theta, out);
    }

    fn derived_specs(&self) -> Vec<DerivedSpec> {
        let n = self.r_max;
        let mut v = vec![
            DerivedSpec::scalar("plaquette", "<cos theta_P>"),
            DerivedSpec::scalar("action_density", "S/V"),
            DerivedSpec::scalar("q", "<Q>"),
            DerivedSpec::scalar("chi_t", "chi_t = <Q^2>/V"),
        ];
        for r in 1..=n {
            // Tables print component T as "W_R{r}(T)".
            v.push(DerivedSpec::array(
                &format!("wilson_r{r}"),
                &format!("W_R{r}(t)"),
                (1..=n).map(|t| t as f64).collect(),
            ));
        }
        if n >= 2 {
            v.push(DerivedSpec::array("creutz", "creutz(t)", (2..=n).map(|r| r as f64).collect()));
        }
        v
    }

    fn derived(&self, m: &[f64]) -> Vec<f64> {
        let n = self.r_max;
        let vf = self.theory.lattice.volume() as f64;
        let mut out = vec![m[PLAQUETTE], m[ACTION_DENSITY], m[Q], m[Q2] / vf];
        for r in 1..=n {
            out.extend((1..=n).map(|t| m[self.w_index(r, t)]));
        }
        let w = |r: usize, t: usize| m[self.w_index(r, t)];
        for r in 2..=n {
            let ratio = w(r, r) * w(r - 1, r - 1) / (w(r, r - 1) * w(r - 1, r));
            out.push(if ratio > 0.0 { -ratio.ln() } else { f64::NAN });
        }
        out
    }

    /// The plaquette and Q² (Q is the slowest mode at large β).
    fn binning_primaries(&self) -> Vec<usize> {
        vec![PLAQUETTE, Q2]
    }

    fn undefined_reason(&self, j: usize, _means: &[f64]) -> Option<String> {
        let first_creutz = 4 + self.r_max * self.r_max;
        (j >= first_creutz).then(|| "a Wilson loop in the ratio is not positive (noise)".to_string())
    }

    fn values_per_site(&self) -> usize {
        2
    }

    fn theory_attrs(&self) -> TheoryAttrs {
        self.theory.attrs()
    }

    fn topology(&self, prim: &Primaries, chain: Option<&[usize]>) -> Result<Option<Topology>, String> {
        let q = integer_charges(prim.column("q").unwrap_or_default())?;
        let changed_fraction = charge_change_fraction(&q, chain);
        let chain = chain.map_or_else(|| vec![0; q.len()], <[usize]>::to_vec);
        let (beta, v) = (self.theory.beta, self.theory.lattice.volume());
        let exact =
            vec![("plaquette", u1_exact::plaquette(beta, v)), ("chi_t", u1_exact::topological_susceptibility(beta, v))];
        let p = u1_exact::charge_distribution(beta, v, Q_EXACT);
        let exact_p_q = (-(Q_EXACT as i64)..=Q_EXACT as i64).map(|q| (q, p[q.unsigned_abs() as usize])).collect();
        Ok(Some(Topology { q, chain, changed_fraction, exact, exact_p_q }))
    }
}

/// Per configuration, Q rounded to the nearest integer, or an error naming the first
/// configuration whose Q is not an integer to 1e−6 (not a valid U(1) field on the torus).
pub fn integer_charges(q: &[f64]) -> Result<Vec<i64>, String> {
    q.iter()
        .enumerate()
        .map(|(i, &x)| {
            crate::theory::as_integer(x)
                .ok_or_else(|| format!("configuration {i}: topological charge {x} is not an integer (to 1e-6)"))
        })
        .collect()
}

/// The fraction of successive saved configurations of a chain whose Q differs, over all
/// chains (`chain[i]` the chain of row i; rows of a chain in file order): 0 when the
/// topology is frozen.
pub fn charge_change_fraction(q: &[i64], chain: Option<&[usize]>) -> f64 {
    let mut last: std::collections::HashMap<usize, i64> = std::collections::HashMap::new();
    let (mut pairs, mut changed) = (0usize, 0usize);
    for (i, &qi) in q.iter().enumerate() {
        let c = chain.map_or(0, |c| c[i]);
        if let Some(prev) = last.insert(c, qi) {
            pairs += 1;
            changed += usize::from(prev != qi);
        }
    }
    if pairs == 0 {
        f64::NAN
    } else {
        changed as f64 / pairs as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::Theory;

    /// W(1, 1) is the plaquette; every loop is gauge invariant; a loop on a pure-gauge
    /// configuration is 1; Q, Q² and χ_t's normalisation.
    #[test]
    fn loops_plaquette_and_gauge_invariance() {
        let lat = Lattice::new(6, 8);
        let o = U1Observables::new(lat, 2.0);
        assert_eq!(o.r_max(), 3);
        let mut rng = crate::rng::stream(9, crate::rng::Domain::Misc, 0);
        let th = U1::new(lat, 2.0);
        let mut theta = th.hot_start(&mut rng);
        let k = o.primary_names().len();
        let (mut a, mut b) = (vec![0.0; k], vec![0.0; k]);
        o.primaries(&theta, &mut a);
        assert!((a[o.w_index(1, 1)] - a[PLAQUETTE]).abs() < 1e-12);
        assert!((a[ACTION_DENSITY] + 2.0 * a[PLAQUETTE]).abs() < 1e-12);
        let alpha = th.hot_start(&mut rng);
        th.gauge_transform(&mut theta, &alpha[..lat.volume()]);
        o.primaries(&theta, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
        // A pure gauge: every loop is exactly 1, Q = 0.
        let mut pure = vec![0.0; 2 * lat.volume()];
        th.gauge_transform(&mut pure, &alpha[..lat.volume()]);
        o.primaries(&pure, &mut b);
        assert!(b[W0..].iter().all(|w| (w - 1.0).abs() < 1e-12), "{:?}", &b[W0..]);
        assert!(b[Q].abs() < 1e-12, "Q of a pure gauge: {}", b[Q]);
        // One time link at 0.5, the rest 0: it lies on the left edge of T loops of shape
        // R × T and on the right edge of T others, which see ±0.5; the others see 0.
        let mut one = vec![0.0; 2 * lat.volume()];
        one[0] = 0.5;
        o.primaries(&one, &mut b);
        let v = lat.volume() as f64;
        for (r, t) in [(1, 1), (2, 1), (3, 2)] {
            let edge = 2.0 * t as f64;
            assert!((b[o.w_index(r, t)] - (v - edge + edge * 0.5f64.cos()) / v).abs() < 1e-12, "W({r}, {t})");
        }
        let d = o.derived(&a);
        assert_eq!(d.len(), o.derived_specs().iter().map(|s| s.len()).sum::<usize>());
        assert!((d[3] - a[Q2] / lat.volume() as f64).abs() < 1e-15);
    }

    #[test]
    fn charges_and_freezing() {
        assert_eq!(integer_charges(&[1.0 + 1e-9, -2.0, 0.0]), Ok(vec![1, -2, 0]));
        assert!(integer_charges(&[0.0, 0.5]).unwrap_err().contains("configuration 1"));
        // Two interleaved chains: chain 0 never changes, chain 1 changes once in two steps.
        let q = [0, 1, 0, 1, 0, 2];
        let chain = [0, 1, 0, 1, 0, 1];
        assert!((charge_change_fraction(&q, Some(&chain)) - 0.25).abs() < 1e-15);
        assert_eq!(charge_change_fraction(&[3, 3, 3], None), 0.0);
    }
}
