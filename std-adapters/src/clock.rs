//! Monotonic clocks.

use std::{sync::OnceLock, time::Instant as StdInstant};

use resilient_circuit::{Clock, Instant};

/// The monotonic clock of the operating system (`std::time::Instant`).
///
/// Every `StdClock` shares one origin (the first reading in the process), so deadlines written
/// by one breaker are read correctly by every other breaker on the same store. A reading costs
/// one `std::time::Instant::now()`; the breaker reads it only when it enters OPEN and when it
/// admits a call while OPEN, never on a CLOSED call.
///
/// ```
/// use resilient_circuit_std::{Clock, StdClock};
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

/// tokio's clock (`tokio::time::Instant`), which follows `tokio::time::pause` and `advance`:
/// breakers and retries under a paused test runtime see virtual time.
///
/// ```
/// use resilient_circuit_std::{Clock, TokioClock};
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
