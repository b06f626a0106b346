//! The PostgreSQL store: the in-process store, plus a worker thread that replicates each key's
//! state to its row and the row's changes back.

use std::{
    fmt,
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use resilient_circuit::{BreakerConfig, time::Clock};

use super::{
    DbSettings, OnOutage, PostgresStoreError,
    options::Options,
    worker::{self, Mailbox, Request},
};
use crate::{
    BreakerKey, MemoryStore, SharedBreaker, StoreError, StoreUnavailable,
    store::{
        SharedWindow, key_store::shared_breaker, replica::Replicator, shared_state::SharedState,
    },
    time::CoarseClock,
};

/// Builds a [`PostgresStore`]: `PostgresStore::builder(settings).sync_interval(..).connect()`.
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, OnOutage, PostgresStore};
/// use std::time::Duration;
///
/// let store = PostgresStore::builder(DbSettings::from_env()?)
///     .sync_interval(Duration::from_millis(50))
///     .max_staleness(Duration::from_millis(500))
///     .on_outage(OnOutage::FailClosed)
///     .round_trip_timeout(Duration::from_secs(1))
///     .probe_lease(Duration::from_secs(30))
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .connect()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresStoreBuilder<C = CoarseClock> {
    settings: DbSettings,
    options: Options,
    clock: C,
}

impl<C: Clock + Clone + Send + Sync + 'static> PostgresStoreBuilder<C> {
    /// How often this process's successes are sent to the rows (failures, probes and manual
    /// control go at once). Default 100 ms: peers see a recovering window within a tenth of a
    /// second, a crash loses at most that much, and successes cost at most 10 writes a second
    /// per process, for all its keys together (none while its windows and rows stay full of
    /// successes).
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.options.sync_interval = interval;
        self
    }

    /// How long the state may go without being read from the database when no notification
    /// says it changed: the fallback for a lost `LISTEN`. Default 1 s (the Python package's
    /// refresh interval). One statement reads every key of the store.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.options.max_staleness = max_staleness;
        self
    }

    /// Fail open (the default) or fail closed while the database is unreachable.
    pub fn on_outage(mut self, on_outage: OnOutage) -> Self {
        self.options.on_outage = on_outage;
        self
    }

    /// How long a HALF_OPEN probe slot reserved for this process stays taken without a report
    /// before it is presumed lost (its process died). Default 60 s.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.options.probe_lease = lease;
        self
    }

    /// The reconnection backoff after a failure: first wait, doubled up to the second.
    /// Default 100 ms up to 5 s.
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.options.reconnect = (first, max.max(first));
        self
    }

    /// The deadline of every round trip (and of connecting, unless the DSN sets
    /// `connect_timeout`): a server that does not answer within it (frozen, or behind a network
    /// that drops packets) is an outage. Default 2 s. It also bounds the start's checks of the
    /// table, how long making a breaker waits for its row, and manual control.
    pub fn round_trip_timeout(mut self, timeout: Duration) -> Self {
        self.options.round_trip_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The store's clock (default [`CoarseClock`]): a local monotonic clock that carries the
    /// server's time forward between round trips and sets the deadlines; every breaker of the
    /// store reads it, so they share its timeline.
    pub fn local_clock<L: Clock + Clone + Send + Sync + 'static>(
        self,
        clock: L,
    ) -> PostgresStoreBuilder<L> {
        let PostgresStoreBuilder {
            settings, options, ..
        } = self;
        PostgresStoreBuilder {
            settings,
            options,
            clock,
        }
    }

    /// Starts the store's worker thread, which connects, checks the table and the role's
    /// privileges and prepares the statements, and waits for it: at most the DSN's
    /// `connect_timeout` (else the round-trip timeout) to connect, then the round-trip timeout
    /// for the rest. A start that fails leaves no thread and no connection behind. Safe to call
    /// inside a tokio runtime: no database I/O runs on the calling thread.
    pub fn connect(self) -> Result<PostgresStore<C>, PostgresStoreError> {
        let (mailbox, inbox) = Mailbox::new(self.options.round_trip_timeout);
        let memory =
            MemoryStore::with_clock_and_max_entries(self.clock, std::num::NonZeroUsize::MAX);
        let (started, start) = mpsc::sync_channel(1);
        let thread = worker::spawn(
            self.settings.clone(),
            self.options.clone(),
            Arc::new(memory.clock().clone()),
            Arc::clone(&mailbox),
            inbox,
            memory.forgetter(),
            started,
        )
        .map_err(|e| {
            PostgresStoreError::Connect(format!("cannot start the store's thread: {e}"))
        })?;
        let connect_for = self
            .settings
            .config()
            .get_connect_timeout()
            .copied()
            .unwrap_or(self.options.round_trip_timeout);
        // The worker keeps both deadlines itself; the margin is for its thread to be scheduled.
        let wait = connect_for + self.options.round_trip_timeout + Duration::from_secs(1);
        match start.recv_timeout(wait) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Abandoned: the worker stops as soon as its start ends.
                mailbox.store_dropped();
                return Err(PostgresStoreError::Connect(format!(
                    "{}: connect timed out after {wait:?}",
                    self.settings.describe()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PostgresStoreError::Connect(
                    "the store's thread stopped while connecting".to_owned(),
                ));
            }
        }
        Ok(PostgresStore {
            inner: Arc::new(StoreInner {
                memory,
                mailbox,
                settings: self.settings,
                options: self.options,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// Breaker states shared with every process (Rust or Python) that uses the same
/// `rc_circuit_breakers` table. Clones share one store: one worker thread, one connection.
///
/// The store is the in-process store plus a replicator. Its breakers are [`SharedBreaker`]s,
/// as fast as the in-process store's, and never wait for the database: one worker thread owns
/// the connection (nothing of the store runs on a caller's thread or in a caller's tokio
/// runtime) and carries outcomes to the rows (a failure or a probe at once, successes every
/// [`sync_interval`](PostgresStoreBuilder::sync_interval)) and the rows' changes back (by
/// `LISTEN`/`NOTIFY`, and every [`max_staleness`](PostgresStoreBuilder::max_staleness)).
/// Transitions are decided on the row, on the server's clock, and each fires this process's
/// hooks once, on the worker thread. Every round trip has a deadline
/// ([`round_trip_timeout`](PostgresStoreBuilder::round_trip_timeout)); out of reach, breakers
/// follow [`OnOutage`].
///
/// The contract is `docs/SEMANTICS.md` §5; how the store keeps it (batches, exactly-once
/// writes, probe slots, bounds, faults) is the project's `docs/ARCHITECTURE.md`.
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, OnOutage, PostgresStore};
/// use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, Ratio};
/// use std::time::Duration;
///
/// let store = PostgresStore::builder(DbSettings::from_env()?)
///     .on_outage(OnOutage::FailOpen)
///     .connect()?;
/// let config = BreakerConfig::new().failure_limit(Ratio::new(5, 10)?).cooldown(Duration::from_secs(30));
/// let breaker = store.breaker(BreakerKey::resource("payments-api")?, config)?;
/// let reply = breaker.call(|| Ok::<_, std::io::Error>("paid"));
/// store.flush(Duration::from_secs(1))?; // everything recorded so far is in the row
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresStore<C = CoarseClock> {
    inner: Arc<StoreInner<C>>,
}

impl<C> Clone for PostgresStore<C> {
    fn clone(&self) -> Self {
        PostgresStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct StoreInner<C> {
    memory: MemoryStore<C>,
    mailbox: Arc<Mailbox>,
    settings: DbSettings,
    options: Options,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresStore {
    /// A builder with the defaults: sync interval 100 ms, staleness 1 s, fail open, probe
    /// lease 60 s, round-trip timeout 2 s, reconnection backoff 100 ms to 5 s, [`CoarseClock`].
    pub fn builder(settings: DbSettings) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            settings,
            options: Options {
                max_staleness: Duration::from_secs(1),
                sync_interval: Duration::from_millis(100),
                on_outage: OnOutage::FailOpen,
                probe_lease: Duration::from_secs(60),
                reconnect: (Duration::from_millis(100), Duration::from_secs(5)),
                round_trip_timeout: Duration::from_secs(2),
            },
            clock: CoarseClock,
        }
    }

    /// Connects with the defaults.
    pub fn connect(settings: DbSettings) -> Result<PostgresStore, PostgresStoreError> {
        PostgresStore::builder(settings).connect()
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> PostgresStore<C> {
    /// A breaker on `key`'s row. Breakers of one key share their state, in this process and
    /// (through the row) in every other; the row's state is loaded before this returns (at
    /// most the round-trip timeout; when the database cannot answer in time, the outage policy
    /// applies). As on [`MemoryStore::breaker`], a key held in this process keeps the
    /// configuration it was made with ([`StoreError::ConfigMismatch`] for another); other
    /// processes apply their own.
    pub fn breaker(
        &self,
        key: BreakerKey,
        config: BreakerConfig,
    ) -> Result<SharedBreaker<C>, StoreError> {
        let valid = config.validate::<SharedWindow>()?;
        let inner = &self.inner;
        let replicator: Arc<dyn Replicator> = inner.mailbox.clone();
        let (shared, made) =
            inner
                .memory
                .entry(key.clone(), config, |tick, config, counters| {
                    SharedState::replicated(tick, config, counters, replicator)
                })?;
        if made {
            if inner.options.on_outage == OnOutage::FailClosed {
                // Unknown until loaded.
                let wait = inner.mailbox.round_trip_timeout;
                shared.replicate(|_, replica| replica.fail_closed(wait));
            }
            let shared = Arc::clone(&shared);
            let key = key.clone();
            inner
                .mailbox
                .ask(inner.mailbox.round_trip_timeout, |reply| Request::Load {
                    key,
                    shared,
                    reply,
                });
        }
        Ok(shared_breaker(
            shared,
            key,
            valid,
            inner.memory.clock().clone(),
        ))
    }

    /// Sends everything recorded so far and waits until it is in the rows (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreUnavailable> {
        match self.inner.mailbox.ask(timeout, |reply| Request::Flush {
            reply,
            until: std::time::Instant::now() + timeout,
        }) {
            Some(true) => Ok(()),
            _ => Err(self.inner.mailbox.unavailable()),
        }
    }

    /// The namespace `RC_NAMESPACE` names (default `default`), for [`BreakerKey::new`].
    pub fn namespace(&self) -> &str {
        self.inner.settings.namespace()
    }

    /// How many statements the worker has sent (each is one round trip; connecting and
    /// preparing are not counted). For monitoring and tests.
    pub fn round_trips(&self) -> u64 {
        self.inner.mailbox.round_trips()
    }

    /// How many outcomes went before reaching their rows: per key, at most
    /// [`MAX_PENDING_OUTCOMES`](super::MAX_PENDING_OUTCOMES) wait for the database (during an
    /// outage, or when outcomes come faster than the worker writes them); past that the oldest
    /// go, and those the row could have shown (not pushed out of its window by a window's worth
    /// of newer outcomes of their period) are counted here, in the metric
    /// [`DROPPED_OUTCOMES`](crate::metrics::DROPPED_OUTCOMES) (feature `metrics`), and warned
    /// about once per key. 0 in a healthy fleet. For monitoring and tests.
    pub fn dropped_outcomes(&self) -> u64 {
        self.inner.mailbox.dropped_outcomes()
    }

    /// How many keys the store keeps. A key no breaker handle has held for ten
    /// [`max_staleness`](PostgresStoreBuilder::max_staleness) periods, with nothing waiting
    /// for its row and no live OPEN, is forgotten (its row stays); making a breaker for it again
    /// reads its row, with whatever configuration the new breaker brings.
    ///
    /// ```no_run
    /// use resilient_circuit_std::{BreakerConfig, BreakerKey, postgres::PostgresStore};
    ///
    /// let store = PostgresStore::connect(resilient_circuit_std::postgres::DbSettings::from_env()?)?;
    /// let breaker = store.breaker(BreakerKey::resource("payments-api")?, BreakerConfig::new())?;
    /// assert_eq!(store.len(), 1);
    /// drop(breaker); // forgotten within ten polls
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner.memory.len()
    }

    /// Whether the store keeps no key.
    pub fn is_empty(&self) -> bool {
        self.inner.memory.is_empty()
    }

    /// Whether the worker's connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.mailbox.is_connected()
    }
}

impl<C> Drop for StoreInner<C> {
    /// The last clone of the store: what is pending is sent (bounded by twice the round-trip
    /// timeout); the worker stops once no breaker handle is left either.
    fn drop(&mut self) {
        self.mailbox.store_dropped();
        let wait = self.mailbox.round_trip_timeout * 2;
        let _ = self.mailbox.ask(wait, |reply| Request::Shutdown {
            reply,
            until: std::time::Instant::now() + wait,
        });
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take())
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> fmt::Debug for PostgresStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("settings", &self.inner.settings)
            .field("sync_interval", &self.inner.options.sync_interval)
            .field("max_staleness", &self.inner.options.max_staleness)
            .field("on_outage", &self.inner.options.on_outage)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}
