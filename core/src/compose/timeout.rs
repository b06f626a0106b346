//! A time limit on a call (SEMANTICS §4).

use core::{future::Future, time::Duration};

use super::stage::{AsyncStage, Leave, Stage};
use crate::{Error, time::AsyncSleep};

/// Limits how long what is inside it in an async [`SafetyNet`](crate::SafetyNet) may take.
///
/// When the limit runs out, whatever is running inside is dropped (an operation's future, a
/// retry's wait), every stage inside is left with [`Error::TimedOut`], none of them trying
/// again (a breaker inside counts it as a failure, which also frees a probe's slot), and the
/// net goes on outward with that error: a breaker outside counts it as a failure too, and a
/// retry outside may try again, under a new limit. Where it stands decides what it limits:
///
/// - `(retry, &breaker, timeout)`: each attempt;
/// - `(timeout, retry, &breaker)`: the whole call, retries and waits included.
///
/// It waits with any [`AsyncSleep`] (tokio's, embassy's). It is async only: blocking code
/// cannot be interrupted from outside, so a blocking net has no timeout; give the operation its
/// own (a socket read timeout, a bus timeout), and its error then counts as any other. A
/// blocking call through a net that holds one does not compile:
///
/// ```compile_fail,E0599
/// use core::time::Duration;
/// use resilient_circuit::{Error, Policy, SafetyNet, Timeout};
///
/// let timer = |_: Duration| core::future::ready(());
/// let mut net = SafetyNet::new((Timeout::new(Duration::from_secs(1), timer),));
/// let _: Result<(), Error<()>> = net.call(|| Ok(()));
/// ```
///
/// ```
/// # futures_executor_stand_in::block_on(async {
/// use core::{future::pending, time::Duration};
/// use resilient_circuit::{AsyncPolicy, Elapsed, Error, SafetyNet, Timeout};
///
/// // A sleeper that ends at once: the limit runs out before a call that never answers.
/// let timer = |_: Duration| core::future::ready(());
/// let mut net = SafetyNet::new((Timeout::new(Duration::from_millis(250), timer),));
/// let result: Result<(), Error<&str>> = net.call_async(async || pending().await).await;
/// assert_eq!(result, Err(Error::TimedOut(Elapsed::new(Duration::from_millis(250)))));
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeout<S> {
    limit: Duration,
    sleeper: S,
}

impl<S> Timeout<S> {
    /// At most `limit` for what is inside, timed by `sleeper`.
    pub const fn new(limit: Duration, sleeper: S) -> Self {
        Timeout { limit, sleeper }
    }

    /// The limit.
    pub const fn limit(&self) -> Duration {
        self.limit
    }
}

impl<T, E, S> Stage<T, E> for Timeout<S> {
    type Ticket = ();

    #[inline]
    fn enter(&mut self) -> Result<(), Error<E>> {
        Ok(())
    }

    #[inline]
    fn leave(&mut self, _: &mut (), _: &mut Result<T, Error<E>>) -> Leave {
        Leave::Return
    }
}

impl<T, E, S: AsyncSleep + Clone> AsyncStage<T, E> for Timeout<S> {
    const TIME_LIMITED: bool = true;

    /// Never asked to wait: a timeout does not send calls back in.
    fn wait(&self, _: Duration) -> impl Future<Output = ()> {
        core::future::ready(())
    }

    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<T, E, S>> {
        let (sleeper, limit) = (self.sleeper.clone(), self.limit);
        Some(async move {
            sleeper.sleep(limit).await;
            limit
        })
    }
}
