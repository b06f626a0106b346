//! Division of a `u64` by a constant with a multiply and shifts.
//!
//! A 32-bit target has no 64-bit divide instruction (a Cortex-M0+ has none at all), so `n / d`
//! on a `u64` links `compiler_builtins`' division (about 900 bytes of flash on a Cortex-M),
//! even when `d` is a constant: `Duration::from_nanos` is such a division. With the divisor
//! known ahead, the quotient is the high half of one multiplication instead (Granlund and
//! Montgomery, "Division by invariant integers using multiplication", 1994, figure 4.1),
//! which a 32-bit core does in a few multiply instructions.

use core::time::Duration;

use crate::wide::mul_high;

/// A `u64` divisor fixed ahead, so that dividing by it needs no division.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConstDivisor {
    /// The low 64 bits of the magic multiplier (its bit 64 is implied).
    multiplier: u64,
    /// `min(l, 1)` and `max(l - 1, 0)`, `l` being `ceil(log2 divisor)`.
    first_shift: u32,
    second_shift: u32,
}

impl ConstDivisor {
    /// Dividing by `divisor`. In a `const`, a zero divisor fails the build.
    pub(crate) const fn new(divisor: u64) -> Self {
        assert!(divisor != 0, "a divisor must not be zero");
        let l = 64 - (divisor - 1).leading_zeros();
        // floor(2^64 * (2^l - d) / d) + 1, below 2^64 for every d >= 1.
        let multiplier =
            (((1u128 << 64) * ((1u128 << l) - divisor as u128)) / divisor as u128 + 1) as u64;
        ConstDivisor {
            multiplier,
            first_shift: if l == 0 { 0 } else { 1 },
            second_shift: l.saturating_sub(1),
        }
    }

    /// `n / divisor`, exact for every `n`.
    #[inline]
    pub(crate) const fn divide(self, n: u64) -> u64 {
        let high = mul_high(self.multiplier, n);
        (high + ((n - high) >> self.first_shift)) >> self.second_shift
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
const BY_NANOS_PER_SEC: ConstDivisor = ConstDivisor::new(NANOS_PER_SEC);

/// `Duration::new(secs, subsec_nanos)` for `subsec_nanos` below a second, as every caller's is:
/// clamped there first, so the compiler drops the division `Duration::new` keeps for larger
/// values (a call of about 400 bytes on a core without a divider, a Cortex-M0+).
#[inline]
pub(crate) const fn duration_new(secs: u64, subsec_nanos: u32) -> Duration {
    const LAST: u32 = NANOS_PER_SEC as u32 - 1;
    let subsec_nanos = if subsec_nanos > LAST {
        LAST
    } else {
        subsec_nanos
    };
    Duration::new(secs, subsec_nanos)
}

/// `Duration::from_nanos(nanos)`, without a 64-bit division call on a 32-bit target. A 64-bit
/// target multiplies already (the compiler lowers a division by a constant to a multiply of
/// its own, a little shorter than this one).
#[inline]
pub(crate) const fn duration_from_nanos(nanos: u64) -> Duration {
    if cfg!(target_pointer_width = "64") {
        Duration::from_nanos(nanos)
    } else {
        duration_from_nanos_by_multiply(nanos)
    }
}

/// `Duration::from_nanos(nanos)` with [`ConstDivisor`].
#[inline]
const fn duration_from_nanos_by_multiply(nanos: u64) -> Duration {
    let secs = BY_NANOS_PER_SEC.divide(nanos);
    // The remainder is below 2^30, so its low 32 bits are all of it: one 32-bit multiply.
    let subsec_nanos =
        (nanos as u32).wrapping_sub((secs as u32).wrapping_mul(NANOS_PER_SEC as u32));
    duration_new(secs, subsec_nanos)
}

/// A clock's fixed tick rate, for conversions between its ticks and microseconds without a
/// 64-bit division.
#[cfg(any(feature = "embassy", test))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TickRate {
    /// The tick rate and a million, each over their greatest common divisor.
    ticks_per_unit: u64,
    micros_per_unit: u64,
    by_ticks_per_unit: ConstDivisor,
    by_micros_per_unit: ConstDivisor,
}

#[cfg(any(feature = "embassy", test))]
impl TickRate {
    /// `tick_hz` ticks a second (not zero).
    pub(crate) const fn new(tick_hz: u64) -> Self {
        let common = gcd(tick_hz, 1_000_000);
        TickRate {
            ticks_per_unit: tick_hz / common,
            micros_per_unit: 1_000_000 / common,
            by_ticks_per_unit: ConstDivisor::new(tick_hz / common),
            by_micros_per_unit: ConstDivisor::new(1_000_000 / common),
        }
    }

    /// `ceil(micros * tick_hz / 1_000_000)`; `None` when `micros` times the reduced rate
    /// (`tick_hz / gcd(tick_hz, 1_000_000)`) overflows, as `embassy_time`'s `try_from_micros`.
    #[inline]
    pub(crate) fn ticks(self, micros: u64) -> Option<u64> {
        let scaled = micros.checked_mul(self.ticks_per_unit)?;
        // A whole number of ticks a microsecond (1 MHz, say): no division at all. The rate is
        // a constant, so this is decided at compile time.
        if self.micros_per_unit == 1 {
            return Some(scaled);
        }
        let whole = self.by_micros_per_unit.divide(scaled);
        // `whole * micros_per_unit <= scaled`: no overflow; and `whole < u64::MAX` whenever
        // the division leaves a remainder.
        Some(whole + u64::from(whole * self.micros_per_unit != scaled))
    }

    /// `floor(ticks * 1_000_000 / tick_hz)`, saturating where the product would overflow
    /// (beyond any clock's lifetime at the usual rates).
    #[inline]
    pub(crate) fn micros(self, ticks: u64) -> u64 {
        let scaled = ticks.saturating_mul(self.micros_per_unit);
        // Ticks of whole microseconds: no division (decided at compile time, as above).
        if self.ticks_per_unit == 1 {
            return scaled;
        }
        self.by_ticks_per_unit.divide(scaled)
    }
}

#[cfg(any(feature = "embassy", test))]
const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::{ConstDivisor, TickRate, duration_from_nanos_by_multiply};
    use core::time::Duration;

    /// A xorshift sequence: many values, the same in every run.
    fn values(count: usize) -> impl Iterator<Item = u64> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..count).map(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
    }

    #[test]
    fn the_quotient_is_exact_for_every_kind_of_divisor_and_dividend() {
        let divisors = [
            1,
            2,
            3,
            7,
            10,
            1_000,
            1_000_000,
            1_000_000_000,
            15_625,
            (1 << 32) + 1,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        // Random divisors of every width, not only the near-2^64 ones a raw draw gives.
        for d in divisors
            .into_iter()
            .chain(values(300).map(|v| (v >> (v % 64)).max(1)))
        {
            let divisor = ConstDivisor::new(d);
            // Around multiples of d (where a rounding error would show) and anywhere.
            let around_multiples = values(50).flat_map(|v| {
                let multiple = (v / d).saturating_mul(d);
                [
                    multiple.wrapping_sub(1),
                    multiple,
                    multiple.saturating_add(1),
                ]
            });
            let edges = [0, 1, d - 1, d, d.saturating_add(1), u64::MAX - 1, u64::MAX];
            for n in edges
                .into_iter()
                .chain(around_multiples)
                .chain(values(2_000))
            {
                assert_eq!(divisor.divide(n), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn a_duration_from_nanos_is_the_standard_one() {
        for n in [0, 1, 999_999_999, 1_000_000_000, 1_000_000_001, u64::MAX]
            .into_iter()
            .chain(values(10_000))
        {
            assert_eq!(
                duration_from_nanos_by_multiply(n),
                Duration::from_nanos(n),
                "{n} ns"
            );
        }
    }

    #[test]
    fn microseconds_become_ticks_rounded_up_at_any_rate() {
        for tick_hz in [1, 1_000, 32_768, 1_000_000, 16_000_000, 1 << 40] {
            let rate = TickRate::new(tick_hz);
            for micros in [
                0,
                1,
                999,
                1_000,
                1_001,
                999_999,
                1_000_000,
                u64::MAX / 2,
                u64::MAX,
            ]
            .into_iter()
            .chain(values(2_000).map(|v| v >> (v % 64)))
            {
                let exact = (micros as u128 * tick_hz as u128).div_ceil(1_000_000);
                assert_eq!(
                    rate.ticks(micros).map(u128::from),
                    // Past u64::MAX once scaled by the reduced rate: no tick count.
                    (micros as u128 * (tick_hz / super::gcd(tick_hz, 1_000_000)) as u128
                        <= u64::MAX as u128)
                        .then_some(exact),
                    "{micros} us at {tick_hz} Hz"
                );
            }
        }
    }

    #[test]
    fn ticks_become_microseconds_rounded_down_at_any_rate() {
        for tick_hz in [1, 1_000, 32_768, 48_000_000, 1_000_000, 80_000_000, 1 << 40] {
            let rate = TickRate::new(tick_hz);
            let common = super::gcd(tick_hz, 1_000_000);
            for ticks in [0, 1, 999, 1_000, 32_767, 32_768, u64::MAX / 2, u64::MAX]
                .into_iter()
                .chain(values(2_000).map(|v| v >> (v % 64)))
            {
                let scaled = (ticks as u128 * (1_000_000 / common) as u128).min(u64::MAX as u128);
                let expected = (scaled / (tick_hz / common) as u128) as u64;
                assert_eq!(
                    rate.micros(ticks),
                    expected,
                    "{ticks} ticks at {tick_hz} Hz"
                );
            }
        }
    }
}
