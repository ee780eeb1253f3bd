use super::*;
use crate::nn::gradcheck::{check_grad, check_grad_at, pick_indices, rand_vec};

/// Three layers (so a middle layer's forward-pass adjoint is exercised), a non-square lattice
/// (so a transposed index fails), and every parameter away from its initial zero; with the
/// explicit operator terms (the tests run both networks).
fn setup() -> (ActionNet, Vec<f64>, usize, usize, usize) {
    setup_with(true)
}

fn setup_with(operators: bool) -> (ActionNet, Vec<f64>, usize, usize, usize) {
    let arch =
        ActionArch { channels: 3, layers: 3, fourier_features: 2, fourier_scale: 1.0, fourier_seed: 11, operators };
    let net = ActionNet::new(arch);
    let p: Vec<f64> =
        net.init_params::<f64>(5).iter().zip(rand_vec(net.num_params(), 6)).map(|(a, r)| a + 0.3 * r).collect();
    (net, p, 2, 4, 6)
}

fn actions(net: &ActionNet, p: &[f64], x: &[f64], sigma: &[f64], lt: usize, lx: usize) -> Vec<f64> {
    let mut ws = ActionWorkspace::new(net, sigma.len(), lt, lx);
    let mut s = vec![0.0; sigma.len()];
    net.forward(&mut s, p, x, sigma, &mut ws);
    s
}

/// The score is −∂S/∂x: the input gradient against central differences of S itself.
#[test]
fn input_gradient_is_the_gradient_of_the_action() {
    for operators in [false, true] {
        let (net, p, b, lt, lx) = setup_with(operators);
        let sigma = [0.2, 3.0];
        let mut x = rand_vec(b * lt * lx, 1);
        let mut ws = ActionWorkspace::new(&net, b, lt, lx);
        let mut s = vec![0.0; b];
        net.forward(&mut s, &p, &x, &sigma, &mut ws);
        let mut gx = vec![0.0; x.len()];
        net.input_grad(&mut gx, &p, &mut ws);
        check_grad("dS/dx", &mut x, &gx, |x| actions(&net, &p, x, &sigma, lt, lx).iter().sum());
    }
}

/// The backward of the input gradient, checked on every parameter tensor separately (layer
/// by layer): ∂/∂θ ⟨q, ∂S/∂x⟩ against central differences.
#[test]
fn second_order_backward_matches_finite_differences_per_layer() {
    for operators in [false, true] {
        let (net, mut p, b, lt, lx) = setup_with(operators);
        let sigma = [0.05, 1.3];
        let x = rand_vec(b * lt * lx, 2);
        let q = rand_vec(b * lt * lx, 3);
        let mut ws = ActionWorkspace::new(&net, b, lt, lx);
        let mut s = vec![0.0; b];
        net.forward(&mut s, &p, &x, &sigma, &mut ws);
        let mut gx = vec![0.0; x.len()];
        net.input_grad(&mut gx, &p, &mut ws);
        let mut dp = vec![0.0; p.len()];
        net.input_grad_backward(&mut dp, &q, &p, &mut ws);
        let head_b = net.layout.find("head.b").unwrap();
        assert_eq!(dp[net.layout.range(head_b)], [0.0], "the score cannot depend on the action's constant");
        for (k, e) in net.layout.entries.iter().enumerate() {
            if k == head_b {
                continue;
            }
            let idx: Vec<usize> = pick_indices(e.len(), 12, k as u64).into_iter().map(|i| i + e.offset).collect();
            check_grad_at(&e.name, &mut p, &dp, &idx, &mut |p: &[f64]| {
                let mut ws = ActionWorkspace::new(&net, b, lt, lx);
                let mut s = vec![0.0; b];
                net.forward(&mut s, p, &x, &sigma, &mut ws);
                let mut gx = vec![0.0; x.len()];
                net.input_grad(&mut gx, p, &mut ws);
                gx.iter().zip(&q).map(|(a, b)| a * b).sum()
            });
        }
    }
}

/// The whole score-matching loss ℓ = Σ (a F + e)², F = −∂S/∂x: its parameter gradient.
#[test]
fn score_loss_gradient_matches_finite_differences() {
    for operators in [false, true] {
        let (net, mut p, b, lt, lx) = setup_with(operators);
        let sigma = [0.1, 2.0];
        let x = rand_vec(b * lt * lx, 4);
        let e = rand_vec(b * lt * lx, 5);
        let a = [0.4, 1.6];
        let mut ws = ActionWorkspace::new(&net, b, lt, lx);
        let mut per = [0.0; 2];
        let loss = net.score_loss_forward(&mut per, &p, &x, &sigma, &a, &e, &mut ws);
        assert!((loss - 0.5 * (per[0] + per[1])).abs() < 1e-12);
        // ℓ_b by hand from the input gradient.
        let mut gx = vec![0.0; x.len()];
        net.input_grad(&mut gx, &p, &mut ws);
        let v = lt * lx;
        let by_hand: f64 = (0..v).map(|i| (e[i] - a[0] * gx[i]).powi(2)).sum();
        assert!((per[0] - by_hand).abs() < 1e-12 * by_hand);
        let mut dp = vec![0.0; p.len()];
        net.score_loss_backward(&mut dp, &p, &mut ws);
        check_grad("score loss", &mut p, &dp, |p| {
            let mut ws = ActionWorkspace::new(&net, b, lt, lx);
            net.score_loss_forward(&mut [0.0; 2], p, &x, &sigma, &a, &e, &mut ws)
        });
    }
}

/// S is a sum of one local density over a periodic lattice: invariant under every periodic
/// translation, and a 2×2 tiling of a configuration has four times its action.
#[test]
fn action_is_translation_invariant_and_extensive() {
    let (net, p, _, lt, lx) = setup();
    let x = rand_vec(lt * lx, 7);
    let sigma = [0.3];
    let s0 = actions(&net, &p, &x, &sigma, lt, lx)[0];
    assert!(s0.abs() > 1e-3, "a trivial action proves nothing: {s0}");
    for (dt, dx) in [(1, 0), (0, 1), (3, 5), (2, 3)] {
        let shifted: Vec<f64> = (0..lt * lx).map(|i| x[((i / lx + dt) % lt) * lx + (i % lx + dx) % lx]).collect();
        let s = actions(&net, &p, &shifted, &sigma, lt, lx)[0];
        assert!((s - s0).abs() < 1e-12 * s0.abs(), "shift ({dt}, {dx}): {s} vs {s0}");
    }
    let tiled: Vec<f64> = (0..4 * lt * lx).map(|i| x[((i / (2 * lx)) % lt) * lx + (i % (2 * lx)) % lx]).collect();
    let s4 = actions(&net, &p, &tiled, &sigma, 2 * lt, 2 * lx)[0];
    assert!((s4 - 4.0 * s0).abs() < 1e-12 * s0.abs(), "tiled {s4} vs 4 × {s0}");
}

/// σ enters: the same configuration has different actions at different noise levels, and
/// the batch evaluates each configuration with its own σ.
#[test]
fn batch_entries_are_independent_and_sigma_enters() {
    let (net, p, _, lt, lx) = setup();
    let x = rand_vec(lt * lx, 8);
    let one = |s: f64| actions(&net, &p, &x, &[s], lt, lx)[0];
    let both = actions(&net, &p, &[x.clone(), x.clone()].concat(), &[0.1, 5.0], lt, lx);
    assert_eq!(both, vec![one(0.1), one(5.0)]);
    assert!((both[0] - both[1]).abs() > 1e-3 * both[0].abs());
}
