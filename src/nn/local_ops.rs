//! The action network's explicit local operators: S_ops(x, σ) = Σ_k c_k(σ) O_k(x) with
//! O = (Σ_s Σ_μ x_s x_{s+μ}, Σ_s x_s (x_{s+t̂+x̂} + x_{s+t̂−x̂}), Σ_s x_s², Σ_s x_s⁴) on the
//! periodic lattice, μ forward, and
//! c(σ) polynomials in σ² (`action.rs`: `ops_sigma_features`; it adds them to Σ_s e_θ when the
//! architecture asks for `operators`).
//!
//! Why: a stack of SiLU convolutions builds the products x_s x_{s+μ} of a lattice action
//! only from the curvature of its activations, and DSM with finite data lets that
//! approximation trade the nearest-neighbour coupling against the operators nearly
//! collinear with it (next-nearest hopping, the mass term) at little cost in the loss. With
//! the terms explicit, the φ⁴ family is represented exactly with e_θ = 0 and its couplings
//! are learnt as a few numbers per σ; e_θ learns what is left. The diagonal hopping is there
//! because the noised action p_σ = p ∗ N(0, σ²) has one at O(σ²) (the square of the
//! hopping matrix), so that the σ dependence of the training range is carried by the
//! explicit terms too. The terms are generic (the lowest local operators of a Z₂-symmetric
//! scalar), their coefficients are learnt from the data, never given.
//!
//! Each function works on one configuration [L_t, L_x]; `action.rs` runs them per sample.

use super::float::Float;

/// Operators of the explicit terms: nearest-neighbour hopping, diagonal hopping, x², x⁴.
pub const N_OPS: usize = 4;

/// Names of the operators, in the order of the coefficients.
pub const OP_NAMES: [&str; N_OPS] = ["hop", "hop_nnn", "x^2", "x^4"];

/// The four forward/backward neighbours of site (t, x) on the periodic lattice (also the
/// gradient stencil of `fit-action`'s hopping operator).
pub fn neighbour_sum<T: Float>(x: &[T], t: usize, s: usize, lt: usize, lx: usize) -> T {
    let row = |t: usize| t * lx;
    x[row((t + 1) % lt) + s] + x[row((t + lt - 1) % lt) + s] + x[row(t) + (s + 1) % lx] + x[row(t) + (s + lx - 1) % lx]
}

/// The four diagonal neighbours of site (t, x).
pub fn diagonal_sum<T: Float>(x: &[T], t: usize, s: usize, lt: usize, lx: usize) -> T {
    let (tp, tm) = ((t + 1) % lt * lx, (t + lt - 1) % lt * lx);
    let (sp, sm) = ((s + 1) % lx, (s + lx - 1) % lx);
    x[tp + sp] + x[tp + sm] + x[tm + sp] + x[tm + sm]
}

/// O_k(x) of one configuration.
pub fn ops_forward<T: Float>(x: &[T], lt: usize, lx: usize) -> [T; N_OPS] {
    let mut o = [T::ZERO; N_OPS];
    for t in 0..lt {
        for s in 0..lx {
            let v = x[t * lx + s];
            let v2 = v * v;
            let tp = (t + 1) % lt * lx;
            o[0] += v * (x[tp + s] + x[t * lx + (s + 1) % lx]);
            o[1] += v * (x[tp + (s + 1) % lx] + x[tp + (s + lx - 1) % lx]);
            o[2] += v2;
            o[3] += v2 * v2;
        }
    }
    o
}

/// ∂O_k/∂x_s at site (t, s).
fn op_derivs<T: Float>(x: &[T], t: usize, s: usize, lt: usize, lx: usize) -> [T; N_OPS] {
    let v = x[t * lx + s];
    [neighbour_sum(x, t, s, lt, lx), diagonal_sum(x, t, s, lt, lx), T::from_f64(2.0) * v, T::from_f64(4.0) * v * v * v]
}

/// gx_s += Σ_k c_k ∂O_k/∂x_s: the terms' part of the input gradient.
pub fn ops_input_grad<T: Float>(gx: &mut [T], x: &[T], c: &[T], lt: usize, lx: usize) {
    for t in 0..lt {
        for s in 0..lx {
            let d = op_derivs(x, t, s, lt, lx);
            gx[t * lx + s] += (0..N_OPS).map(|k| c[k] * d[k]).sum::<T>();
        }
    }
}

/// dc_k += Σ_s dgx_s ∂O_k/∂x_s: the backward of `ops_input_grad` in the coefficients (it is
/// linear in them; x is the network's input, not a parameter).
pub fn ops_input_grad_backward<T: Float>(dc: &mut [T], dgx: &[T], x: &[T], lt: usize, lx: usize) {
    for t in 0..lt {
        for s in 0..lx {
            let d = op_derivs(x, t, s, lt, lx);
            let g = dgx[t * lx + s];
            for k in 0..N_OPS {
                dc[k] += g * d[k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{check_grad, rand_vec};

    /// Known values: x = 1 at (0, 0), 2 at (1, 0) and (1, 1) on a 3×4 lattice (bonds
    /// (0,0)–(1,0) = 2 and (1,0)–(1,1) = 4; diagonal (0,0)–(1,1) = 2).
    #[test]
    fn operators_of_a_known_configuration() {
        let mut x = vec![0.0f64; 12];
        x[0] = 1.0;
        x[4] = 2.0;
        x[5] = 2.0;
        assert_eq!(ops_forward(&x, 3, 4), [6.0, 2.0, 9.0, 33.0]);
    }

    /// The input gradient is the gradient of Σ_k c_k O_k (central differences, f64), on a
    /// non-square lattice so that a transposed neighbour fails.
    #[test]
    fn input_gradient_matches_finite_differences() {
        let (lt, lx) = (3, 5);
        let c = [0.7, -0.3, -0.4, 0.15];
        let mut x = rand_vec(lt * lx, 1);
        let mut gx = vec![0.0; lt * lx];
        ops_input_grad(&mut gx, &x, &c, lt, lx);
        check_grad("ops dS/dx", &mut x, &gx, |x| ops_forward(x, lt, lx).iter().zip(&c).map(|(o, c)| o * c).sum());
    }

    /// dc of ⟨q, gx⟩ against central differences in c.
    #[test]
    fn coefficient_backward_matches_finite_differences() {
        let (lt, lx) = (4, 3);
        let x = rand_vec(lt * lx, 2);
        let q = rand_vec(lt * lx, 3);
        let mut c = vec![0.3, -0.5, 0.9, -0.2];
        let mut dc = vec![0.0; N_OPS];
        ops_input_grad_backward(&mut dc, &q, &x, lt, lx);
        check_grad("ops dc", &mut c, &dc, |c| {
            let mut gx = vec![0.0; lt * lx];
            ops_input_grad(&mut gx, &x, c, lt, lx);
            gx.iter().zip(&q).map(|(a, b)| a * b).sum()
        });
    }
}
