//! Batches whose reply was lost. Each batch is numbered, and its statement applies it only if
//! the writer's last batch is older, recording it in the same transaction. A batch in doubt is
//! sent again, unchanged, before any other: the answer says whether this copy applied it or an
//! earlier one did (and which keys that one wrote). No server process is ended to find out, so
//! it works behind a connection pooler, and a copy still in flight in a frozen backend can only
//! wait for the writer's row and then find the batch applied.

use resilient_circuit::time::Instant;

use super::{Worker, keys::Entry, statements::Swapped};
use crate::{BreakerKey, report};

/// This store's batches: its name in the writers table, the last batch number acknowledged,
/// and the batch in doubt, if one is.
pub(super) struct Batches {
    pub(super) writer: String,
    last: i64,
    pub(super) in_doubt: Option<InDoubt>,
}

/// The batch whose reply was lost, kept to be sent again as it was.
pub(super) struct InDoubt {
    pub(super) batch: i64,
    pub(super) entries: Vec<Entry>,
}

impl Batches {
    /// A writer with no batch yet, named uniquely from `now`.
    pub(super) fn new(now: Instant) -> Self {
        Batches {
            writer: writer_name(now),
            last: 0,
            in_doubt: None,
        }
    }

    /// The next batch's number (used up only once acknowledged).
    pub(super) fn next(&self) -> i64 {
        self.last + 1
    }

    /// The last batch acknowledged, as the writer is registered with.
    pub(super) fn last(&self) -> i64 {
        self.last
    }

    /// Batch `number` is known to be applied.
    pub(super) fn acknowledged(&mut self, number: i64) {
        self.last = self.last.max(number);
    }

    /// Whether `key`'s last batch is in doubt (nothing more of it may go until it is settled).
    pub(super) fn in_doubt(&self, key: &BreakerKey) -> bool {
        self.in_doubt
            .as_ref()
            .is_some_and(|doubt| doubt.entries.iter().any(|entry| entry.key == *key))
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
    /// Sends the batch in doubt again, unchanged, and settles it by the answer: applied now,
    /// or applied by an earlier copy. Still in doubt if there is no answer (or the writer's
    /// row is locked by a copy still in flight).
    pub(super) fn resolve_doubt(&mut self) {
        let Some(doubt) = self.batches.in_doubt.take() else {
            return;
        };
        match self.send_batch(doubt.batch, &doubt.entries) {
            Ok(Swapped::Applied(written)) => {
                self.batches.acknowledged(doubt.batch);
                self.settle_written(doubt.entries, &written);
            }
            Ok(Swapped::AlreadyApplied(keys)) => {
                self.batches.acknowledged(doubt.batch);
                self.settle_applied_earlier(doubt.entries, &keys);
            }
            Ok(Swapped::Unregistered) => {
                // The writers table lost this writer's row (deleted by hand): whether the
                // batch went in cannot be known any more. Sent again as new.
                report::store_warning(&format!(
                    "PostgreSQL store: writer {} is no longer in rc_circuit_breaker_writers; a batch whose reply was lost is sent again, and may count twice",
                    self.batches.writer
                ));
                self.register();
                self.batches.in_doubt = Some(doubt);
            }
            Err(_) => self.batches.in_doubt = Some(doubt),
        }
    }

    /// Registers this writer (a round trip; nothing if it is registered).
    pub(super) fn register(&mut self) {
        let (writer, last) = (self.batches.writer.clone(), self.batches.last());
        let _ = self
            .round_trip(async |conn: &super::statements::Conn| conn.register(&writer, last).await);
    }
}
