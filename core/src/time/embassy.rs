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
/// waits "forever". Out of line: a sleep and `Rejected::retry_after_embassy` share it.
#[inline(never)]
pub(crate) fn ticks_of(duration: Duration) -> embassy_time::Duration {
    whole_micros(duration)
        .and_then(|micros| TICK_RATE.ticks(micros))
        .map_or(
            embassy_time::Duration::MAX,
            embassy_time::Duration::from_ticks,
        )
}

/// `duration` in whole microseconds, `None` past `u64::MAX`: `as_micros` without its `u128`
/// arithmetic (a call of a 128-bit multiply on a 32-bit core).
fn whole_micros(duration: Duration) -> Option<u64> {
    let secs = duration.as_secs();
    if secs > u64::MAX / 1_000_000 {
        return None;
    }
    (secs * 1_000_000).checked_add(u64::from(duration.subsec_micros()))
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::whole_micros;

    #[test]
    fn whole_microseconds_are_as_micros_up_to_u64_max() {
        let last_whole_second = u64::MAX / 1_000_000;
        for duration in [
            Duration::ZERO,
            Duration::new(0, 999),
            Duration::new(1, 1_999),
            Duration::new(last_whole_second, 0),
            Duration::new(last_whole_second, 551_615_999),
            Duration::new(last_whole_second, 551_616_000),
            Duration::new(last_whole_second + 1, 0),
            Duration::MAX,
        ] {
            let exact = u64::try_from(duration.as_micros()).ok();
            assert_eq!(whole_micros(duration), exact, "{duration:?}");
        }
    }
}
