//! Monotonic clocks.

use std::{sync::OnceLock, time::Instant as StdInstant};

use resilient_circuit::time::{Clock, Instant};

/// The monotonic clock of the operating system (`std::time::Instant`).
///
/// Every `StdClock` shares one origin (the first reading in the process), so deadlines written
/// by one breaker are read correctly by every other breaker on the same store. A reading costs
/// one `std::time::Instant::now()`; the breaker reads it only when it enters OPEN and when it
/// admits a call while OPEN, never on a CLOSED call.
///
/// ```
/// use resilient_circuit_std::time::{Clock, StdClock};
/// let (a, b) = (StdClock.now(), StdClock.now());
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StdClock;

fn origin() -> StdInstant {
    static ORIGIN: OnceLock<StdInstant> = OnceLock::new();
    *ORIGIN.get_or_init(StdInstant::now)
}

impl Clock for StdClock {
    #[inline]
    fn now(&self) -> Instant {
        let origin = origin();
        let elapsed = StdInstant::now().saturating_duration_since(origin);
        Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The operating system's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on Linux, through
/// the `coarsetime` crate): about 5 ns a reading instead of `std::time::Instant`'s 20-30 ns,
/// at the resolution of the kernel's tick (1 to 4 ms).
///
/// The default clock of a [`SharedBreaker`](crate::SharedBreaker): it is read only to set an
/// OPEN deadline and to reject a call before it, and deadlines are seconds long, so a tick of
/// error is harmless while every rejection gets four times cheaper. A rejection's `retry_after`
/// is accurate to one tick; a call may be admitted as a probe up to one tick after the
/// deadline. Use [`StdClock`] where that matters.
///
/// ```
/// use resilient_circuit_std::time::{Clock, CoarseClock};
/// let (a, b) = (CoarseClock.now(), CoarseClock.now());
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CoarseClock;

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Instant {
        // Without the cache update: `now()` would also store into a global, and concurrent
        // rejections would then contend on that cache line.
        let since_origin = coarsetime::Instant::now_without_cache_update()
            .duration_since(coarsetime::Instant::from_u64(0));
        Instant::from_nanos(since_origin.as_nanos())
    }
}

/// tokio's clock (`tokio::time::Instant`), which follows `tokio::time::pause` and `advance`:
/// breakers and retries under a paused test runtime see virtual time.
///
/// ```
/// use resilient_circuit_std::time::{Clock, TokioClock};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let before = TokioClock.now();
/// tokio::time::sleep(std::time::Duration::from_secs(60)).await; // instant when paused
/// assert!(TokioClock.now().saturating_duration_since(before) >= std::time::Duration::from_secs(60));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokioClock;

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
        let elapsed = tokio::time::Instant::now().saturating_duration_since(origin);
        Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}
