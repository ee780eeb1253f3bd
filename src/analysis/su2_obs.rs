//! SU(2) gauge observables for `latdiff analyze` (definitions also in README.md).
//!
//! Configuration: link quaternions U_μ(t, x), stored [2, L_t, L_x, 4] (see `theory::su2`),
//! promoted to f64 and checked to be unit quaternions; V = L_t L_x plaquettes.
//!
//! Primaries per configuration:
//! * `plaquette` (1/V) Σ_P ½ tr U_P, `action_density` S/V = β(1 − plaquette);
//! * `w_r{R}_t{T}` the Wilson loop W(R, T) = (1/V) Σ_{t,x} ½ tr of the R × T rectangle with
//!   corner (t, x) (R along x, T along t, counter-clockwise as the plaquette), for
//!   1 ≤ R, T ≤ r_max = min(L_t/2, L_x/2, 8);
//! * `poly_r{r}` the Polyakov-loop correlator (1/L_x) Σ_x ½ tr P(x) ½ tr P(x + r),
//!   P(x) = Π_t U_0(t, x), for 0 ≤ r ≤ L_x/2.
//!
//! Derived quantities: `plaquette`, `action_density`, `w{R}x{R}` the square loops W(R, R)
//! for R ≥ 2 (scalars, so that they carry τ_int), `wilson_r{R}` W(R, T) for T = 1..=r_max,
//! `creutz` χ(R, R) = −ln[W(R,R) W(R−1,R−1) / (W(R,R−1) W(R−1,R))] for R = 2..=r_max, and
//! `string_tension` = χ(2, 2): in 2-D W(R, T) is exactly (I_2/I_1)^{RT} in infinite volume
//! (no perimeter or Coulomb term), so every Creutz ratio is the string tension −ln(I_2/I_1);
//! the smallest one has the least noise. `polyakov` the correlator for r = 0..=L_x/2.
//! `exact` gives the character-expansion values on this torus (`theory::su2_exact`).

use super::observables::{DerivedSpec, Observables};
use crate::lattice::Lattice;
use crate::theory::su2::{first_non_unit, qdag, qmul, Quat, FILE_UNIT_TOL};
use crate::theory::{su2_exact, Su2, Theory, TheoryAttrs};

pub const PLAQUETTE: usize = 0;
pub const ACTION_DENSITY: usize = 1;
/// First Wilson loop primary, W(1, 1); W(R, T) is at `W0 + (R−1) r_max + (T−1)`.
const W0: usize = 2;
const R_MAX_CAP: usize = 8;

#[derive(Clone, Debug)]
pub struct Su2Observables {
    theory: Su2,
    r_max: usize,
}

impl Su2Observables {
    pub fn new(lat: Lattice, beta: f64) -> Self {
        Su2Observables { theory: Su2::new(lat, beta), r_max: (lat.lt.min(lat.lx) / 2).clamp(1, R_MAX_CAP) }
    }

    pub fn r_max(&self) -> usize {
        self.r_max
    }

    fn w_index(&self, r: usize, t: usize) -> usize {
        W0 + (r - 1) * self.r_max + (t - 1)
    }

    /// Polyakov correlator distances 0..=L_x/2.
    fn n_poly(&self) -> usize {
        self.theory.lattice.lx / 2 + 1
    }

    fn poly_index(&self) -> usize {
        W0 + self.r_max * self.r_max
    }

    /// W(R, T) for every 1 ≤ R, T ≤ r_max, in `w_index` order: straight lines first
    /// (products of R x-links and of T t-links from every site), then each rectangle is
    /// four lines, T(s) X(s + T t̂) T(s + R x̂)† X(s)†.
    fn wilson_loops(&self, u: &[f64], out: &mut [f64]) {
        let lat = self.theory.lattice;
        let (lt, lx, v, n) = (lat.lt, lat.lx, lat.volume(), self.r_max);
        let site = |t: usize, x: usize| (t % lt) * lx + x % lx;
        let link = |mu: usize, s: usize| -> Quat {
            let i = 4 * (mu * v + s);
            [u[i], u[i + 1], u[i + 2], u[i + 3]]
        };
        let mut x_line: Vec<Vec<Quat>> = vec![(0..v).map(|s| link(1, s)).collect()];
        let mut t_line: Vec<Vec<Quat>> = vec![(0..v).map(|s| link(0, s)).collect()];
        for k in 1..n {
            let (px, pt) = (&x_line[k - 1], &t_line[k - 1]);
            let nx: Vec<Quat> = (0..v).map(|s| qmul(px[s], link(1, site(s / lx, s % lx + k)))).collect();
            let nt: Vec<Quat> = (0..v).map(|s| qmul(pt[s], link(0, site(s / lx + k, s % lx)))).collect();
            x_line.push(nx);
            t_line.push(nt);
        }
        for r in 1..=n {
            for t in 1..=n {
                let (xl, tl) = (&x_line[r - 1], &t_line[t - 1]);
                let mut c = 0.0;
                for s in 0..v {
                    let (st, sx) = (s / lx, s % lx);
                    let a = qmul(tl[s], xl[site(st + t, sx)]);
                    let b = qmul(xl[s], tl[site(st, sx + r)]);
                    c += qmul(a, qdag(b))[0];
                }
                out[self.w_index(r, t)] = c / v as f64;
            }
        }
    }

    fn square_loops(&self) -> std::ops::RangeInclusive<usize> {
        2..=self.r_max
    }
}

impl Observables for Su2Observables {
    fn volume(&self) -> usize {
        8 * self.theory.lattice.volume()
    }

    fn primary_names(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["plaquette".into(), "action_density".into()];
        for r in 1..=self.r_max {
            v.extend((1..=self.r_max).map(|t| format!("w_r{r}_t{t}")));
        }
        v.extend((0..self.n_poly()).map(|r| format!("poly_r{r}")));
        v
    }

    fn primaries(&self, u: &[f64], out: &mut [f64]) {
        let th = &self.theory;
        let plaq = th.mean_plaquette(u);
        out[PLAQUETTE] = plaq;
        out[ACTION_DENSITY] = th.beta * (1.0 - plaq);
        self.wilson_loops(u, out);
        let p = th.polyakov_loops(u);
        let lx = p.len();
        for r in 0..self.n_poly() {
            let c: f64 = (0..lx).map(|x| p[x] * p[(x + r) % lx]).sum();
            out[self.poly_index() + r] = c / lx as f64;
        }
    }

    fn derived_specs(&self) -> Vec<DerivedSpec> {
        let n = self.r_max;
        let mut v = vec![DerivedSpec::scalar("plaquette", "<tr U_P>/2"), DerivedSpec::scalar("action_density", "S/V")];
        for r in self.square_loops() {
            v.push(DerivedSpec::scalar(&format!("w{r}x{r}"), &format!("W({r}x{r})")));
        }
        for r in 1..=n {
            v.push(DerivedSpec::array(
                &format!("wilson_r{r}"),
                &format!("W_R{r}(t)"),
                (1..=n).map(|t| t as f64).collect(),
            ));
        }
        if n >= 2 {
            v.push(DerivedSpec::array("creutz", "creutz(R)", (2..=n).map(|r| r as f64).collect()));
            v.push(DerivedSpec::scalar("string_tension", "sigma = creutz(2)"));
        }
        v.push(DerivedSpec::array("polyakov", "<P(0)P(r)>", (0..self.n_poly()).map(|r| r as f64).collect()));
        v
    }

    fn derived(&self, m: &[f64]) -> Vec<f64> {
        let n = self.r_max;
        let w = |r: usize, t: usize| if t == 0 || r == 0 { 1.0 } else { m[self.w_index(r, t)] };
        let mut out = vec![m[PLAQUETTE], m[ACTION_DENSITY]];
        out.extend(self.square_loops().map(|r| w(r, r)));
        for r in 1..=n {
            out.extend((1..=n).map(|t| w(r, t)));
        }
        let creutz = |r: usize| {
            let ratio = w(r, r) * w(r - 1, r - 1) / (w(r, r - 1) * w(r - 1, r));
            if ratio > 0.0 {
                -ratio.ln()
            } else {
                f64::NAN
            }
        };
        if n >= 2 {
            out.extend((2..=n).map(creutz));
            out.push(creutz(2));
        }
        out.extend((0..self.n_poly()).map(|r| m[self.poly_index() + r]));
        out
    }

    fn binning_primaries(&self) -> Vec<usize> {
        let mut b = vec![PLAQUETTE, self.poly_index()];
        if self.r_max >= 2 {
            b.push(self.w_index(2, 2));
        }
        b
    }

    fn undefined_reason(&self, j: usize, _means: &[f64]) -> Option<String> {
        let first_creutz = 2 + self.square_loops().count() + self.r_max * self.r_max;
        let after = first_creutz + self.r_max;
        (first_creutz..after).contains(&j).then(|| "a Wilson loop in the ratio is not positive (noise)".to_string())
    }

    fn values_per_site(&self) -> usize {
        8
    }

    fn theory_attrs(&self) -> TheoryAttrs {
        self.theory.attrs()
    }

    fn check(&self, u: &[f64]) -> Result<(), String> {
        match first_non_unit(u, FILE_UNIT_TOL) {
            None => Ok(()),
            Some((i, n2)) => Err(format!(
                "link {i} (mu = {}, site {}) has |a|^2 = {n2}, not a unit quaternion (SU(2) links need |a|^2 = 1 to {FILE_UNIT_TOL:e})",
                i / self.theory.lattice.volume(),
                i % self.theory.lattice.volume()
            )),
        }
    }

    fn exact(&self) -> Vec<(String, f64)> {
        let (beta, v) = (self.theory.beta, self.theory.lattice.volume());
        let mut e = vec![("plaquette".to_string(), su2_exact::plaquette(beta, v))];
        e.push(("action_density".into(), beta * (1.0 - su2_exact::plaquette(beta, v))));
        for r in self.square_loops() {
            e.push((format!("w{r}x{r}"), su2_exact::wilson_loop(beta, v, r * r)));
        }
        if self.r_max >= 2 {
            e.push(("string_tension".into(), su2_exact::creutz_ratio(beta, v, 2)));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(lat: Lattice, seed: u64) -> Vec<f64> {
        Su2::new(lat, 1.0).hot_start(&mut crate::rng::stream(seed, crate::rng::Domain::Misc, 0))
    }

    /// W(1, 1) is the plaquette; every loop and the Polyakov correlator are gauge invariant;
    /// on a pure gauge every loop is 1; the derived quantities have the specs' length.
    #[test]
    fn loops_plaquette_and_gauge_invariance() {
        let lat = Lattice::new(6, 8);
        let o = Su2Observables::new(lat, 2.0);
        assert_eq!(o.r_max(), 3);
        let th = Su2::new(lat, 2.0);
        let mut u = hot(lat, 9);
        let k = o.primary_names().len();
        let (mut a, mut b) = (vec![0.0; k], vec![0.0; k]);
        o.primaries(&u, &mut a);
        assert!((a[o.w_index(1, 1)] - a[PLAQUETTE]).abs() < 1e-12);
        assert!((a[ACTION_DENSITY] - 2.0 * (1.0 - a[PLAQUETTE])).abs() < 1e-12);
        let g = hot(lat, 10);
        th.gauge_transform(&mut u, &g[..4 * lat.volume()]);
        o.primaries(&u, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        let mut pure = th.cold_start(&mut crate::rng::stream(0, crate::rng::Domain::Misc, 0));
        th.gauge_transform(&mut pure, &g[..4 * lat.volume()]);
        o.primaries(&pure, &mut b);
        assert!(b[W0..].iter().all(|w| (w - 1.0).abs() < 1e-12), "{:?}", &b[W0..]);
        let d = o.derived(&a);
        assert_eq!(d.len(), o.derived_specs().iter().map(|s| s.len()).sum::<usize>());
        assert!(o.check(&u).is_ok());
        u[5] = 2.0;
        assert!(o.check(&u).unwrap_err().contains("link 1 (mu = 0, site 1)"));
    }

    /// A loop against the product of its plaquettes on an abelian (diagonal) configuration,
    /// where ½ tr of products is cos of summed angles: W(R, T) = cos Σ θ_P over its area.
    #[test]
    fn loops_on_an_abelian_field_sum_their_plaquette_angles() {
        let lat = Lattice::new(4, 6);
        let v = lat.volume();
        let mut rng = crate::rng::stream(3, crate::rng::Domain::Misc, 1);
        let theta: Vec<f64> = (0..2 * v).map(|_| rand::RngExt::random::<f64>(&mut rng) - 0.5).collect();
        // U = e^{iθσ3} ↔ (cos θ, 0, 0, sin θ).
        let u: Vec<f64> = theta.iter().flat_map(|t| [t.cos(), 0.0, 0.0, t.sin()]).collect();
        let o = Su2Observables::new(lat, 1.0);
        let mut out = vec![0.0; o.primary_names().len()];
        o.primaries(&u, &mut out);
        let (lt, lx) = (lat.lt, lat.lx);
        let ang = |mu: usize, t: usize, x: usize| theta[mu * v + (t % lt) * lx + x % lx];
        for (r, t) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            let mut c = 0.0;
            for t0 in 0..lt {
                for x0 in 0..lx {
                    let mut a = 0.0;
                    for j in 0..t {
                        a += ang(0, t0 + j, x0) - ang(0, t0 + j, x0 + r);
                    }
                    for i in 0..r {
                        a += ang(1, t0 + t, x0 + i) - ang(1, t0, x0 + i);
                    }
                    c += a.cos();
                }
            }
            assert!((out[o.w_index(r, t)] - c / v as f64).abs() < 1e-12, "W({r}, {t})");
        }
    }

    #[test]
    fn exact_values_name_scalar_derived_quantities() {
        let o = Su2Observables::new(Lattice::square(4), 8.0);
        let keys: Vec<String> = o.derived_specs().iter().filter(|s| s.x.is_none()).map(|s| s.key.clone()).collect();
        for (k, x) in o.exact() {
            assert!(keys.contains(&k), "{k}");
            assert!(x.is_finite());
        }
        assert_eq!(o.exact()[0], ("plaquette".into(), su2_exact::plaquette(8.0, 16)));
    }
}
