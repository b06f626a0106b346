//! CLOSED successes counted in a batch per thread, so the healthy path writes only memory its
//! own thread owns.

use std::{
    cell::{Cell, RefCell},
    sync::atomic::{AtomicU64, Ordering},
};

use metrics::Counter;

use super::key::KeyCounters;

/// The CLOSED successes a thread holds back, at most, before it hands them to the recorder.
pub const BATCH: u64 = 64;

/// Ids of keys' counters; 0 is the empty batch's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// One thread's successes not yet handed over: how many, of which key.
struct Batch {
    key: Cell<u64>,
    pending: Cell<u64>,
    counter: RefCell<Counter>,
}

thread_local! {
    static THIS_THREAD: Batch = const {
        Batch { key: Cell::new(0), pending: Cell::new(0), counter: RefCell::new(Counter::noop()) }
    };
}

/// Counts one success of `counters`' key in this thread's batch.
#[inline]
pub(super) fn count(counters: &KeyCounters) {
    let counted = THIS_THREAD.try_with(|batch| {
        if batch.key.get() == counters.id {
            let pending = batch.pending.get() + 1;
            if pending < BATCH {
                batch.pending.set(pending);
                return;
            }
        }
        batch.hand_over(counters);
    });
    if counted.is_err() {
        // The thread is exiting and its batch is gone: count directly.
        counters.successes.increment(1);
    }
}

impl Batch {
    /// A full batch, or a success of another key: hands over what is pending, then counts the
    /// success in a batch of its key.
    #[cold]
    #[inline(never)]
    fn hand_over(&self, counters: &KeyCounters) {
        if self.key.get() == counters.id {
            self.pending.set(0);
            counters.successes.increment(BATCH);
            return;
        }
        self.flush();
        *self.counter.borrow_mut() = counters.successes.clone();
        self.key.set(counters.id);
        self.pending.set(1);
    }

    fn flush(&self) {
        let pending = self.pending.replace(0);
        if pending > 0 {
            self.counter.borrow().increment(pending);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
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
    let _ = THIS_THREAD.try_with(Batch::flush);
}
