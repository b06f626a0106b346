//! Sleepers for retries.

use std::time::Duration;

use resilient_circuit::time::Sleep;

/// Waits by blocking the thread (`std::thread::sleep`).
///
/// ```
/// use resilient_circuit_std::{RetryWithBackoff, backoff::ExponentialDelay, time::ThreadSleep};
/// use std::time::Duration;
///
/// let backoff = ExponentialDelay::new(Duration::from_millis(10), Duration::from_secs(1)).unwrap();
/// let retry = RetryWithBackoff::new(3).with_backoff(backoff, ThreadSleep);
/// # let _ = retry;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Waits on tokio's timer (`tokio::time::sleep`), without blocking the runtime.
///
/// ```
/// use resilient_circuit_std::{AsyncPolicy, Error, RetryWithBackoff, backoff::FixedDelay, time::TokioSleep};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut retry = RetryWithBackoff::new(2).with_backoff(FixedDelay(Duration::from_secs(1)), TokioSleep);
/// let result: Result<(), Error<&str>> = retry.call_async(async || Err("down")).await;
/// assert!(matches!(result, Err(Error::RetryLimitReached { attempts: 3, .. })));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokioSleep;

#[cfg(feature = "tokio")]
impl resilient_circuit::time::AsyncSleep for TokioSleep {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}
