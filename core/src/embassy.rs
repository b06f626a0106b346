//! A clock and an async sleeper on `embassy-time` (feature `embassy`).

use core::time::Duration;

use crate::time::{AsyncSleep, Clock, Instant};

/// [`Clock`] reading `embassy_time::Instant::now()`.
///
/// The tick rate is the application's choice (an `embassy-time` `tick-hz-*` feature or its
/// time driver); this crate does not pick one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::from_micros(embassy_time::Instant::now().as_micros())
    }
}

/// [`AsyncSleep`] on `embassy_time::Timer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EmbassySleep;

impl AsyncSleep for EmbassySleep {
    async fn sleep(&self, duration: Duration) {
        // Saturating: a wait too long for the tick rate's arithmetic waits "forever".
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let wait =
            embassy_time::Duration::try_from_micros(micros).unwrap_or(embassy_time::Duration::MAX);
        embassy_time::Timer::after(wait).await
    }
}
