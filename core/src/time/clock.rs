//! [`Instant`], a monotonic time as a plain value, and the [`Clock`] that reads it.

use core::time::Duration;

use crate::divide::duration_from_nanos;

/// A point on a monotonic clock, in nanoseconds since the clock's own origin.
///
/// The core never reads time itself: a [`Clock`] hands it an `Instant`. Eight bytes, `Copy`,
/// and saturating arithmetic, so a huge cooldown can never wrap around.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::time::Instant;
///
/// let t = Instant::from_millis(1_500);
/// assert_eq!(t.saturating_add(Duration::from_millis(500)), Instant::from_secs(2));
/// assert_eq!(Instant::from_secs(2).saturating_duration_since(t), Duration::from_millis(500));
/// assert_eq!(t.saturating_duration_since(Instant::from_secs(2)), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The latest representable instant (about 584 years after the origin).
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    /// An instant `micros` microseconds after the origin (saturating).
    pub const fn from_micros(micros: u64) -> Self {
        // A comparison instead of `saturating_mul`, whose overflow check a 32-bit core computes
        // with a full 64×64 multiply: this is every `EmbassyClock` reading.
        if micros > u64::MAX / 1_000 {
            return Instant::MAX;
        }
        Instant {
            nanos: micros * 1_000,
        }
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// An instant `secs` seconds after the origin (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            nanos: secs.saturating_mul(1_000_000_000),
        }
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// `self + duration`, or [`Instant::MAX`] if that is not representable.
    pub const fn saturating_add(self, duration: Duration) -> Self {
        Instant {
            nanos: self.nanos.saturating_add(duration_to_nanos(duration)),
        }
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        duration_from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) const fn duration_to_nanos(duration: Duration) -> u64 {
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    // A comparison instead of `saturating_mul`, whose overflow check a 32-bit core computes
    // with a full 64×64 multiply.
    if duration.as_secs() > u64::MAX / NANOS_PER_SEC {
        return u64::MAX;
    }
    (duration.as_secs() * NANOS_PER_SEC).saturating_add(duration.subsec_nanos() as u64)
}

/// A monotonic source of "now".
///
/// The breaker reads it only when a decision needs the time: entering OPEN, and admitting a
/// call while OPEN. A CLOSED call never reads it.
///
/// An [`Instant`] is itself a clock that always says the same time, which is handy in examples;
/// tests use a fake clock they advance by hand.
///
/// ```
/// use core::cell::Cell;
/// use resilient_circuit::time::{Clock, Instant};
///
/// /// A clock a test moves by hand.
/// struct FakeClock(Cell<Instant>);
/// impl Clock for FakeClock {
///     fn now(&self) -> Instant {
///         self.0.get()
///     }
/// }
/// let clock = FakeClock(Cell::new(Instant::from_secs(5)));
/// assert_eq!(clock.now(), Instant::from_secs(5));
/// ```
pub trait Clock {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

impl Clock for Instant {
    fn now(&self) -> Instant {
        *self
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::{Instant, duration_to_nanos};

    #[test]
    fn microseconds_saturate_only_past_u64_max_nanoseconds() {
        let last = u64::MAX / 1_000;
        assert_eq!(Instant::from_micros(0).as_nanos(), 0);
        assert_eq!(Instant::from_micros(last).as_nanos(), last * 1_000);
        assert_eq!(Instant::from_micros(last + 1), Instant::MAX);
        assert_eq!(Instant::from_micros(u64::MAX), Instant::MAX);
    }

    #[test]
    fn a_duration_in_nanoseconds_saturates_only_past_u64_max() {
        let last_whole_second = u64::MAX / 1_000_000_000;
        for duration in [
            Duration::ZERO,
            Duration::new(1, 5),
            Duration::new(last_whole_second, 0),
            Duration::new(last_whole_second, 999_999_999),
            Duration::new(last_whole_second + 1, 0),
            Duration::MAX,
        ] {
            let exact = duration.as_nanos().min(u64::MAX as u128) as u64;
            assert_eq!(duration_to_nanos(duration), exact, "{duration:?}");
        }
    }
}
