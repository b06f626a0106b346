//! Jitter over an exponential delay: uniform either way, full, and decorrelated.

use core::time::Duration;

use rand_core::Rng;

use super::{
    delay::{Backoff, BackoffError},
    exponential::ExponentialDelay,
};
use crate::{
    divide::duration_from_nanos,
    fixed_point::U1F31,
    time::duration_to_nanos,
    wide::{mul_high, mul_shift},
};

/// Jitter of up to `fraction` of the delay either way, drawn from a caller-owned generator.
#[derive(Clone, Copy, Debug)]
pub struct UniformJitter<R> {
    fraction: U1F31,
    rng: R,
}

#[cfg(feature = "defmt")]
impl<R> defmt::Format for UniformJitter<R> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "UniformJitter({})", self.fraction);
    }
}

impl ExponentialDelay {
    /// Add a uniform offset in `[-fraction * d, +fraction * d]` to each delay `d`, then clamp to
    /// `[min_delay, max_delay]`. `fraction` must be at most 1; `rng` supplies the randomness.
    pub fn with_jitter<R: Rng>(
        self,
        fraction: U1F31,
        rng: R,
    ) -> Result<ExponentialDelay<UniformJitter<R>>, BackoffError> {
        if fraction > U1F31::ONE {
            return Err(BackoffError::JitterOutOfRange);
        }
        Ok(ExponentialDelay {
            min_nanos: self.min_nanos,
            max_nanos: self.max_nanos,
            factor: self.factor,
            jitter: UniformJitter { fraction, rng },
        })
    }
}
impl<R: Rng> Backoff for ExponentialDelay<UniformJitter<R>> {
    fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.base_nanos(attempt);
        // `fraction` is at most 1 (2^31 in 1.31 fixed point): the span is at most `base`.
        let span = mul_shift(base, u64::from(self.jitter.fraction.to_bits()), 31).unwrap_or(base);
        let offset = uniform_up_to(&mut self.jitter.rng, span.saturating_mul(2));
        let jittered = base.saturating_add(offset).saturating_sub(span);
        duration_from_nanos(jittered.clamp(self.min_nanos, self.max_nanos))
    }
}

/// A uniform draw in `[0, bound]`.
fn uniform_up_to(rng: &mut impl Rng, bound: u64) -> u64 {
    if bound == u64::MAX {
        return rng.next_u64();
    }
    mul_high(rng.next_u64(), bound + 1)
}

/// "Full jitter": a uniform wait in `[0, d]`, `d` being the exponential delay.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::backoff::{Backoff, ExponentialDelay, FullJitter};
/// let rng = resilient_circuit::backoff::SplitMix64::new(7); // seed per device or process
/// let exponential = ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(10)).unwrap();
/// let mut backoff = FullJitter::new(exponential, rng);
/// assert!(backoff.delay(3) <= Duration::from_millis(400));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FullJitter<R> {
    exponential: ExponentialDelay,
    rng: R,
}

impl<R: Rng> FullJitter<R> {
    /// Full jitter over `exponential`'s delays.
    pub const fn new(exponential: ExponentialDelay, rng: R) -> Self {
        FullJitter { exponential, rng }
    }
}

impl<R: Rng> Backoff for FullJitter<R> {
    fn delay(&mut self, attempt: u32) -> Duration {
        let bound = self.exponential.base_nanos(attempt);
        duration_from_nanos(uniform_up_to(&mut self.rng, bound))
    }
}

#[cfg(feature = "defmt")]
impl<R> defmt::Format for FullJitter<R> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "FullJitter({})", self.exponential);
    }
}

/// "Decorrelated jitter": each wait is uniform in `[min_delay, 3 * previous wait]`, capped at
/// `max_delay`; the first previous wait is `min_delay`.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::backoff::{Backoff, DecorrelatedJitter};
/// let rng = resilient_circuit::backoff::SplitMix64::new(7); // seed per device or process
/// let mut backoff =
///     DecorrelatedJitter::new(Duration::from_millis(100), Duration::from_secs(10), rng).unwrap();
/// let first = backoff.delay(1);
/// assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(300));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DecorrelatedJitter<R> {
    // In nanoseconds, as `ExponentialDelay`'s, converted once.
    min_nanos: u64,
    max_nanos: u64,
    previous: u64,
    rng: R,
}

impl<R: Rng> DecorrelatedJitter<R> {
    /// Between `min_delay` and `max_delay`; `rng` supplies the randomness.
    pub fn new(min_delay: Duration, max_delay: Duration, rng: R) -> Result<Self, BackoffError> {
        if max_delay < min_delay {
            return Err(BackoffError::MaxBelowMin);
        }
        let min_nanos = duration_to_nanos(min_delay);
        Ok(DecorrelatedJitter {
            min_nanos,
            max_nanos: duration_to_nanos(max_delay),
            previous: min_nanos,
            rng,
        })
    }
}

impl<R: Rng> Backoff for DecorrelatedJitter<R> {
    fn delay(&mut self, attempt: u32) -> Duration {
        let (min, max) = (self.min_nanos, self.max_nanos);
        if attempt <= 1 {
            self.previous = min;
        }
        let upper = self.previous.saturating_mul(3).max(min);
        let drawn = min + uniform_up_to(&mut self.rng, upper - min);
        self.previous = drawn.min(max);
        duration_from_nanos(self.previous)
    }
}

#[cfg(feature = "defmt")]
impl<R> defmt::Format for DecorrelatedJitter<R> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "DecorrelatedJitter({=u64} ns, {=u64} ns)",
            self.min_nanos,
            self.max_nanos
        );
    }
}
