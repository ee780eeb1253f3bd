//! Sums in a fixed order that still vectorise: `LANES` interleaved partial sums, folded in
//! lane order. A strict sequential f32 sum does not vectorise; this one does, and its result
//! depends neither on the thread count nor on the SIMD width the CPU dispatch picks. Shared
//! by the fused GroupNorm layer, the convolutions' bias gradients and the action network.

use super::float::Float;

const LANES: usize = 16;

/// Fixed-order sum of the lane accumulators.
#[inline(always)]
fn fold<T: Float>(a: [T; LANES]) -> T {
    let mut s = T::ZERO;
    for v in a {
        s += v;
    }
    s
}

/// Σ f(x_i) over `x` in `LANES` interleaved partial sums.
#[inline(always)]
pub(crate) fn lane_sum<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        let c: &[T; LANES] = c.try_into().unwrap();
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    for (l, v) in it.remainder().iter().enumerate() {
        acc[l] += f(*v);
    }
    fold(acc)
}

/// (Σ f(a_i, b_i).0, Σ f(a_i, b_i).1) in `LANES` interleaved partial sums.
#[inline(always)]
pub(crate) fn lane_sum2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (T, T) {
    let (mut s0, mut s1) = ([T::ZERO; LANES], [T::ZERO; LANES]);
    let (mut ia, mut ib) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (ca, cb) in (&mut ia).zip(&mut ib) {
        let (ca, cb): (&[T; LANES], &[T; LANES]) = (ca.try_into().unwrap(), cb.try_into().unwrap());
        for l in 0..LANES {
            let (u, v) = f(ca[l], cb[l]);
            s0[l] += u;
            s1[l] += v;
        }
    }
    for (l, (u, v)) in ia.remainder().iter().zip(ib.remainder()).enumerate() {
        let (u, v) = f(*u, *v);
        s0[l] += u;
        s1[l] += v;
    }
    (fold(s0), fold(s1))
}
