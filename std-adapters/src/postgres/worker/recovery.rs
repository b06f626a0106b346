//! Batches whose reply was lost: each batch is numbered and recorded for this writer in the
//! statement that writes it, so after reconnecting the worker can tell whether it went in.

use resilient_circuit::{state::Admission, time::Instant};

use super::{Worker, statements::Conn};
use crate::{BreakerKey, replica::Event};

/// This store's batches: its name in the writers table, its last batch number, and the batch
/// in doubt, if one is.
pub(super) struct Batches {
    pub(super) writer: String,
    pub(super) last: i64,
    pub(super) in_doubt: Option<InDoubt>,
}

/// The batch whose reply was lost: was it written? Known once the server process that
/// received it has ended (until then it may still commit).
pub(super) struct InDoubt {
    pub(super) batch: i64,
    pub(super) backend: i32,
    /// Each key of the batch: how many of its unsent changes the batch held, and the period of
    /// the probe slot it reserved, if it did.
    pub(super) keys: Vec<(BreakerKey, usize, Option<u32>)>,
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

    /// The next batch's number.
    pub(super) fn next(&mut self) -> i64 {
        self.last += 1;
        self.last
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
    /// Settles the batch whose reply was lost: once the server process that received it has
    /// ended, the writers table says whether it was written, and which keys it wrote. Their
    /// changes are then dropped from the keys' unsent ones (a probe slot it reserved is given
    /// back); the other keys' are sent again.
    pub(super) fn resolve_doubt(&mut self) {
        let Some(doubt) = self.batches.in_doubt.take() else {
            return;
        };
        let backend = doubt.backend;
        match self.round_trip(async |conn: &Conn| conn.end_backend(backend).await) {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                self.batches.in_doubt = Some(doubt);
                return;
            }
        }
        let writer = self.batches.writer.clone();
        let Ok(last) = self.round_trip(async |conn: &Conn| conn.last_batch(&writer).await) else {
            self.batches.in_doubt = Some(doubt);
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
                    let admission = Admission::in_period(epoch, true);
                    state.unsent.insert(0, Event::Release { admission });
                }
            }
        }
    }
}
