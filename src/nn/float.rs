//! Scalar trait shared by every layer: production runs in f32, gradient checks in f64.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Float:
    Copy
    + Default
    + Debug
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn abs(self) -> Self;
    /// 1/(1 + e^−x), the gate of SiLU. f64 (gradient checks) uses the library exp; f32
    /// (production) a branch-free exp that the compiler vectorises (`exp_f32`).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::ONE / (Self::ONE + (-self).exp())
    }
}

/// e^x in f32 within 2 ulp (Cephes' expf: x = n ln 2 + r, |r| ≤ ln 2 / 2, a degree-6
/// polynomial for e^r, 2^n through the exponent bits), clamped to the normal range. libm's
/// expf is a call per element that no loop around it can vectorise; it was 8 % of a
/// forward pass (SiLU) for dmassq.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts so that n · LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n from t's bits (1.5 · 2^23 + n for |n| < 2^22): integer lanes only, where `n as
    // i32` (a saturating conversion) kept the loops around SiLU from vectorising under AVX2.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits());
    er * f32::from_bits(n_int.wrapping_add(127) << 23)
}

macro_rules! impl_float {
    ($t:ty, $exp:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                1.0 / (1.0 + $exp(-self))
            }
        }
    };
}

impl_float!(f32, exp_f32);
impl_float!(f64, f64::exp);

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64's exp over the range SiLU sees and beyond: within 2 ulp (2.4e-7
    /// relative) where e^x is a normal f32, and the f32 sigmoid within 3e-7 of f64's.
    #[test]
    fn exp_f32_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let (got, want) = (exp_f32(x as f32) as f64, (x as f32 as f64).exp());
            worst = worst.max((got - want).abs() / want);
            let s = (x as f32).sigmoid() as f64;
            let sw = 1.0 / (1.0 + (-(x as f32 as f64)).exp());
            assert!((s - sw).abs() <= 3e-7 * sw, "sigmoid({x}) = {s}, want {sw}");
        }
        assert!(worst < 2.4e-7, "worst relative error {worst:.2e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1e4) > 0.0 && exp_f32(1e4).is_finite());
    }
}
