//! tower: a breaker in front of any [`Service`](tower_service::Service) (feature `tower`).
//!
//! - [`CircuitBreakerLayer`] / [`CircuitBreakerService`]: `poll_ready` passes through to the
//!   inner service; each `call` asks the breaker first, so a rejected request never reaches it.
//!   The response is judged by the breaker's two classifiers: its error classifier sees the
//!   inner service's errors, its value classifier the responses (so an `Ok` HTTP 503 can trip).
//!   A response future dropped before it finishes records nothing and gives back its
//!   HALF_OPEN probe slot.
//! - [`CircuitBreakerError`]: a rejection or the inner error. It converts into
//!   [`tower::BoxError`] transparently (the inner error as it was, a rejection
//!   as a [`Rejected`](crate::Rejected)), so it fits tower's own timeout and retry layers, and
//!   [`find_rejection`](crate::error::find_rejection) reads `retry_after` back from any boxed error.
//! - [`RetryPolicy`]: a [`RetryWithBackoff`](crate::RetryWithBackoff) as tower's retry policy,
//!   with its backoffs, classifiers and the rule that a retry stops at an open breaker.
//!
//! The breaker is held through a cheap handle `P`: an `Arc` of a breaker, or a `&'static` one.
//! Each admitted call clones the handle into its response future, which must own it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::{sync::Arc, time::Duration};
//! use resilient_circuit_std::{
//!     BreakerConfig, BreakerKey, CircuitState, MemoryStore, classify::Verdict,
//!     tower::{CircuitBreakerError, CircuitBreakerLayer},
//! };
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let breaker = MemoryStore::new()
//!     .breaker(BreakerKey::resource("pricing")?, BreakerConfig::new().cooldown(Duration::from_secs(30)))?
//!     // The upstream answers with a status; 503 is a failure even though it is `Ok`.
//!     .classify_values(|status: &u16| if *status == 503 { Verdict::Failure } else { Verdict::Success });
//! let breaker = Arc::new(breaker);
//! let mut service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|_request: &str| async { Ok::<u16, std::io::Error>(503) }));
//!
//! assert_eq!(service.ready().await?.call("GET /price").await?, 503);
//! assert_eq!(breaker.status(), CircuitState::Open);
//! match service.ready().await?.call("GET /price").await {
//!     Err(CircuitBreakerError::Rejected(r)) => assert_eq!(r.retry_after(), Duration::from_secs(30)),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod future;
mod layer;
mod retry;
mod service;

pub use error::CircuitBreakerError;
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use retry::{AnyErrors, BreakerErrors, CloneRequest, CloneRequests, ReadErrors, RetryPolicy};
pub use service::CircuitBreakerService;
