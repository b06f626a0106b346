//! The service: admission in `call`, the outcome recorded when the response future finishes.

use std::{
    ops::Deref,
    task::{Context, Poll},
};

use tower_service::Service;

use super::{CircuitBreakerError, ResponseFuture};
use crate::{
    Breaker,
    breaker::Permit,
    classify::{Classify, ClassifyValue},
};

/// A service whose calls go through a breaker; made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// - `poll_ready` is the inner service's: a breaker has no capacity to wait for.
/// - `call` asks the breaker. Rejected, the request is dropped without reaching the inner
///   service and the future returns [`CircuitBreakerError::Rejected`] at once; admitted, the
///   request goes on, and the response or error is recorded as the breaker's classifiers say.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use resilient_circuit_std::{BreakerConfig, BreakerKey, CircuitState, MemoryStore, tower::CircuitBreakerService};
/// use tower::{Service, ServiceExt, service_fn};
///
/// let breaker = Arc::new(MemoryStore::new().breaker(BreakerKey::resource("ledger")?, BreakerConfig::new())?);
/// let upstream = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("reset")) });
/// let mut service = CircuitBreakerService::new(upstream, breaker.clone());
/// assert!(service.ready().await?.call(()).await.is_err());
/// assert_eq!(breaker.status(), CircuitState::Open);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerService<S, P> {
    inner: S,
    breaker: P,
}

impl<S, P> CircuitBreakerService<S, P> {
    /// `inner` guarded by the breaker behind `breaker`.
    pub const fn new(inner: S, breaker: P) -> Self {
        CircuitBreakerService { inner, breaker }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The breaker's handle.
    pub fn breaker(&self) -> &P {
        &self.breaker
    }
}

impl<S, P, Request> Service<Request> for CircuitBreakerService<S, P>
where
    S: Service<Request>,
    P: Deref + Clone,
    P::Target: Breaker,
    <P::Target as Breaker>::Classifier: Classify<S::Error>,
    <P::Target as Breaker>::ValueClassifier: ClassifyValue<S::Response>,
{
    type Response = S::Response;
    type Error = CircuitBreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(CircuitBreakerError::Inner)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        match self.breaker.admit() {
            Ok(admission) => {
                // The permit exists before the inner call: if that panics, the slot comes back.
                let permit = Permit::new(self.breaker.clone(), admission);
                ResponseFuture::admitted(self.inner.call(request), permit)
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
