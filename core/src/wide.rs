//! The full 128-bit product of two `u64`s, without `u128` arithmetic on a core without a long
//! multiply.
//!
//! A Cortex-M0+ (and a RISC-V core without `M`) has no 32×32→64 multiply instruction: a
//! `u128` product expands there into a dozen calls of a 64-bit multiply routine and carry
//! chains at every use (hundreds of bytes each). Four 32×32 products in one shared function
//! weigh a fraction of that. Cores with a long multiply (Cortex-M3 and up, RISC-V with `M`,
//! every 64-bit target) do better with `u128` inline.

/// `a * b` as `(high, low)` 64-bit halves.
#[inline]
pub(crate) const fn mul_wide(a: u64, b: u64) -> (u64, u64) {
    // Stable Rust names no ARM architecture version in `cfg`; ARMv6-M is the 32-bit ARM
    // without compare-and-swap, which is how it is told apart. A wrong guess costs flash, not
    // correctness: both ways give the same product.
    let short_multiply = cfg!(any(
        all(target_arch = "arm", not(target_has_atomic = "32")),
        all(target_arch = "riscv32", not(target_feature = "m")),
    ));
    if !short_multiply {
        let product = a as u128 * b as u128;
        ((product >> 64) as u64, product as u64)
    } else {
        mul_wide_by_halves(a, b)
    }
}

/// [`mul_wide`] from four 32×32 products, out of line so that every caller shares it.
#[inline(never)]
const fn mul_wide_by_halves(a: u64, b: u64) -> (u64, u64) {
    const LOW: u64 = u32::MAX as u64;
    let (a_high, a_low) = (a >> 32, a & LOW);
    let (b_high, b_low) = (b >> 32, b & LOW);
    let low_low = a_low * b_low;
    let high_low = a_high * b_low;
    let low_high = a_low * b_high;
    // The middle column: three values below 2^32 each, so their sum fits.
    let middle = (low_low >> 32) + (high_low & LOW) + (low_high & LOW);
    let low = (middle << 32) | (low_low & LOW);
    let high = a_high * b_high + (high_low >> 32) + (low_high >> 32) + (middle >> 32);
    (high, low)
}

/// The high 64 bits of `a * b`.
#[inline]
pub(crate) const fn mul_high(a: u64, b: u64) -> u64 {
    mul_wide(a, b).0
}

/// `(a * b) >> shift` for `shift` in `1..64`; `None` when that does not fit a `u64`.
#[inline]
pub(crate) const fn mul_shift(a: u64, b: u64, shift: u32) -> Option<u64> {
    let (high, low) = mul_wide(a, b);
    if high >> shift != 0 {
        return None;
    }
    Some((high << (64 - shift)) | (low >> shift))
}

#[cfg(test)]
mod tests {
    use super::{mul_shift, mul_wide, mul_wide_by_halves};

    /// The edges of each half, then a spread of values (an LCG: the same in every run).
    fn values() -> impl Iterator<Item = u64> + Clone {
        let edges = [
            0,
            1,
            2,
            u32::MAX as u64,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        let spread = (0..150u64).scan(0x9E37_79B9_7F4A_7C15u64, |state, _| {
            *state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Some(*state >> (*state % 64))
        });
        edges.into_iter().chain(spread)
    }

    /// The 32-bit branch (the one firmware runs) and the one this target runs both give the
    /// `u128` product.
    #[test]
    fn the_halves_are_the_u128_product() {
        for a in values() {
            for b in values() {
                let product = a as u128 * b as u128;
                let expected = ((product >> 64) as u64, product as u64);
                assert_eq!(mul_wide_by_halves(a, b), expected, "{a} * {b}");
                assert_eq!(mul_wide(a, b), expected, "{a} * {b}");
            }
        }
    }

    #[test]
    fn a_shifted_product_is_none_only_past_u64_max() {
        for a in values() {
            for b in values() {
                for shift in [1, 31, 32, 63] {
                    let expected = u64::try_from((a as u128 * b as u128) >> shift).ok();
                    assert_eq!(mul_shift(a, b, shift), expected, "{a} * {b} >> {shift}");
                }
            }
        }
    }
}
