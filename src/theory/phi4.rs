//! Real scalar φ⁴ theory in two dimensions.
//!
//! Both parametrisations in use are the same polynomial with different coefficients,
//!   S = Σ_x [ −2 h Σ_μ φ_x φ_{x+μ} + q φ_x² + λ φ_x⁴ ],
//! hopping form (diffusion-model papers): h = κ, q = 1 − 2λ;
//! mass form (normalising-flow papers):    h = 1, q = 4 + m²  (= ½(∂φ)² + ½m²φ² + λφ⁴ ×2 rescaled).
//! One kernel serves both; fields stay in the normalisation the user chose.

use super::{Action, Flat, Theory, TheoryAttrs};
use crate::lattice::Lattice;
use crate::rng::Stream;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "parametrisation", rename_all = "lowercase")]
pub enum Parametrisation {
    Hopping { kappa: f64, lambda: f64 },
    Mass { m2: f64, lambda: f64 },
}

impl Parametrisation {
    pub fn name(&self) -> &'static str {
        match self {
            Parametrisation::Hopping { .. } => "hopping",
            Parametrisation::Mass { .. } => "mass",
        }
    }

    pub fn lambda(&self) -> f64 {
        match *self {
            Parametrisation::Hopping { lambda, .. } | Parametrisation::Mass { lambda, .. } => lambda,
        }
    }

    /// (h, q, λ) of the common polynomial form.
    pub fn coefficients(&self) -> (f64, f64, f64) {
        match *self {
            Parametrisation::Hopping { kappa, lambda } => (kappa, 1.0 - 2.0 * lambda, lambda),
            Parametrisation::Mass { m2, lambda } => (1.0, 4.0 + m2, lambda),
        }
    }

    /// Human description, e.g. "κ = 0.27, λ = 0.022".
    pub fn describe(&self) -> String {
        match *self {
            Parametrisation::Hopping { kappa, lambda } => {
                format!("kappa = {kappa}, lambda = {lambda}")
            }
            Parametrisation::Mass { m2, lambda } => format!("m2 = {m2}, lambda = {lambda}"),
        }
    }

    /// The couplings by attribute name, in the order files record them.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        match *self {
            Parametrisation::Hopping { kappa, lambda } => vec![("kappa", kappa), ("lambda", lambda)],
            Parametrisation::Mass { m2, lambda } => vec![("m2", m2), ("lambda", lambda)],
        }
    }

    /// The form's and the couplings' attributes (see `Couplings::from_attrs`).
    pub fn from_attrs(
        text: &dyn Fn(&str) -> Option<String>,
        number: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Self, String> {
        let get = |k: &str| match number(k) {
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => Err(format!("attribute '{k}' = {x} is not a finite coupling")),
            None => Err(format!("attribute '{k}' missing (no phi4 couplings)")),
        };
        match text("parametrisation").as_deref() {
            Some("hopping") => Ok(Parametrisation::Hopping { kappa: get("kappa")?, lambda: get("lambda")? }),
            Some("mass") => Ok(Parametrisation::Mass { m2: get("m2")?, lambda: get("lambda")? }),
            Some(p) => Err(format!("unknown parametrisation '{p}' (expected hopping or mass)")),
            None => Err("attribute 'parametrisation' missing (no phi4 couplings)".into()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Phi4 {
    pub lattice: Lattice,
    pub param: Parametrisation,
    hop: f64,
    quad: f64,
    lambda: f64,
}

impl Phi4 {
    pub fn new(lattice: Lattice, param: Parametrisation) -> Self {
        let (hop, quad, lambda) = param.coefficients();
        Phi4 { lattice, param, hop, quad, lambda }
    }

    /// Minimum of the action density for a constant field, φ_0 ≥ 0: the ordered (cold) start.
    /// S/V = (q − 4h) φ² + λ φ⁴ in two dimensions.
    pub fn classical_vacuum(&self) -> f64 {
        let c2 = self.quad - 4.0 * self.hop;
        if c2 < 0.0 && self.lambda > 0.0 {
            (-c2 / (2.0 * self.lambda)).sqrt()
        } else {
            0.0
        }
    }

    /// ∂S/∂φ on one row, generic so the same code compiles once for the baseline ISA and
    /// once with AVX2 enabled. The interior loop runs over equal-length slices so that
    /// the compiler vectorises it; the two periodic edge sites are done separately.
    #[inline(always)]
    fn row_kick(&self, up: &[f64], dn: &[f64], row: &[f64], mom: &mut [f64], eps: f64) {
        let lx = row.len();
        let a = 2.0 * self.hop * eps;
        let b = 2.0 * self.quad * eps;
        let c = 4.0 * self.lambda * eps;
        let site = |phi: f64, nb: f64| -a * nb + phi * (b + c * phi * phi);
        mom[0] -= site(row[0], up[0] + dn[0] + row[lx - 1] + row[1 % lx]);
        if lx > 2 {
            let n = lx - 2;
            let (m, u, d) = (&mut mom[1..lx - 1], &up[1..lx - 1], &dn[1..lx - 1]);
            let (l, r, cen) = (&row[0..n], &row[2..lx], &row[1..lx - 1]);
            for i in 0..n {
                m[i] -= site(cen[i], u[i] + d[i] + l[i] + r[i]);
            }
        }
        if lx > 1 {
            mom[lx - 1] -= site(row[lx - 1], up[lx - 1] + dn[lx - 1] + row[lx - 2] + row[0]);
        }
    }

    #[inline(always)]
    fn kick_generic(&self, phi: &[f64], mom: &mut [f64], eps: f64) {
        let (lt, lx) = (self.lattice.lt, self.lattice.lx);
        for (t, m) in mom.chunks_exact_mut(lx).enumerate() {
            let up = &phi[((t + 1) % lt) * lx..][..lx];
            let dn = &phi[((t + lt - 1) % lt) * lx..][..lx];
            let row = &phi[t * lx..][..lx];
            self.row_kick(up, dn, row, m, eps);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn kick_avx2(&self, phi: &[f64], mom: &mut [f64], eps: f64) {
        self.kick_generic(phi, mom, eps)
    }

    /// S and the magnetisation Σφ in one pass (HMC needs both per trajectory).
    pub fn action_and_sum(&self, phi: &[f64]) -> (f64, f64) {
        let (lt, lx) = (self.lattice.lt, self.lattice.lx);
        let (mut s, mut m) = (0.0, 0.0);
        for t in 0..lt {
            let row = &phi[t * lx..][..lx];
            let up = &phi[((t + 1) % lt) * lx..][..lx];
            for x in 0..lx {
                let p = row[x];
                let right = row[if x + 1 == lx { 0 } else { x + 1 }];
                let p2 = p * p;
                s += -2.0 * self.hop * p * (up[x] + right) + self.quad * p2 + self.lambda * p2 * p2;
                m += p;
            }
        }
        (s, m)
    }
}

impl Action for Phi4 {
    fn lattice(&self) -> Lattice {
        self.lattice
    }

    fn action(&self, phi: &[f64]) -> f64 {
        self.action_and_sum(phi).0
    }

    fn deriv(&self, phi: &[f64], dsdphi: &mut [f64]) {
        dsdphi.iter_mut().for_each(|d| *d = 0.0);
        // mom −= 1·dS/dφ on a zero buffer gives −dS/dφ; flip the sign once.
        self.kick(phi, dsdphi, 1.0);
        dsdphi.iter_mut().for_each(|d| *d = -*d);
    }

    fn kick(&self, phi: &[f64], mom: &mut [f64], eps: f64) {
        debug_assert_eq!(phi.len(), self.lattice.volume());
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked above).
                return unsafe { self.kick_avx2(phi, mom, eps) };
            }
        }
        self.kick_generic(phi, mom, eps)
    }
}

impl Theory for Phi4 {
    type Manifold = Flat;

    fn manifold(&self) -> Flat {
        Flat
    }

    fn name(&self) -> &'static str {
        "phi4"
    }

    fn dof_shape(&self, lattice: Lattice) -> Vec<usize> {
        vec![lattice.lt, lattice.lx]
    }

    fn cold_start(&self, rng: &mut Stream) -> Vec<f64> {
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        vec![sign * self.classical_vacuum(); self.lattice.volume()]
    }

    fn hot_start(&self, rng: &mut Stream) -> Vec<f64> {
        (0..self.lattice.volume()).map(|_| StandardNormal.sample(rng)).collect()
    }

    fn action_and_monitor(&self, field: &[f64]) -> (f64, f64) {
        self.action_and_sum(field)
    }

    fn monitor_name(&self) -> &'static str {
        "abs_m"
    }

    fn reflect(&self, value: f32) -> f32 {
        -value
    }

    fn cluster_flips(&self, field: &mut [f64], rng: &mut Stream, n: usize) -> Option<usize> {
        Some(super::cluster::wolff_updates(field, rng, self, n))
    }

    fn attrs(&self) -> TheoryAttrs {
        TheoryAttrs {
            labels: vec![("theory", "phi4".into()), ("parametrisation", self.param.name().into())],
            couplings: self.param.named(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn random_field(v: usize, seed: u64) -> Vec<f64> {
        let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..v).map(|_| StandardNormal.sample(&mut r)).collect()
    }

    /// The force must be −∂S/∂φ; checked by central differences for both forms,
    /// square and rectangular lattices, including the L = 2 edge case.
    #[test]
    fn deriv_matches_finite_differences() {
        let cases = [
            (Lattice::square(6), Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 }),
            (Lattice::new(4, 8), Parametrisation::Mass { m2: -4.0, lambda: 8.0 }),
            (Lattice::new(2, 3), Parametrisation::Hopping { kappa: 0.5, lambda: 1.3 }),
        ];
        for (lat, param) in cases {
            let th = Phi4::new(lat, param);
            let phi = random_field(lat.volume(), 3);
            let mut d = vec![0.0; lat.volume()];
            th.deriv(&phi, &mut d);
            let h = 1e-5;
            for x in 0..lat.volume() {
                let mut p = phi.clone();
                p[x] += h;
                let sp = th.action(&p);
                p[x] -= 2.0 * h;
                let sm = th.action(&p);
                let fd = (sp - sm) / (2.0 * h);
                assert!((fd - d[x]).abs() < 1e-6 * (1.0 + fd.abs()), "{lat} site {x}: fd {fd} vs {}", d[x]);
            }
        }
    }

    /// What a file records is what it reads back, for both forms; bad attributes are named.
    #[test]
    fn attributes_round_trip() {
        use super::super::Couplings;
        for param in
            [Parametrisation::Hopping { kappa: 0.27, lambda: 0.022 }, Parametrisation::Mass { m2: -0.5, lambda: 0.1 }]
        {
            let a = Phi4::new(Lattice::square(4), param).attrs();
            let text = |k: &str| a.labels.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
            let number = |k: &str| a.couplings.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            assert_eq!(Couplings::from_attrs(&text, &number), Ok(Couplings::Phi4(param)));
            let no_lambda = |k: &str| if k == "lambda" { None } else { number(k) };
            assert!(Couplings::from_attrs(&text, &no_lambda).unwrap_err().contains("'lambda' missing"));
        }
        let su3 = |k: &str| (k == "theory").then(|| "su3".to_string());
        assert!(Couplings::from_attrs(&su3, &|_| None).unwrap_err().contains("theory 'su3'"));
        // The tagged enum is what a configuration file names.
        let c: Couplings =
            toml::from_str("theory = \"phi4\"\nparametrisation = \"mass\"\nm2 = -0.5\nlambda = 0.1").unwrap();
        assert_eq!(c, Couplings::Phi4(Parametrisation::Mass { m2: -0.5, lambda: 0.1 }));
    }

    #[test]
    fn constant_field_action_density() {
        let lat = Lattice::square(4);
        let th = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.3, lambda: 0.1 });
        let phi = vec![1.5; 16];
        let s = th.action(&phi) / 16.0;
        let expect = -4.0 * 0.3 * 2.25 + (1.0 - 0.2) * 2.25 + 0.1 * 2.25 * 2.25;
        assert!((s - expect).abs() < 1e-12);
        let v = th.classical_vacuum();
        // the vacuum minimises the constant-field action density
        let dens = |p: f64| (0.8 - 1.2) * p * p + 0.1 * p.powi(4);
        assert!(dens(v) < dens(v * 1.01) && dens(v) < dens(v * 0.99));
    }
}
