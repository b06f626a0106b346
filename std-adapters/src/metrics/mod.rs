//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade (feature `metrics`):
//! what every breaker of a [`MemoryStore`](crate::MemoryStore) or a PostgreSQL store does, and what the stages a
//! [`Counted`] wraps do, for any recorder (Prometheus, StatsD, OpenTelemetry, ...).
//!
//! | metric | kind | labels besides `namespace`, `resource_key` | counts |
//! |---|---|---|---|
//! | [`resilient_circuit_calls_total`](CALLS) | counter | `outcome` = `success`, `failure`, `ignored`; or `rejected`, with `reason` = `open`, `probes_busy`, `store_unavailable` | each call's outcome as the breaker recorded it, and each call it refused |
//! | [`resilient_circuit_transitions_total`](TRANSITIONS) | counter | `from`, `to` = `CLOSED`, `OPEN`, `HALF_OPEN` | each transition, made here or (PostgreSQL) adopted from a peer |
//! | [`resilient_circuit_state`](STATE) | gauge | `state` = `CLOSED`, `OPEN`, `HALF_OPEN` | 1 for the key's state, 0 for the others |
//! | [`resilient_circuit_retries_total`](RETRIES) | counter | | each retry a [`Counted`] stage starts, or a `Counted` tower retry policy's wait ends |
//! | [`resilient_circuit_timeouts_total`](TIMEOUTS) | counter | | each time limit of a [`Counted`] stage that runs out |
//! | [`resilient_circuit_store_write_errors_total`](WRITE_ERRORS) | counter | | each failed write of the key's row (PostgreSQL; tried again) |
//! | [`resilient_circuit_store_dropped_outcomes_total`](DROPPED_OUTCOMES) | counter | | each outcome dropped before reaching the key's row that the row could have shown (PostgreSQL; past [`MAX_PENDING_OUTCOMES`](crate::postgres::MAX_PENDING_OUTCOMES)) |
//!
//! A key's metrics are registered once, when the store makes the key, with the recorder
//! installed then: **install the recorder before making breakers** (a key made earlier reports
//! to the recorder that was installed when it was made, or to none).
//!
//! What it costs: every outcome but one is counted on a path that already takes the key's lock
//! or is cold (one atomic add on the recorder's counter). The exception is the healthy path, a
//! CLOSED call's success, which counts in a batch per thread (a load and a store of memory only
//! that thread writes). A background thread hands every thread's batch to the recorder each
//! [`FLUSH_INTERVAL`] (500 ms); a thread also hands its batch over when it counts another key's
//! success and when it exits, and [`flush`] hands over every batch at once. So a scrape sees
//! every `outcome="success"` counted more than [`FLUSH_INTERVAL`] ago, however idle the thread
//! that counted it is afterwards (a tokio worker, say).
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, MemoryStore};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let store = MemoryStore::new();
//!     let breaker = store.breaker(BreakerKey::resource("inventory-db")?, BreakerConfig::new())?;
//!     let _ = breaker.call(|| Err::<(), _>("timeout"));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! let failures = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     key.key().name() == "resilient_circuit_calls_total"
//!         && key.key().labels().any(|label| label.value() == "failure")
//! });
//! assert_eq!(failures.map(|(.., value)| value), Some(DebugValue::Counter(1)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod counted;
mod key;
#[cfg(feature = "tower")]
mod tower;

pub use batch::{FLUSH_INTERVAL, flush};
pub use counted::Counted;
pub(crate) use key::KeyCounters;
#[cfg(feature = "tower")]
pub use tower::CountedWait;

/// Calls by outcome, and refusals by reason.
pub const CALLS: &str = "resilient_circuit_calls_total";
/// Transitions by `from` and `to`.
pub const TRANSITIONS: &str = "resilient_circuit_transitions_total";
/// The state: 1 for the key's, 0 for the others.
pub const STATE: &str = "resilient_circuit_state";
/// Retries started by a [`Counted`] stage.
pub const RETRIES: &str = "resilient_circuit_retries_total";
/// Time limits of a [`Counted`] stage that ran out.
pub const TIMEOUTS: &str = "resilient_circuit_timeouts_total";
/// Writes of a key's row that failed (the PostgreSQL store's; each is tried again).
pub const WRITE_ERRORS: &str = "resilient_circuit_store_write_errors_total";
/// Outcomes dropped before reaching a key's row (the PostgreSQL store's, past its bound).
pub const DROPPED_OUTCOMES: &str = "resilient_circuit_store_dropped_outcomes_total";
