//! Training data: per-rank shards of an ensemble, stratified batch slots, symmetry
//! augmentation, and statistics of the data (σ_data, σ_max, two-point function).
//!
//! Batches are stratified: the training configurations are cut into B contiguous strata
//! and batch slot j always draws from stratum j with its own random stream. A rank owning
//! slots [j0, j1) therefore reads only the contiguous union of their strata (its shard),
//! and the global batch, slot for slot, is the same whatever the number of ranks.

use crate::dist::block_of;
use crate::io::Ensemble;
use crate::lattice::fft;
use crate::lattice::Lattice;
use crate::rng::Stream;
use anyhow::{bail, Result};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

pub struct Shard {
    pub lattice: Lattice,
    /// Values per configuration (V, or C·V for C values per site).
    pub dof: usize,
    /// Number of training configurations (the held-out ones excluded).
    pub n_train: usize,
    /// Training position of the first configuration held here.
    pub start: usize,
    pub configs: Vec<f32>,
}

/// Which rows of an ensemble train the network and which validate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Ensemble rows of the training configurations, ascending (training position → row).
    pub train: Vec<usize>,
    /// Ensemble rows of the held-out configurations, ascending.
    pub val: Vec<usize>,
    /// The held-out chains, when whole chains were held out.
    pub val_chains: Vec<i64>,
}

impl Split {
    pub fn n_train(&self) -> usize {
        self.train.len()
    }
}

/// Holds out whole Markov chains for validation: configurations of one chain are
/// correlated, so rows of the training chains (e.g. their last rows) would validate the
/// network on near-copies of its training data. The last ⌈val_fraction · n_chains⌉ chains
/// (at least one, never all) are held out; `chain` is the ensemble's /chain column. Without
/// it, or with a single chain, the last rows are held out instead (`val_chains` empty).
/// At most 1024 held-out configurations are used.
pub fn split(chain: Option<&[i64]>, n: usize, val_fraction: f64) -> Split {
    let mut ids: Vec<i64> = chain.map(|c| c.to_vec()).unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    if val_fraction > 0.0 && ids.len() >= 2 {
        let k = ((ids.len() as f64 * val_fraction).ceil() as usize).clamp(1, ids.len() - 1);
        let held: Vec<i64> = ids[ids.len() - k..].to_vec();
        let chain = chain.expect("chain column");
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (row, c) in chain.iter().enumerate() {
            if held.binary_search(c).is_ok() {
                val.push(row);
            } else {
                train.push(row);
            }
        }
        val.truncate(1024);
        return Split { train, val, val_chains: held };
    }
    let n_val = if val_fraction > 0.0 { ((n as f64 * val_fraction).round() as usize).clamp(1, 1024) } else { 0 };
    let n_train = n - n_val.min(n.saturating_sub(1));
    Split { train: (0..n_train).collect(), val: (n_train..n).collect(), val_chains: Vec::new() }
}

/// The configurations of `rows` (ascending), read in contiguous runs.
pub fn read_rows(e: &Ensemble, rows: &[usize]) -> Result<Vec<f32>> {
    let v = e.lattice.volume();
    let mut out = Vec::with_capacity(rows.len() * v);
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j] == rows[j - 1] + 1 {
            j += 1;
        }
        out.extend(e.read_configs(rows[i], rows[j - 1] + 1)?);
        i = j;
    }
    Ok(out)
}

/// Stratum of batch slot `slot` among `batch` slots over `n_train` configurations.
pub fn stratum(n_train: usize, batch: usize, slot: usize) -> (usize, usize) {
    block_of(n_train, batch, slot)
}

impl Shard {
    /// Reads the strata of slots [j0, j1) (training positions, mapped to rows by `split`).
    pub fn read(e: &Ensemble, split: &Split, batch: usize, j0: usize, j1: usize) -> Result<Self> {
        let n_train = split.n_train();
        if n_train < batch {
            bail!("batch: {batch} exceeds the {n_train} training configurations");
        }
        let a = stratum(n_train, batch, j0).0;
        let b = stratum(n_train, batch, j1 - 1).1;
        // One read of the row span, keeping the training rows: held-out rows are a small
        // fraction of it, and one read beats one per row.
        let (r0, r1) = (split.train[a], split.train[b - 1] + 1);
        let span = e.read_configs(r0, r1)?;
        let v = e.shape.len();
        let mut configs = Vec::with_capacity((b - a) * v);
        for &r in &split.train[a..b] {
            configs.extend_from_slice(&span[(r - r0) * v..][..v]);
        }
        Ok(Shard { lattice: e.lattice, dof: v, n_train, start: a, configs })
    }

    pub fn config(&self, position: usize) -> &[f32] {
        &self.configs[(position - self.start) * self.dof..][..self.dof]
    }
}

/// Writes a symmetry image of `src` into `dst`: a random translation, the theory's internal
/// symmetry `reflect` (φ⁴: φ → −φ, `Theory::reflect`) or not, and, on square lattices, one of
/// the 8 rotations/reflections, all exact symmetries of S.
pub fn augment(dst: &mut [f32], src: &[f32], lat: Lattice, reflect: &impl Fn(f32) -> f32, rng: &mut Stream) {
    let (lt, lx) = (lat.lt, lat.lx);
    let t0 = rng.random_range(0..lt);
    let x0 = rng.random_range(0..lx);
    let reflected = !rng.random::<bool>();
    let d8: u8 = if lat.is_square() { rng.random_range(0..8u8) } else { rng.random_range(0..4u8) };
    let (transpose, flip_t, flip_x) = (d8 & 4 != 0, d8 & 2 != 0, d8 & 1 != 0);
    for t in 0..lt {
        for x in 0..lx {
            let (mut st, mut sx) = ((t + t0) % lt, (x + x0) % lx);
            if flip_t {
                st = lt - 1 - st;
            }
            if flip_x {
                sx = lx - 1 - sx;
            }
            let v = if transpose { src[sx * lx + st] } else { src[st * lx + sx] };
            dst[t * lx + x] = if reflected { reflect(v) } else { v };
        }
    }
}

/// Writes a random symmetry image of a configuration (`dst`, `src`) from the stream: the
/// theory's augmentation ([`augment`] for a scalar field, `gauge::symmetry` for links).
pub type Augment<'a> = &'a (dyn Fn(&mut [f32], &[f32], &mut Stream) + Sync);

/// Fills a batch slot: a configuration from the slot's stratum (a symmetry image of it from
/// `augment`, if given), unit noise z and a noise level σ from the schedule, all from the
/// slot's own stream.
pub fn fill_slot(
    phi0: &mut [f32],
    z: &mut [f32],
    shard: &Shard,
    (batch, slot): (usize, usize),
    augment: Option<Augment>,
    schedule: &crate::diffusion::objective::SigmaSchedule,
    rng: &mut Stream,
) -> f32 {
    let (a, b) = stratum(shard.n_train, batch, slot);
    let idx = rng.random_range(a..b);
    let src = shard.config(idx);
    if let Some(augment) = augment {
        augment(phi0, src, rng);
    } else {
        phi0.copy_from_slice(src);
    }
    for v in z.iter_mut() {
        let g: f64 = StandardNormal.sample(rng);
        *v = g as f32;
    }
    schedule.sample(rng) as f32
}

/// Makes the slots antithetic pairs: slot 2j+1 takes slot 2j's configuration and σ with the
/// opposite noise (its own draws, already made, are discarded, so the streams advance as
/// without pairing and a resumed run stays bit for bit). `v` values per slot.
pub fn antithetic_pairs(phi0: &mut [f32], z: &mut [f32], sigma: &mut [f32], v: usize) {
    for j in (1..sigma.len()).step_by(2) {
        sigma[j] = sigma[j - 1];
        let (a, b) = phi0.split_at_mut(j * v);
        b[..v].copy_from_slice(&a[(j - 1) * v..]);
        let (a, b) = z.split_at_mut(j * v);
        b[..v].iter_mut().zip(&a[(j - 1) * v..]).for_each(|(d, s)| *d = -*s);
    }
}

/// RMS of the field (σ_data for the input preconditioning) and the largest distance
/// between two configurations (the default σ_max: noise that large makes any two
/// configurations indistinguishable), over the given configurations.
pub fn field_scales(configs: &[f32], v: usize) -> (f64, f64) {
    let n = configs.len() / v;
    let rms = (configs.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / configs.len().max(1) as f64).sqrt();
    let mut dmax: f64 = 0.0;
    for i in 0..n {
        for j in 0..i {
            let d: f64 =
                configs[i * v..][..v].iter().zip(&configs[j * v..][..v]).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            dmax = dmax.max(d);
        }
    }
    (rms, dmax.sqrt())
}

/// G(p) = ⟨|φ̃_p|²⟩/V, φ̃_p = Σ_x e^{−ip·x} φ_x, indexed nt·L_x + nx.
pub fn two_point(configs: &[f32], lat: Lattice) -> Vec<f64> {
    let v = lat.volume();
    let plan = fft::plan(lat);
    let mut ws = plan.work();
    let (mut g, mut p, mut phi) = (vec![0.0; v], vec![0.0; v], vec![0.0; v]);
    let mut n = 0usize;
    for c in configs.chunks_exact(v) {
        phi.iter_mut().zip(c).for_each(|(d, &x)| *d = x as f64);
        plan.power_spectrum(&phi, &mut p, &mut ws);
        g.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        n += 1;
    }
    g.iter_mut().for_each(|x| *x /= n.max(1) as f64);
    g
}

/// m = Σφ/V of each configuration.
pub fn magnetisations(configs: &[f32], lat: Lattice) -> Vec<f64> {
    let v = lat.volume();
    configs.chunks_exact(v).map(|c| c.iter().map(|&x| x as f64).sum::<f64>() / v as f64).collect()
}

/// Two-point function G(p) measured on `from`, carried to the lattice `to`: the
/// position-space G(x) within half of each extent of the origin (zero beyond),
/// transformed on `to`, and kept positive. Exact only when `to == from`.
pub fn resample_two_point(g: &[f64], from: Lattice, to: Lattice) -> Vec<f64> {
    if to == from {
        return g.to_vec();
    }
    // G(x) = (1/V) Σ_p G(p) e^{ip·x}: the operator G applied to a point source.
    let small = fft::plan(from);
    let mut delta = vec![0.0; from.volume()];
    delta[0] = 1.0;
    let mut gx = vec![0.0; from.volume()];
    small.apply_diag(g, &delta, &mut gx, &mut small.work());
    let (lt, lx, tt, tx) = (to.lt, to.lx, from.lt, from.lx);
    let signed = |i: usize, l: usize| -> i64 {
        if i <= l / 2 {
            i as i64
        } else {
            i as i64 - l as i64
        }
    };
    let mut emb = vec![0.0; to.volume()];
    for t in 0..tt {
        for x in 0..tx {
            let (dt, dx) = (signed(t, tt), signed(x, tx));
            if 2 * dt.unsigned_abs() as usize > lt || 2 * dx.unsigned_abs() as usize > lx {
                continue;
            }
            let (bt, bx) = (dt.rem_euclid(lt as i64) as usize, dx.rem_euclid(lx as i64) as usize);
            emb[bt * lx + bx] += gx[t * tx + x];
        }
    }
    // G_to(p) = Re Σ_x G(x) e^{−ip·x}, read from the half spectrum (φ̃(−p) = conj φ̃(p)).
    let big = fft::plan(to);
    let mut ws = big.work();
    big.forward(&emb, &mut ws);
    let nxh = big.half_lx();
    let mut out = vec![0.0; to.volume()];
    for nt in 0..lt {
        for nx in 0..lx {
            let (t, k) = if nx < nxh { (nt, nx) } else { ((lt - nt) % lt, lx - nx) };
            out[nt * lx + nx] = ws.spectrum()[big.half_index(t, k)].re;
        }
    }
    let gmax = out.iter().cloned().fold(0.0, f64::max);
    out.iter_mut().for_each(|x| *x = x.max(1e-6 * gmax.max(1e-12)));
    out
}

/// G(p) measured on `from`, carried to `to` by taking each momentum's nearest measured
/// momentum (rounded towards zero at ties, so that G stays even, G(−p) = G(p)). Unlike
/// [`resample_two_point`] it never produces a near-zero G(p): the physics prior subtracts
/// ½φᵀG⁻¹φ, and one spuriously small G(p) there is an anti-restoring force that blows the
/// sampler up. Exact when `to == from`.
pub fn nearest_momentum_two_point(g: &[f64], from: Lattice, to: Lattice) -> Vec<f64> {
    if to == from {
        return g.to_vec();
    }
    let nearest = |n: usize, l_to: usize, l_from: usize| -> usize {
        let signed = if n <= l_to / 2 { n as f64 } else { n as f64 - l_to as f64 };
        let x = signed * l_from as f64 / l_to as f64;
        // Round half towards zero: symmetric under n → −n.
        let r = x.signum() * (x.abs() - 0.5).ceil().max(0.0);
        (r as i64).rem_euclid(l_from as i64) as usize
    };
    let mut out = Vec::with_capacity(to.volume());
    for nt in 0..to.lt {
        for nx in 0..to.lx {
            out.push(g[nearest(nt, to.lt, from.lt) * from.lx + nearest(nx, to.lx, from.lx)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Antithetic slots: odd slots repeat the even slot's configuration and σ with −z; even
    /// slots are untouched.
    #[test]
    fn antithetic_pairs_share_configuration_and_sigma_with_opposite_noise() {
        let v = 3;
        let mut phi: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut z: Vec<f32> = (0..12).map(|i| 0.5 + i as f32).collect();
        let mut sigma = vec![0.1, 0.2, 0.3, 0.4];
        antithetic_pairs(&mut phi, &mut z, &mut sigma, v);
        assert_eq!(sigma, [0.1, 0.1, 0.3, 0.3]);
        assert_eq!(phi, [0., 1., 2., 0., 1., 2., 6., 7., 8., 6., 7., 8.]);
        assert_eq!(z, [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 6.5, 7.5, 8.5, -6.5, -7.5, -8.5]);
    }

    #[test]
    fn nearest_momentum_two_point_is_even_positive_and_exact_on_its_lattice() {
        let from = Lattice::new(4, 6);
        let g: Vec<f64> = (0..24)
            .map(|i| {
                // Exactly even: the cosines of ±p from the same folded index.
                let (nt, nx) = ((i / 6).min(4 - i / 6), (i % 6).min(6 - i % 6));
                let (ct, cx) =
                    ((nt as f64 * std::f64::consts::PI / 2.0).cos(), (nx as f64 * std::f64::consts::PI / 3.0).cos());
                1.0 / (2.2 - ct - cx)
            })
            .collect();
        assert_eq!(nearest_momentum_two_point(&g, from, from), g);
        let to = Lattice::new(8, 12);
        let h = nearest_momentum_two_point(&g, from, to);
        for nt in 0..8 {
            for nx in 0..12 {
                let m = ((8 - nt) % 8) * 12 + (12 - nx) % 12;
                assert_eq!(h[nt * 12 + nx], h[m], "G(-p) = G(p) at ({nt}, {nx})");
            }
        }
        // Momenta present on both lattices keep their value; every value is a measured one.
        assert_eq!(h[2 * 12 + 2], g[6 + 1]);
        assert!(h.iter().all(|x| g.contains(x)));
    }

    /// Rows in (round, chain) order as `latdiff hmc` writes them: whole chains are held out.
    #[test]
    fn validation_holds_out_whole_chains() {
        let chain: Vec<i64> = (0..40).map(|i| i % 8).collect();
        let s = split(Some(&chain), 40, 0.2);
        assert_eq!(s.val_chains, vec![6, 7]);
        assert!(s.val.iter().all(|&r| chain[r] >= 6) && s.val.len() == 10);
        assert!(s.train.iter().all(|&r| chain[r] < 6) && s.train.len() == 30);
        // Never every chain, at least one.
        assert_eq!(split(Some(&chain), 40, 0.01).val_chains, vec![7]);
        assert_eq!(split(Some(&[0, 1, 0, 1]), 4, 0.49).val_chains, vec![1]);
        // One chain (or no /chain column): the last rows.
        let s = split(Some(&[3; 10]), 10, 0.2);
        assert_eq!((s.train, s.val, s.val_chains), ((0..8).collect(), vec![8, 9], vec![]));
        assert_eq!(split(None, 10, 0.0).val, Vec::<usize>::new());
    }

    #[test]
    fn strata_tile_and_shards_are_contiguous() {
        let (n, b) = (103, 16);
        let mut next = 0;
        for j in 0..b {
            let (a, e) = stratum(n, b, j);
            assert_eq!(a, next);
            assert!(e > a);
            next = e;
        }
        assert_eq!(next, n);
    }

    #[test]
    fn augmentation_preserves_the_action() {
        use crate::theory::{Action, Parametrisation, Phi4, Theory};
        for lat in [Lattice::square(6), Lattice::new(4, 6)] {
            let th = Phi4::new(lat, Parametrisation::Hopping { kappa: 0.3, lambda: 0.1 });
            let mut rng = crate::rng::stream(1, crate::rng::Domain::Misc, 0);
            let src: Vec<f32> = (0..lat.volume()).map(|_| rng.random_range(-2.0..2.0f32)).collect();
            let s0 = th.action(&src.iter().map(|&x| x as f64).collect::<Vec<_>>());
            let mut seen = std::collections::HashSet::new();
            for _ in 0..64 {
                let mut dst = vec![0.0; lat.volume()];
                augment(&mut dst, &src, lat, &|v| th.reflect(v), &mut rng);
                let s = th.action(&dst.iter().map(|&x| x as f64).collect::<Vec<_>>());
                assert!((s - s0).abs() < 1e-4 * s0.abs().max(1.0), "{lat}: {s} vs {s0}");
                seen.insert(dst.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
            assert!(seen.len() > 20, "augmentation should produce many distinct images");
        }
    }

    #[test]
    fn two_point_of_a_plane_wave() {
        let lat = Lattice::new(4, 6);
        // φ = cos(2π·x/6): power only at kx = ±1, kt = 0, |φ̃|² = (V/2)², G = V/4.
        let c: Vec<f32> = (0..24).map(|i| (2.0 * std::f64::consts::PI * (i % 6) as f64 / 6.0).cos() as f32).collect();
        let g = two_point(&c, lat);
        for (i, &x) in g.iter().enumerate() {
            let expect = if i == 1 || i == 5 { 6.0 } else { 0.0 };
            assert!((x - expect).abs() < 1e-5, "mode {i}: {x}");
        }
    }

    /// The FFT resampling equals the direct sums it replaces: G(x) by a cosine sum over the
    /// training modes, then a cosine sum over the embedded G(x) on the new lattice.
    #[test]
    fn resampled_two_point_matches_direct_sums() {
        let (from, to) = (Lattice::new(4, 6), Lattice::new(8, 10));
        let g: Vec<f64> = (0..from.volume()).map(|i| 1.0 / (0.3 + from.phat2(i / from.lx, i % from.lx))).collect();
        let got = resample_two_point(&g, from, to);
        let pi2 = 2.0 * std::f64::consts::PI;
        let (tt, tx, lt, lx) = (from.lt, from.lx, to.lt, to.lx);
        let gx = |t: usize, x: usize| -> f64 {
            let mut s = 0.0;
            for kt in 0..tt {
                for kx in 0..tx {
                    s +=
                        g[kt * tx + kx] * (pi2 * (kt * t) as f64 / tt as f64 + pi2 * (kx * x) as f64 / tx as f64).cos();
                }
            }
            s / from.volume() as f64
        };
        let signed = |i: usize, l: usize| -> i64 {
            if i <= l / 2 {
                i as i64
            } else {
                i as i64 - l as i64
            }
        };
        for kt in 0..lt {
            for kx in 0..lx {
                let mut s = 0.0;
                for t in 0..tt {
                    for x in 0..tx {
                        let (dt, dx) = (signed(t, tt), signed(x, tx));
                        if 2 * dt.unsigned_abs() as usize > lt || 2 * dx.unsigned_abs() as usize > lx {
                            continue;
                        }
                        s += gx(t, x)
                            * (pi2 * (kt as f64 * dt as f64) / lt as f64 + pi2 * (kx as f64 * dx as f64) / lx as f64)
                                .cos();
                    }
                }
                let want = s.max(1e-6 * 1e-12);
                assert!(
                    (got[kt * lx + kx] - want).abs() < 1e-10 * (1.0 + want.abs()),
                    "({kt},{kx}): {} vs {want}",
                    got[kt * lx + kx]
                );
            }
        }
        assert_eq!(resample_two_point(&g, from, from), g);
    }
}
