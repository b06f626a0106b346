//! Exponential delays; with jitter either way, see `jitter.rs`.

use core::time::Duration;

use super::delay::{Backoff, BackoffError};
use crate::{
    divide::duration_from_nanos, fixed_point::U32F32, time::duration_to_nanos, wide::mul_shift,
};

/// No jitter: an [`ExponentialDelay`] is deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoJitter;

/// `min_delay * factor^(k-1)`, capped at `max_delay`, with optional jitter.
///
/// The factor and the jitter fraction are fixed-point numbers (no floating point on firmware);
/// jitter randomness comes from a `rand_core` generator the caller owns (a hardware RNG or a
/// PRNG seeded per device; on servers, seeded from the operating system).
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{fixed_point::{U1F31, U32F32}, backoff::{Backoff, BackoffError, ExponentialDelay}};
///
/// let mut triple = ExponentialDelay::new(Duration::from_secs(1), Duration::from_secs(10))?
///     .with_factor(U32F32::from_num(3))?;
/// let waits: Vec<_> = (1..=5).map(|k| triple.delay(k).as_secs()).collect();
/// assert_eq!(waits, [1, 3, 9, 10, 10]);
/// assert_eq!((triple.min_delay(), triple.max_delay()), (Duration::from_secs(1), Duration::from_secs(10)));
///
/// assert_eq!(
///     ExponentialDelay::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err(),
///     BackoffError::MaxBelowMin
/// );
/// assert_eq!(triple.with_factor(U32F32::from_num(0.5)).unwrap_err(), BackoffError::FactorBelowOne);
/// # Ok::<(), BackoffError>(())
/// ```
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ExponentialDelay<J = NoJitter> {
    // In nanoseconds, converted once: on a 32-bit core a `Duration` to nanoseconds is a 64-bit
    // multiply with an overflow check, and the waits are computed in nanoseconds.
    pub(super) min_nanos: u64,
    pub(super) max_nanos: u64,
    pub(super) factor: U32F32,
    pub(super) jitter: J,
}

impl ExponentialDelay {
    /// From `min_delay` doubling up to `max_delay`, without jitter.
    pub const fn new(min_delay: Duration, max_delay: Duration) -> Result<Self, BackoffError> {
        if max_delay.as_nanos() < min_delay.as_nanos() {
            return Err(BackoffError::MaxBelowMin);
        }
        Ok(ExponentialDelay {
            min_nanos: duration_to_nanos(min_delay),
            max_nanos: duration_to_nanos(max_delay),
            factor: U32F32::const_from_int(2),
            jitter: NoJitter,
        })
    }

    /// From `MIN_MS` doubling up to `MAX_MS` milliseconds, checked at compile time.
    ///
    /// ```
    /// use resilient_circuit::backoff::{Backoff, ExponentialDelay};
    /// const BACKOFF: ExponentialDelay = ExponentialDelay::millis::<10, 40>();
    /// assert_eq!(BACKOFF.clone().delay(3), core::time::Duration::from_millis(40));
    /// ```
    ///
    /// ```compile_fail
    /// // max below min: does not compile.
    /// const BAD: resilient_circuit::backoff::ExponentialDelay = resilient_circuit::backoff::ExponentialDelay::millis::<40, 10>();
    /// let _ = BAD;
    /// ```
    pub const fn millis<const MIN_MS: u64, const MAX_MS: u64>() -> Self {
        const { assert!(MAX_MS >= MIN_MS, "`max_delay` must be >= `min_delay`.") }
        match Self::new(Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS)) {
            Ok(backoff) => backoff,
            Err(error) => panic!("{}", error.message()),
        }
    }

    /// [`with_factor`](Self::with_factor), checked at compile time in a `const` item (an invalid
    /// factor does not compile there). At run time prefer `with_factor`, which returns the error
    /// as a value. The crate's other const-checked forms (`validated`,
    /// `with_factor_validated`) work the same way.
    ///
    /// ```
    /// use resilient_circuit::{fixed_point::U32F32, backoff::{Backoff, ExponentialDelay}};
    /// const BACKOFF: ExponentialDelay = ExponentialDelay::millis::<100, 1_000>().with_factor_validated(U32F32::lit("1.5"));
    /// assert_eq!(BACKOFF.clone().delay(3), core::time::Duration::from_millis(225));
    /// ```
    ///
    /// ```compile_fail
    /// use resilient_circuit::{fixed_point::U32F32, backoff::ExponentialDelay};
    /// // A factor below 1: does not compile.
    /// const BAD: ExponentialDelay = ExponentialDelay::millis::<1, 9>().with_factor_validated(U32F32::lit("0.5"));
    /// let _ = BAD;
    /// ```
    pub const fn with_factor_validated(self, factor: U32F32) -> Self {
        match self.with_factor(factor) {
            Ok(backoff) => backoff,
            Err(error) => panic!("{}", error.message()),
        }
    }

    /// Grow by `factor` (at least 1) instead of 2.
    pub const fn with_factor(self, factor: U32F32) -> Result<Self, BackoffError> {
        if factor.to_bits() < U32F32::ONE.to_bits() {
            return Err(BackoffError::FactorBelowOne);
        }
        Ok(ExponentialDelay { factor, ..self })
    }
}

impl<J> ExponentialDelay<J> {
    /// The shortest wait (kept to the nanosecond, up to `u64::MAX` nanoseconds: 584 years).
    pub const fn min_delay(&self) -> Duration {
        duration_from_nanos(self.min_nanos)
    }

    /// The longest wait (kept to the nanosecond, up to `u64::MAX` nanoseconds: 584 years).
    pub const fn max_delay(&self) -> Duration {
        duration_from_nanos(self.max_nanos)
    }

    /// The growth factor.
    pub const fn factor(&self) -> U32F32 {
        self.factor
    }

    /// The delay before jitter: `min_delay * factor^(attempt-1)` capped at `max_delay`, without
    /// overflow for any attempt.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        duration_from_nanos(self.base_nanos(attempt))
    }

    pub(super) fn base_nanos(&self, attempt: u32) -> u64 {
        let max = self.max_nanos;
        let mut delay = self.min_nanos;
        // Exponentiation by squaring in 32.32 fixed point: O(log attempt). `None` is a power
        // beyond 2^32, which takes any non-zero delay past every cap.
        let mut power = Some(self.factor.to_bits());
        let mut exponent = attempt.saturating_sub(1);
        while exponent > 0 && delay != 0 && delay < max {
            if exponent & 1 == 1 {
                delay = power
                    .and_then(|p| mul_shift(delay, p, 32))
                    .unwrap_or(u64::MAX);
            }
            exponent >>= 1;
            if exponent > 0 {
                power = power.and_then(|p| mul_shift(p, p, 32));
            }
        }
        delay.min(max)
    }
}

impl Backoff for ExponentialDelay<NoJitter> {
    fn delay(&mut self, attempt: u32) -> Duration {
        self.base_delay(attempt)
    }
}
