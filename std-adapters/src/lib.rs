//! # resilient-circuit-std
//!
//! [`resilient-circuit`](resilient_circuit) for servers. The root names what a server author
//! names; every module of the core but `bus` (firmware's) is here too (re-exported, so a
//! server needs this one dependency), and this crate adds
//!
//! - in [`time`]: [`StdClock`](time::StdClock) and [`CoarseClock`](time::CoarseClock),
//!   monotonic clocks (the coarse one, read only when a breaker opens or rejects, is the
//!   default), and [`ThreadSleep`](time::ThreadSleep), a blocking sleeper;
//! - in [`backoff`]: [`entropy_seeded`](backoff::entropy_seeded), a jitter generator seeded
//!   from the operating system's randomness;
//! - [`MemoryStore`], a thread-safe in-process store keyed by `(namespace, resource_key)`, and
//!   [`SharedBreaker`], its `Send + Sync` breaker handle: no lock and no allocation on a
//!   CLOSED call, every transition reported exactly once;
//! - feature `tokio`: [`TokioSleep`](time::TokioSleep) and [`TokioClock`](time::TokioClock) for
//!   async retries and cooldowns on tokio time;
//! - feature `tracing`: an event for every transition, rejection and hook panic, with the key;
//! - feature `postgres`: breakers shared by every instance, Rust or Python, through the Python
//!   package's table ([`postgres::PostgresStore`]), the store the environment chooses
//!   ([`postgres::AnyStore`]), the table's setup and checks, and the connection settings;
//! - feature `tower`: [`tower::CircuitBreakerLayer`], any breaker in front of a tower service,
//!   and [`tower::RetryPolicy`], a retry as tower's retry policy;
//! - feature `http`: [`http::HttpStatus`], a response classifier that also reads
//!   `Retry-After`, and a rejection as a 503 ([`http::service_unavailable`]);
//! - feature `metrics`: every store's breakers counted through the `metrics` facade (calls by
//!   outcome, rejections by reason, transitions, a state gauge), and retries and timeouts
//!   through [`metrics::Counted`].
//!
//! ```
//! use resilient_circuit_std::{
//!     BreakerConfig, BreakerKey, Error, MemoryStore, Policy, Ratio, RetryWithBackoff, SafetyNet,
//! };
//! use std::time::Duration;
//!
//! let store = MemoryStore::new();
//! let breaker = store.breaker(
//!     BreakerKey::resource("inventory-db")?,
//!     BreakerConfig::new().failure_limit(Ratio::new(3, 5)?).cooldown(Duration::from_secs(10)),
//! )?;
//! // Share `breaker` (or clones of it) between threads; each caller owns its retry.
//! let mut net = SafetyNet::new((RetryWithBackoff::new(2), &breaker));
//! let stock: Result<u32, Error<std::io::Error>> = net.call(|| Ok(42));
//! assert_eq!(stock.unwrap(), 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The documentation names what every feature adds; built without some of them, those names are
// plain text instead of links. Built with every feature (as docs.rs and CI build it), every
// link is checked.
#![cfg_attr(
    not(all(
        feature = "tokio",
        feature = "tracing",
        feature = "postgres",
        feature = "tower",
        feature = "http",
        feature = "reqwest",
        feature = "metrics"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod backoff;
pub mod hook;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod store;
mod sync;
pub mod time;
#[cfg(feature = "tower")]
pub mod tower;

pub use resilient_circuit::{
    AsyncPolicy, Breaker, BreakerConfig, CircuitState, Error, Policy, Ratio, RejectReason,
    Rejected, RetryWithBackoff, SafetyNet, StoreUnavailable, Timeout,
};

pub use key::BreakerKey;
pub use store::{MemoryStore, SharedBreaker, StoreError};

/// The core's modules, whole: each item of this crate's root lives in one of them too.
#[doc(no_inline)]
pub use resilient_circuit::{
    breaker, classify, compose, error, fixed_point, rand_core, retry, state,
};

/// This crate's README example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;

/// The README's examples, compiled and run as doc tests (they use tokio, tower and the
/// PostgreSQL store).
#[cfg(all(doctest, feature = "tower", feature = "postgres"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
