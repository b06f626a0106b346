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
use crate::{
    Breaker, Rejected,
    breaker::Permit,
    classify::{Classify, ClassifyValue},
};

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
        // `None` once the response is recorded.
        Admitted { #[pin] response: F, permit: Option<Permit<P>> },
        Rejected { rejected: Rejected },
    }
}

impl<F, P> ResponseFuture<F, P>
where
    P: Deref,
    P::Target: Breaker,
{
    pub(crate) fn admitted(response: F, permit: Permit<P>) -> Self {
        ResponseFuture {
            state: State::Admitted {
                response,
                permit: Some(permit),
            },
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
                if let Some(permit) = permit.take() {
                    // Judged while the permit is held: if a classifier panics, dropping it
                    // gives the probe slot back.
                    let verdict = permit.breaker().verdict(&result);
                    permit.record(verdict);
                }
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
