//! Waiting between retry attempts: blocking and async.

use core::{future::Future, time::Duration};

/// Blocks the current thread for a while (servers: `std::thread::sleep`; tests: a fake that
/// advances a fake clock). Every `Fn(Duration)` closure is one.
///
/// ```
/// use core::{cell::Cell, time::Duration};
/// use resilient_circuit::{RetryWithBackoff, backoff::FixedDelay, time::Sleep};
///
/// // Remembers how long it was asked to sleep instead of sleeping.
/// let slept = Cell::new(Duration::ZERO);
/// let record = |duration| slept.set(slept.get() + duration);
/// record.sleep(Duration::from_millis(5));
/// assert_eq!(slept.get(), Duration::from_millis(5));
///
/// let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(Duration::from_secs(1)), record);
/// # let _ = retry;
/// ```
pub trait Sleep {
    /// Returns after `duration`.
    fn sleep(&self, duration: Duration);
}

/// Waits asynchronously (firmware: `embassy_time::Timer`; servers: `tokio::time::sleep`).
/// Every closure `Fn(Duration) -> impl Future<Output = ()>` is one.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{RetryWithBackoff, backoff::FixedDelay, time::AsyncSleep};
///
/// // Returns at once: a stand-in for a timer such as `tokio::time::sleep`.
/// let instantly = |_: Duration| core::future::ready(());
/// let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(Duration::from_secs(1)), instantly);
/// # let _ = retry;
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

impl<F: Fn(Duration)> Sleep for F {
    #[inline]
    fn sleep(&self, duration: Duration) {
        self(duration)
    }
}

impl<F, Fut> AsyncSleep for F
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    #[inline]
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        self(duration)
    }
}
