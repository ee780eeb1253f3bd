//! Lattice symmetries of the Wilson action on a link field [2, L_t, L_x], for augmenting
//! the training data: translations, charge conjugation θ → −θ, the reflections t → −t and
//! x → −x and, on square lattices, the exchange of the axes. Under a reflection of x the
//! x-links reverse orientation (θ'_1(t, x) = −θ_1(t, −x−1)) and the plaquettes map to
//! minus their mirror images (Q → −Q); the exchange maps θ'_μ(t, x) = θ_{1−μ}(x, t).
//! Gauge transformations are not needed: the network's inputs are gauge invariant.

use crate::lattice::Lattice;
use crate::rng::Stream;
use rand::RngExt;

/// The link (component, t, x) and sign that one symmetry image reads for each link.
struct Image {
    lat: Lattice,
    shift: (usize, usize),
    flip_t: bool,
    flip_x: bool,
    transpose: bool,
    conjugate: bool,
}

impl Image {
    fn random(lat: Lattice, rng: &mut Stream) -> Self {
        Image {
            lat,
            shift: (rng.random_range(0..lat.lt), rng.random_range(0..lat.lx)),
            flip_t: rng.random(),
            flip_x: rng.random(),
            transpose: lat.is_square() && rng.random(),
            conjugate: rng.random(),
        }
    }

    /// Source (index into [2, L_t, L_x], sign) of link μ at (t, x) of the image.
    fn source(&self, mu: usize, t: usize, x: usize) -> (usize, f32) {
        let (lt, lx) = (self.lat.lt, self.lat.lx);
        let (mut mu, mut t, mut x) = (mu, t, x);
        let mut sign = if self.conjugate { -1.0 } else { 1.0 };
        // Applied outermost first: exchange, then reflections, then the shift.
        if self.transpose {
            (mu, t, x) = (1 - mu, x, t);
        }
        if self.flip_t {
            // A t-link from t to t+1 becomes the reversed link from −t−1 to −t.
            t = if mu == 0 { (2 * lt - 1 - t) % lt } else { (lt - t) % lt };
            if mu == 0 {
                sign = -sign;
            }
        }
        if self.flip_x {
            x = if mu == 1 { (2 * lx - 1 - x) % lx } else { (lx - x) % lx };
            if mu == 1 {
                sign = -sign;
            }
        }
        let (t, x) = ((t + self.shift.0) % lt, (x + self.shift.1) % lx);
        (mu * lt * lx + t * lx + x, sign)
    }
}

/// Writes a random symmetry image of the link field `src` into `dst`.
pub fn augment_links(dst: &mut [f32], src: &[f32], lat: Lattice, rng: &mut Stream) {
    let img = Image::random(lat, rng);
    let (lt, lx) = (lat.lt, lat.lx);
    for mu in 0..2 {
        for t in 0..lt {
            for x in 0..lx {
                let (i, sign) = img.source(mu, t, x);
                dst[mu * lt * lx + t * lx + x] = sign * src[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::{Action, U1};

    /// Every image has the same action and the same |Q|, and the charge flips sign as often
    /// as an odd number of orientation reversals says; many draws reach both signs.
    #[test]
    fn images_keep_the_action_and_the_charge_up_to_sign() {
        for lat in [Lattice::new(6, 6), Lattice::new(4, 8)] {
            let u = U1::new(lat, 1.3);
            let mut rng = crate::rng::stream(1, crate::rng::Domain::Misc, 3);
            // A field with one unit of flux plus noise: Q = 1.
            let mut theta = vec![0.0f32; 2 * lat.volume()];
            let q_field: Vec<f64> = crate::theory::u1::one_flux(lat);
            for (d, s) in theta.iter_mut().zip(&q_field) {
                *d = (*s + 0.3 * (rng.random::<f64>() - 0.5)) as f32;
            }
            let t64: Vec<f64> = theta.iter().map(|&x| x as f64).collect();
            let (s0, q0) = (u.action(&t64), u.topological_charge(&t64));
            assert!((q0 - 1.0).abs() < 1e-6, "{q0}");
            let mut signs = [0, 0];
            for _ in 0..64 {
                let mut img = vec![0.0f32; theta.len()];
                augment_links(&mut img, &theta, lat, &mut rng);
                let t: Vec<f64> = img.iter().map(|&x| x as f64).collect();
                assert!((u.action(&t) - s0).abs() < 1e-9 * s0.abs().max(1.0), "{lat}: {} vs {s0}", u.action(&t));
                let q = u.topological_charge(&t);
                assert!((q.abs() - 1.0).abs() < 1e-6, "{lat}: Q = {q}");
                signs[usize::from(q > 0.0)] += 1;
            }
            assert!(signs[0] > 0 && signs[1] > 0, "{signs:?}");
        }
    }
}
