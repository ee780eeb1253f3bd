//! Lattice geometry: periodic L_t × L_x, row-major with x fastest (site = t * L_x + x).

pub mod blocking;
pub mod fft;

use serde::{Deserialize, Serialize};

/// Largest extent per direction (README, Limits).
pub const MAX_EXTENT: usize = 65536;
/// Largest volume: a configuration is one HDF5 chunk, and chunks must stay below 4 GiB
/// (2^28 f32 sites are 1 GiB; a chain's f64 fields are 2 GiB each).
pub const MAX_VOLUME: usize = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lattice {
    pub lt: usize,
    pub lx: usize,
}

impl Lattice {
    pub fn new(lt: usize, lx: usize) -> Self {
        Lattice { lt, lx }
    }

    pub fn square(l: usize) -> Self {
        Lattice { lt: l, lx: l }
    }

    pub fn volume(&self) -> usize {
        self.lt * self.lx
    }

    pub fn is_square(&self) -> bool {
        self.lt == self.lx
    }

    /// Parses "32" (square) or "16x32" (L_t × L_x).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("lattice: '{s}' is not a size like 32 or 16x32");
        let parts: Vec<&str> = s.split(['x', 'X']).collect();
        let nums: Result<Vec<usize>, _> = parts.iter().map(|p| p.trim().parse::<usize>()).collect();
        let nums = nums.map_err(|_| bad())?;
        let lat = match nums.as_slice() {
            [l] => Lattice::square(*l),
            [lt, lx] => Lattice::new(*lt, *lx),
            _ => return Err(bad()),
        };
        lat.validate()?;
        Ok(lat)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.lt < 2 || self.lx < 2 {
            return Err(format!("lattice: {}x{} is too small (each extent must be at least 2)", self.lt, self.lx));
        }
        if self.lt.max(self.lx) > MAX_EXTENT {
            return Err(format!("lattice: {}x{} exceeds the largest extent {MAX_EXTENT}", self.lt, self.lx));
        }
        if self.lt * self.lx > MAX_VOLUME {
            return Err(format!(
                "lattice: {}x{} has {} sites, over the largest volume {MAX_VOLUME} (2^28)",
                self.lt,
                self.lx,
                self.lt * self.lx
            ));
        }
        Ok(())
    }

    #[inline]
    pub fn site(&self, t: usize, x: usize) -> usize {
        t * self.lx + x
    }

    /// Lattice momenta 2π n / L for one direction.
    pub fn momenta(l: usize) -> impl Iterator<Item = f64> {
        (0..l).map(move |n| 2.0 * std::f64::consts::PI * n as f64 / l as f64)
    }

    /// Σ_μ p̂_μ² with p̂ = 2 sin(p/2), for momentum mode (nt, nx): the lattice Laplacian's spectrum.
    pub fn phat2(&self, nt: usize, nx: usize) -> f64 {
        let pt = 2.0 * std::f64::consts::PI * nt as f64 / self.lt as f64;
        let px = 2.0 * std::f64::consts::PI * nx as f64 / self.lx as f64;
        4.0 * (pt / 2.0).sin().powi(2) + 4.0 * (px / 2.0).sin().powi(2)
    }
}

impl std::fmt::Display for Lattice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.lt, self.lx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_sizes() {
        assert_eq!(Lattice::parse("32").unwrap(), Lattice::square(32));
        assert_eq!(Lattice::parse("16x32").unwrap(), Lattice::new(16, 32));
        assert!(Lattice::parse("1").unwrap_err().contains("too small"));
        assert!(Lattice::parse("abc").is_err());
        assert!(Lattice::parse("4x100000000").unwrap_err().contains("largest extent"));
        assert!(Lattice::parse("65536x8192").unwrap_err().contains("largest volume"));
        assert!(Lattice::parse("65536x4096").is_ok());
    }
}
