//! A breaker whose state is a row of `rc_circuit_breakers`, changed by compare-and-swap.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use resilient_circuit::{
    Admission, AllErrors, Breaker, BreakerConfig, BreakerState, CircuitState, Instant, NoHook,
    RejectReason, Rejected, Transition, TransitionHook, Verdict,
};

use super::{
    OnOutage, PostgresStore,
    link::{Version, lock},
    row::{StoredRow, timestamp_of},
    store::Unreachable,
};
use crate::{BreakerKey, SharedWindow, report};

/// Outcomes kept per breaker while the database is unreachable, written when it is back.
///
/// ```
/// assert_eq!(resilient_circuit_std::postgres::MAX_PENDING_OUTCOMES, 1024);
/// ```
pub const MAX_PENDING_OUTCOMES: usize = 1024;

/// Compare-and-swap attempts before a change is treated as failed (each failed attempt means
/// another writer's change went in, so this is never reached in practice).
const MAX_ATTEMPTS: u32 = 256;

/// The store could not reach the database; the change was not made.
///
/// ```
/// use resilient_circuit_std::postgres::StoreUnavailable;
/// use std::time::Duration;
///
/// let e = StoreUnavailable { retry_after: Duration::from_millis(400) };
/// assert_eq!(e.to_string(), "the PostgreSQL store is unreachable; it tries again in 400ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreUnavailable {
    /// When the store will try to connect again.
    pub retry_after: Duration,
}

impl fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the PostgreSQL store is unreachable; it tries again in {:?}",
            self.retry_after
        )
    }
}

impl std::error::Error for StoreUnavailable {}

impl From<Unreachable> for StoreUnavailable {
    fn from(u: Unreachable) -> Self {
        StoreUnavailable {
            retry_after: u.retry_after,
        }
    }
}

/// What a change does, which decides how it is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Admit,
    /// An outcome: a change that turns out to change nothing is still confirmed against the
    /// current row (it may not be a no-op there).
    Record,
    Release,
    /// Manual control: may overwrite a live OPEN.
    Manual,
}

/// This process's view of one key.
struct Cache {
    /// The row as last read or written, with its version; `None` before the first round trip.
    row: Option<(StoredRow, Version)>,
    /// When (local clock) the row was last known current.
    synced_at: Option<Instant>,
    /// The state in use: the row's, or during an outage the row's changed locally.
    local: BreakerState<SharedWindow>,
    /// Outcomes (`None`: a released probe) not yet written because the database was down.
    pending: VecDeque<(Admission, Option<Verdict>)>,
    warned_malformed: bool,
    warned_overflow: bool,
}

struct KeyView {
    key: BreakerKey,
    cache: Mutex<Cache>,
}

/// A breaker on a row of the shared table: `Send + Sync`, cheap to clone (clones share their
/// view of the row). Made by [`PostgresStore::breaker`]; the protected-call methods come from
/// the [`Breaker`] trait.
///
/// - CLOSED: admission uses the last known state while it is younger than the store's
///   staleness bound; the outcome is one round trip (a compare-and-swap write, or a version check when the
///   outcome changes nothing), which also refreshes the state.
/// - OPEN: calls before the deadline are rejected without a round trip while the state is
///   fresh. The first call at or after it moves the row to HALF_OPEN, unless the server's clock
///   says the cooldown has not ended.
/// - HALF_OPEN: the probe count is in the row, so the cap holds across processes; a probe
///   admitted by a process that then dies frees its slot when the store's probe lease ends.
/// - Every transition this breaker makes fires its hook once, after the row is written; during
///   an outage, when its local state changes (writing its outcomes later fires nothing more).
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, PostgresStore};
/// use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, Error, RejectReason};
///
/// let store = PostgresStore::connect(DbSettings::from_env()?)?;
/// let breaker = store
///     .breaker(BreakerKey::new("billing", "payments-api")?, BreakerConfig::new())?
///     .on_status_change(|old, new| eprintln!("payments-api: {old} -> {new}"));
/// match breaker.call(|| Ok::<_, std::io::Error>("paid")) {
///     Ok(receipt) => println!("{receipt}"),
///     Err(Error::Rejected(r)) if r.reason() == RejectReason::StoreUnavailable => {
///         eprintln!("state unknown; try again in {:?}", r.retry_after())
///     }
///     Err(other) => eprintln!("{other}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresBreaker<K = AllErrors, H = NoHook> {
    store: PostgresStore,
    view: Arc<KeyView>,
    config: BreakerConfig,
    classifier: K,
    hook: H,
}

impl<K: Clone, H: Clone> Clone for PostgresBreaker<K, H> {
    fn clone(&self) -> Self {
        PostgresBreaker {
            store: self.store.clone(),
            view: Arc::clone(&self.view),
            config: self.config,
            classifier: self.classifier.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl PostgresBreaker {
    pub(crate) fn new(store: PostgresStore, key: BreakerKey, config: BreakerConfig) -> Self {
        PostgresBreaker {
            store,
            view: Arc::new(KeyView {
                key,
                cache: Mutex::new(Cache {
                    row: None,
                    synced_at: None,
                    local: BreakerState::new(),
                    pending: VecDeque::new(),
                    warned_malformed: false,
                    warned_overflow: false,
                }),
            }),
            config,
            classifier: AllErrors,
            hook: NoHook,
        }
    }
}

impl<H> PostgresBreaker<AllErrors, H> {
    /// Decide how errors count (the Python package's `should_handle`).
    pub fn should_handle<K>(self, classifier: K) -> PostgresBreaker<K, H> {
        PostgresBreaker {
            store: self.store,
            view: self.view,
            config: self.config,
            classifier,
            hook: self.hook,
        }
    }
}

impl<K> PostgresBreaker<K, NoHook> {
    /// Call `hook(old, new)` after every transition this handle makes.
    pub fn on_status_change<H: TransitionHook>(self, hook: H) -> PostgresBreaker<K, H> {
        PostgresBreaker {
            store: self.store,
            view: self.view,
            config: self.config,
            classifier: self.classifier,
            hook,
        }
    }
}

impl<K, H: TransitionHook> PostgresBreaker<K, H> {
    /// The key whose row this breaker shares.
    pub fn key(&self) -> &BreakerKey {
        &self.view.key
    }

    /// This handle's configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state, read from the row (one round trip); during an outage, the last known
    /// state as changed locally since.
    pub fn state(&self) -> BreakerState<SharedWindow> {
        let mut cache = lock(&self.view.cache);
        let _ = self
            .write_pending(&mut cache)
            .and_then(|()| self.refresh(&mut cache));
        let state = cache.local;
        self.unlock_and_announce(cache, None);
        state
    }

    /// The current state's status (see [`state`](Self::state)).
    pub fn status(&self) -> CircuitState {
        self.state().status()
    }

    /// The current window, oldest first (see [`state`](Self::state)).
    pub fn execution_log(&self) -> SharedWindow {
        *self.state().window()
    }

    /// Consecutive failures recorded (see [`state`](Self::state)).
    pub fn failure_count(&self) -> u32 {
        self.state().failure_count()
    }

    /// Opens the breaker for a full cooldown from now, in every process.
    pub fn force_open(&self) -> Result<(), StoreUnavailable> {
        self.manual(|state, now| state.force_open(&self.config, &now))
    }

    /// Closes the breaker with an empty window, in every process.
    pub fn force_closed(&self) -> Result<(), StoreUnavailable> {
        self.manual(|state, _| state.force_closed())
    }

    /// Back to CLOSED with an empty window; calls in flight are not counted.
    pub fn reset(&self) -> Result<(), StoreUnavailable> {
        self.manual(|state, _| state.reset())
    }

    fn manual(
        &self,
        change: impl Fn(&mut BreakerState<SharedWindow>, Instant) -> Option<Transition>,
    ) -> Result<(), StoreUnavailable> {
        let mut cache = lock(&self.view.cache);
        let changed = self
            .write_pending(&mut cache)
            .and_then(|()| self.apply(&mut cache, Kind::Manual, false, change));
        let transition = changed.as_ref().ok().copied().flatten();
        self.unlock_and_announce(cache, transition);
        changed.map(|_| ()).map_err(StoreUnavailable::from)
    }

    fn announce(&self, transition: Option<Transition>) {
        if let Some(Transition { from, to }) = transition {
            report::transition(&self.view.key, &self.hook, from, to);
        }
    }

    /// Unlocks the cache, then announces `transition` (a hook may call back into the breaker).
    fn unlock_and_announce(&self, cache: MutexGuard<'_, Cache>, transition: Option<Transition>) {
        drop(cache);
        self.announce(transition);
    }

    fn rejected(&self, rejected: Rejected) -> Rejected {
        report::rejection(&self.view.key, rejected.retry_after());
        rejected
    }

    /// The state a row holds for this breaker; a row no reader understands counts as a fresh
    /// CLOSED in a new period (the next write replaces it), with one warning.
    fn decode(
        &self,
        cache: &mut Cache,
        row: &StoredRow,
        now: Instant,
    ) -> BreakerState<SharedWindow> {
        match row.decode(&self.config, now) {
            Ok(state) => state,
            Err(malformed) => {
                if !cache.warned_malformed {
                    cache.warned_malformed = true;
                    report::store_warning(&format!(
                        "PostgreSQL store: breaker {}: ignoring a malformed row ({malformed}); the next write replaces it",
                        self.view.key
                    ));
                }
                BreakerState::restore(
                    CircuitState::Closed,
                    resilient_circuit::Window::EMPTY,
                    0,
                    Instant::ZERO,
                    0,
                    (row.epoch as u32).wrapping_add(1),
                )
            }
        }
    }

    /// Takes `row`, read from the server at `server_now`, as the last known state.
    fn adopt(&self, cache: &mut Cache, row: StoredRow, version: Version, server_now: Instant) {
        cache.local = self.decode(cache, &row, server_now);
        cache.row = Some((row, version));
        cache.synced_at = Some(self.store.inner.local_now());
    }

    /// Whether the last known state is young enough to admit from (`max_staleness`).
    fn is_fresh(&self, cache: &Cache) -> bool {
        let inner = &self.store.inner;
        cache
            .synced_at
            .is_some_and(|at| inner.local_now().saturating_duration_since(at) < inner.max_staleness)
    }

    /// Confirms that the row is still the version the cache holds, reading it if not.
    fn confirm(&self, cache: &mut Cache, version: Version) -> Result<(), Unreachable> {
        let inner = &self.store.inner;
        let (server_now, changed) =
            inner.with_session(|session| session.check(&self.view.key, version))?;
        inner.synced(server_now);
        match changed {
            None => {
                cache.synced_at = Some(inner.local_now());
                Ok(())
            }
            Some(read) => match read.row {
                Some((row, version)) => {
                    self.adopt(cache, row, version, server_now);
                    Ok(())
                }
                None => self.refresh(cache),
            },
        }
    }

    /// Reads the row (making it first if the key has none) into the cache.
    fn refresh(&self, cache: &mut Cache) -> Result<(), Unreachable> {
        let inner = &self.store.inner;
        let key = &self.view.key;
        for _ in 0..MAX_ATTEMPTS {
            let read = inner.with_session(|session| session.read(key))?;
            inner.synced(read.server_now);
            match read.row {
                Some((row, version)) => {
                    self.adopt(cache, row, version, read.server_now);
                    return Ok(());
                }
                None => inner.with_session(|session| session.insert_fresh(key))?,
            }
        }
        Err(Unreachable {
            retry_after: Duration::ZERO,
        })
    }

    /// Applies `change` to the row atomically: computes the new row from the last known one
    /// and writes it if the row is still that version; otherwise reads the row and starts again.
    /// `read_first`: the last known row is too old to start from without a check.
    fn apply<R>(
        &self,
        cache: &mut Cache,
        kind: Kind,
        read_first: bool,
        mut change: impl FnMut(&mut BreakerState<SharedWindow>, Instant) -> R,
    ) -> Result<R, Unreachable> {
        let inner = &self.store.inner;
        let mut current = false;
        match &cache.row {
            None => {
                self.refresh(cache)?;
                current = true;
            }
            Some((_, version)) if read_first => {
                let version = *version;
                self.confirm(cache, version)?;
                current = true;
            }
            Some(_) => {}
        }
        let mut refused_in_place = 0;
        for _ in 0..MAX_ATTEMPTS {
            let Some((row, version)) = cache.row.clone() else {
                self.refresh(cache)?;
                current = true;
                continue;
            };
            let now = inner.server_now();
            let base = self.decode(cache, &row, now);
            let mut next = base;
            let result = change(&mut next, now);
            let lease = if next.probes_in_flight() > base.probes_in_flight() {
                Some(timestamp_of(now.saturating_add(inner.probe_lease)))
            } else {
                row.probes_until
            };
            let new_row = StoredRow::encode(&next, lease);
            // Compared as this breaker reads the row, not byte for byte: a row another writer
            // left in another shape (a longer log, a lapsed probe count) is not a change.
            if new_row == StoredRow::encode(&base, row.probes_until) {
                if current || matches!(kind, Kind::Admit | Kind::Release) {
                    cache.local = next;
                    return Ok(result);
                }
                // An outcome or a manual change that changes nothing on a row that may be
                // stale: confirm it on the current row.
                self.confirm(cache, version)?;
                current = true;
                continue;
            }
            let written = inner.with_session(|session| {
                session.swap(&self.view.key, version, &new_row, kind == Kind::Manual)
            })?;
            if let Some((server_now, new_version)) = written {
                inner.synced(server_now);
                cache.synced_at = Some(inner.local_now());
                cache.row = Some((new_row, new_version));
                cache.local = next;
                return Ok(result);
            }
            // Another writer got there first, or the row is a live OPEN by the server's clock:
            // start again from the row as it is, at the server's time.
            self.refresh(cache)?;
            current = true;
            if cache
                .row
                .as_ref()
                .is_some_and(|(_, current)| *current == version)
            {
                // Refused by the live-OPEN guard; after the refresh the server's time decides,
                // so a second refusal would mean the clocks disagree: give up on this change.
                refused_in_place += 1;
                if refused_in_place == 2 {
                    break;
                }
            }
        }
        report::store_warning(&format!(
            "PostgreSQL store: breaker {}: the change could not be written (the row kept changing, or stayed a live OPEN); it is applied locally",
            self.view.key
        ));
        Err(Unreachable {
            retry_after: Duration::ZERO,
        })
    }

    /// Writes the outcomes kept during an outage, oldest first. The transitions they make are
    /// not announced: this breaker announced its own when its local state changed.
    fn write_pending(&self, cache: &mut Cache) -> Result<(), Unreachable> {
        while let Some(&(admission, verdict)) = cache.pending.front() {
            self.apply(cache, Kind::Record, false, |state, now| match verdict {
                Some(verdict) => state.record(&self.config, admission, verdict, &now),
                None => {
                    state.release(admission);
                    None
                }
            })?;
            cache.pending.pop_front();
        }
        cache.warned_overflow = false;
        Ok(())
    }

    /// Applies an outcome to the local state, and keeps it for the row if its call was admitted
    /// in the row's current period (calls admitted in periods this process only went through
    /// locally, during the outage, have nothing to report to the row).
    fn keep_pending(
        &self,
        cache: &mut Cache,
        admission: Admission,
        verdict: Option<Verdict>,
    ) -> Option<Transition> {
        let row_epoch = cache.row.as_ref().map(|(row, _)| row.epoch as u32);
        if row_epoch == Some(admission.epoch()) {
            if cache.pending.len() == MAX_PENDING_OUTCOMES {
                cache.pending.pop_front();
                if !cache.warned_overflow {
                    cache.warned_overflow = true;
                    report::store_warning(&format!(
                        "PostgreSQL store: breaker {}: more than {MAX_PENDING_OUTCOMES} outcomes wait for the database; the oldest are dropped",
                        self.view.key
                    ));
                }
            }
            cache.pending.push_back((admission, verdict));
        }
        let now = self.store.inner.server_now();
        match verdict {
            Some(verdict) => cache.local.record(&self.config, admission, verdict, &now),
            None => {
                cache.local.release(admission);
                None
            }
        }
    }

    /// Admission from the last known state, without a round trip, when it is fresh enough:
    /// `Some` with the answer, `None` when the row must be asked.
    fn admit_from_cache(&self, cache: &Cache) -> Option<Result<Admission, Rejected>> {
        let inner = &self.store.inner;
        if !self.is_fresh(cache) || !cache.pending.is_empty() || !inner.is_up() {
            return None;
        }
        match cache.local.status() {
            CircuitState::Closed => Some(Ok(Admission::in_period(cache.local.epoch(), false))),
            CircuitState::Open => {
                let until = cache.local.open_until()?;
                let now = inner.server_now();
                (now < until).then(|| {
                    Err(Rejected::new(
                        until.saturating_duration_since(now),
                        RejectReason::Open,
                    ))
                })
            }
            CircuitState::HalfOpen => None,
        }
    }
}

impl<K, H: TransitionHook> Breaker for PostgresBreaker<K, H> {
    type Classifier = K;

    fn admit(&self) -> Result<Admission, Rejected> {
        let mut cache = lock(&self.view.cache);
        if let Some(answer) = self.admit_from_cache(&cache) {
            drop(cache);
            return answer.map_err(|r| self.rejected(r));
        }
        let stale = !self.is_fresh(&cache);
        let admitted = self.write_pending(&mut cache).and_then(|()| {
            self.apply(&mut cache, Kind::Admit, stale, |state, now| {
                state.admit(&self.config, &now)
            })
        });
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(unreachable) => match self.store.inner.on_outage {
                OnOutage::FailOpen => {
                    let now = self.store.inner.server_now();
                    cache.local.admit(&self.config, &now)
                }
                OnOutage::FailClosed => Err(Rejected::new(
                    unreachable.retry_after,
                    RejectReason::StoreUnavailable,
                )),
            },
        };
        let transition = admitted.ok().and_then(|(_, transition)| transition);
        self.unlock_and_announce(cache, transition);
        admitted
            .map(|(admission, _)| admission)
            .map_err(|rejected| self.rejected(rejected))
    }

    fn record(&self, admission: Admission, verdict: Verdict) {
        if verdict == Verdict::Ignore && !admission.is_probe() {
            return;
        }
        let mut cache = lock(&self.view.cache);
        let recorded = self.write_pending(&mut cache).and_then(|()| {
            self.apply(&mut cache, Kind::Record, false, |state, now| {
                state.record(&self.config, admission, verdict, &now)
            })
        });
        let transition = match recorded {
            Ok(transition) => transition,
            Err(_) => self.keep_pending(&mut cache, admission, Some(verdict)),
        };
        self.unlock_and_announce(cache, transition);
    }

    fn release(&self, admission: Admission) {
        if !admission.is_probe() {
            return;
        }
        let mut cache = lock(&self.view.cache);
        let released = self.write_pending(&mut cache).and_then(|()| {
            self.apply(&mut cache, Kind::Release, false, |state, _| {
                state.release(admission)
            })
        });
        if released.is_err() {
            self.keep_pending(&mut cache, admission, None);
        }
        self.unlock_and_announce(cache, None);
    }

    fn classifier(&self) -> &K {
        &self.classifier
    }
}

impl<K, H> fmt::Debug for PostgresBreaker<K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = lock(&self.view.cache);
        f.debug_struct("PostgresBreaker")
            .field("key", &self.view.key)
            .field("config", &self.config)
            .field("last_known_state", &cache.local)
            .field("pending_outcomes", &cache.pending.len())
            .finish_non_exhaustive()
    }
}
