//! The PostgreSQL store: one persistent connection shared by every breaker made from it,
//! reconnected with backoff after a failure.

use std::{
    fmt,
    sync::{
        Arc, Mutex, TryLockError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use resilient_circuit::{BreakerConfig, Clock, Instant};

use super::{
    DbSettings, PostgresBreaker, inspect,
    link::{LocalClock, ServerTime, Session, describe, lock},
};
use crate::{BreakerKey, SharedWindow, StdClock, StoreError, report};

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
    /// Keep serving from the last known state, changed locally by this process's outcomes
    /// (which are written once the database is back). One warning per outage. As the Python
    /// package does.
    FailOpen,
    /// Reject every call with [`RejectReason::StoreUnavailable`](crate::RejectReason) until
    /// the database is back: the state is unknown, so nothing runs.
    FailClosed,
}

/// Why a [`PostgresStore`] could not start. Never contains a password or a DSN's user info.
///
/// ```
/// use resilient_circuit_std::postgres::PostgresStoreError;
///
/// let e = PostgresStoreError::SchemaNotReady(vec!["column rc_epoch is missing".into()]);
/// assert!(e.to_string().ends_with("run `cargo xtask pg-setup`"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresStoreError {
    /// The database could not be reached or refused the connection.
    Connect(String),
    /// The table is missing or unusable; `cargo xtask pg-setup` makes or completes it.
    SchemaNotReady(Vec<String>),
}

impl fmt::Display for PostgresStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostgresStoreError::Connect(why) => write!(f, "cannot use PostgreSQL: {why}"),
            PostgresStoreError::SchemaNotReady(problems) => write!(
                f,
                "the table public.rc_circuit_breakers is not ready ({}); run `cargo xtask pg-setup`",
                problems.join("; ")
            ),
        }
    }
}

impl std::error::Error for PostgresStoreError {}

/// Builds a [`PostgresStore`]: `PostgresStore::builder(settings).max_staleness(..).connect()`.
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, OnOutage, PostgresStore};
/// use std::time::Duration;
///
/// let store = PostgresStore::builder(DbSettings::from_env()?)
///     .max_staleness(Duration::ZERO) // read the row on every admission
///     .on_outage(OnOutage::FailClosed)
///     .probe_lease(Duration::from_secs(30))
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .connect()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresStoreBuilder {
    settings: DbSettings,
    max_staleness: Duration,
    on_outage: OnOutage,
    probe_lease: Duration,
    reconnect: (Duration, Duration),
    local_clock: LocalClock,
}

impl PostgresStoreBuilder {
    /// How old the last known state may be when a CLOSED or OPEN breaker admits a call without
    /// asking the database: a peer's trip is seen within this. Default 1 s (the Python
    /// package's refresh interval); `Duration::ZERO` reads the row on every admission.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// Fail open (the default) or fail closed while the database is unreachable.
    pub fn on_outage(mut self, on_outage: OnOutage) -> Self {
        self.on_outage = on_outage;
        self
    }

    /// How long an admitted HALF_OPEN probe holds its slot without reporting before it is
    /// presumed lost (its process died). Default 60 s.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = lease;
        self
    }

    /// The reconnection backoff after a failure: first wait, doubled up to the second.
    /// Default 100 ms up to 5 s.
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.reconnect = (first, max.max(first));
        self
    }

    /// The local monotonic clock that carries the server's time forward between round trips
    /// (default [`StdClock`]). Only differences of its readings are used.
    pub fn local_clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.local_clock = Box::new(clock);
        self
    }

    /// Connects, checks the table and prepares the statements.
    pub fn connect(self) -> Result<PostgresStore, PostgresStoreError> {
        let settings = self.settings;
        let fail = |e: postgres::Error| {
            PostgresStoreError::Connect(settings.redact(&format!(
                "{}: {}",
                settings.describe(),
                describe(&e)
            )))
        };
        let mut client = Session::connect(&settings).map_err(fail)?;
        let report = inspect(&mut client).map_err(fail)?;
        if !report.usable() {
            return Err(PostgresStoreError::SchemaNotReady(report.problems()));
        }
        let server_now = client
            .query_one("SELECT now()", &[])
            .map_err(fail)?
            .get::<_, std::time::SystemTime>(0);
        let session = Session::prepare(client).map_err(fail)?;
        let local = self.local_clock.now();
        Ok(PostgresStore {
            inner: Arc::new(StoreInner {
                link: Mutex::new(Link {
                    session: Some(session),
                    next_attempt: local,
                    backoff: self.reconnect.0,
                    outage_since: None,
                }),
                up: AtomicBool::new(true),
                next_attempt: AtomicU64::new(0),
                round_trips: AtomicU64::new(0),
                time: Mutex::new(ServerTime::new(super::row::instant_of(server_now), local)),
                settings,
                max_staleness: self.max_staleness,
                on_outage: self.on_outage,
                probe_lease: self.probe_lease,
                reconnect: self.reconnect,
                local_clock: self.local_clock,
            }),
        })
    }
}

/// Breaker states in PostgreSQL's `rc_circuit_breakers`, shared with every process (Rust or
/// Python) that uses the same table. Clones share one connection.
///
/// - Every admission and outcome that changes the row is one compare-and-swap statement on the
///   row's version (`xmin`): it writes only if nobody wrote since this process read the row;
///   otherwise the row is read again and the change applied to it. No outcome is lost, whatever
///   the number of writers, and nothing is locked while a protected call runs.
/// - Deadlines are on the server's clock: each round trip returns `now()`, carried forward by the
///   local monotonic clock; the host's wall clock is never read. A live OPEN is never left early
///   (the statement checks it against the server's `now()`), and the HALF_OPEN probe cap holds
///   across processes (the count is in the row, with a lease in case a process dies).
/// - A CLOSED breaker admits from the last known state while it is younger than
///   [`max_staleness`](PostgresStoreBuilder::max_staleness); each outcome is one round trip
///   (a write, or a version check when the outcome changes nothing), which also refreshes that
///   state.
/// - The connection is shared by threads (their round trips take turns) and re-opened with
///   backoff after a failure. Meanwhile breakers follow [`OnOutage`].
///
/// This is a blocking store: in async code, call its breakers from `spawn_blocking`.
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, OnOutage, PostgresStore};
/// use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, Ratio};
/// use std::time::Duration;
///
/// let store = PostgresStore::builder(DbSettings::from_env()?)
///     .max_staleness(Duration::from_millis(250))
///     .on_outage(OnOutage::FailOpen)
///     .connect()?;
/// let config = BreakerConfig::new().failure_limit(Ratio::new(5, 10)?).cooldown(Duration::from_secs(30));
/// let breaker = store.breaker(BreakerKey::resource("payments-api")?, config)?;
/// let reply = breaker.call(|| Ok::<_, std::io::Error>("paid"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    link: Mutex<Link>,
    up: AtomicBool,
    /// A copy of `Link::next_attempt`, readable without the lock.
    next_attempt: AtomicU64,
    round_trips: AtomicU64,
    time: Mutex<ServerTime>,
    settings: DbSettings,
    pub(crate) max_staleness: Duration,
    pub(crate) on_outage: OnOutage,
    pub(crate) probe_lease: Duration,
    reconnect: (Duration, Duration),
    local_clock: LocalClock,
}

struct Link {
    session: Option<Session>,
    /// When (local clock) to try connecting again.
    next_attempt: Instant,
    backoff: Duration,
    outage_since: Option<Instant>,
}

/// The database cannot be reached now; try again after this long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unreachable {
    pub(crate) retry_after: Duration,
}

impl PostgresStore {
    /// A builder with the defaults: staleness 1 s, fail open, probe lease 60 s, reconnection
    /// backoff 100 ms to 5 s, [`StdClock`].
    pub fn builder(settings: DbSettings) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            settings,
            max_staleness: Duration::from_secs(1),
            on_outage: OnOutage::FailOpen,
            probe_lease: Duration::from_secs(60),
            reconnect: (Duration::from_millis(100), Duration::from_secs(5)),
            local_clock: Box::new(StdClock),
        }
    }

    /// Connects with the defaults.
    pub fn connect(settings: DbSettings) -> Result<PostgresStore, PostgresStoreError> {
        PostgresStore::builder(settings).connect()
    }

    /// A breaker on `key`'s row. Breakers of one key share their state through the row, in
    /// this process and in every other; they should share one configuration.
    pub fn breaker(
        &self,
        key: BreakerKey,
        config: BreakerConfig,
    ) -> Result<PostgresBreaker, StoreError> {
        config.validate::<SharedWindow>()?;
        Ok(PostgresBreaker::new(self.clone(), key, config))
    }

    /// The namespace `RC_NAMESPACE` names (default `default`), for [`BreakerKey::new`].
    pub fn namespace(&self) -> &str {
        self.inner.settings.namespace()
    }

    /// How many statements the breakers of this store have sent (each is one round trip;
    /// connecting and preparing are not counted). For monitoring and tests.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Whether the store's last round trip reached the database.
    pub fn is_connected(&self) -> bool {
        self.inner.is_up()
    }
}

impl StoreInner {
    pub(crate) fn local_now(&self) -> Instant {
        self.local_clock.now()
    }

    /// The server's time as best known now.
    pub(crate) fn server_now(&self) -> Instant {
        lock(&self.time).estimate(self.local_now())
    }

    /// Records the server's time as read just now.
    pub(crate) fn synced(&self, server_now: Instant) {
        *lock(&self.time) = ServerTime::new(server_now, self.local_now());
    }

    /// Whether the last round trip reached the database.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs `exchange` on the connection (opening it first if it is down and its backoff has
    /// passed). A failure closes the connection and starts (or continues) an outage.
    pub(crate) fn with_session<R>(
        &self,
        exchange: impl FnOnce(&mut Session) -> Result<R, postgres::Error>,
    ) -> Result<R, Unreachable> {
        let now = self.local_now();
        let mut link = if self.is_up() {
            lock(&self.link)
        } else {
            // Down: never queue behind a reconnection attempt (up to the connect timeout), and
            // do not even try before the backoff has passed.
            let next_attempt = Instant::from_nanos(self.next_attempt.load(Ordering::Relaxed));
            if now < next_attempt {
                return Err(Unreachable {
                    retry_after: next_attempt.saturating_duration_since(now),
                });
            }
            match self.link.try_lock() {
                Ok(link) => link,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    return Err(Unreachable {
                        retry_after: self.reconnect.0,
                    });
                }
            }
        };
        if link.session.is_none() {
            if now < link.next_attempt {
                return Err(Unreachable {
                    retry_after: link.next_attempt.saturating_duration_since(now),
                });
            }
            match Session::open(&self.settings) {
                Ok(session) => {
                    link.session = Some(session);
                    self.up.store(true, Ordering::Relaxed);
                    if let Some(since) = link.outage_since.take() {
                        report::store_info(&format!(
                            "PostgreSQL store: reconnected to {} after {:?}",
                            self.settings.describe(),
                            self.local_now().saturating_duration_since(since)
                        ));
                    }
                    link.backoff = self.reconnect.0;
                }
                Err(e) => return Err(self.failed(&mut link, &e)),
            }
        }
        let session = link.session.as_mut().expect("a session was just ensured");
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        exchange(session).map_err(|e| self.failed(&mut link, &e))
    }

    fn failed(&self, link: &mut Link, error: &postgres::Error) -> Unreachable {
        link.session = None;
        self.up.store(false, Ordering::Relaxed);
        let now = self.local_now();
        if link.outage_since.is_none() {
            link.outage_since = Some(now);
            let policy = match self.on_outage {
                OnOutage::FailOpen => "serving from the last known state (fail open)",
                OnOutage::FailClosed => "rejecting calls (fail closed)",
            };
            report::store_warning(&self.settings.redact(&format!(
                "PostgreSQL store: {} is unreachable: {}; {policy} until it is back",
                self.settings.describe(),
                describe(error)
            )));
        }
        let wait = link.backoff;
        link.next_attempt = now.saturating_add(wait);
        self.next_attempt
            .store(link.next_attempt.as_nanos(), Ordering::Relaxed);
        link.backoff = (wait * 2).min(self.reconnect.1);
        Unreachable { retry_after: wait }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("settings", &self.inner.settings)
            .field("max_staleness", &self.inner.max_staleness)
            .field("on_outage", &self.inner.on_outage)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}
