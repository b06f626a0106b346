//! A rejection as an HTTP answer.

use ::http::{HeaderValue, Response, StatusCode, header::RETRY_AFTER};

use crate::Rejected;

/// A 503 Service Unavailable with an empty body and a `Retry-After` of the rejection's wait in
/// whole seconds, rounded up (a client that waits that long finds the breaker ready to admit a
/// call): what a service answers when the breaker guarding its own dependency refused the call.
///
/// ```
/// use std::time::Duration;
/// use resilient_circuit_std::{RejectReason, Rejected, http::service_unavailable};
///
/// let refused = Rejected::new(Duration::from_millis(2_300), RejectReason::Open);
/// let answer: http::Response<String> = service_unavailable(refused);
/// assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(answer.headers()["retry-after"], "3");
/// ```
pub fn service_unavailable<B: Default>(rejected: Rejected) -> Response<B> {
    let wait = rejected.retry_after();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}
