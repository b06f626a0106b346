//! What the store's options are, as its builder sets them and its worker reads them.

use std::time::Duration;

/// Outcomes kept per key while the database is unreachable, written when it is back; beyond
/// this the oldest are dropped, with a warning, except those of a batch in doubt.
///
/// ```
/// assert_eq!(resilient_circuit_std::postgres::MAX_PENDING_OUTCOMES, 1024);
/// ```
pub const MAX_PENDING_OUTCOMES: usize = 1024;

/// What a breaker does while its store cannot reach the database.
///
/// ```
/// use resilient_circuit_std::postgres::{Config, DbSettings, OnOutage, PostgresStore};
///
/// let settings = DbSettings::from_config("host=db.internal user=app".parse::<Config>()?);
/// // Payments must not run on a guess: reject while the shared state is unknown.
/// let builder = PostgresStore::builder(settings).on_outage(OnOutage::FailClosed);
/// # drop(builder);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnOutage {
    /// Keep serving from this process's copy of the state, changed by its own outcomes (which
    /// are written once the database is back). One warning per outage. As the Python package
    /// does.
    FailOpen,
    /// Reject every call with [`RejectReason::StoreUnavailable`](crate::RejectReason) until
    /// the database is back: the state is unknown, so nothing runs.
    FailClosed,
}

/// The store's options, as the worker reads them.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) max_staleness: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) on_outage: OnOutage,
    pub(crate) probe_lease: Duration,
    pub(crate) reconnect: (Duration, Duration),
    pub(crate) round_trip_timeout: Duration,
}
