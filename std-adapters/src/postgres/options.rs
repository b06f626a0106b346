//! What the store's options are, as its builder sets them and its worker reads them.

use std::time::Duration;

pub use crate::store::OnOutage;

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
