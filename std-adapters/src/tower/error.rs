//! What a guarded service returns instead of a response.

use std::{error::Error as StdError, fmt, time::Duration};

use crate::Rejected;

/// A [`CircuitBreakerService`](super::CircuitBreakerService)'s error: the breaker refused the
/// call, or the inner service failed.
///
/// It converts into [`tower::BoxError`](::tower::BoxError) without a wrapper: a rejection
/// becomes a boxed [`Rejected`] (find it with [`find_rejection`](crate::error::find_rejection)), an inner error stays the
/// error it was, so the layers outside (tower's timeout, retry, buffer) and their users see it
/// unchanged; `Box<dyn Error>` gets the same conversion. That conversion is why this type is not
/// itself a `std::error::Error` (for `anyhow`, go through `tower::BoxError`).
///
/// ```
/// use std::time::Duration;
/// use resilient_circuit_std::{RejectReason, Rejected, error::find_rejection, tower::CircuitBreakerError};
///
/// let refused: CircuitBreakerError<std::io::Error> =
///     CircuitBreakerError::Rejected(Rejected::new(Duration::from_secs(5), RejectReason::Open));
/// assert_eq!(refused.retry_after(), Some(Duration::from_secs(5)));
/// let boxed: tower::BoxError = refused.into();
/// assert_eq!(find_rejection(&*boxed).map(|r| r.retry_after()), Some(Duration::from_secs(5)));
///
/// let failed: CircuitBreakerError<std::io::Error> = CircuitBreakerError::Inner(std::io::Error::other("reset"));
/// let boxed: tower::BoxError = failed.into();
/// assert!(boxed.downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitBreakerError<E> {
    /// The breaker refused the call; the inner service never saw it.
    Rejected(Rejected),
    /// The inner service's error.
    Inner(E),
}

impl<E> CircuitBreakerError<E> {
    /// How long to wait before calling again, if the breaker said no.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CircuitBreakerError::Rejected(r) => Some(r.retry_after()),
            CircuitBreakerError::Inner(_) => None,
        }
    }

    /// Whether the breaker refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CircuitBreakerError::Rejected(_))
    }

    /// The inner service's error, if it failed.
    pub fn inner(&self) -> Option<&E> {
        match self {
            CircuitBreakerError::Inner(e) => Some(e),
            CircuitBreakerError::Rejected(_) => None,
        }
    }

    /// The inner service's error, by value.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CircuitBreakerError::Inner(e) => Some(e),
            CircuitBreakerError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CircuitBreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitBreakerError::Rejected(r) => r.fmt(f),
            CircuitBreakerError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: Into<::tower::BoxError>> From<CircuitBreakerError<E>> for ::tower::BoxError {
    fn from(error: CircuitBreakerError<E>) -> Self {
        match error {
            CircuitBreakerError::Rejected(r) => Box::new(r),
            CircuitBreakerError::Inner(e) => e.into(),
        }
    }
}

/// The same conversion into the `Box<dyn Error>` of a `main` or a test.
impl<E: Into<Box<dyn StdError>>> From<CircuitBreakerError<E>> for Box<dyn StdError> {
    fn from(error: CircuitBreakerError<E>) -> Self {
        match error {
            CircuitBreakerError::Rejected(r) => Box::new(r),
            CircuitBreakerError::Inner(e) => e.into(),
        }
    }
}
