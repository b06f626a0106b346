//! CLOSED successes counted in a batch per thread, so the healthy path writes only memory its
//! own thread owns.
//!
//! Two thread-locals: the pending count has no destructor, so the healthy path reads it with no
//! check of whether the thread is exiting; the counter it goes to has one, which hands the
//! pending count over when the thread exits, and is reached only when a batch changes hands.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
};

use metrics::Counter;

use super::key::KeyCounters;

/// The CLOSED successes a thread holds back, at most, before it hands them to the recorder.
pub const BATCH: u64 = 64;

/// Ids of keys' counters; 0 is no key's, the empty batch's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// One thread's successes not yet handed over: of which key, how many.
struct Pending {
    key: Cell<u64>,
    count: Cell<u64>,
}

/// Where this thread's pending successes go: the pending key's success counter.
struct Recipient {
    counter: Cell<Counter>,
}

thread_local! {
    static PENDING: Pending = const { Pending { key: Cell::new(0), count: Cell::new(0) } };
    static RECIPIENT: Recipient = const { Recipient { counter: Cell::new(Counter::noop()) } };
}

/// Counts one success of `counters`' key in this thread's batch.
#[inline]
pub(super) fn count(counters: &KeyCounters) {
    // `PENDING` has no destructor: with native thread-locals it is there for as long as the
    // thread runs, and this check compiles away.
    let batched = PENDING.try_with(|pending| {
        if pending.key.get() == counters.id {
            let count = pending.count.get() + 1;
            if count < BATCH {
                pending.count.set(count);
                return;
            }
        }
        pending.hand_over(counters);
    });
    if batched.is_err() {
        counters.successes.increment(1);
    }
}

impl Pending {
    /// A full batch, or a success of another key: hands over what is pending, then counts the
    /// success in a batch of its key.
    #[cold]
    #[inline(never)]
    fn hand_over(&self, counters: &KeyCounters) {
        if self.key.get() == counters.id {
            self.count.set(0);
            counters.successes.increment(BATCH);
            return;
        }
        let previous = self.take();
        let adopted =
            RECIPIENT.try_with(|recipient| recipient.counter.replace(counters.successes.clone()));
        match adopted {
            Ok(previous_counter) => {
                // The batch is this key's before the recorder runs, so a recorder that itself
                // counts a success finds the batch consistent.
                self.key.set(counters.id);
                self.count.set(1);
                if previous > 0 {
                    previous_counter.increment(previous);
                }
            }
            // The thread is exiting and its recipient is gone (it took what was pending):
            // count directly, with no batch.
            Err(_) => counters.successes.increment(1),
        }
    }

    /// What is pending, leaving the batch empty and of no key.
    fn take(&self) -> u64 {
        self.key.set(0);
        self.count.replace(0)
    }
}

impl Drop for Recipient {
    /// The thread is exiting: hands over what is pending, and leaves the batch of no key, so
    /// successes counted later in the exit count directly.
    fn drop(&mut self) {
        let _ = PENDING.try_with(|pending| {
            let count = pending.take();
            if count > 0 {
                self.counter.get_mut().increment(count);
            }
        });
    }
}

/// Hands this thread's batched CLOSED successes to the recorder now.
///
/// Each thread holds back at most [`BATCH`] successes of one key, and hands them over when the
/// batch is full, when it counts a success of another key, and when it exits. Call this where
/// a count must be exact at once: before rendering a scrape from the thread that made the
/// calls, or in a test.
///
/// ```
/// resilient_circuit_std::metrics::flush();
/// ```
pub fn flush() {
    let _ = PENDING.try_with(|pending| {
        let count = pending.take();
        if count > 0 {
            let _ = RECIPIENT.try_with(|recipient| {
                let counter = recipient.counter.replace(Counter::noop());
                counter.increment(count);
            });
        }
    });
}
