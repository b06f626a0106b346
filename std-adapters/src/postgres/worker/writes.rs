//! Writing rows: each key's unsent changes applied to its row as last known, the batch written
//! in one compare-and-swap statement, and what it did settled: written keys adopt their new
//! state, locked ones are held back, failed ones go alone.

use resilient_circuit::store::Control;

use super::{
    Worker,
    keys::{Entry, Prepared},
    statements::{Conn, Fault, Swap, Swapped, Version},
};
use crate::{BreakerKey, StoreUnavailable, store::report};

/// How often a key whose writes keep failing is reported again.
const WARN_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Worker {
    /// `key`'s unsent changes applied to its row as last known (see [`KeyState::prepare`](super::keys::KeyState::prepare));
    /// nothing while its last batch is in doubt. A probe slot reserved without a write is
    /// adopted at once.
    pub(super) fn prepare(
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
    pub(super) fn write_batch(&mut self, batch: Vec<Entry>) -> Result<bool, StoreUnavailable> {
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
}
