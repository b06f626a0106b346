//! A blocking sleeper over a HAL's delay, for a retry on a blocking bus.

use core::{cell::RefCell, time::Duration};

use embedded_hal::delay::DelayNs;

use crate::time::Sleep;

/// A HAL's blocking delay ([`DelayNs`]) as a retry's [`Sleep`]: the wait between the attempts
/// of a blocking [`ProtectedBus`](super::ProtectedBus). Waits whole seconds, then the rest in
/// nanoseconds: no 64-bit division on a core without one.
///
/// ```
/// use core::time::Duration;
/// use embedded_hal::delay::DelayNs;
/// use resilient_circuit::{bus::DelaySleep, time::Sleep};
///
/// /// A delay that counts what it was asked to wait.
/// struct CountingDelay(u64);
/// impl DelayNs for CountingDelay {
///     fn delay_ns(&mut self, ns: u32) {
///         self.0 += u64::from(ns);
///     }
/// }
///
/// let sleep = DelaySleep::new(CountingDelay(0));
/// sleep.sleep(Duration::from_millis(2_500));
/// assert_eq!(sleep.into_inner().0, 2_500_000_000);
/// ```
#[derive(Debug)]
pub struct DelaySleep<D> {
    // `Sleep` waits through `&self`; a blocking bus's retry runs on one thread at a time.
    delay: RefCell<D>,
}

impl<D: DelayNs> DelaySleep<D> {
    /// Waits with `delay`.
    pub const fn new(delay: D) -> Self {
        DelaySleep {
            delay: RefCell::new(delay),
        }
    }

    /// The delay, back.
    pub fn into_inner(self) -> D {
        self.delay.into_inner()
    }
}

impl<D: DelayNs> Sleep for DelaySleep<D> {
    fn sleep(&self, duration: Duration) {
        // A sleeper never sleeps inside another sleep, so the borrow is always free; if it were
        // not, not waiting beats a panic.
        let Ok(mut delay) = self.delay.try_borrow_mut() else {
            return;
        };
        for _ in 0..duration.as_secs() {
            delay.delay_ns(1_000_000_000);
        }
        delay.delay_ns(duration.subsec_nanos());
    }
}
