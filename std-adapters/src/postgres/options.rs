//! What the store's options are, as its builder sets them and its worker reads them.

use std::time::Duration;

/// The bound on one key's outcomes that wait for the database (during an outage, or when they
/// come faster than the worker writes them): at most this many in the key's log until the
/// worker takes it, and at most this many with the worker until they are in the row (plus those
/// of a batch whose reply was lost, until it is settled). Past it the oldest go first, never a
/// newer before an older. One followed by a window's worth of newer outcomes of its period is
/// no loss (the row's window would push it out anyway: the case of a hot key under load);
/// any other is counted ([`PostgresStore::dropped_outcomes`](super::PostgresStore::dropped_outcomes))
/// and warned about once per key. The process's own copy of the state has counted them all.
///
/// ```
/// assert_eq!(resilient_circuit_std::postgres::MAX_PENDING_OUTCOMES, 1024);
/// ```
pub const MAX_PENDING_OUTCOMES: usize = crate::store::replica::MAX_LOGGED;

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
