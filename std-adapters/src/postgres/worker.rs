//! The store's worker: one thread that owns the connection and replicates every key, so no
//! caller ever waits on the database.
//!
//! Each turn it takes what callers logged, writes one batch per key that has one (a
//! compare-and-swap that also records the batch's number), reads the keys the database said
//! changed (and every key at least every `max_staleness`), and hands each key's row state to
//! the in-process copy, firing the hooks for what changed.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{Arc, atomic::Ordering, mpsc::SyncSender},
    thread::JoinHandle,
    time::Duration,
};

use resilient_circuit::{
    BreakerConfig, CircuitState,
    state::BreakerState,
    store::Control,
    time::{Clock, Instant},
};
use tokio::{runtime::Runtime, sync::mpsc::UnboundedReceiver};

use super::{
    DbSettings, MAX_PENDING_OUTCOMES, OnOutage, PostgresStoreError, inspect,
    link::{Conn, Fault, Found, ServerTime, Swap, Version, describe, parse_payload},
    row::{StoredRow, timestamp_of},
    store::{Link, Options},
};
use crate::{
    BreakerKey, StoreUnavailable,
    counters::KeyCounters,
    replica::{Event, WorkerHook},
    report,
    shared::SharedState,
    store::SharedWindow,
};

/// Attempts of a manual change (each failed attempt means another writer's change went in
/// first).
const MAX_ATTEMPTS: u32 = 16;

/// Statements a second a store sends, at most, sustained, whatever its call rate (a round of
/// work is at most one read and one write), and how many may go at once after a quiet time
/// (so a sporadic trip goes out at once). Loads, flushes and manual control, which a caller
/// waits for, are not held back.
const STATEMENTS_PER_SECOND: u32 = 80;
const STATEMENT_BURST: f64 = 8.0;

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is a store's worker (a hook runs there).
pub(crate) fn on_worker_thread() -> bool {
    ON_WORKER.with(Cell::get)
}

/// What the store and its breakers ask of the worker.
pub(crate) enum Request {
    /// A key was just made: read its row; answer when it is in.
    Load {
        key: BreakerKey,
        shared: Arc<SharedState>,
        reply: SyncSender<()>,
    },
    /// Manual control of a key, on its row.
    Manual {
        key: BreakerKey,
        manual: Control,
        reply: SyncSender<Result<(), StoreUnavailable>>,
    },
    /// Send everything recorded so far; answer whether it is all in the rows.
    Flush { reply: SyncSender<bool> },
    /// The store was dropped: flush, and stop once no breaker handle is left.
    Shutdown { reply: SyncSender<bool> },
}

/// One key, as the worker keeps it.
struct KeyState {
    shared: Arc<SharedState>,
    config: BreakerConfig,
    /// The row as last read or written, with its version.
    row: Option<(StoredRow, Version)>,
    /// The period of the row as last seen: outcomes logged during an outage are kept for the
    /// row only if their calls were admitted in it.
    row_epoch: u32,
    /// Changes taken from the key's log and not yet in the row.
    unsent: Vec<Event>,
    /// The row was read this round (so a change that is a no-op on it is a no-op).
    confirmed: bool,
    /// The row must be read before the next write (notified, conflicting, or never read).
    stale: bool,
    /// A caller wants a probe slot reserved.
    wants_probe: bool,
    /// When (local clock) the log was last taken.
    last_taken: Instant,
    /// After a statement error: not before this.
    retry_at: Option<Instant>,
    warned_malformed: bool,
    warned_overflow: bool,
    warned_statement: bool,
}

/// The batch whose reply was lost: was it written? Known once the server process that
/// received it has ended (until then it may still commit).
struct InDoubt {
    batch: i64,
    backend: i32,
    /// Each key of the batch: how many of its unsent changes the batch held, and the period of
    /// the probe slot it reserved, if it did.
    keys: Vec<(BreakerKey, usize, Option<u32>)>,
}

impl InDoubt {
    fn has(&self, key: &BreakerKey) -> bool {
        self.keys.iter().any(|(k, ..)| k == key)
    }
}

/// One key's part of a batch, ready to write.
struct Entry {
    key: BreakerKey,
    version: Version,
    new_row: StoredRow,
    next_epoch: u32,
    /// How many of the key's unsent changes it holds.
    events: usize,
    reserved: u16,
    unguarded: bool,
}

/// What a key's unsent changes come to.
enum Prepared {
    /// Nothing to write now.
    Nothing,
    Write(Entry),
}

struct Worker {
    rt: Runtime,
    settings: DbSettings,
    options: Options,
    /// The store's clock, which its breakers read too.
    local_clock: Arc<dyn Clock + Send + Sync>,
    link: Arc<Link>,
    inbox: UnboundedReceiver<Request>,
    conn: Option<Conn>,
    keys: HashMap<BreakerKey, KeyState>,
    /// This store's name in the writers table, and its last batch number.
    writer: String,
    batch: i64,
    in_doubt: Option<InDoubt>,
    time: ServerTime,
    last_poll: Instant,
    outage_since: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    shutting_down: bool,
    /// Flushes waiting until everything is in the rows (their callers bound the wait).
    flushes: Vec<SyncSender<bool>>,
    /// Statements that may go now (a token bucket, refilled at `STATEMENTS_PER_SECOND`), when
    /// it was last refilled, and whether a round is owed (work held back by an empty bucket).
    round_tokens: f64,
    refilled_at: Instant,
    round_due: bool,
    /// Keys whose last batch failed as a statement: each is written alone next, so one key's
    /// error does not hold back the others.
    write_alone: Vec<BreakerKey>,
}

/// Starts the worker thread; it says on `started` whether the store is usable.
pub(crate) fn spawn(
    settings: DbSettings,
    options: Options,
    local_clock: Arc<dyn Clock + Send + Sync>,
    link: Arc<Link>,
    inbox: UnboundedReceiver<Request>,
    started: SyncSender<Result<(), PostgresStoreError>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("resilient-circuit-pg".to_owned())
        .spawn(move || {
            ON_WORKER.with(|on| on.set(true));
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started.send(Err(PostgresStoreError::Connect(format!(
                        "cannot start the store's runtime: {e}"
                    ))));
                    return;
                }
            };
            let now = local_clock.now();
            let mut worker = Worker {
                rt,
                writer: writer_name(now),
                settings,
                backoff: options.reconnect.0,
                options,
                local_clock,
                link,
                inbox,
                conn: None,
                keys: HashMap::new(),
                batch: 0,
                in_doubt: None,
                time: ServerTime::new(Instant::ZERO, now),
                last_poll: now,
                outage_since: None,
                next_attempt: now,
                shutting_down: false,
                flushes: Vec::new(),
                round_tokens: STATEMENT_BURST,
                refilled_at: now,
                round_due: false,
                write_alone: Vec::new(),
            };
            let outcome = worker.start();
            let ok = outcome.is_ok();
            let _ = started.send(outcome);
            if ok {
                worker.run();
            }
        })
}

/// A name no other store uses: the process, the thread's start and a random part.
fn writer_name(now: Instant) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now.as_nanos());
    format!("pid{}-{:016x}", std::process::id(), hasher.finish())
}

impl Worker {
    fn local_now(&self) -> Instant {
        self.local_clock.now()
    }

    fn server_now(&self) -> Instant {
        self.time.estimate(self.local_now())
    }

    /// Checks the table (with a short-lived blocking client) and opens the connection.
    fn start(&mut self) -> Result<(), PostgresStoreError> {
        let settings = &self.settings;
        let fail =
            |why: String| PostgresStoreError::Connect(format!("{}: {why}", settings.describe()));
        let mut config = settings.config().clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.options.round_trip_timeout.max(Duration::from_secs(1)));
        }
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(|e| fail(describe(&e)))?;
        let report = inspect(&mut client).map_err(|e| fail(describe(&e)))?;
        drop(client);
        if !report.usable() {
            return Err(PostgresStoreError::SchemaNotReady(report.problems()));
        }
        let timeout = self.options.round_trip_timeout.max(Duration::from_secs(1));
        let opened = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, Conn::open(settings, timeout)).await });
        match opened {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                self.link.connected.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(fail(describe(&e))),
            Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
        }
    }

    fn run(mut self) {
        loop {
            let wait = self.next_wake();
            let mut requests = Vec::new();
            let mut notified = Vec::new();
            {
                let Worker {
                    rt,
                    inbox,
                    conn,
                    link,
                    ..
                } = &mut self;
                rt.block_on(async {
                    let notification = async {
                        match conn.as_mut() {
                            Some(conn) => conn.notifications.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        request = inbox.recv() => requests.extend(request),
                        payload = notification => notified.extend(payload),
                        () = link.wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                });
                while let Ok(request) = inbox.try_recv() {
                    requests.push(request);
                }
                if let Some(conn) = conn.as_mut() {
                    while let Ok(payload) = conn.notifications.try_recv() {
                        notified.push(payload);
                    }
                }
            }
            self.turn(requests, notified);
            if self.shutting_down && self.nothing_left() {
                return;
            }
        }
    }

    /// How long to sleep when nothing wakes the worker.
    fn next_wake(&self) -> Duration {
        let now = self.local_now();
        let poll = self
            .last_poll
            .saturating_add(self.options.max_staleness)
            .saturating_duration_since(now);
        let mut wait = self.options.sync_interval.min(poll);
        if self.round_due {
            // Until the bucket holds a statement again.
            let missing = (1.0 - self.round_tokens).max(0.0);
            wait = wait.min(Duration::from_secs_f64(
                missing / f64::from(STATEMENTS_PER_SECOND),
            ));
        }
        if self.conn.is_none() {
            wait = wait.min(self.next_attempt.saturating_duration_since(now));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Once the store is gone: no handle holds a key any more (this worker holds the last
    /// reference), and nothing is left to send (or nowhere to send it).
    fn nothing_left(&self) -> bool {
        self.keys.values().all(|key| {
            Arc::strong_count(&key.shared) <= 1 && (key.unsent.is_empty() || self.conn.is_none())
        })
    }

    fn turn(&mut self, requests: Vec<Request>, notified: Vec<String>) {
        if self.conn.is_none() && self.local_now() >= self.next_attempt {
            self.reconnect();
        }
        if self.conn.is_some() && self.in_doubt.is_some() {
            self.resolve_doubt();
        }
        let mut loads = Vec::new();
        let mut manuals = Vec::new();
        let mut flushes = std::mem::take(&mut self.flushes);
        for request in requests {
            match request {
                Request::Load { key, shared, reply } => {
                    let now = self.local_now();
                    self.keys.insert(
                        key.clone(),
                        KeyState {
                            config: shared.config,
                            shared,
                            row: None,
                            row_epoch: 0,
                            unsent: Vec::new(),
                            confirmed: false,
                            stale: true,
                            wants_probe: false,
                            last_taken: now,
                            retry_at: None,
                            warned_malformed: false,
                            warned_overflow: false,
                            warned_statement: false,
                        },
                    );
                    loads.push((key, reply));
                }
                Request::Manual { key, manual, reply } => manuals.push((key, manual, reply)),
                Request::Flush { reply } => flushes.push(reply),
                Request::Shutdown { reply } => {
                    self.shutting_down = true;
                    flushes.push(reply);
                }
            }
        }
        for key in self.notified_keys(&notified) {
            if let Some(state) = self.keys.get_mut(&key) {
                state.stale = true;
            }
        }
        let flush = !flushes.is_empty();
        let waited_for = !loads.is_empty() || flush || !manuals.is_empty();
        self.round_due = false;
        self.round(waited_for, flush, loads.iter().map(|(key, _)| key));
        for (_, reply) in loads {
            let _ = reply.send(());
        }
        for (key, manual, reply) in manuals {
            let _ = reply.send(self.manual(&key, manual));
        }
        let done = self.conn.is_some()
            && self.in_doubt.is_none()
            && self.keys.values().all(|key| key.unsent.is_empty());
        if done {
            for reply in flushes {
                let _ = reply.send(true);
            }
        } else {
            // Answered once done; a flush whose caller stopped waiting is dropped.
            self.flushes = flushes;
        }
    }

    /// Takes a statement from the bucket (or goes past it, for an answer a caller waits for);
    /// when it is empty, the round's work waits for the next round.
    fn spend(&mut self, waited_for: bool) -> bool {
        let now = self.local_now();
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.round_tokens =
            (self.round_tokens + elapsed * f64::from(STATEMENTS_PER_SECOND)).min(STATEMENT_BURST);
        self.refilled_at = now;
        if self.round_tokens >= 1.0 || waited_for {
            self.round_tokens = (self.round_tokens - 1.0).max(0.0);
            true
        } else {
            self.round_due = true;
            false
        }
    }

    /// One round: a read of every key that needs one (loaded, notified, conflicting, or all of
    /// them when the poll or a flush is due), then one write of every key's batch.
    fn round<'a>(
        &mut self,
        waited_for: bool,
        flush: bool,
        loading: impl Iterator<Item = &'a BreakerKey> + Clone,
    ) {
        let now = self.local_now();
        if self.conn.is_some() {
            let poll = flush
                || now.saturating_duration_since(self.last_poll) >= self.options.max_staleness;
            let stale: Vec<BreakerKey> = self
                .keys
                .iter()
                .filter(|(_, state)| poll || state.stale || state.row.is_none())
                .map(|(key, _)| key.clone())
                .collect();
            // The poll counts as done once its read went (or there was nothing to read).
            let read = stale.is_empty() || self.spend(waited_for);
            if read && !stale.is_empty() {
                self.read_keys(&stale, loading);
            }
            if read && poll {
                self.last_poll = now;
            }
        }
        let keys: Vec<BreakerKey> = self.keys.keys().cloned().collect();
        let mut batch = Vec::new();
        for key in &keys {
            // Changes taken earlier and not yet written (held back by the bucket, or a
            // conflict) go too.
            self.take(key, flush);
            if self.conn.is_none() {
                continue;
            }
            let wants_probe = self.keys.get(key).is_some_and(|state| state.wants_probe);
            match self.prepare(key, wants_probe, None, flush) {
                Prepared::Nothing => {}
                Prepared::Write(entry) => batch.push(entry),
            }
        }
        // Keys whose last batch failed as a statement go alone, so that one key's error (a
        // lock held elsewhere) holds back no other.
        let (single, batch): (Vec<Entry>, Vec<Entry>) = batch
            .into_iter()
            .partition(|entry| self.write_alone.contains(&entry.key));
        if !batch.is_empty() && self.spend(waited_for) {
            let _ = self.write_batch(batch);
        }
        for entry in single {
            let key = entry.key.clone();
            if self.spend(waited_for) && matches!(self.write_batch(vec![entry]), Ok(true)) {
                self.write_alone.retain(|k| *k != key);
            }
        }
        for state in self.keys.values_mut() {
            state.confirmed = false;
        }
    }

    /// The keys of this store that `payloads` say another writer changed.
    fn notified_keys(&self, payloads: &[String]) -> Vec<BreakerKey> {
        let mut keys = Vec::new();
        for changed in payloads.iter().filter_map(|p| parse_payload(p)) {
            let Ok(key) = BreakerKey::new(&changed.namespace, &changed.resource_key) else {
                continue;
            };
            let Some(state) = self.keys.get(&key) else {
                continue;
            };
            let ours = state.row.as_ref().is_some_and(|(_, v)| *v == changed.xid);
            if !ours && !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Runs one statement on the connection, within the round-trip deadline. A connection
    /// fault closes the connection and starts (or continues) an outage.
    fn round_trip<T>(
        &mut self,
        exchange: impl AsyncFnOnce(&Conn) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Fault> {
        let Some(conn) = &self.conn else {
            return Err(Fault::Connection("not connected".to_owned()));
        };
        self.link.round_trips.fetch_add(1, Ordering::Relaxed);
        let deadline = self.options.round_trip_timeout;
        let result = match self
            .rt
            .block_on(async { tokio::time::timeout(deadline, exchange(conn)).await })
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Fault::of(&e, conn.client())),
            Err(_) => Err(Fault::Connection(format!(
                "no answer within {deadline:?} (the round-trip timeout)"
            ))),
        };
        if let Err(Fault::Connection(why)) = &result {
            let why = why.clone();
            self.connection_lost(&why);
        }
        result
    }

    fn synced(&mut self, server_now: Instant) {
        self.time = ServerTime::new(server_now, self.local_now());
    }

    /// Reads the rows of `keys` (making rows for keys without one) and adopts those that
    /// changed; `loading` are keys read for the first time (no hook for what they start as).
    fn read_keys<'a>(
        &mut self,
        keys: &[BreakerKey],
        loading: impl Iterator<Item = &'a BreakerKey> + Clone,
    ) {
        for attempt in 0..2 {
            let known: Vec<(BreakerKey, Option<Version>)> = keys
                .iter()
                .map(|key| {
                    let version = self.keys.get(key).and_then(|k| k.row.as_ref()).map(|r| r.1);
                    (key.clone(), version)
                })
                .collect();
            let read = self.round_trip(async |conn: &Conn| {
                let refs: Vec<(&BreakerKey, Option<Version>)> =
                    known.iter().map(|(key, version)| (key, *version)).collect();
                conn.read(&refs).await
            });
            let Ok((server_now, found)) = read else {
                return;
            };
            self.synced(server_now);
            let mut missing = Vec::new();
            for ((key, _), found) in known.iter().zip(found) {
                let Some(state) = self.keys.get_mut(key) else {
                    continue;
                };
                match found {
                    Found::Missing => missing.push(key.clone()),
                    Found::Unchanged => {
                        state.confirmed = true;
                        state.stale = false;
                    }
                    Found::Row(row, version) => {
                        state.confirmed = true;
                        state.stale = false;
                        state.row = Some((row, version));
                        let load = loading.clone().any(|k| k == key);
                        self.adopt_row(key, 0, load);
                    }
                }
            }
            if missing.is_empty() || attempt == 1 {
                return;
            }
            let inserted = self.round_trip(async |conn: &Conn| {
                let refs: Vec<&BreakerKey> = missing.iter().collect();
                conn.insert(&refs).await
            });
            if inserted.is_err() {
                return;
            }
        }
    }

    /// Hands `key`'s row state to its in-process copy, with `reserved` probe slots more for
    /// this process, and fires the hooks if its status changed (not when `load`ing it).
    fn adopt_row(&mut self, key: &BreakerKey, reserved: u16, load: bool) {
        let server_now = self.server_now();
        let time = self.time;
        let clock = Arc::clone(&self.local_clock);
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let Some((row, _)) = &state.row else {
            return;
        };
        let (shared_state, malformed) = row.decode_lossy(&state.config, server_now);
        if let Some(malformed) = malformed
            && !state.warned_malformed
        {
            state.warned_malformed = true;
            report::store_warning(&format!(
                "PostgreSQL store: breaker {key}: the row cannot be fully read ({malformed}); it is read as no more permissive than it is, and the next write replaces it"
            ));
        }
        state.row_epoch = shared_state.epoch();
        let local = on_local_timeline(shared_state, &time);
        let unsent = state.unsent.clone();
        if load {
            state.shared.counters.state(local.status());
        }
        let announced = state.shared.replicate(|copy, replica| {
            if load {
                replica.announced = local.status();
            }
            let transition = replica.adopt(copy, local, &unsent, reserved, &clock.now());
            (transition, replica.hooks())
        });
        if let Some((transition, hooks)) = announced {
            announce(key, &state.shared.counters, transition, &hooks);
        }
    }

    /// Takes `key`'s log when it is due (urgent, or `sync_interval` since the last, or a
    /// flush): into its unsent changes when connected, kept for the row otherwise. Whether a
    /// probe slot is wanted; `None` when nothing was due.
    fn take(&mut self, key: &BreakerKey, force: bool) -> Option<bool> {
        let now = self.local_now();
        let sync_interval = self.options.sync_interval;
        let state = self.keys.get_mut(key)?;
        if state.retry_at.is_some_and(|at| now < at) && !force {
            return None;
        }
        let ttl = reservation_ttl(&state.config);
        let last_taken = state.last_taken;
        let (events, wants_probe) = state.shared.replicate(|copy, replica| {
            let mut released = replica.expire_reservations(now, ttl);
            for admission in &released {
                copy.release(*admission);
            }
            let due = force
                || replica.urgent
                || replica.wants_probe
                || !released.is_empty()
                || now.saturating_duration_since(last_taken) >= sync_interval;
            if !due {
                return None;
            }
            let mut events = replica.take();
            events.extend(
                released
                    .drain(..)
                    .map(|admission| Event::Release { admission }),
            );
            // One unused reservation at a time is enough.
            let wants_probe = std::mem::take(&mut replica.wants_probe) && replica.reserved == 0;
            Some((events, wants_probe))
        })??;
        state.last_taken = now;
        if self.conn.is_none() {
            self.keep(key, events, wants_probe);
            return None;
        }
        state.unsent.extend(events);
        // Kept until a write settles it (the round's write may be held back).
        state.wants_probe |= wants_probe;
        Some(state.wants_probe)
    }

    /// The store cannot reach the database now: when it tries again.
    fn unavailable(&self) -> StoreUnavailable {
        StoreUnavailable {
            retry_after: self
                .next_attempt
                .saturating_duration_since(self.local_now())
                .max(Duration::from_millis(1)),
        }
    }

    /// During an outage: keeps `events` for the row (those of the row's period), and lets the
    /// in-process copy stand in for the row: a wanted probe is admitted locally (fail open),
    /// and its changes of status are announced.
    fn keep(&mut self, key: &BreakerKey, events: Vec<Event>, wants_probe: bool) {
        let clock = Arc::clone(&self.local_clock);
        let fail_open = self.options.on_outage == OnOutage::FailOpen;
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let row_epoch = state.row_epoch;
        for event in events.into_iter().filter(|e| e.epoch() == row_epoch) {
            if state.unsent.len() >= MAX_PENDING_OUTCOMES {
                state.unsent.remove(0);
                if !state.warned_overflow {
                    state.warned_overflow = true;
                    report::store_warning(&format!(
                        "PostgreSQL store: breaker {key}: more than {MAX_PENDING_OUTCOMES} outcomes wait for the database; the oldest are dropped"
                    ));
                }
            }
            state.unsent.push(event);
        }
        let config = state.config;
        let announced = state.shared.replicate(|copy, replica| {
            if wants_probe
                && fail_open
                && let Ok((admission, _)) = copy.admit(&config, &clock.now())
                && admission.is_probe()
            {
                replica.reserve(1, copy.epoch(), clock.now());
            }
            (replica.announce(copy.status()), replica.hooks())
        });
        if let Some((transition, hooks)) = announced {
            announce(key, &state.shared.counters, transition, &hooks);
        }
    }

    /// `key`'s unsent changes (a wanted probe reservation, a manual change) applied to its row
    /// as last known: the new row to write, or nothing to write (then the changes are done
    /// with, or wait for the row to be read).
    fn prepare(
        &mut self,
        key: &BreakerKey,
        wants_probe: bool,
        manual: Option<Control>,
        force: bool,
    ) -> Prepared {
        if self.in_doubt.as_ref().is_some_and(|doubt| doubt.has(key)) {
            // Not before its last batch is known to be written or not.
            return Prepared::Nothing;
        }
        let server_now = self.server_now();
        let lease_for = self.options.probe_lease;
        let Some(state) = self.keys.get_mut(key) else {
            return Prepared::Nothing;
        };
        if state.unsent.is_empty() && !wants_probe && manual.is_none() {
            return Prepared::Nothing;
        }
        let Some((row, version)) = state.row.clone() else {
            state.stale = true;
            return Prepared::Nothing;
        };
        let config = state.config;
        let (base, malformed) = row.decode_lossy(&config, server_now);
        let mut next = base;
        for event in &state.unsent {
            event.apply(&mut next, &config, &server_now);
        }
        if let Some(manual) = manual {
            manual.apply(&mut next, &config, &server_now);
        }
        let mut reserved = 0;
        if wants_probe
            && next.status() != CircuitState::Closed
            && let Ok((admission, _)) = next.admit(&config, &server_now)
            && admission.is_probe()
        {
            reserved = 1;
        }
        let lease = if next.probes_in_flight() > base.probes_in_flight() {
            Some(timestamp_of(server_now.saturating_add(lease_for)))
        } else {
            row.probes_until
        };
        let new_row = StoredRow::encode(&next, lease);
        // Compared as this breaker reads the row, not byte for byte: a row another writer left
        // in another shape (a longer log, a lapsed probe count) is not a change.
        if malformed.is_none() && new_row == StoredRow::encode(&base, row.probes_until) {
            let successes_only = state.unsent.iter().all(Event::is_successes);
            if successes_only && !state.confirmed {
                // A no-op on the row as last known, which may be stale: the next read (a
                // notification's, the poll's, a flush's) confirms it or shows the change.
                if force || manual.is_some() {
                    state.stale = true;
                }
                return Prepared::Nothing;
            }
            // Late outcomes of an earlier period change no later row either; a slot given back
            // and reserved again in one batch leaves the row as it is, and the slot with this
            // process.
            state.unsent.clear();
            state.wants_probe = false;
            if reserved > 0 {
                self.adopt_row(key, reserved, false);
            }
            return Prepared::Nothing;
        }
        Prepared::Write(Entry {
            key: key.clone(),
            version,
            events: state.unsent.len(),
            new_row,
            next_epoch: next.epoch(),
            reserved,
            unguarded: manual.is_some(),
        })
    }

    /// Writes `batch` in one statement. Keys written adopt their new rows; the others (another
    /// writer got there first, or a live OPEN refused the change) are read again next round.
    /// Whether every key was written.
    fn write_batch(&mut self, batch: Vec<Entry>) -> Result<bool, StoreUnavailable> {
        self.batch += 1;
        let number = self.batch;
        let writer = self.writer.clone();
        let backend = self.conn.as_ref().map_or(0, |conn| conn.backend);
        let written = self.round_trip(async |conn: &Conn| {
            let swaps: Vec<Swap<'_>> = batch
                .iter()
                .map(|entry| Swap {
                    key: &entry.key,
                    version: entry.version,
                    row: &entry.new_row,
                    unguarded: entry.unguarded,
                })
                .collect();
            conn.swap(&swaps, &writer, number).await
        });
        match written {
            Ok((server_now, written)) => {
                self.synced(server_now);
                let mut all = true;
                for entry in batch {
                    let version = written.iter().find(|(k, _)| *k == entry.key).map(|w| w.1);
                    let Some(state) = self.keys.get_mut(&entry.key) else {
                        continue;
                    };
                    match version {
                        Some(version) => {
                            state.row = Some((entry.new_row, version));
                            state.unsent.drain(..entry.events.min(state.unsent.len()));
                            state.wants_probe = false;
                            state.retry_at = None;
                            state.warned_statement = false;
                            self.adopt_row(&entry.key, entry.reserved, false);
                        }
                        None => {
                            state.stale = true;
                            all = false;
                        }
                    }
                }
                Ok(all)
            }
            Err(Fault::Connection(_)) => {
                self.in_doubt = Some(InDoubt {
                    batch: number,
                    backend,
                    keys: batch
                        .into_iter()
                        .map(|entry| {
                            let reserved_in = (entry.reserved > 0).then_some(entry.next_epoch);
                            (entry.key, entry.events, reserved_in)
                        })
                        .collect(),
                });
                Err(self.unavailable())
            }
            Err(Fault::Statement(why)) => {
                let retry_at = self.local_now().saturating_add(self.options.sync_interval);
                let mut first = None;
                for entry in &batch {
                    if let Some(state) = self.keys.get_mut(&entry.key) {
                        state.retry_at = Some(retry_at);
                        if !state.warned_statement {
                            state.warned_statement = true;
                            first.get_or_insert(entry.key.clone());
                        }
                    }
                }
                if batch.len() > 1 {
                    // One key's error must not hold back the others: each goes alone next.
                    for entry in batch {
                        if !self.write_alone.contains(&entry.key) {
                            self.write_alone.push(entry.key);
                        }
                    }
                } else if let Some(key) = first {
                    report::store_warning(&format!(
                        "PostgreSQL store: breaker {key}: the write failed ({why}); it is tried again, other breakers are not affected"
                    ));
                }
                Err(StoreUnavailable {
                    retry_after: self.options.sync_interval,
                })
            }
        }
    }

    /// Manual control: what is pending first, then the change, on the row (unguarded), read
    /// again and retried after a conflict.
    fn manual(&mut self, key: &BreakerKey, manual: Control) -> Result<(), StoreUnavailable> {
        for _ in 0..MAX_ATTEMPTS {
            if self.conn.is_none() || !self.keys.contains_key(key) {
                return Err(self.unavailable());
            }
            if self
                .keys
                .get(key)
                .is_some_and(|state| state.stale || state.row.is_none())
            {
                self.read_keys(std::slice::from_ref(key), std::iter::empty());
                continue;
            }
            self.take(key, true);
            let wants_probe = self.keys.get(key).is_some_and(|state| state.wants_probe);
            match self.prepare(key, wants_probe, Some(manual), true) {
                Prepared::Write(entry) => {
                    if self.write_batch(vec![entry])? {
                        return Ok(());
                    }
                }
                Prepared::Nothing => {
                    let state = self.keys.get(key);
                    if state.is_some_and(|state| state.unsent.is_empty() && !state.stale) {
                        return Ok(()); // already so on the current row
                    }
                    if self.in_doubt.as_ref().is_some_and(|doubt| doubt.has(key)) {
                        return Err(self.unavailable());
                    }
                }
            }
        }
        Err(self.unavailable())
    }

    fn connection_lost(&mut self, why: &str) {
        self.conn = None;
        let now = self.local_now();
        if self.outage_since.is_none() {
            self.outage_since = Some(now);
            let policy = match self.options.on_outage {
                OnOutage::FailOpen => "serving from this process's copy of the state (fail open)",
                OnOutage::FailClosed => "rejecting calls (fail closed)",
            };
            report::store_warning(&format!(
                "PostgreSQL store: {} is unreachable: {why}; {policy} until it is back",
                self.settings.describe()
            ));
        }
        let wait = self.backoff;
        self.next_attempt = now.saturating_add(wait);
        self.backoff = wait.saturating_mul(2).min(self.options.reconnect.1);
        if self.options.on_outage == OnOutage::FailClosed {
            let retry_after = wait.max(Duration::from_millis(1));
            for state in self.keys.values() {
                state
                    .shared
                    .replicate(|_, replica| replica.unavailable = Some(retry_after));
            }
        }
        // Last: whoever sees the store disconnected sees its policy in force.
        self.link.connected.store(false, Ordering::Relaxed);
    }

    /// Settles the batch whose reply was lost: once the server process that received it has
    /// ended, the writers table says whether it was written, and which keys it wrote. Their
    /// changes are then dropped from the keys' unsent ones (a probe slot it reserved is given
    /// back); the other keys' are sent again.
    fn resolve_doubt(&mut self) {
        let Some(doubt) = self.in_doubt.take() else {
            return;
        };
        let backend = doubt.backend;
        match self.round_trip(async |conn: &Conn| conn.end_backend(backend).await) {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                self.in_doubt = Some(doubt);
                return;
            }
        }
        let writer = self.writer.clone();
        let Ok(last) = self.round_trip(async |conn: &Conn| conn.last_batch(&writer).await) else {
            self.in_doubt = Some(doubt);
            return;
        };
        let written: Vec<BreakerKey> = match last {
            Some((batch, keys)) if batch == doubt.batch => keys,
            _ => Vec::new(),
        };
        for (key, events, reserved_in) in doubt.keys {
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            state.stale = true;
            if written.contains(&key) {
                state.unsent.drain(..events.min(state.unsent.len()));
                if let Some(epoch) = reserved_in {
                    let admission = resilient_circuit::state::Admission::in_period(epoch, true);
                    state.unsent.insert(0, Event::Release { admission });
                }
            }
        }
    }

    fn reconnect(&mut self) {
        let timeout = self.options.round_trip_timeout;
        let opened = self.rt.block_on(async {
            tokio::time::timeout(timeout, Conn::open(&self.settings, timeout)).await
        });
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return self.connection_lost(&describe(&e)),
            Err(_) => {
                return self.connection_lost(&format!("no answer within {timeout:?} (connecting)"));
            }
        };
        self.conn = Some(conn);
        self.link.connected.store(true, Ordering::Relaxed);
        self.backoff = self.options.reconnect.0;
        if let Some(since) = self.outage_since.take() {
            report::store_info(&format!(
                "PostgreSQL store: reconnected to {} after {:?}",
                self.settings.describe(),
                self.local_now().saturating_duration_since(since)
            ));
        }
        // Every key again: the rows may have changed meanwhile, and with a new period the
        // changes kept for an old one are no-ops.
        for state in self.keys.values_mut() {
            state.row = None;
            state.stale = true;
        }
    }
}

/// How long a probe slot reserved for this process waits for a caller: a few of the waits
/// the callers that asked for it were told.
fn reservation_ttl(config: &BreakerConfig) -> Duration {
    config
        .busy_retry_after
        .saturating_mul(4)
        .max(Duration::from_millis(50))
}

/// `state`, a state on the server's timeline, with its OPEN deadline on the local one.
fn on_local_timeline(
    state: BreakerState<SharedWindow>,
    time: &ServerTime,
) -> BreakerState<SharedWindow> {
    match state.open_until() {
        Some(until) => BreakerState::restore(
            CircuitState::Open,
            *state.window(),
            state.failure_count(),
            time.local_of(until),
            0,
            state.epoch(),
        ),
        None => state,
    }
}

/// Reports a transition and runs every hook on it.
fn announce(
    key: &BreakerKey,
    counters: &KeyCounters,
    transition: Option<resilient_circuit::state::Transition>,
    hooks: &[WorkerHook],
) {
    if let Some(transition) = transition {
        counters.transition(transition.from, transition.to);
        report::transition_event(key, transition.from, transition.to);
        for hook in hooks {
            report::run_hook(key, &**hook, transition.from, transition.to);
        }
    }
}
