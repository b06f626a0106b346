//! The [`Backoff`] seam and the plain delays: none, or the same every time.

use core::{fmt, time::Duration};

/// The wait after each failed attempt.
///
/// `delay(k)` is the wait after failed attempt `k` (`k` = 1, 2, ...). It takes `&mut self` so a
/// strategy may carry state (a random generator, the previous delay).
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::backoff::{Backoff, ExponentialDelay};
///
/// let mut backoff = ExponentialDelay::new(Duration::from_millis(50), Duration::from_secs(100)).unwrap();
/// assert_eq!(backoff.delay(1), Duration::from_millis(50));
/// assert_eq!(backoff.delay(11), Duration::from_millis(51_200));
/// assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(100));
/// ```
pub trait Backoff {
    /// The wait after failed attempt `attempt` (1-based).
    fn delay(&mut self, attempt: u32) -> Duration;
}

impl<B: Backoff + ?Sized> Backoff for &mut B {
    fn delay(&mut self, attempt: u32) -> Duration {
        (**self).delay(attempt)
    }
}

/// No wait at all (a retry without backoff).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoBackoff;

impl Backoff for NoBackoff {
    #[inline]
    fn delay(&mut self, _: u32) -> Duration {
        Duration::ZERO
    }
}

/// The same wait after every attempt.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::backoff::{Backoff, FixedDelay};
/// assert_eq!(FixedDelay(Duration::from_secs(1)).delay(7), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedDelay(pub Duration);

impl Backoff for FixedDelay {
    #[inline]
    fn delay(&mut self, _: u32) -> Duration {
        self.0
    }
}

/// Why a backoff could not be built (the Python package's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BackoffError {
    /// The jitter fraction was above 1.
    JitterOutOfRange,
    /// The factor was below 1.
    FactorBelowOne,
    /// `max_delay` was shorter than `min_delay`.
    MaxBelowMin,
}

impl BackoffError {
    /// A one-line description, usable in `const` panics.
    pub const fn message(&self) -> &'static str {
        match self {
            BackoffError::JitterOutOfRange => "`jitter` must be in range [0, 1].",
            BackoffError::FactorBelowOne => "`factor` must be >= 1.",
            BackoffError::MaxBelowMin => "`max_delay` must be >= `min_delay`.",
        }
    }
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for BackoffError {}
