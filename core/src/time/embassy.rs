//! A clock and an async sleeper on `embassy-time` (feature `embassy`).

use core::time::Duration;

use super::{
    clock::{Clock, Instant},
    sleep::AsyncSleep,
};
use crate::divide::TickRate;

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
        // Not `as_micros`: at most tick rates (48 MHz, say) it divides a u64.
        Instant::from_micros(TICK_RATE.micros(embassy_time::Instant::now().as_ticks()))
    }
}

/// [`AsyncSleep`] on `embassy_time::Timer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EmbassySleep;

impl AsyncSleep for EmbassySleep {
    async fn sleep(&self, duration: Duration) {
        // Saturating: `Timer::after` panics when the deadline overflows.
        let deadline = embassy_time::Instant::now().saturating_add(ticks_of(duration));
        embassy_time::Timer::at(deadline).await
    }
}

/// The build's tick rate, for microseconds to ticks and back.
const TICK_RATE: TickRate = TickRate::new(embassy_time::TICK_HZ);

/// `duration` in whole ticks, rounded up as `embassy_time::Duration::try_from_micros` does,
/// without its 64-bit division. Saturating: a wait too long for the tick rate's arithmetic
/// waits "forever".
pub(crate) fn ticks_of(duration: Duration) -> embassy_time::Duration {
    u64::try_from(duration.as_micros())
        .ok()
        .and_then(|micros| TICK_RATE.ticks(micros))
        .map_or(
            embassy_time::Duration::MAX,
            embassy_time::Duration::from_ticks,
        )
}
