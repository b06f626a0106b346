//! The policy traits that [`SafetyNet`](crate::SafetyNet) composes.

use core::future::Future;

use super::operation::AsyncOperation;
use crate::Error;

/// A blocking resilience policy for calls returning `Result<T, E>`: runs an operation (perhaps several times, perhaps not at all)
/// and returns its result or the policy's [`Error`].
///
/// Implemented by every policy and by [`SafetyNet`](crate::SafetyNet); each is a
/// [`Stage`](crate::compose::Stage) run on its own. [`call`](Policy::call) takes a plain operation;
/// `run` takes one that already speaks [`Error`].
///
/// ```
/// use resilient_circuit::{Error, Policy, RetryWithBackoff};
///
/// let mut retry = RetryWithBackoff::new(2);
/// let mut runs = 0;
/// let result: Result<(), Error<&str>> = retry.call(|| {
///     runs += 1;
///     Err("down")
/// });
/// assert_eq!(runs, 3);
/// assert_eq!(result, Err(Error::RetryLimitReached { attempts: 3, last_error: "down" }));
/// ```
pub trait Policy<T, E> {
    /// Runs `operation` under this policy.
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>>;

    /// Runs a plain operation under this policy.
    fn call(&mut self, mut operation: impl FnMut() -> Result<T, E>) -> Result<T, Error<E>> {
        self.run(|| operation().map_err(Error::Operation))
    }
}

/// An async resilience policy; see [`Policy`]. The operation is an `AsyncFnMut`, so it may
/// borrow a peripheral mutably across its awaits.
///
/// ```
/// # futures_executor_stand_in::block_on(async {
/// use resilient_circuit::{AsyncPolicy, Error, RetryWithBackoff};
///
/// let mut retry = RetryWithBackoff::new(1);
/// let mut bus = Vec::new(); // a "peripheral" borrowed mutably by every attempt
/// let result: Result<u8, Error<&str>> = retry
///     .call_async(async || {
///         bus.push(0x42);
///         if bus.len() < 2 { Err("nak") } else { Ok(bus.len() as u8) }
///     })
///     .await;
/// assert_eq!(result, Ok(2));
/// # });
/// # mod futures_executor_stand_in {
/// #     pub fn block_on<F: core::future::Future>(f: F) -> F::Output {
/// #         let mut f = core::pin::pin!(f);
/// #         let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
/// #         loop {
/// #             if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
/// #         }
/// #     }
/// # }
/// ```
pub trait AsyncPolicy<T, E> {
    /// Runs `operation` under this policy.
    fn run_async(
        &mut self,
        operation: impl AsyncOperation<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>>;

    /// Runs a plain async operation under this policy.
    fn call_async(
        &mut self,
        mut operation: impl AsyncFnMut() -> Result<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>> {
        async move {
            // `async move`: the wrapper owns the operation. Borrowing it instead makes the
            // future fail `Send` checks (a higher-ranked lifetime rustc cannot see through),
            // and servers spawn these futures on multi-threaded runtimes.
            self.run_async(async move || operation().await.map_err(Error::Operation))
                .await
        }
    }
}
