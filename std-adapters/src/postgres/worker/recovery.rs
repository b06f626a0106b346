//! Batches whose reply was lost. Each batch is numbered, and its statement applies it only if
//! the writer's last batch is older, recording it in the same transaction. A batch in doubt is
//! settled before any other is sent, by a statement that locks only the writer's row: if the
//! writer's last batch is older, the batch was not applied, and is fenced off (the record moves
//! to its number, so a copy still in flight changes nothing), its changes going out again in a
//! new batch; if the record is of this batch, an earlier copy applied it, and the record names
//! the keys it wrote. No server process is ended to find out, so it works behind a pooler.

use std::collections::HashMap;

use resilient_circuit::{state::Admission, time::Instant};

use super::{
    Worker,
    keys::{Entry, KeyState},
    statements::Conn,
};
use crate::{
    BreakerKey,
    store::{replica::Event, report},
};

/// This store's batches: its name in the writers table, the last batch number acknowledged,
/// and the batch in doubt, if one is.
pub(super) struct Batches {
    pub(super) writer: String,
    last: i64,
    /// When (local clock) this writer last wrote its row in the writers table.
    pub(super) recorded_at: Instant,
    pub(super) in_doubt: Option<InDoubt>,
}

/// The batch whose reply was lost: was it applied?
pub(super) struct InDoubt {
    batch: i64,
    /// Each key of the batch: how many of its unsent changes the batch held, and the period of
    /// the probe slot it reserved, if it did.
    keys: Vec<(BreakerKey, usize, Option<u32>)>,
    /// Whether a settling that failed was reported.
    warned: bool,
}

impl Batches {
    /// A writer with no batch yet, named uniquely from `now`.
    pub(super) fn new(now: Instant) -> Self {
        Batches {
            writer: writer_name(now),
            last: 0,
            recorded_at: now,
            in_doubt: None,
        }
    }

    /// The next batch's number (used up once its fate is known).
    pub(super) fn next(&self) -> i64 {
        self.last + 1
    }

    /// The last batch whose fate is known, as the writer is registered with.
    pub(super) fn last(&self) -> i64 {
        self.last
    }

    /// Batch `number`'s fate is known (applied, or fenced off).
    pub(super) fn acknowledged(&mut self, number: i64) {
        self.last = self.last.max(number);
    }

    /// Batch `number` of `entries` had its reply lost: it is in doubt, and the keys' changes it
    /// held are kept from being dropped until it is settled.
    pub(super) fn doubt(
        &mut self,
        number: i64,
        entries: &[Entry],
        keys: &mut HashMap<BreakerKey, KeyState>,
    ) {
        for entry in entries {
            if let Some(state) = keys.get_mut(&entry.key) {
                state.in_doubt = entry.events;
            }
        }
        self.in_doubt = Some(InDoubt {
            batch: number,
            keys: entries
                .iter()
                .map(|entry| {
                    let reserved_in = (entry.reserved > 0).then_some(entry.next.epoch());
                    (entry.key.clone(), entry.events, reserved_in)
                })
                .collect(),
            warned: false,
        });
    }

    /// Whether `key`'s last batch is in doubt (nothing more of it may go until it is settled).
    pub(super) fn in_doubt(&self, key: &BreakerKey) -> bool {
        self.in_doubt
            .as_ref()
            .is_some_and(|doubt| doubt.keys.iter().any(|(k, ..)| k == key))
    }
}

/// A name no other store uses: the process, the thread's start and a random part.
fn writer_name(now: Instant) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now.as_nanos());
    format!("pid{}-{:016x}", std::process::id(), hasher.finish())
}

impl Worker {
    /// Settles the batch in doubt (see the module's header): the keys it wrote, once settled.
    /// Still in doubt without an answer, or while a copy of it still in flight holds the
    /// writer's row.
    pub(super) fn resolve_doubt(&mut self) -> Option<Vec<BreakerKey>> {
        let mut doubt = self.batches.in_doubt.take()?;
        let writer = self.batches.writer.clone();
        let number = doubt.batch;
        let fenced = self.round_trip(async |conn: &Conn| conn.fence(&writer, number).await);
        let record = match fenced {
            Ok((server_now, record)) => {
                self.synced(server_now);
                record
            }
            Err(why) => {
                if !doubt.warned && self.connection.is_up() {
                    doubt.warned = true;
                    report::store_warning(&format!(
                        "PostgreSQL store: batch {number}, whose reply was lost, cannot be settled yet ({why:?}): no other batch is written until it is"
                    ));
                }
                self.batches.in_doubt = Some(doubt);
                return None;
            }
        };
        let applied: Vec<BreakerKey> = match record {
            // Not applied, and now it never will be: its changes go again, in a new batch.
            Some((last, _)) if last < number => Vec::new(),
            Some((last, keys)) if last == number => keys,
            other => {
                // Whether the batch went in cannot be known: its changes go again, and may
                // count twice.
                report::store_warning(&format!(
                    "PostgreSQL store: batch {number}, whose reply was lost, cannot be settled by the writers table; its changes are sent again and may count twice"
                ));
                self.writer_record_anomaly(other.map(|(last, _)| last));
                Vec::new()
            }
        };
        self.batches.acknowledged(number);
        self.batches.recorded_at = self.local_now();
        for (key, events, reserved_in) in doubt.keys {
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            state.stale = true;
            state.in_doubt = 0;
            if applied.contains(&key) {
                state.unsent.drain(..events.min(state.unsent.len()));
                // The slot it reserved was never given to a caller here.
                if let Some(epoch) = reserved_in {
                    let admission = Admission::in_period(epoch, true);
                    state.unsent.insert(0, Event::Release { admission });
                }
            }
        }
        Some(applied)
    }

    /// Registers this writer (a round trip; nothing if it is registered). A writer whose row
    /// was gone while a batch was in doubt cannot know whether that batch was applied: said so.
    pub(super) fn register(&mut self) {
        let (writer, last) = (self.batches.writer.clone(), self.batches.last());
        let registered = self.round_trip(async |conn: &Conn| conn.register(&writer, last).await);
        if registered.is_ok() {
            self.batches.recorded_at = self.local_now();
        }
        if matches!(registered, Ok(true)) && self.batches.in_doubt.is_some() {
            report::store_warning(&format!(
                "PostgreSQL store: writer {writer} was missing from rc_circuit_breaker_writers while a batch was in doubt (the row deleted, or a failover to a server without it): that batch may count twice"
            ));
        }
    }

    /// The writers table holds no record of this writer, or one ahead of its count (a row
    /// restored or deleted by hand, its name reused): nothing can be settled by it. Said so;
    /// the writer is registered again and counts on from the record.
    pub(super) fn writer_record_anomaly(&mut self, record: Option<i64>) {
        let writer = self.batches.writer.clone();
        report::store_warning(&format!(
            "PostgreSQL store: writer {writer}'s record in rc_circuit_breaker_writers is {}, where {} was expected; batches go on from it",
            record.map_or_else(|| "missing".to_owned(), |last| format!("at batch {last}")),
            self.batches.last()
        ));
        match record {
            Some(last) => self.batches.acknowledged(last),
            None => self.register(),
        }
    }
}
