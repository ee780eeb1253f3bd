//! The network input of a link field: cos θ_P and sin θ_P of every plaquette, [2, L_t, L_x]
//! (gauge invariant, bounded, and continuous across the 2π wrap of any link).

use crate::lattice::Lattice;
use crate::theory::U1;

/// Writes [cos θ_P; sin θ_P] of the links `theta` ([2, L_t, L_x]) to `out` ([2, L_t, L_x]).
pub fn plaquette_features(lat: Lattice, theta: &[f64], out: &mut [f32]) {
    let v = lat.volume();
    let (c, s) = out.split_at_mut(v);
    // β does not enter the plaquette angles.
    for (i, a) in U1::new(lat, 1.0).plaquette_angles(theta).into_iter().enumerate() {
        let (sn, cs) = a.sin_cos();
        c[i] = cs as f32;
        s[i] = sn as f32;
    }
}

/// [`plaquette_features`] of a batch of link fields, 2V values in and out per configuration.
pub fn batch_features(lat: Lattice, theta: &[f64]) -> Vec<f32> {
    use rayon::prelude::*;
    let n = 2 * lat.volume();
    let mut x = vec![0.0f32; theta.len()];
    x.par_chunks_mut(n).zip(theta.par_chunks(n)).for_each(|(o, t)| plaquette_features(lat, t, o));
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// A random gauge transformation (and any link's 2π shift) leaves the features unchanged.
    #[test]
    fn features_are_gauge_invariant() {
        let lat = Lattice::new(4, 6);
        let mut rng = crate::rng::stream(3, crate::rng::Domain::Misc, 0);
        let mut theta: Vec<f64> = (0..2 * lat.volume()).map(|_| rng.random_range(-3.0..3.0)).collect();
        let alpha: Vec<f64> = (0..lat.volume()).map(|_| rng.random_range(-3.0..3.0)).collect();
        let mut a = vec![0.0f32; theta.len()];
        plaquette_features(lat, &theta, &mut a);
        U1::new(lat, 1.0).gauge_transform(&mut theta, &alpha);
        theta[5] += 2.0 * std::f64::consts::PI;
        let mut b = vec![0.0f32; theta.len()];
        plaquette_features(lat, &theta, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // cos² + sin² = 1 per plaquette.
        let v = lat.volume();
        assert!((0..v).all(|i| (a[i] * a[i] + a[v + i] * a[v + i] - 1.0).abs() < 1e-6));
    }
}
