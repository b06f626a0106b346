//! # resilient-circuit
//!
//! A circuit protector (circuit breaker), retry with backoff, and their composition
//! ([`SafetyNet`]), in a `#![no_std]`, allocation-free core. The same state machine guards a
//! flaky sensor on firmware and a flaky API on a server; only the [`StateStore`] (where the
//! state lives) and the [`Clock`] / sleeper (how time passes) change.
//!
//! ```
//! use core::time::Duration;
//! use resilient_circuit::{
//!     Breaker, BreakerConfig, CircuitProtector, CircuitState, Error, InlineStore, Instant, Ratio,
//! };
//!
//! // Trip once 2 of the last 3 calls failed; stay open for 10 s.
//! let config = BreakerConfig::new()
//!     .failure_limit(Ratio::of::<2, 3>())
//!     .cooldown(Duration::from_secs(10))
//!     .validate()
//!     .unwrap();
//! // Time is whatever the clock says; here a fixed instant.
//! let breaker = CircuitProtector::new(config, InlineStore::<64>::new(), Instant::ZERO);
//!
//! for _ in 0..3 {
//!     let _ = breaker.call(|| Err::<(), _>("sensor NAK"));
//! }
//! assert_eq!(breaker.status(), CircuitState::Open);
//! match breaker.call(|| Ok::<_, &str>(42)) {
//!     Err(Error::Rejected(r)) => assert_eq!(r.retry_after(), Duration::from_secs(10)),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! ```
//!
//! The behaviour contract is the project's `docs/SEMANTICS.md`; every rule of its sections 1
//! to 4 has a test in `host-tests`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod breaker;
mod classify;
mod config;
#[cfg(feature = "embassy")]
mod embassy;
mod error;
mod fast_path;
mod hook;
mod layer;
mod policy;
mod protector;
mod ratio;
mod retry;
mod rng;
mod safety_net;
mod sleep;
mod state;
mod store;
mod time;
mod window;

pub use backoff::{
    Backoff, BackoffError, DecorrelatedJitter, ExponentialDelay, FixedDelay, FullJitter, NoBackoff,
    NoJitter, UniformJitter,
};
pub use breaker::{Breaker, Permit};
pub use classify::{AllErrors, Classify, ShouldHandle, Verdict};
pub use config::{BreakerConfig, ConfigError, ValidConfig};
#[cfg(feature = "embassy")]
pub use embassy::{EmbassyClock, EmbassySleep};
pub use error::{Error, RejectReason, Rejected};
pub use fast_path::FastPath;
pub use hook::{NoHook, TransitionHook};
pub use layer::{AsyncLayer, AsyncStack, BlockingLayer, BlockingStack, Layer, Leave};
pub use policy::{AsyncPolicy, Policy};
pub use protector::CircuitProtector;
pub use ratio::{Ratio, RatioError};
pub use retry::RetryWithBackoff;
pub use rng::SplitMix64;
pub use safety_net::SafetyNet;
pub use sleep::{AsyncSleep, NoSleep, Sleep};
pub use state::{Admission, BreakerState, CircuitState, Transition};
pub use store::{CriticalSectionStore, InlineStore, StateStore};
pub use time::{Clock, Instant};
pub use window::{Outcome, OutcomeWindow, Outcomes, Window};

/// The `rand_core` crate, whose generators drive jitter.
pub use rand_core;

/// Fixed-point numbers used for backoff factors and jitter (re-exported from the `fixed` crate).
pub mod fixed_point {
    pub use fixed::types::{U1F31, U32F32};
}
