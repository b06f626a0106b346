//! The PostgreSQL store: a [`MemoryStore`] whose keys a worker thread replicates to their rows
//! (and the rows' changes back), and the handle for what only such a store has.

use std::{
    any::Any,
    fmt,
    num::NonZeroUsize,
    ops::Deref,
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use resilient_circuit::time::Clock;

use super::{
    DbSettings, OnOutage, PostgresStoreError,
    options::Options,
    worker::{self, Mailbox, Request},
};
use crate::{
    BreakerKey, MemoryStore, StoreUnavailable,
    store::{registry::Replication, replica::Replicator, shared_state::SharedState},
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
        // Unbounded: the worker forgets the keys no handle holds.
        let store =
            MemoryStore::with_parts(self.clock, NonZeroUsize::MAX, self.settings.namespace());
        let (started, start) = mpsc::sync_channel(1);
        let thread = worker::spawn(
            self.settings.clone(),
            self.options.clone(),
            Arc::new(store.clock().clone()),
            Arc::clone(&mailbox),
            inbox,
            store.forgetter(),
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
        let fleet = Arc::new(Fleet {
            mailbox,
            settings: self.settings,
            options: self.options,
            thread: Mutex::new(Some(thread)),
        });
        // A new store: nothing replicates it yet.
        let _ = store.replicate_through(fleet.clone());
        Ok(PostgresStore { store, fleet })
    }
}

/// Breaker states shared with every process (Rust or Python) that uses the same
/// `rc_circuit_breakers` table: a [`MemoryStore`] (the one keyed store type; this handle
/// dereferences to it, and [`store`](Self::store) gives it) whose keys are replicated, plus what
/// only a replicated store has ([`flush`](Self::flush), [`is_connected`](Self::is_connected),
/// [`round_trips`](Self::round_trips), [`dropped_outcomes`](Self::dropped_outcomes),
/// [`on_outage`](Self::on_outage)). Clones of the handle and of its store share one worker
/// thread and one connection, which last as long as any of them.
///
/// Its breakers are [`SharedBreaker`](crate::SharedBreaker)s, as fast as the in-process
/// store's, and never wait for the database: one worker thread owns
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
    store: MemoryStore<C>,
    fleet: Arc<Fleet>,
}

impl<C: Clone> Clone for PostgresStore<C> {
    fn clone(&self) -> Self {
        PostgresStore {
            store: self.store.clone(),
            fleet: Arc::clone(&self.fleet),
        }
    }
}

impl<C> Deref for PostgresStore<C> {
    type Target = MemoryStore<C>;

    fn deref(&self) -> &MemoryStore<C> {
        &self.store
    }
}

/// The replicating side of a store: the worker thread and its mailbox. Held by the store's
/// registry and by every handle, and dropped with the last of them.
struct Fleet {
    mailbox: Arc<Mailbox>,
    settings: DbSettings,
    options: Options,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Replication for Fleet {
    fn replicator(&self) -> Arc<dyn Replicator> {
        self.mailbox.clone()
    }

    /// A new key is unknown until its row is read: loaded before its first breaker is handed
    /// out (at most the round-trip timeout), closed meanwhile if the store fails closed.
    fn made(&self, key: &BreakerKey, shared: &Arc<SharedState>) {
        let wait = self.mailbox.round_trip_timeout;
        if self.options.on_outage == OnOutage::FailClosed {
            shared.replicate(|_, replica| replica.fail_closed(wait));
        }
        let (key, shared) = (key.clone(), Arc::clone(shared));
        self.mailbox
            .ask(wait, |reply| Request::Load { key, shared, reply });
    }
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

impl<C> PostgresStore<C> {
    /// The store whose keys this replicates: the one keyed store type, to hand to code that
    /// makes breakers (clones share it, and keep the worker running).
    pub fn store(&self) -> &MemoryStore<C> {
        &self.store
    }

    /// Sends everything recorded so far and waits until it is in the rows (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreUnavailable> {
        match self.fleet.mailbox.ask(timeout, |reply| Request::Flush {
            reply,
            until: std::time::Instant::now() + timeout,
        }) {
            Some(true) => Ok(()),
            _ => Err(self.fleet.mailbox.unavailable()),
        }
    }

    /// How many statements the worker has sent (each is one round trip; connecting and
    /// preparing are not counted). For monitoring and tests.
    pub fn round_trips(&self) -> u64 {
        self.fleet.mailbox.round_trips()
    }

    /// How many outcomes went before reaching their rows: per key, at most
    /// [`MAX_PENDING_OUTCOMES`](super::MAX_PENDING_OUTCOMES) wait for the database (during an
    /// outage, or when outcomes come faster than the worker writes them); past that the oldest
    /// go, and those the row could have shown (not pushed out of its window by a window's worth
    /// of newer outcomes of their period) are counted here, in the metric
    /// [`DROPPED_OUTCOMES`](crate::metrics::DROPPED_OUTCOMES) (feature `metrics`), and warned
    /// about once per key. 0 in a healthy fleet. For monitoring and tests.
    pub fn dropped_outcomes(&self) -> u64 {
        self.fleet.mailbox.dropped_outcomes()
    }

    /// Whether the worker's connection is up.
    pub fn is_connected(&self) -> bool {
        self.fleet.mailbox.is_connected()
    }

    /// What the store's breakers do while the database is out of reach.
    pub fn on_outage(&self) -> OnOutage {
        self.fleet.options.on_outage
    }
}

impl<C: Clone> MemoryStore<C> {
    /// The PostgreSQL store this store's keys are replicated through, if they are (a store from
    /// [`PostgresStore::connect`], or one the environment chose with
    /// [`AnyStore::from_env`](super::AnyStore)): for [`flush`](PostgresStore::flush) and
    /// monitoring.
    pub fn postgres(&self) -> Option<PostgresStore<C>> {
        let replication: Arc<dyn Any + Send + Sync> = self.replication()?.clone();
        let fleet = replication.downcast::<Fleet>().ok()?;
        Some(PostgresStore {
            store: self.clone(),
            fleet,
        })
    }
}

impl Drop for Fleet {
    /// The last clone of the store and of its handles: what is pending is sent (bounded by
    /// twice the round-trip timeout); the worker stops once no breaker handle is left either.
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

impl<C> fmt::Debug for PostgresStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("settings", &self.fleet.settings)
            .field("keys", &self.store.len())
            .field("sync_interval", &self.fleet.options.sync_interval)
            .field("max_staleness", &self.fleet.options.max_staleness)
            .field("on_outage", &self.fleet.options.on_outage)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}
