//! The operation a composed async call runs, once per attempt.

use core::future::Future;

use crate::Error;

/// What an async composed call runs, once per attempt: any `AsyncFnMut` closure, or a type of
/// your own whose [`attempt`](Self::attempt) borrows from it, so that the call's future is
/// `Send` whenever what it borrows is (a closure that borrows cannot promise that yet: the
/// compiler loses the lifetime of its borrows).
///
/// ```
/// # futures_executor_stand_in::block_on(async {
/// use resilient_circuit::{AsyncPolicy, Error, RetryWithBackoff, compose::AsyncOperation};
///
/// /// Reads a sensor through a borrowed bus handle.
/// struct ReadSensor<'b> {
///     bus: &'b mut Vec<u8>,
/// }
///
/// impl AsyncOperation<u8, &'static str> for ReadSensor<'_> {
///     async fn attempt(&mut self) -> Result<u8, Error<&'static str>> {
///         self.bus.pop().ok_or(Error::Operation("no reading"))
///     }
/// }
///
/// let mut bus = vec![42];
/// let mut retry = RetryWithBackoff::new(1);
/// assert_eq!(retry.run_async(ReadSensor { bus: &mut bus }).await, Ok(42));
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
pub trait AsyncOperation<T, E> {
    /// Runs one attempt.
    fn attempt(&mut self) -> impl Future<Output = Result<T, Error<E>>>;
}

impl<T, E, F: AsyncFnMut() -> Result<T, Error<E>>> AsyncOperation<T, E> for F {
    #[inline]
    fn attempt(&mut self) -> impl Future<Output = Result<T, Error<E>>> {
        self()
    }
}
