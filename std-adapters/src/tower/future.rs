//! The response future, which owns the call's admission until the response is judged.

use std::{
    fmt,
    future::Future,
    ops::Deref,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::CircuitBreakerError;
use crate::{Breaker, Classify, ClassifyValue, Rejected, state::Admission};

/// An admission held by a future: recorded once, or released when dropped unrecorded.
pub(crate) struct OwnedPermit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    breaker: P,
    admission: Option<Admission>,
}

impl<P> OwnedPermit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    pub(crate) fn new(breaker: P, admission: Admission) -> Self {
        OwnedPermit {
            breaker,
            admission: Some(admission),
        }
    }

    /// Records `result` as the breaker's classifiers judge it.
    #[inline]
    fn record<T, E>(&mut self, result: &Result<T, E>)
    where
        <P::Target as Breaker>::Classifier: Classify<E>,
        <P::Target as Breaker>::ValueClassifier: ClassifyValue<T>,
    {
        if self.admission.is_some() {
            // Judged before the admission is taken: if a classifier panics, `drop` gives the
            // probe slot back.
            let verdict = self.breaker.verdict(result);
            if let Some(admission) = self.admission.take() {
                self.breaker.record(admission, verdict);
            }
        }
    }
}

impl<P> Drop for OwnedPermit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    #[inline]
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.breaker.release(admission);
        }
    }
}

pin_project! {
    /// The future of a [`CircuitBreakerService`](super::CircuitBreakerService) call: the inner
    /// service's response, judged and recorded when it arrives; or the rejection, at once.
    /// Dropped before it finishes, it records nothing and gives back a HALF_OPEN probe slot.
    pub struct ResponseFuture<F, P>
    where
        P: Deref,
        P::Target: Breaker,
    {
        #[pin]
        state: State<F, P>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F, P>
    where
        P: Deref,
        P::Target: Breaker,
    {
        Admitted { #[pin] response: F, permit: OwnedPermit<P> },
        Rejected { rejected: Rejected },
    }
}

impl<F, P> ResponseFuture<F, P>
where
    P: Deref,
    P::Target: Breaker,
{
    pub(crate) fn admitted(response: F, permit: OwnedPermit<P>) -> Self {
        ResponseFuture {
            state: State::Admitted { response, permit },
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            state: State::Rejected { rejected },
        }
    }
}

impl<F, P, T, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<T, E>>,
    P: Deref,
    P::Target: Breaker,
    <P::Target as Breaker>::Classifier: Classify<E>,
    <P::Target as Breaker>::ValueClassifier: ClassifyValue<T>,
{
    type Output = Result<T, CircuitBreakerError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Admitted { response, permit } => {
                let result = ready!(response.poll(cx));
                permit.record(&result);
                Poll::Ready(result.map_err(CircuitBreakerError::Inner))
            }
            StateProjection::Rejected { rejected } => {
                Poll::Ready(Err(CircuitBreakerError::Rejected(*rejected)))
            }
        }
    }
}

impl<F, P> fmt::Debug for ResponseFuture<F, P>
where
    P: Deref,
    P::Target: Breaker,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted { .. } => "admitted",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
