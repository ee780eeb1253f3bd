//! Philox4x32-10 on the host: the same function as `kernels/philox.cuh`, so that host-side
//! draws (HMC trajectory-length jitter and Metropolis uniforms) and parity tests agree with
//! the GPU bit for bit. A draw is a pure function of (seed, counter); see the header.

pub const HMC_MOMENTA: u32 = 0;
pub const HMC_ACCEPT: u32 = 1;
pub const SDE_NOISE: u32 = 2;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds; key = the 64-bit seed as (low, high) words.
pub fn philox4x32_10(mut c: [u32; 4], seed: u64) -> [u32; 4] {
    let (mut k0, mut k1) = (seed as u32, (seed >> 32) as u32);
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    c
}

/// (hi, lo) → uniform in (0, 1) with 53 bits, centred in its bin (never 0 or 1).
pub fn u01(hi: u32, lo: u32) -> f64 {
    let b = ((u64::from(hi) << 32) | u64::from(lo)) >> 11;
    (b as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// Two standard normals by Box–Muller from one block, as `philox_normal2` on the GPU.
pub fn normal2(r: [u32; 4]) -> (f64, f64) {
    let (u1, u2) = (u01(r[0], r[1]), u01(r[2], r[3]));
    let rad = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
    (rad * c, rad * s)
}

/// The `n` normals of stream `index` at `step` for `purpose` (sites 2j, 2j+1 from block j).
pub fn normals(seed: u64, index: u32, step: u32, purpose: u32, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    for j in 0..n.div_ceil(2) {
        let (a, b) = normal2(philox4x32_10([j as u32, index, step, purpose], seed));
        out.push(a);
        out.push(b);
    }
    out.truncate(n);
    out
}

/// The HMC uniforms of chain `chain` at trajectory `traj`: (trajectory-length jitter, Metropolis).
pub fn hmc_uniforms(seed: u64, chain: u32, traj: u32) -> (f64, f64) {
    let r = philox4x32_10([0, chain, traj, HMC_ACCEPT], seed);
    (u01(r[0], r[1]), u01(r[2], r[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn random123_known_answers() {
        assert_eq!(philox4x32_10([0; 4], 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], u64::MAX), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
        let key = (0x299f_31d0u64 << 32) | 0xa409_3822;
        assert_eq!(
            philox4x32_10([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], key),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn normals_have_unit_moments() {
        let z = normals(7, 3, 11, HMC_MOMENTA, 200_001);
        let n = z.len() as f64;
        let m = z.iter().sum::<f64>() / n;
        let v = z.iter().map(|x| x * x).sum::<f64>() / n;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.01, "mean {m} var {v}");
        assert_ne!(normals(7, 4, 11, HMC_MOMENTA, 4), normals(7, 3, 11, HMC_MOMENTA, 4));
    }
}
