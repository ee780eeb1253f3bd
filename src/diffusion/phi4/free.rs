//! The exact score of the free theory (λ = 0): the analytic `ScoreModel` that tests the
//! samplers and serves as a baseline proposal.
//!
//! Free data φ_0 ~ N(0, C) with C(p) = 1/K(p) (see [`crate::theory::free`]); the VE-noised
//! ensemble is N(0, C + σ²), so s(φ, σ) = −(C + σ²)⁻¹ φ, applied in momentum space. At σ = 0
//! this is −Kφ = −∂S/∂φ. Works on any lattice (every extent ≥ 2).

use rayon::prelude::*;

use crate::diffusion::ScoreModel;
use crate::lattice::fft;
use crate::lattice::Lattice;
use crate::theory::{free, Parametrisation};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreeScoreModel {
    param: Parametrisation,
}

impl FreeScoreModel {
    /// The free theory with these couplings; λ must be 0 and the theory stable (K(p) > 0).
    pub fn new(param: Parametrisation) -> Result<Self, String> {
        if param.lambda() != 0.0 {
            return Err(format!("free model: lambda must be 0, got {}", param.lambda()));
        }
        if !free::is_stable(&param) {
            return Err(format!("free model: {} is unstable (K(p) <= 0 at some momentum)", param.describe()));
        }
        Ok(FreeScoreModel { param })
    }

    /// Parses `free:kappa=0.2` (hopping form) or `free:m2=0.5` (mass form).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let rest = spec
            .strip_prefix("free:")
            .ok_or_else(|| format!("model '{spec}': an analytic free model is written free:kappa=K or free:m2=M2"))?;
        let (key, value) = rest
            .split_once('=')
            .ok_or_else(|| format!("free model '{spec}': '{rest}' is not key=value (kappa=K or m2=M2)"))?;
        let (key, value) = (key.trim(), value.trim());
        let x: f64 = value
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| format!("free model '{spec}': '{value}' in '{rest}' is not a finite number"))?;
        let param = match key {
            "kappa" => Parametrisation::Hopping { kappa: x, lambda: 0.0 },
            "m2" => Parametrisation::Mass { m2: x, lambda: 0.0 },
            _ => return Err(format!("free model '{spec}': unknown parameter '{key}' (expected kappa or m2)")),
        };
        Self::new(param).map_err(|e| format!("{e} (from '{spec}')"))
    }

    pub fn param(&self) -> Parametrisation {
        self.param
    }
}

impl ScoreModel for FreeScoreModel {
    fn check_lattice(&self, lat: Lattice) -> Result<(), String> {
        lat.validate()
    }

    fn score(&self, lat: Lattice, phi: &[f64], sigma: &[f64], out: &mut [f64]) -> Result<(), String> {
        let v = lat.volume();
        assert_eq!(phi.len(), sigma.len() * v, "free score: phi is not [B, {lat}]");
        assert_eq!(out.len(), phi.len(), "free score: out is not [B, {lat}]");
        if sigma.is_empty() {
            return Ok(());
        }
        let c = self.two_point(lat);
        let op = |s: f64| -> Vec<f64> { c.iter().map(|c| -1.0 / (c + s * s)).collect() };
        let shared = sigma.iter().all(|&s| s == sigma[0]).then(|| op(sigma[0]));
        let fft = fft::plan(lat);
        out.par_chunks_mut(v).zip(phi.par_chunks(v)).zip(sigma.par_iter()).for_each_init(
            || fft.work(),
            |ws, ((o, p), &s)| match &shared {
                Some(d) => fft.apply_diag(d, p, o, ws),
                None => fft.apply_diag(&op(s), p, o, ws),
            },
        );
        Ok(())
    }

    fn two_point(&self, lat: Lattice) -> Vec<f64> {
        let mut c = Vec::with_capacity(lat.volume());
        for nt in 0..lat.lt {
            for nx in 0..lat.lx {
                c.push(1.0 / free::kernel(&self.param, &lat, nt, nx));
            }
        }
        c
    }

    fn describe(&self) -> String {
        format!("free field ({})", self.param.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::{Action, Phi4};
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn parse_specs_and_errors() {
        let m = FreeScoreModel::parse("free:kappa=0.2").unwrap();
        assert_eq!(m.param(), Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 });
        let m = FreeScoreModel::parse(" free:m2 = 0.5 ").unwrap();
        assert_eq!(m.param(), Parametrisation::Mass { m2: 0.5, lambda: 0.0 });
        let e = FreeScoreModel::parse("free:kappa=abc").unwrap_err();
        assert!(e.contains("'abc'"), "{e}");
        let e = FreeScoreModel::parse("free:mu=1").unwrap_err();
        assert!(e.contains("'mu'"), "{e}");
        let e = FreeScoreModel::parse("gauss:kappa=0.2").unwrap_err();
        assert!(e.contains("free:kappa"), "{e}");
        let e = FreeScoreModel::parse("free:kappa").unwrap_err();
        assert!(e.contains("key=value"), "{e}");
        let e = FreeScoreModel::parse("free:kappa=0.3").unwrap_err();
        assert!(e.contains("unstable"), "{e}");
        assert!(FreeScoreModel::parse("free:m2=-0.1").unwrap_err().contains("unstable"));
        assert!(FreeScoreModel::new(Parametrisation::Hopping { kappa: 0.2, lambda: 0.1 }).is_err());
    }

    /// At σ = 0 the score is −∂S/∂φ of the free action; at σ > 0, applying (C + σ²) to the
    /// score gives back −φ (checked through the σ = 0 score, i.e. K, for a different route).
    #[test]
    fn score_is_minus_force_at_zero_and_inverts_c_plus_sigma2() {
        for (lat, spec) in [(Lattice::new(4, 6), "free:kappa=0.2"), (Lattice::new(6, 2), "free:m2=0.5")] {
            let m = FreeScoreModel::parse(spec).unwrap();
            let th = Phi4::new(lat, m.param());
            let v = lat.volume();
            let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
            let phi: Vec<f64> = (0..2 * v).map(|_| StandardNormal.sample(&mut r)).collect();
            let mut s = vec![0.0; 2 * v];
            m.score(lat, &phi, &[0.0, 0.0], &mut s).unwrap();
            for b in 0..2 {
                let mut d = vec![0.0; v];
                th.deriv(&phi[b * v..][..v], &mut d);
                for x in 0..v {
                    assert!((s[b * v + x] + d[x]).abs() < 1e-12, "{lat} {spec}");
                }
            }
            // (C + σ²) s = −φ  ⇔  s + σ² K s = −K φ.
            let sig = [0.7, 1.9];
            m.score(lat, &phi, &sig, &mut s).unwrap();
            let (mut ks, mut kphi) = (vec![0.0; 2 * v], vec![0.0; 2 * v]);
            m.score(lat, &s, &[0.0, 0.0], &mut ks).unwrap(); // −K s
            m.score(lat, &phi, &[0.0, 0.0], &mut kphi).unwrap(); // −K φ
            for i in 0..2 * v {
                let sg = sig[i / v];
                assert!((s[i] - sg * sg * ks[i] - kphi[i]).abs() < 1e-11, "{lat} {spec}");
            }
        }
    }
}
