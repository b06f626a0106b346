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

use resilient_circuit::{BreakerConfig, BreakerState, CircuitState, Instant};
use tokio::{runtime::Runtime, sync::mpsc::UnboundedReceiver};

use super::{
    DbSettings, MAX_PENDING_OUTCOMES, OnOutage, PostgresStoreError, inspect,
    link::{Conn, Fault, Found, ServerTime, Version, describe, parse_payload},
    row::{StoredRow, timestamp_of},
    store::{Link, Options},
};
use crate::{
    BreakerKey, SharedWindow, StoreUnavailable,
    replica::{Event, Manual, SharedHook},
    report,
    shared::SharedState,
};

/// Compare-and-swap attempts for one batch before it waits for the next turn (each failed
/// attempt means another writer's change went in first).
const MAX_ATTEMPTS: u32 = 16;

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
        manual: Manual,
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
    /// The row was read this turn (so a change that is a no-op on it is a no-op).
    confirmed: bool,
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
    key: BreakerKey,
    backend: i32,
    batch: i64,
    events: usize,
    /// The probe slot the batch reserved, if it did: the period it is in.
    reserved_in: Option<u32>,
}

struct Worker {
    rt: Runtime,
    settings: DbSettings,
    options: Options,
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
}

/// Starts the worker thread; it says on `started` whether the store is usable.
pub(crate) fn spawn(
    settings: DbSettings,
    options: Options,
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
            let now = options.local_clock.now();
            let mut worker = Worker {
                rt,
                writer: writer_name(now),
                settings,
                backoff: options.reconnect.0,
                options,
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
        self.options.local_clock.now()
    }

    fn server_now(&self) -> Instant {
        self.time.estimate(self.local_now())
    }

    /// Checks the table (with a short-lived blocking client) and opens the connection.
    fn start(&mut self) -> Result<(), PostgresStoreError> {
        let settings = &self.settings;
        let fail = |why: String| {
            PostgresStoreError::Connect(settings.redact(&format!("{}: {why}", settings.describe())))
        };
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
        let new_flush = requests
            .iter()
            .any(|r| matches!(r, Request::Flush { .. } | Request::Shutdown { .. }));
        for request in requests {
            match request {
                Request::Load { key, shared, reply } => {
                    let config = shared.replicate(|_, replica| replica.config);
                    let now = self.local_now();
                    self.keys.insert(
                        key.clone(),
                        KeyState {
                            shared,
                            config: config.unwrap_or_default(),
                            row: None,
                            row_epoch: 0,
                            unsent: Vec::new(),
                            confirmed: false,
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
        let flush = !flushes.is_empty();
        let now = self.local_now();
        let poll_due = now.saturating_duration_since(self.last_poll) >= self.options.max_staleness;
        let mut stale: Vec<BreakerKey> = loads.iter().map(|(key, _)| key.clone()).collect();
        if poll_due || new_flush {
            stale = self.keys.keys().cloned().collect();
            self.last_poll = now;
        } else {
            stale.extend(self.notified_keys(&notified));
        }
        if self.conn.is_some() && !stale.is_empty() {
            self.read_keys(&stale, loads.iter().map(|(key, _)| key));
        }
        for (_, reply) in loads {
            let _ = reply.send(());
        }
        let keys: Vec<BreakerKey> = self.keys.keys().cloned().collect();
        for key in &keys {
            self.sync_key(key, flush, None);
        }
        for (key, manual, reply) in manuals {
            let _ = reply.send(self.manual(&key, manual));
        }
        for key in self.keys.values_mut() {
            key.confirmed = false;
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
                    Found::Unchanged => state.confirmed = true,
                    Found::Row(row, version) => {
                        state.confirmed = true;
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
        let clock = Arc::clone(&self.options.local_clock);
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
        let announced = state.shared.replicate(|copy, replica| {
            if load {
                replica.announced = local.status();
            }
            let transition = replica.adopt(copy, local, &unsent, reserved, &clock.now());
            (transition, replica.hooks())
        });
        if let Some((transition, hooks)) = announced {
            announce(key, transition, &hooks);
        }
    }

    /// Takes `key`'s log when it is due and sends it (with a manual change, if any), or keeps it
    /// during an outage.
    fn sync_key(
        &mut self,
        key: &BreakerKey,
        force: bool,
        manual: Option<Manual>,
    ) -> Option<Result<(), StoreUnavailable>> {
        let now = self.local_now();
        let sync_interval = self.options.sync_interval;
        let state = self.keys.get_mut(key)?;
        let ttl = reservation_ttl(&state.config);
        if state.retry_at.is_some_and(|at| now < at) && !force && manual.is_none() {
            return None;
        }
        let last_taken = state.last_taken;
        let taken = state.shared.replicate(|copy, replica| {
            let mut released = replica.expire_reservations(now, ttl);
            for admission in &released {
                copy.release(*admission);
            }
            let due = force
                || manual.is_some()
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
        })?;
        let (events, wants_probe) = taken?;
        state.last_taken = now;
        if self.conn.is_none() {
            self.keep(key, events, wants_probe);
            return Some(Err(self.unavailable()));
        }
        let state = self.keys.get_mut(key)?;
        state.unsent.extend(events);
        Some(self.write(key, wants_probe, force, manual))
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
        let clock = Arc::clone(&self.options.local_clock);
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
            announce(key, transition, &hooks);
        }
    }

    /// Writes `key`'s unsent changes (and a wanted probe reservation, and a manual change) to
    /// its row in one compare-and-swap, reading the row again after a conflict.
    fn write(
        &mut self,
        key: &BreakerKey,
        wants_probe: bool,
        force: bool,
        manual: Option<Manual>,
    ) -> Result<(), StoreUnavailable> {
        if self
            .in_doubt
            .as_ref()
            .is_some_and(|doubt| doubt.key == *key)
        {
            // Not before its last batch is known to be written or not.
            return Err(StoreUnavailable {
                retry_after: self.options.sync_interval,
            });
        }
        for _ in 0..MAX_ATTEMPTS {
            let state = self.keys.get(key).ok_or_else(|| self.unavailable())?;
            if state.unsent.is_empty() && !wants_probe && manual.is_none() {
                return Ok(());
            }
            let Some((row, version)) = state.row.clone() else {
                self.read_keys(std::slice::from_ref(key), std::iter::empty());
                if self.conn.is_none() {
                    return Err(self.unavailable());
                }
                continue;
            };
            let config = state.config;
            let server_now = self.server_now();
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
                Some(timestamp_of(
                    server_now.saturating_add(self.options.probe_lease),
                ))
            } else {
                row.probes_until
            };
            let new_row = StoredRow::encode(&next, lease);
            // Compared as this breaker reads the row, not byte for byte: a row another writer
            // left in another shape (a longer log, a lapsed probe count) is not a change.
            if malformed.is_none() && new_row == StoredRow::encode(&base, row.probes_until) {
                let successes_only = state.unsent.iter().all(Event::is_successes);
                if successes_only && !state.confirmed {
                    // A no-op on the row as last known, which may be stale: the next read
                    // (a notification's, the poll's, a flush's) confirms it or shows the change.
                    if !force && manual.is_none() {
                        return Ok(());
                    }
                    self.read_keys(std::slice::from_ref(key), std::iter::empty());
                    if self.conn.is_none() {
                        return Err(self.unavailable());
                    }
                    continue;
                }
                // Late outcomes of an earlier period change no later row either; a slot given
                // back and reserved again in one batch leaves the row as it is, and the slot
                // with this process.
                if let Some(state) = self.keys.get_mut(key) {
                    state.unsent.clear();
                }
                if reserved > 0 {
                    self.adopt_row(key, reserved, false);
                }
                return Ok(());
            }
            self.batch += 1;
            let batch = self.batch;
            let events = state.unsent.len();
            let writer = self.writer.clone();
            let unguarded = manual.is_some();
            let backend = self.conn.as_ref().map_or(0, |conn| conn.backend);
            let written = self.round_trip(async |conn: &Conn| {
                conn.swap(key, version, &new_row, unguarded, &writer, batch)
                    .await
            });
            match written {
                Ok(Some((server_now, version))) => {
                    self.synced(server_now);
                    if let Some(state) = self.keys.get_mut(key) {
                        state.row = Some((new_row, version));
                        state.unsent.clear();
                        state.retry_at = None;
                        state.warned_statement = false;
                    }
                    self.adopt_row(key, reserved, false);
                    return Ok(());
                }
                Ok(None) => {
                    // Another writer got there first, or the row is a live OPEN by the
                    // server's clock: start again from the row as it is.
                    self.read_keys(std::slice::from_ref(key), std::iter::empty());
                    if self.conn.is_none() {
                        return Err(self.unavailable());
                    }
                }
                Err(Fault::Connection(_)) => {
                    self.in_doubt = Some(InDoubt {
                        key: key.clone(),
                        backend,
                        batch,
                        events,
                        reserved_in: (reserved > 0).then(|| next.epoch()),
                    });
                    return Err(self.unavailable());
                }
                Err(Fault::Statement(why)) => {
                    let retry_at = self.local_now().saturating_add(self.options.sync_interval);
                    if let Some(state) = self.keys.get_mut(key) {
                        state.retry_at = Some(retry_at);
                        if !state.warned_statement {
                            state.warned_statement = true;
                            report::store_warning(&self.settings.redact(&format!(
                                "PostgreSQL store: breaker {key}: the write failed ({why}); it is tried again, other breakers are not affected"
                            )));
                        }
                    }
                    return Err(StoreUnavailable {
                        retry_after: self.options.sync_interval,
                    });
                }
            }
        }
        // Conflicts every time: try again next turn.
        Err(StoreUnavailable {
            retry_after: self.options.sync_interval,
        })
    }

    /// Manual control: what is pending first, then the change, on the row (unguarded).
    fn manual(&mut self, key: &BreakerKey, manual: Manual) -> Result<(), StoreUnavailable> {
        if !self.keys.contains_key(key) {
            return Err(self.unavailable());
        }
        if self.conn.is_none() {
            return Err(self.unavailable());
        }
        self.sync_key(key, true, Some(manual))
            .unwrap_or_else(|| Err(self.unavailable()))
    }

    fn connection_lost(&mut self, why: &str) {
        self.conn = None;
        self.link.connected.store(false, Ordering::Relaxed);
        let now = self.local_now();
        if self.outage_since.is_none() {
            self.outage_since = Some(now);
            let policy = match self.options.on_outage {
                OnOutage::FailOpen => "serving from this process's copy of the state (fail open)",
                OnOutage::FailClosed => "rejecting calls (fail closed)",
            };
            report::store_warning(&self.settings.redact(&format!(
                "PostgreSQL store: {} is unreachable: {why}; {policy} until it is back",
                self.settings.describe()
            )));
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
    }

    /// Settles the batch whose reply was lost: once the server process that received it has
    /// ended, the writers table says whether it was written. Its changes are then dropped from
    /// the key's unsent ones (a probe slot it reserved is given back), or sent again.
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
        if last.is_some_and(|last| last >= doubt.batch)
            && let Some(state) = self.keys.get_mut(&doubt.key)
        {
            let written = doubt.events.min(state.unsent.len());
            state.unsent.drain(..written);
            if let Some(epoch) = doubt.reserved_in {
                let admission = resilient_circuit::Admission::in_period(epoch, true);
                state.unsent.insert(0, Event::Release { admission });
            }
            state.row = None;
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
        }
        let keys: Vec<BreakerKey> = self.keys.keys().cloned().collect();
        if !keys.is_empty() {
            self.read_keys(&keys, std::iter::empty());
        }
        self.last_poll = self.local_now();
    }
}

/// How long a probe slot reserved for this process waits for a caller: a few of the waits
/// the callers that asked for it were told.
fn reservation_ttl(config: &BreakerConfig) -> Duration {
    config
        .get_busy_retry_after()
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
    transition: Option<resilient_circuit::Transition>,
    hooks: &[SharedHook],
) {
    if let Some(transition) = transition {
        report::transition_event(key, transition.from, transition.to);
        for hook in hooks {
            report::run_hook(key, &**hook, transition.from, transition.to);
        }
    }
}
