//! Embedded-Ising cluster updates for φ⁴ (Brower and Tamayo, PRL 62 (1989) 1087), in
//! Wolff's single-cluster form.
//!
//! Write φ_x = ε_x |φ_x|. With the magnitudes held fixed, only the hopping term depends
//! on the signs: −2h Σ_links φ_x φ_y = −Σ_links J_xy ε_x ε_y with J_xy = 2h |φ_x φ_y|, an
//! Ising model with link-dependent couplings. Wolff's bond probability for aligned
//! neighbours, 1 − exp(−2 J_xy), is therefore
//!   hopping form (h = κ):  p = 1 − exp(−4κ φ_x φ_y),
//!   mass form    (h = 1):  p = 1 − exp(−4 φ_x φ_y),
//! for φ_x φ_y > 0, and 0 otherwise. Flipping the cluster is always accepted: detailed
//! balance holds for the embedded Ising model, and the φ², φ⁴ terms are sign-blind, so
//! e^{−S} is left invariant. Clusters move whole domains through the walls that trap HMC.

use super::Phi4;
use crate::rng::Stream;
use rand::RngExt;

/// `n_flips` single-cluster updates of `phi` with random numbers from `rng` (the chain's
/// own stream). Returns the total number of sites flipped.
pub fn wolff_updates(phi: &mut [f64], rng: &mut Stream, theory: &Phi4, n_flips: usize) -> usize {
    let (hop, _, _) = theory.param.coefficients();
    if hop <= 0.0 {
        return 0;
    }
    let lat = theory.lattice;
    let (lt, lx) = (lat.lt, lat.lx);
    let v = lat.volume();
    let mut in_cluster = vec![false; v];
    let mut stack: Vec<usize> = Vec::with_capacity(64);
    let mut members: Vec<usize> = Vec::with_capacity(64);
    let mut flipped = 0;
    for _ in 0..n_flips {
        let seed_site = rng.random_range(0..v);
        if phi[seed_site] == 0.0 {
            continue;
        }
        in_cluster[seed_site] = true;
        stack.push(seed_site);
        members.push(seed_site);
        while let Some(x) = stack.pop() {
            let (t, s) = (x / lx, x % lx);
            let nbrs = [
                ((t + 1) % lt) * lx + s,
                ((t + lt - 1) % lt) * lx + s,
                t * lx + (s + 1) % lx,
                t * lx + (s + lx - 1) % lx,
            ];
            for y in nbrs {
                if in_cluster[y] {
                    continue;
                }
                let prod = phi[x] * phi[y];
                if prod <= 0.0 {
                    continue;
                }
                let p_bond = 1.0 - (-4.0 * hop * prod).exp();
                if rng.random::<f64>() < p_bond {
                    in_cluster[y] = true;
                    stack.push(y);
                    members.push(y);
                }
            }
        }
        for &x in &members {
            phi[x] = -phi[x];
            in_cluster[x] = false;
        }
        flipped += members.len();
        members.clear();
    }
    flipped
}
