//! # resilient-circuit
//!
//! A circuit protector (circuit breaker), retry with backoff, and their composition
//! ([`SafetyNet`]), in a `#![no_std]`, allocation-free core. The same state machine guards a
//! flaky sensor on firmware and a flaky API on a server; only the
//! [`StateStore`](store::StateStore) (where the state lives) and the [`Clock`](time::Clock) /
//! sleeper (how time passes) change.
//!
//! The root names what a user names. Every item also lives in one module, whose folder in the
//! source has the module's name: [`breaker`] (the breaker, its configuration and ratios),
//! [`error`], [`store`] (where state lives, and the seam for a store of your own), [`state`]
//! (the state machine's values), [`time`] (clocks and sleepers), [`retry`], [`backoff`]
//! (delays and jitter), [`compose`] ([`SafetyNet`], [`Timeout`], the policy traits, and how a
//! composed call runs its stages), [`classify`] and [`hook`]; with the feature `embedded-hal`,
//! `bus` (an async or blocking `embedded-hal` bus whose transactions go through a policy).
//!
//! ```
//! use core::time::Duration;
//! use resilient_circuit::{Breaker, BreakerConfig, CircuitProtector, CircuitState, Error, Ratio};
//! use resilient_circuit::{store::InlineStore, time::Instant};
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
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod breaker;
#[cfg(feature = "embedded-hal")]
pub mod bus;
pub mod classify;
pub mod compose;
mod divide;
pub mod error;
pub mod hook;
pub mod retry;
pub mod state;
pub mod store;
pub mod time;
mod wide;

pub use breaker::{
    Breaker, BreakerConfig, CircuitProtector, ConfigError, Permit, Ratio, RatioError, ValidConfig,
};
pub use classify::{Classify, ClassifyValue, ShouldHandle};
pub use compose::{AsyncPolicy, Policy, SafetyNet, Timeout};
pub use error::{Elapsed, Error, RejectReason, Rejected, StoreUnavailable};
pub use hook::TransitionHook;
pub use retry::RetryWithBackoff;
pub use state::CircuitState;

/// The `rand_core` crate, whose generators drive jitter.
pub use rand_core;

/// Fixed-point numbers used for backoff factors and jitter (the `fixed` crate's), named here
/// so that signatures read `U32F32`, not the type it stands for.
pub mod fixed_point {
    /// An unsigned number with 32 integer and 32 fractional bits: a backoff's factor.
    pub type U32F32 = fixed::types::U32F32;
    /// An unsigned number with 1 integer and 31 fractional bits: a jitter's fraction of a delay,
    /// 0 to 1.
    pub type U1F31 = fixed::types::U1F31;
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
