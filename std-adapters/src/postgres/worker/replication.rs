//! Per-key replication: each round reads the rows that need it and adopts them, takes each
//! key's log, and writes every key's changes in one batch (a compare-and-swap per key).

use std::sync::Arc;

use resilient_circuit::{
    CircuitState,
    state::{BreakerState, Transition},
    store::Control,
    time::Instant,
};

use super::{
    Worker,
    keys::{Entry, Prepared, reservation_ttl},
    mailbox::Ticket,
    server_time::ServerTime,
    statements::{Conn, Fault, Found, Swap, Swapped, Version, parse_payload},
};
use crate::{
    BreakerKey, StoreUnavailable,
    counters::KeyCounters,
    postgres::OnOutage,
    replica::{Event, WorkerHook},
    report,
    shared::is_held,
    store::SharedWindow,
};

/// Attempts of a manual change (each failed attempt means another writer's change went in
/// first).
const MAX_ATTEMPTS: u32 = 16;

/// How often an idle writer refreshes its row in the writers table; a row not refreshed for a
/// day is taken over by the next new writer.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Polls after which a key no breaker handle holds is forgotten.
const FORGET_AFTER_POLLS: u32 = 10;

/// How often a key whose writes keep failing is reported again.
const WARN_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Worker {
    /// One round: a read of every key that needs one (loaded, notified, conflicting, or all of
    /// them when the poll or a flush is due), then one write of every key's batch.
    pub(super) fn round<'a>(
        &mut self,
        waited_for: bool,
        flush: bool,
        loading: impl Iterator<Item = &'a BreakerKey> + Clone,
    ) {
        let now = self.local_now();
        let poll =
            flush || now.saturating_duration_since(self.last_poll) >= self.options.max_staleness;
        if poll {
            self.forget_unheld_keys(now);
        }
        if self.connection.is_up() {
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
            // A writer idle for an hour refreshes its row, or a new writer could take it over.
            let idle = now.saturating_duration_since(self.batches.recorded_at) >= TOUCH_EVERY;
            if poll && idle && self.spend(false) {
                let writer = self.batches.writer.clone();
                if self
                    .round_trip(async |conn: &Conn| conn.touch(&writer).await)
                    .is_ok()
                {
                    self.batches.recorded_at = now;
                }
            }
        }
        let keys: Vec<BreakerKey> = self.keys.keys().cloned().collect();
        let mut batch = Vec::new();
        for key in &keys {
            // Changes taken earlier and not yet written (held back by the bucket, or a
            // conflict) go too.
            self.take(key, flush);
            // No batch goes while one is in doubt: it goes again first. A key held back (its
            // row locked elsewhere, its write failed) waits for its time, flush or not.
            let held_back = self
                .keys
                .get(key)
                .is_some_and(|state| state.retry_at.is_some_and(|at| now < at));
            if !self.connection.is_up() || self.batches.in_doubt.is_some() || held_back {
                continue;
            }
            let wants_probe = self.keys.get(key).is_some_and(|state| state.wants_probe);
            batch.extend(self.prepare(key, wants_probe, None, flush));
        }
        // Keys whose last batch failed as a statement go alone, so that one key's error (a
        // constraint, a trigger of the operator's) holds back no other.
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
            state.tell_sending();
        }
    }

    /// Forgets the keys no breaker handle has held for [`FORGET_AFTER_POLLS`] polls and that
    /// have nothing to keep (nothing waiting for the row, no live OPEN): from the store's
    /// registry and from here, so a poll reads only the keys in use, and a key can be made again
    /// with another configuration. Making it again reads its row.
    fn forget_unheld_keys(&mut self, now: Instant) {
        let forget_after = self
            .options
            .max_staleness
            .saturating_mul(FORGET_AFTER_POLLS);
        let mut forgotten = Vec::new();
        for (key, state) in &mut self.keys {
            if is_held(&state.shared) {
                state.unheld_since = None;
                continue;
            }
            let since = *state.unheld_since.get_or_insert(now);
            let due = now.saturating_duration_since(since) >= forget_after;
            let settled = state.unsent.is_empty() && !self.batches.in_doubt(key);
            if due && settled && (self.forget)(key, &state.shared) {
                forgotten.push(key.clone());
            }
        }
        for key in forgotten {
            self.keys.remove(&key);
            self.write_alone.retain(|k| *k != key);
        }
    }

    /// The keys of this store that `payloads` say another writer changed.
    pub(super) fn notified_keys(&self, payloads: &[String]) -> Vec<BreakerKey> {
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

    pub(super) fn synced(&mut self, server_now: Instant) {
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
                        if state.seen.is_some_and(|seen| seen != version) {
                            state.changed_at = server_now;
                        }
                        state.seen = Some(version);
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

    /// Hands `key`'s row, as last read, to its in-process copy (see [`adopt`](Self::adopt)).
    pub(super) fn adopt_row(&mut self, key: &BreakerKey, reserved: u16, load: bool) {
        let server_now = self.server_now();
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let Some((row, _)) = &state.row else {
            return;
        };
        let (shared, malformed) = row.decode_lossy(&state.config, server_now);
        if let Some(malformed) = malformed
            && !state.warned_malformed
        {
            state.warned_malformed = true;
            report::store_warning(&format!(
                "PostgreSQL store: breaker {key}: the row cannot be fully read ({malformed}); it is read as no more permissive than it is, and the next write replaces it"
            ));
        }
        self.adopt(key, shared, reserved, load);
    }

    /// Hands `shared`, `key`'s state in its row (on the server's timeline), to its in-process
    /// copy, with `reserved` probe slots more for this process, and fires the hooks if its
    /// status changed (not when `load`ing it).
    fn adopt(
        &mut self,
        key: &BreakerKey,
        shared: BreakerState<SharedWindow>,
        reserved: u16,
        load: bool,
    ) {
        let time = self.time;
        let clock = Arc::clone(&self.local_clock);
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let local = on_local_timeline(shared, &time);
        let unsent = state.unsent.clone();
        if load {
            state.shared.counters.state(local.status());
        }
        let announced = state.shared.replicate(|copy, replica| {
            if load {
                replica.loaded(local.status());
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
    pub(super) fn take(&mut self, key: &BreakerKey, force: bool) -> Option<bool> {
        let now = self.local_now();
        let sync_interval = self.options.sync_interval;
        let state = self.keys.get_mut(key)?;
        if state.retry_at.is_some_and(|at| now < at) && !force {
            return None;
        }
        let ttl = reservation_ttl(&state.config);
        let last_taken = state.last_taken;
        let (events, dropped, wants_probe) = state.shared.replicate(|copy, replica| {
            let mut released = replica.expire_reservations(now, ttl);
            for admission in &released {
                copy.release(*admission);
            }
            let due = force
                || replica.is_urgent()
                || replica.wants_probe()
                || !released.is_empty()
                || now.saturating_duration_since(last_taken) >= sync_interval;
            if !due {
                return None;
            }
            let (mut events, dropped) = replica.take();
            events.extend(
                released
                    .drain(..)
                    .map(|admission| Event::Release { admission }),
            );
            // Said under the lock the log was taken under: the key is not forgotten meanwhile.
            replica.set_sending(true);
            let wants_probe = replica.take_probe_wish();
            Some((events, dropped, wants_probe))
        })??;
        state.last_taken = now;
        state.taken();
        if !self.connection.is_up() {
            self.keep(key, events, dropped, wants_probe);
            return None;
        }
        // While connected, every change goes to the row (each round takes what came since the
        // last; the round's batch applies them all).
        let dropped = dropped + state.push_unsent(events);
        self.count_dropped(key, dropped);
        let state = self.keys.get_mut(key)?;
        // Kept until a write settles it (the round's write may be held back).
        state.wants_probe |= wants_probe;
        Some(state.wants_probe)
    }

    /// During an outage: keeps `events` for the row (those of the row's period), and lets the
    /// in-process copy stand in for the row: a wanted probe is admitted locally (fail open),
    /// and its changes of status are announced.
    fn keep(&mut self, key: &BreakerKey, events: Vec<Event>, dropped: u64, wants_probe: bool) {
        let clock = Arc::clone(&self.local_clock);
        let fail_open = self.options.on_outage == OnOutage::FailOpen;
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        // Every change, whatever its period: replayed on the row as of when each was made, they
        // make the transitions this process made meanwhile (see `Event::apply`).
        let dropped = dropped + state.push_unsent(events);
        self.count_dropped(key, dropped);
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
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

    /// `dropped` changes of `key` went before reaching the row: counted (per key and in the
    /// store's total) and reported once.
    fn count_dropped(&mut self, key: &BreakerKey, dropped: u64) {
        if dropped == 0 {
            return;
        }
        self.mailbox
            .dropped_outcomes
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        if let Some(state) = self.keys.get_mut(key) {
            state.count_dropped(key, dropped);
        }
    }

    /// `key`'s unsent changes applied to its row as last known (see [`KeyState::prepare`](super::keys::KeyState::prepare));
    /// nothing while its last batch is in doubt. A probe slot reserved without a write is
    /// adopted at once.
    fn prepare(
        &mut self,
        key: &BreakerKey,
        wants_probe: bool,
        manual: Option<Control>,
        force: bool,
    ) -> Option<Entry> {
        if self.batches.in_doubt(key) {
            // Not before its last batch is known to be written or not.
            return None;
        }
        let (time, now) = (self.time, self.local_now());
        let lease_for = self.options.probe_lease;
        let state = self.keys.get_mut(key)?;
        match state.prepare(key, (&time, now), lease_for, wants_probe, manual, force) {
            Prepared::Nothing => None,
            Prepared::Reserved(reserved) => {
                self.adopt_row(key, reserved, false);
                None
            }
            Prepared::Write(entry) => Some(*entry),
        }
    }

    /// Writes `batch` in one statement, as this writer's next batch. Keys written adopt their
    /// new rows; the others (another writer got there first, or a live OPEN refused the change)
    /// are read again next round. Whether every key was written. Nothing is sent while a batch
    /// is in doubt: it is settled first.
    fn write_batch(&mut self, batch: Vec<Entry>) -> Result<bool, StoreUnavailable> {
        if self.batches.in_doubt.is_some() {
            return Err(self.unavailable());
        }
        let number = self.batches.next();
        let writer = self.batches.writer.clone();
        let sent = self.round_trip(async |conn: &Conn| {
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
        match sent {
            Ok(Swapped {
                server_now,
                record,
                written,
                skipped,
            }) => {
                self.synced(server_now);
                match record {
                    Some((last, _)) if last < number => {
                        self.batches.acknowledged(number);
                        self.batches.recorded_at = self.local_now();
                        for entry in &batch {
                            if let Some(state) = self.keys.get_mut(&entry.key) {
                                state.held_back = None;
                            }
                        }
                        self.hold_back(&skipped);
                        Ok(self.settle_written(batch, &written))
                    }
                    // Not applied: the writer is not registered, or its record is ahead of
                    // this writer's count (its row restored, its name reused).
                    record => {
                        self.writer_record_anomaly(record.map(|(last, _)| last));
                        for entry in &batch {
                            if let Some(state) = self.keys.get_mut(&entry.key) {
                                state.stale = true;
                            }
                        }
                        Err(self.unavailable())
                    }
                }
            }
            Err(Fault::Connection(_)) => {
                self.batches.doubt(number, &batch, &mut self.keys);
                Err(self.unavailable())
            }
            // Not applied: the changes stay unsent, for the next connection.
            Err(Fault::ReadOnly(_)) => Err(self.unavailable()),
            Err(Fault::Statement(why)) => {
                let now = self.local_now();
                let retry_at = now.saturating_add(self.options.sync_interval);
                for entry in &batch {
                    if let Some(state) = self.keys.get_mut(&entry.key) {
                        state.retry_at = Some(retry_at);
                    }
                }
                if batch.len() > 1 {
                    // One key's error must not hold back the others: each goes alone next,
                    // where the one whose write fails is counted and reported.
                    for entry in batch {
                        if !self.write_alone.contains(&entry.key) {
                            self.write_alone.push(entry.key);
                        }
                    }
                } else if let Some(entry) = batch.first()
                    && let Some(state) = self.keys.get_mut(&entry.key)
                {
                    state.shared.counters.failed_write();
                    // Reported again every minute while it keeps failing.
                    let due = state
                        .warned_statement
                        .is_none_or(|at| now.saturating_duration_since(at) >= WARN_AGAIN_AFTER);
                    if due {
                        state.warned_statement = Some(now);
                        let key = &entry.key;
                        report::store_warning(&format!(
                            "PostgreSQL store: breaker {key}: the write failed ({why}); it is tried again, other breakers are not affected"
                        ));
                    }
                }
                Err(StoreUnavailable {
                    retry_after: self.options.sync_interval,
                })
            }
        }
    }

    /// Keys whose rows were locked elsewhere: tried again later, each after a wait that doubles
    /// while its row stays locked (up to `max_staleness`), in the round's batch with the others.
    fn hold_back(&mut self, skipped: &[BreakerKey]) {
        let now = self.local_now();
        let first = self.options.sync_interval;
        let longest = self.options.max_staleness.max(first);
        for key in skipped {
            if let Some(state) = self.keys.get_mut(key) {
                let wait = state
                    .held_back
                    .map_or(first, |last| last.saturating_mul(2))
                    .min(longest);
                state.held_back = Some(wait);
                state.retry_at = Some(now.saturating_add(wait));
            }
        }
    }

    /// A batch applied now: each key `written` adopts the state the batch computed for it
    /// (its changes are done with); the others are read again. Whether every key was written.
    pub(super) fn settle_written(
        &mut self,
        entries: Vec<Entry>,
        written: &[(BreakerKey, Version)],
    ) -> bool {
        let mut all = true;
        for entry in entries {
            let version = written.iter().find(|(k, _)| *k == entry.key).map(|w| w.1);
            let Some(state) = self.keys.get_mut(&entry.key) else {
                continue;
            };
            match version {
                Some(version) => {
                    state.seen = Some(version);
                    state.row = Some((entry.new_row, version));
                    state.unsent.drain(..entry.events.min(state.unsent.len()));
                    state.wants_probe = false;
                    state.retry_at = None;
                    state.held_back = None;
                    state.warned_statement = None;
                    // The state this batch computed, not its row decoded again.
                    self.adopt(&entry.key, entry.next, entry.reserved, false);
                }
                None => {
                    state.stale = true;
                    all = false;
                }
            }
        }
        all
    }

    /// Manual control: what is pending first, then the change, on the row (unguarded), read
    /// again and retried after a conflict. No statement starts once `ticket`'s caller has
    /// stopped waiting. A write whose reply was lost is settled at once, on a new connection:
    /// the answer says whether it went in; unsettled, it is a failure that may have been
    /// applied (the row, and the hooks when it is read, tell).
    pub(super) fn manual(
        &mut self,
        key: &BreakerKey,
        manual: Control,
        ticket: &Ticket,
    ) -> Result<(), StoreUnavailable> {
        // One reconnection at most per change (its caller waits for it: see `Ticket`).
        let mut settled_once = false;
        for _ in 0..MAX_ATTEMPTS {
            // Nothing is written while a batch is in doubt (its settling comes first).
            let blocked = !self.connection.is_up() || self.batches.in_doubt.is_some();
            if blocked || !self.keys.contains_key(key) || ticket.expired() {
                return Err(self.unavailable());
            }
            // Within the store's statement budget, like every request.
            self.spend(true);
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
                Some(entry) => match self.write_batch(vec![entry]) {
                    Ok(true) => return Ok(()),
                    // The row is locked elsewhere: not waited for.
                    Ok(false) if self.keys.get(key).is_some_and(|s| s.held_back.is_some()) => {
                        return Err(StoreUnavailable {
                            retry_after: self.options.sync_interval,
                        });
                    }
                    Ok(false) => {}
                    Err(unavailable) if self.batches.in_doubt.is_none() => {
                        return Err(unavailable);
                    }
                    // The reply was lost: whether the change went in is learnt now, on a new
                    // connection (once; the caller waits for it).
                    Err(unavailable) => {
                        if std::mem::replace(&mut settled_once, true) {
                            return Err(unavailable);
                        }
                        self.reconnect();
                        if !self.connection.is_up() {
                            return Err(self.unavailable());
                        }
                        match self.resolve_doubt() {
                            Some(applied) if applied.contains(key) => return Ok(()),
                            // Not applied, and now never will be: tried again.
                            Some(_) => {}
                            None => return Err(self.unavailable()),
                        }
                    }
                },
                None => {
                    let state = self.keys.get(key);
                    if state.is_some_and(|state| state.unsent.is_empty() && !state.stale) {
                        return Ok(()); // already so on the current row
                    }
                }
            }
        }
        Err(self.unavailable())
    }
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
    transition: Option<Transition>,
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
