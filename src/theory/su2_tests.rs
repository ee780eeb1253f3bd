use super::*;

fn rng(seed: u64) -> Stream {
    crate::rng::stream(seed, crate::rng::Domain::Misc, 0)
}

fn hot(lat: Lattice, seed: u64) -> Vec<f64> {
    Su2::new(lat, 1.0).hot_start(&mut rng(seed))
}

/// The quaternion as the 2 × 2 complex matrix a0 + i a·σ, row-major (re, im).
fn matrix(q: Quat) -> [[(f64, f64); 2]; 2] {
    [[(q[0], q[3]), (q[2], q[1])], [(-q[2], q[1]), (q[0], -q[3])]]
}

/// `qmul` is the matrix product of a0 + i a·σ, `qdag` the Hermitian conjugate, a0 = ½ tr.
#[test]
fn quaternions_are_su2_matrices() {
    let mut r = rng(1);
    let q: Vec<f64> = Su2::new(Lattice::square(2), 1.0).hot_start(&mut r);
    let (p, s) = ([q[0], q[1], q[2], q[3]], [q[4], q[5], q[6], q[7]]);
    let (a, b, c) = (matrix(p), matrix(s), matrix(qmul(p, s)));
    for i in 0..2 {
        for j in 0..2 {
            let (mut re, mut im) = (0.0, 0.0);
            for k in 0..2 {
                re += a[i][k].0 * b[k][j].0 - a[i][k].1 * b[k][j].1;
                im += a[i][k].0 * b[k][j].1 + a[i][k].1 * b[k][j].0;
            }
            assert!((re - c[i][j].0).abs() < 1e-15 && (im - c[i][j].1).abs() < 1e-15, "({i},{j})");
        }
    }
    let (d, m) = (matrix(qdag(p)), matrix(p));
    for i in 0..2 {
        for j in 0..2 {
            assert_eq!(d[i][j], (m[j][i].0, -m[j][i].1));
        }
    }
    assert!((qmul(p, qdag(p))[0] - 1.0).abs() < 1e-15);
    // exp(i ε p·σ) is of unit norm, and exp(−iεp·σ) its inverse.
    let e = exp_algebra([0.3, -1.2, 0.5], 0.7);
    assert!((e.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-15);
    let id = qmul(e, exp_algebra([0.3, -1.2, 0.5], -0.7));
    assert!((id[0] - 1.0).abs() < 1e-15 && id[1..].iter().all(|x| x.abs() < 1e-15), "{id:?}");
}

/// S, the plaquettes' traces and the Polyakov loops are unchanged by a random gauge
/// transformation; the cold start has S = 0.
#[test]
fn action_is_gauge_invariant() {
    for lat in [Lattice::square(4), Lattice::new(3, 5)] {
        let th = Su2::new(lat, 2.3);
        for seed in 0..5 {
            let mut u = hot(lat, seed);
            let (s, m) = th.action_and_monitor(&u);
            let g = Su2::new(Lattice::new(lat.lt, lat.lx), 1.0).hot_start(&mut rng(100 + seed));
            th.gauge_transform(&mut u, &g[..4 * lat.volume()]);
            let (s2, m2) = th.action_and_monitor(&u);
            assert!((s - s2).abs() < 1e-12 * s.abs(), "{lat}: S {s} vs {s2}");
            assert!((m - m2).abs() < 1e-12, "{lat}: Polyakov {m} vs {m2}");
            assert!(first_non_unit(&u, 1e-14).is_none());
        }
        assert_eq!(th.action(&th.cold_start(&mut rng(0))), 0.0);
    }
}

/// S of a random left multiplication of one link, by the generator a.
fn shifted_action(th: &Su2, u: &[f64], link_i: usize, a: usize, h: f64) -> f64 {
    let mut w = u.to_vec();
    let mut p = [0.0; 3];
    p[a] = 1.0;
    let e = exp_algebra(p, h);
    let old = [w[4 * link_i], w[4 * link_i + 1], w[4 * link_i + 2], w[4 * link_i + 3]];
    w[4 * link_i..4 * link_i + 4].copy_from_slice(&qmul(e, old));
    th.action(&w)
}

/// `deriv` is d/ds S(e^{isσ_a} U) by central differences, and the fused kick is
/// mom − ε·deriv.
#[test]
fn force_matches_finite_differences() {
    for (lat, beta) in [(Lattice::square(4), 2.5), (Lattice::new(3, 5), 0.7), (Lattice::new(2, 2), 1.3)] {
        let th = Su2::new(lat, beta);
        let u = hot(lat, 7);
        let n_links = 2 * lat.volume();
        let mut d = vec![0.0; 3 * n_links];
        th.deriv(&u, &mut d);
        let h = 1e-5;
        for l in 0..n_links {
            for a in 0..3 {
                let fd = (shifted_action(&th, &u, l, a, h) - shifted_action(&th, &u, l, a, -h)) / (2.0 * h);
                let got = d[3 * l + a];
                assert!((fd - got).abs() < 1e-7 * (1.0 + fd.abs()), "{lat} link {l} a {a}: fd {fd} vs {got}");
            }
        }
        let mut mom: Vec<f64> = (0..3 * n_links).map(|i| 0.1 * i as f64).collect();
        th.kick(&u, &mut mom, 0.3);
        for (i, (m, di)) in mom.iter().zip(&d).enumerate() {
            assert!((m - (0.1 * i as f64 - 0.3 * di)).abs() < 1e-13, "kick {i}");
        }
    }
}

/// Exact drifts keep links on S³ to rounding over 10⁵ updates, and a link pushed off it
/// by more than `REUNITARISE_TOL` is projected back by the next drift. (Reversibility with
/// the projection in place: tests/su2.rs.)
#[test]
fn reunitarisation_keeps_links_on_the_group() {
    let lat = Lattice::square(2);
    let mut u = hot(lat, 5);
    let mut p = vec![0.0; 3 * 8];
    Su2Links.sample_momenta(&mut rng(6), &mut p);
    for _ in 0..100_000 {
        Su2Links.drift(&mut u, &p, 0.01);
    }
    assert!(first_non_unit(&u, REUNITARISE_TOL * 1.01).is_none());
    u.iter_mut().take(4).for_each(|x| *x *= 1.0 + 5e-13);
    assert!(first_non_unit(&u, REUNITARISE_TOL).is_some());
    let before = u[4..].to_vec();
    Su2Links.drift(&mut u, &p, 0.0);
    assert!(first_non_unit(&u[..4], 1e-15).is_none(), "the link off the group is projected");
    assert_eq!(&u[4..], &before[..], "links on the group are not touched by a zero drift");
}

/// The heat kernel of the forward noise integrates to one over the Haar measure
/// (2/π) sin²θ dθ, and narrows to a point as σ → 0.
#[test]
fn heat_kernel_is_normalised() {
    for sigma in [0.3, 1.0, 2.0] {
        let n = 4000;
        let h = std::f64::consts::PI / n as f64;
        let total: f64 = (1..n)
            .map(|i| {
                let th = i as f64 * h;
                let x = [th.cos(), th.sin(), 0.0, 0.0];
                2.0 / std::f64::consts::PI * th.sin().powi(2) * heat_kernel_log(&x, &[1.0, 0.0, 0.0, 0.0], sigma).exp()
            })
            .sum::<f64>()
            * h;
        assert!((total - 1.0).abs() < 1e-8, "σ = {sigma}: {total}");
    }
    let near = heat_kernel_log(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0], 0.3);
    let far = heat_kernel_log(&[0.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0], 0.3);
    assert!(near > far + 10.0, "{near} vs {far}");
}

#[test]
fn attributes_round_trip_and_files_must_hold_unit_links() {
    use super::super::Couplings;
    let a = Su2::new(Lattice::square(4), 2.5).attrs();
    let text = |k: &str| a.labels.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let number = |k: &str| a.couplings.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(Couplings::from_attrs(&text, &number), Ok(Couplings::Su2 { beta: 2.5 }));
    assert!(Couplings::from_attrs(&text, &|_| None).unwrap_err().contains("'beta' missing"));
    let mut u = hot(Lattice::square(2), 1);
    assert!(first_non_unit(&u, FILE_UNIT_TOL).is_none());
    u[9] += 0.01;
    assert_eq!(first_non_unit(&u, FILE_UNIT_TOL).map(|(i, _)| i), Some(2));
    u[9] = f64::NAN;
    assert!(first_non_unit(&u, FILE_UNIT_TOL).is_some());
}
