//! How long to wait after a failed attempt (SEMANTICS §3).

pub use crate::rng::SplitMix64;

use core::{fmt, time::Duration};

use crate::fixed_point::{U1F31, U32F32};
use rand_core::Rng;

use crate::{divide::duration_from_nanos, time::duration_to_nanos};

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

/// No jitter: an [`ExponentialDelay`] is deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoJitter;

/// Jitter of up to `fraction` of the delay either way, drawn from a caller-owned generator.
#[derive(Clone, Debug)]
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
///
/// assert_eq!(
///     ExponentialDelay::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err(),
///     BackoffError::MaxBelowMin
/// );
/// assert_eq!(triple.with_factor(U32F32::from_num(0.5)).unwrap_err(), BackoffError::FactorBelowOne);
/// # Ok::<(), BackoffError>(())
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ExponentialDelay<J = NoJitter> {
    min_delay: Duration,
    max_delay: Duration,
    factor: U32F32,
    jitter: J,
}

impl ExponentialDelay {
    /// From `min_delay` doubling up to `max_delay`, without jitter.
    pub const fn new(min_delay: Duration, max_delay: Duration) -> Result<Self, BackoffError> {
        if max_delay.as_nanos() < min_delay.as_nanos() {
            return Err(BackoffError::MaxBelowMin);
        }
        Ok(ExponentialDelay {
            min_delay,
            max_delay,
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
            min_delay: self.min_delay,
            max_delay: self.max_delay,
            factor: self.factor,
            jitter: UniformJitter { fraction, rng },
        })
    }
}

impl<J> ExponentialDelay<J> {
    /// The shortest wait.
    pub const fn min_delay(&self) -> Duration {
        self.min_delay
    }

    /// The longest wait.
    pub const fn max_delay(&self) -> Duration {
        self.max_delay
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

    fn base_nanos(&self, attempt: u32) -> u64 {
        let max = duration_to_nanos(self.max_delay);
        let mut delay = duration_to_nanos(self.min_delay);
        // Exponentiation by squaring in 32.32 fixed point: O(log attempt). `None` is a power
        // beyond 2^32, which takes any non-zero delay past every cap.
        let mut power = Some(self.factor.to_bits());
        let mut exponent = attempt.saturating_sub(1);
        while exponent > 0 && delay != 0 && delay < max {
            if exponent & 1 == 1 {
                delay = power.and_then(|p| mul_fixed(delay, p)).unwrap_or(u64::MAX);
            }
            exponent >>= 1;
            if exponent > 0 {
                power = power.and_then(|p| mul_fixed(p, p));
            }
        }
        delay.min(max)
    }
}

/// `value * factor`, `factor` in 32.32 fixed point; `None` past `u64::MAX`.
fn mul_fixed(value: u64, factor: u64) -> Option<u64> {
    u64::try_from((value as u128 * factor as u128) >> 32).ok()
}

/// A uniform draw in `[0, bound]`.
fn uniform_up_to(rng: &mut impl Rng, bound: u64) -> u64 {
    if bound == u64::MAX {
        return rng.next_u64();
    }
    ((rng.next_u64() as u128 * (bound as u128 + 1)) >> 64) as u64
}

impl Backoff for ExponentialDelay<NoJitter> {
    fn delay(&mut self, attempt: u32) -> Duration {
        self.base_delay(attempt)
    }
}

impl<R: Rng> Backoff for ExponentialDelay<UniformJitter<R>> {
    fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.base_nanos(attempt);
        let span = ((base as u128 * self.jitter.fraction.to_bits() as u128) >> 31) as u64;
        let offset = uniform_up_to(&mut self.jitter.rng, span.saturating_mul(2));
        let jittered = base.saturating_add(offset).saturating_sub(span);
        let min = duration_to_nanos(self.min_delay);
        let max = duration_to_nanos(self.max_delay);
        duration_from_nanos(jittered.clamp(min, max))
    }
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
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
pub struct DecorrelatedJitter<R> {
    min_delay: Duration,
    max_delay: Duration,
    previous: u64,
    rng: R,
}

impl<R: Rng> DecorrelatedJitter<R> {
    /// Between `min_delay` and `max_delay`; `rng` supplies the randomness.
    pub fn new(min_delay: Duration, max_delay: Duration, rng: R) -> Result<Self, BackoffError> {
        if max_delay < min_delay {
            return Err(BackoffError::MaxBelowMin);
        }
        Ok(DecorrelatedJitter {
            min_delay,
            max_delay,
            previous: duration_to_nanos(min_delay),
            rng,
        })
    }
}

impl<R: Rng> Backoff for DecorrelatedJitter<R> {
    fn delay(&mut self, attempt: u32) -> Duration {
        let min = duration_to_nanos(self.min_delay);
        let max = duration_to_nanos(self.max_delay);
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
            "DecorrelatedJitter({}, {})",
            self.min_delay,
            self.max_delay
        );
    }
}
