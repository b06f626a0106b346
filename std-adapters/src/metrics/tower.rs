//! A tower retry policy counted: each retry when its wait is over.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use ::tower::retry::Policy;
use metrics::Counter;
use pin_project_lite::pin_project;

use super::Counted;

/// tower's retry layer with a counted policy: `Counted::new(RetryPolicy::new(retry), key)`
/// counts each retry in `resilient_circuit_retries_total` when its wait is over, before tower
/// readies the service for the attempt. A wait dropped before then (a timeout layer around the
/// retry ran out) is not counted.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::time::Duration;
/// use resilient_circuit_std::{
///     BreakerKey, RetryWithBackoff, backoff::FixedDelay, metrics::Counted, time::TokioSleep,
///     tower::RetryPolicy,
/// };
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// let key = BreakerKey::resource("search-api")?;
/// let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(Duration::from_millis(50)), TokioSleep);
/// let mut service = ServiceBuilder::new()
///     .retry(Counted::new(RetryPolicy::new(retry), &key))
///     .service(service_fn(|query: &'static str| async move { Ok::<_, tower::BoxError>(query.len()) }));
/// assert_eq!(service.ready().await?.call("rust").await?, 4);
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
impl<Request, Response, E, P> Policy<Request, Response, E> for Counted<P>
where
    P: Policy<Request, Response, E>,
{
    type Future = CountedWait<P::Future>;

    fn retry(
        &mut self,
        request: &mut Request,
        result: &mut Result<Response, E>,
    ) -> Option<Self::Future> {
        let wait = self.stage.retry(request, result)?;
        Some(CountedWait {
            wait,
            retries: Some(self.retries.clone()),
        })
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        self.stage.clone_request(request)
    }
}

pin_project! {
    /// A counted tower retry policy's wait before a retry: counts the retry when it is over.
    #[derive(Debug)]
    pub struct CountedWait<F> {
        #[pin]
        wait: F,
        // Taken when counted, so a wait polled again counts once.
        retries: Option<Counter>,
    }
}

impl<F: Future<Output = ()>> Future for CountedWait<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        ready!(this.wait.poll(cx));
        if let Some(retries) = this.retries.take() {
            retries.increment(1);
        }
        Poll::Ready(())
    }
}
