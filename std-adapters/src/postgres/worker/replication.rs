//! One round of replication: the rows that need it read ([`reads`](super::reads)), each key's
//! log taken (kept for the row during an outage), every key's changes written in one batch
//! ([`writes`](super::writes)); keys nothing holds forgotten, the writer's row refreshed.

use std::sync::Arc;

use resilient_circuit::time::Instant;

use super::{
    Worker,
    keys::Entry,
    server_time::ServerTime,
    statements::{Conn, parse_payload},
};
use crate::{
    BreakerKey,
    postgres::OnOutage,
    store::{
        replica::{Event, reservation_ttl},
        report::announce,
        shared_state::is_held,
    },
};

/// How often an idle writer refreshes its row in the writers table; a row not refreshed for a
/// day is taken over by the next new writer.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Polls after which a key no breaker handle holds is forgotten.
const FORGET_AFTER_POLLS: u32 = 10;

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
                self.read_keys(&stale, loading, waited_for);
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
}
