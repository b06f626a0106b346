//! tower's retry layer with this crate's retry rules.

use std::any::Any;

use ::tower::{BoxError, retry::Policy};

use super::CircuitBreakerError;
use crate::{
    Error, RetryWithBackoff,
    backoff::Backoff,
    classify::{Classify, ClassifyValue},
    error::find_rejection,
    retry::{Attempt, Decision},
    time::TokioSleep,
};

/// A [`tower::retry::Policy`](::tower::retry::Policy) made from a [`RetryWithBackoff`]: tower
/// users keep tower's `RetryLayer` and get this crate's backoffs and rules (SEMANTICS §3).
///
/// - After failed attempt `k` it waits `backoff.delay(k)` on tokio's timer; an error or a value
///   the retry's classifiers do not call a failure ends the call at once.
/// - A breaker's rejection is waited out only if its `retry_after` is no longer than the delay
///   the retry would wait anyway: a retry does not keep knocking on an open breaker. A
///   rejection boxed by a layer between (tower's timeout) is found in any case; a
///   [`CircuitBreakerError`] straight from the breaker's layer is read once the policy is told
///   so with [`behind_breaker`](Self::behind_breaker).
/// - When the attempts run out, tower returns the last response or error as it is.
///
/// Requests are cloned for the next attempt with [`Clone`] unless
/// [`clone_requests_with`](Self::clone_requests_with) says how. Each request gets its own copy
/// of the policy, and each copy draws its own jitter. With feature `metrics`,
/// `metrics::Counted::new(policy, key)` counts its retries.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::{sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
/// use resilient_circuit_std::{RetryWithBackoff, backoff::FixedDelay, time::TokioSleep, tower::RetryPolicy};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// let calls = Arc::new(AtomicU32::new(0));
/// let counted = calls.clone();
/// let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(Duration::from_millis(50)), TokioSleep);
/// let mut service = ServiceBuilder::new()
///     .retry(RetryPolicy::new(retry))
///     .service(service_fn(move |n: u32| {
///         let attempt = counted.fetch_add(1, Ordering::SeqCst) + 1;
///         async move { if attempt < 3 { Err(tower::BoxError::from("reset")) } else { Ok(n) } }
///     }));
/// assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), 7);
/// assert_eq!(calls.load(Ordering::SeqCst), 3);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy<B, K, V, C = CloneRequests, R = AnyErrors> {
    retry: RetryWithBackoff<B, TokioSleep, K, V>,
    /// The attempt under way (1-based) in this request's copy of the policy.
    attempt: u32,
    clone_request: C,
    errors: R,
}

impl<B: Backoff, K, V> RetryPolicy<B, K, V> {
    /// `retry`'s rules for tower's retry layer. Errors are taken as they come ([`AnyErrors`]);
    /// requests are cloned with `Clone`.
    pub fn new(retry: RetryWithBackoff<B, TokioSleep, K, V>) -> Self {
        RetryPolicy {
            retry,
            attempt: 1,
            clone_request: CloneRequests,
            errors: AnyErrors,
        }
    }
}

impl<B, K, V, C, R> RetryPolicy<B, K, V, C, R> {
    /// Clone requests with `clone_request` (`None`: this request is not retried), for requests
    /// that are not `Clone` (an `http::Request` with a buffered body, say).
    pub fn clone_requests_with<C2>(self, clone_request: C2) -> RetryPolicy<B, K, V, C2, R> {
        RetryPolicy {
            retry: self.retry,
            attempt: self.attempt,
            clone_request,
            errors: self.errors,
        }
    }

    /// The service retried is a [`CircuitBreakerService`](super::CircuitBreakerService) (or
    /// returns this crate's [`Error`]): its rejections are read as rejections, so the retry
    /// stops at an open breaker, and the retry's error classifier judges the inner errors.
    pub fn behind_breaker(self) -> RetryPolicy<B, K, V, C, BreakerErrors> {
        RetryPolicy {
            retry: self.retry,
            attempt: self.attempt,
            clone_request: self.clone_request,
            errors: BreakerErrors,
        }
    }

    /// The retry whose rules this policy follows.
    pub fn retry(&self) -> &RetryWithBackoff<B, TokioSleep, K, V> {
        &self.retry
    }
}

impl<Request, Response, E, B, K, V, C, R> Policy<Request, Response, E>
    for RetryPolicy<B, K, V, C, R>
where
    R: ReadErrors<E>,
    B: Backoff,
    K: Classify<R::Failure>,
    V: ClassifyValue<Response>,
    C: CloneRequest<Request>,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _: &mut Request,
        result: &mut Result<Response, E>,
    ) -> Option<tokio::time::Sleep> {
        let outcome = match result {
            Ok(response) => Attempt::Value(response),
            Err(error) => self.errors.attempt(error),
        };
        match self.retry.decide(self.attempt, outcome) {
            Decision::RetryAfter(delay) => {
                self.attempt += 1;
                Some(tokio::time::sleep(delay))
            }
            Decision::Return | Decision::GiveUp => None,
        }
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        // tower asks the service's own policy (attempt 1) once per request, before copying it
        // for that request, and asks the copy again before each retry (after `retry` moved its
        // attempt on). Moving the service's backoff on gives every request other jitter; a
        // copy keeps its own sequence.
        if self.attempt == 1 {
            self.retry.skip_call_delays();
        }
        self.clone_request.clone_request(request)
    }
}

/// How [`RetryPolicy`] copies a request for another attempt.
pub trait CloneRequest<Request> {
    /// A copy of `request`, or `None` if it cannot be sent again.
    fn clone_request(&mut self, request: &Request) -> Option<Request>;
}

/// Copies requests with [`Clone`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CloneRequests;

impl<Request: Clone> CloneRequest<Request> for CloneRequests {
    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        Some(request.clone())
    }
}

impl<Request, F: FnMut(&Request) -> Option<Request>> CloneRequest<Request> for F {
    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        self(request)
    }
}

/// How [`RetryPolicy`] reads the errors of the service it retries.
pub trait ReadErrors<E> {
    /// What the retry's error classifier judges.
    type Failure;

    /// How the attempt that ended with `error` counts.
    fn attempt<'a, T>(&self, error: &'a E) -> Attempt<'a, T, Self::Failure>;
}

/// Errors as they come ([`RetryPolicy::new`]): each is judged by the retry's error classifier,
/// except a boxed error holding a [`Rejected`](crate::Rejected) (a breaker's rejection boxed by
/// a layer such as tower's timeout), which counts as that rejection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AnyErrors;

impl<E: 'static> ReadErrors<E> for AnyErrors {
    type Failure = E;

    fn attempt<'a, T>(&self, error: &'a E) -> Attempt<'a, T, E> {
        let boxed = (error as &dyn Any).downcast_ref::<BoxError>();
        match boxed.and_then(|boxed| find_rejection(&**boxed)) {
            Some(rejected) => Attempt::Rejected(rejected),
            None => Attempt::Failed(error),
        }
    }
}

/// The errors of a breaker inside the retry ([`RetryPolicy::behind_breaker`]): a
/// [`CircuitBreakerError`] or this crate's [`Error`]; the retry's error classifier judges the
/// inner error, and a rejection counts as a rejection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BreakerErrors;

impl<E> ReadErrors<CircuitBreakerError<E>> for BreakerErrors {
    type Failure = E;

    fn attempt<'a, T>(&self, error: &'a CircuitBreakerError<E>) -> Attempt<'a, T, E> {
        match error {
            CircuitBreakerError::Rejected(rejected) => Attempt::Rejected(*rejected),
            CircuitBreakerError::Inner(error) => Attempt::Failed(error),
        }
    }
}

impl<E> ReadErrors<Error<E>> for BreakerErrors {
    type Failure = E;

    fn attempt<'a, T>(&self, error: &'a Error<E>) -> Attempt<'a, T, E> {
        Attempt::of_error(error)
    }
}
