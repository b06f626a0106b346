//! HTTP on the `http` 1.x types (feature `http`).
//!
//! - [`HttpStatus`]: the ready value classifier for responses: a 5xx, 408 Request Timeout or
//!   429 Too Many Requests is a failure, any other status a success; configurable per status.
//!   It also reads a failed response's `Retry-After`, which a retry honours.
//! - [`retry_after`]: the `Retry-After` header, in both of its forms (delta-seconds and
//!   HTTP-date), as a wait.
//! - [`service_unavailable`]: a rejection as a 503 with `Retry-After`, for a service that
//!   protects its own dependency and tells its callers when to come back.
//! - [`HttpBreaker`]: the type of a shared breaker judged by [`HttpStatus`], to name in a
//!   service's state.
//! - Feature `reqwest`: [`HttpStatus`] judges a `reqwest::Response` as it is (status and
//!   `Retry-After`), with no copy into an `http::Response`.
//!
//! ```
//! use std::time::Duration;
//! use resilient_circuit_std::{
//!     Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, http::HttpStatus,
//! };
//!
//! let breaker = MemoryStore::new()
//!     .breaker(BreakerKey::resource("images")?, BreakerConfig::new().cooldown(Duration::from_secs(5)))?
//!     .classify_values(HttpStatus::new());
//! let busy = http::Response::builder().status(503).body(())?;
//! let answer = breaker.call(|| Ok::<_, std::io::Error>(busy))?;
//! assert_eq!(answer.status(), 503); // returned as it came, counted as a failure
//! assert_eq!(breaker.status(), CircuitState::Open);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod rejection;
mod retry_after;
mod status;

pub use rejection::service_unavailable;
pub use retry_after::retry_after;
pub use status::HttpStatus;

use crate::{SharedBreaker, classify::AllErrors, hook::NoHook, time::CoarseClock};

/// A shared breaker whose responses [`HttpStatus`] judges, with hook `H` (none, or
/// `SharedHook<BoxedHook>` for a closure): a type a service's state can name.
///
/// ```
/// use resilient_circuit_std::{
///     BreakerConfig, BreakerKey, MemoryStore,
///     hook::{BoxedHook, SharedHook},
///     http::{HttpBreaker, HttpStatus},
/// };
///
/// struct AppState {
///     upstream: HttpBreaker<SharedHook<BoxedHook>>,
/// }
///
/// let hook: BoxedHook = Box::new(|from, to| println!("upstream: {from} -> {to}"));
/// let upstream = MemoryStore::new()
///     .breaker(BreakerKey::resource("upstream")?, BreakerConfig::new())?
///     .classify_values(HttpStatus::new())
///     .on_status_change(hook);
/// let state = AppState { upstream };
/// # drop(state);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type HttpBreaker<H = NoHook> = SharedBreaker<CoarseClock, AllErrors, H, HttpStatus>;
