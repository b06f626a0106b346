//! Waiting between retry attempts: blocking and async.

use core::{future::Future, time::Duration};

/// Blocks the current thread for a while (servers: `std::thread::sleep`; tests: a fake that
/// advances a fake clock).
///
/// ```
/// use core::{cell::Cell, time::Duration};
/// use resilient_circuit::Sleep;
///
/// /// Remembers how long it was asked to sleep instead of sleeping.
/// struct Recorder(Cell<Duration>);
/// impl Sleep for Recorder {
///     fn sleep(&self, duration: Duration) {
///         self.0.set(self.0.get() + duration);
///     }
/// }
/// let r = Recorder(Cell::new(Duration::ZERO));
/// r.sleep(Duration::from_millis(5));
/// assert_eq!(r.0.get(), Duration::from_millis(5));
/// ```
pub trait Sleep {
    /// Returns after `duration`.
    fn sleep(&self, duration: Duration);
}

/// Waits asynchronously (firmware: `embassy_time::Timer`; servers: `tokio::time::sleep`).
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::AsyncSleep;
///
/// /// Returns at once: a stand-in for a timer.
/// struct Instantly;
/// impl AsyncSleep for Instantly {
///     async fn sleep(&self, _: Duration) {}
/// }
/// ```
pub trait AsyncSleep {
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// Never waits: the sleeper of a retry without backoff, whose delays are all zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoSleep;

impl Sleep for NoSleep {
    fn sleep(&self, _: Duration) {}
}

impl AsyncSleep for NoSleep {
    async fn sleep(&self, _: Duration) {}
}

impl<S: Sleep + ?Sized> Sleep for &S {
    fn sleep(&self, duration: Duration) {
        (**self).sleep(duration)
    }
}

impl<S: AsyncSleep + ?Sized> AsyncSleep for &S {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        (**self).sleep(duration)
    }
}
