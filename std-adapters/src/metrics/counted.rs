//! A stage whose retries and run-out time limits are counted against a breaker's key.

use std::{future::Future, time::Duration};

use metrics::Counter;
use resilient_circuit::{
    AsyncPolicy, Error, Policy,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
};

use super::{
    RETRIES, TIMEOUTS,
    key::{key_labels, registered_counter},
};
use crate::BreakerKey;

/// A stage of a net (a [`RetryWithBackoff`](crate::RetryWithBackoff), a
/// [`Timeout`](crate::Timeout)) counted against a key: each retry it starts in
/// `resilient_circuit_retries_total`, each of its time limits that runs out in
/// `resilient_circuit_timeouts_total`, both labelled with the key's `namespace` and
/// `resource_key`.
///
/// A retry counts when its attempt starts, after its wait: one a time limit cuts short before
/// that is not counted. Otherwise the stage behaves as the one it wraps. The counters are
/// registered with the recorder installed when this is made.
///
/// With feature `tower`, a `Counted` tower retry policy (a
/// [`tower::RetryPolicy`](crate::tower::RetryPolicy), or any other) is a policy too, whose
/// retries count when their wait is over.
///
/// ```
/// use resilient_circuit_std::{
///     AsyncPolicy, BreakerConfig, BreakerKey, Error, MemoryStore, RetryWithBackoff, SafetyNet,
///     Timeout, metrics::Counted, time::TokioSleep,
/// };
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let breaker = store.breaker(BreakerKey::resource("payments-api")?, BreakerConfig::new())?;
/// let key = breaker.store().key();
/// let mut net = SafetyNet::new((
///     Counted::new(RetryWithBackoff::new(2), key),
///     Counted::new(Timeout::new(Duration::from_secs(2), TokioSleep), key),
///     &breaker,
/// ));
/// let paid: Result<u32, Error<&str>> = net.call_async(async || Ok(200)).await;
/// assert_eq!(paid.unwrap(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Counted<S> {
    pub(super) stage: S,
    pub(super) retries: Counter,
    timeouts: Counter,
}

impl<S> Counted<S> {
    /// `stage`, counted against `key`.
    pub fn new(stage: S, key: &BreakerKey) -> Self {
        Counted {
            stage,
            retries: registered_counter(RETRIES, key_labels(key)),
            timeouts: registered_counter(TIMEOUTS, key_labels(key)),
        }
    }

    /// The stage counted.
    pub fn get_ref(&self) -> &S {
        &self.stage
    }

    /// The stage counted, no longer counted.
    pub fn into_inner(self) -> S {
        self.stage
    }
}

impl<T, E, S: Stage<T, E>> Stage<T, E> for Counted<S> {
    type Ticket = S::Ticket;

    fn enter(&mut self) -> Result<S::Ticket, Error<E>> {
        self.stage.enter()
    }

    fn leave(&mut self, ticket: &mut S::Ticket, result: &mut Result<T, Error<E>>) -> Leave {
        self.stage.leave(ticket, result)
    }

    fn again(&mut self, ticket: &mut S::Ticket) {
        self.retries.increment(1);
        self.stage.again(ticket)
    }
}

impl<T, E, S: BlockingStage<T, E>> BlockingStage<T, E> for Counted<S> {
    fn wait(&self, duration: Duration) {
        self.stage.wait(duration)
    }
}

impl<T, E, S: AsyncStage<T, E>> AsyncStage<T, E> for Counted<S> {
    const TIME_LIMITED: bool = S::TIME_LIMITED;

    fn wait(&self, duration: Duration) -> impl Future<Output = ()> {
        self.stage.wait(duration)
    }

    /// The stage's limit; when its timer completes the limit has run out (the net watches the
    /// timers before the call), so that is when it counts.
    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<S, T, E>> {
        let timer = self.stage.time_limit()?;
        let timeouts = self.timeouts.clone();
        Some(async move {
            let limit = timer.await;
            timeouts.increment(1);
            limit
        })
    }
}

impl<T, E, S: BlockingStage<T, E>> Policy<T, E> for Counted<S> {
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        (self,).run_stack(operation)
    }
}

impl<T, E, S: AsyncStage<T, E>> AsyncPolicy<T, E> for Counted<S> {
    async fn run_async(&mut self, operation: impl AsyncOperation<T, E>) -> Result<T, Error<E>> {
        (self,).run_stack_async(operation).await
    }
}
