//! CLOSED successes counted in a batch per thread, so the healthy path writes only memory its
//! own thread writes, and handed to the recorder within [`FLUSH_INTERVAL`] whatever the thread
//! does next.
//!
//! Each thread that counts a success owns a [`Slot`]: the key of its batch and a running count,
//! which only the owner writes. A background thread (the flusher) reads every slot each
//! [`FLUSH_INTERVAL`] and hands over what it has not handed yet; the owner hands over the rest
//! when it switches keys or exits. Slots live for the program and are reused by later threads,
//! so their number is the most threads that ever counted at once.
//!
//! The healthy path reads the slot through a thread-local with no destructor (no check of
//! whether the thread is exiting); a second thread-local, reached only when a thread takes or
//! gives back its slot, has the destructor that gives it back.

use std::{
    cell::Cell,
    sync::{
        Mutex, Once, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use metrics::Counter;

/// How often the flusher hands every thread's batched successes to the recorder: a scrape sees
/// every CLOSED success counted more than this long ago (and the time the flusher takes to be
/// scheduled), however idle the thread that counted it is afterwards.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Ids of keys' counters; 0 is no key's, an empty slot's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A key's counter of successes, with the id that tells its batches from other keys'.
pub(super) struct BatchedCounter {
    id: u64,
    counter: Counter,
}

impl BatchedCounter {
    /// `counter`, counted in threads' batches under an id of its own.
    pub(super) fn new(counter: Counter) -> Self {
        BatchedCounter {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            counter,
        }
    }

    /// The counter, for a success counted at once.
    pub(super) fn counter(&self) -> &Counter {
        &self.counter
    }
}

/// One thread's batch, readable by the flusher. Aligned to its own cache lines, so that a
/// thread's count shares none with another thread's.
#[repr(align(128))]
struct Slot {
    /// The key whose successes `count` counts; written by the owner under `handing`.
    key: AtomicU64,
    /// Successes of `key` since it became the slot's key; written only by the owner.
    count: AtomicU64,
    /// Taken to hand over (by the owner or the flusher), never on the healthy path.
    handing: Mutex<Handing>,
    /// Whether a thread owns the slot.
    owned: AtomicBool,
}

/// Where a slot's successes go, and how many of them already went.
struct Handing {
    counter: Counter,
    handed: u64,
}

/// Every slot ever made: the flusher reads them all; a thread that needs one takes a free one.
static SLOTS: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());

/// Starts the flusher once.
static FLUSHER: Once = Once::new();
/// Whether the flusher runs: without it, successes are counted at once, not batched.
static FLUSHING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's slot, for the healthy path (no destructor).
    static SLOT: Cell<Option<&'static Slot>> = const { Cell::new(None) };
    /// This thread is handing a batch to the recorder, under that slot's lock: a success the
    /// recorder itself makes here is counted at once (the lock may be its own slot's).
    static HANDING: Cell<bool> = const { Cell::new(false) };
    /// This thread's slot, given back when the thread exits.
    static OWNER: Owner = const { Owner(Cell::new(None)) };
}

/// Gives the thread's slot back when the thread exits.
struct Owner(Cell<Option<&'static Slot>>);

/// Counts one success of `successes`' key in this thread's batch.
#[inline]
pub(super) fn count(successes: &BatchedCounter) {
    // `SLOT` has no destructor: with native thread-locals it is there for as long as the thread
    // runs, and this check compiles away.
    let batched = SLOT.try_with(|slot| match slot.get() {
        Some(slot) if slot.key.load(Ordering::Relaxed) == successes.id => {
            // Only this thread writes `count`: a load and a store, no read-modify-write.
            let count = slot.count.load(Ordering::Relaxed);
            slot.count.store(count + 1, Ordering::Relaxed);
        }
        current => switch(current, successes),
    });
    if batched.is_err() {
        successes.counter.increment(1);
    }
}

/// A success of a key other than the batch's, or the thread's first: hands over what the slot
/// holds, then counts the success in a batch of its key (or at once, with no slot to be had).
#[cold]
#[inline(never)]
fn switch(current: Option<&'static Slot>, successes: &BatchedCounter) {
    if HANDING.try_with(Cell::get).unwrap_or(true) {
        successes.counter.increment(1);
        return;
    }
    let Some(slot) = current.or_else(take_slot) else {
        successes.counter.increment(1);
        return;
    };
    let mut handing = slot.lock();
    let delta = slot.count.load(Ordering::Relaxed) - handing.handed;
    let previous = std::mem::replace(&mut handing.counter, successes.counter.clone());
    handing.handed = 0;
    // The batch is the new key's before the recorder runs: a success the recorder makes here
    // finds it consistent.
    slot.count.store(1, Ordering::Relaxed);
    slot.key.store(successes.id, Ordering::Relaxed);
    deliver(&previous, delta);
}

/// A free slot (or a new one) for this thread, registered to be given back when it exits.
/// `None` when the thread is exiting or the flusher cannot run.
fn take_slot() -> Option<&'static Slot> {
    if !start_flusher() {
        return None;
    }
    OWNER
        .try_with(|owner| {
            let slot = {
                let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
                // Acquire: a freed slot's reset, made before it was freed, is seen.
                let free = slots
                    .iter()
                    .find(|slot| !slot.owned.load(Ordering::Acquire));
                let slot = match free {
                    Some(&free) => free,
                    None => {
                        let new: &'static Slot = Box::leak(Box::new(Slot {
                            key: AtomicU64::new(0),
                            count: AtomicU64::new(0),
                            handing: Mutex::new(Handing {
                                counter: Counter::noop(),
                                handed: 0,
                            }),
                            owned: AtomicBool::new(false),
                        }));
                        slots.push(new);
                        new
                    }
                };
                slot.owned.store(true, Ordering::Relaxed);
                slot
            };
            owner.0.set(Some(slot));
            SLOT.with(|cell| cell.set(Some(slot)));
            slot
        })
        .ok()
}

impl Drop for Owner {
    /// The thread is exiting: hands its batch over and frees its slot. Successes counted later
    /// in the exit are counted at once.
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let _ = SLOT.try_with(|cell| cell.set(None));
            {
                let mut handing = slot.lock();
                let delta = slot.count.load(Ordering::Relaxed) - handing.handed;
                let counter = std::mem::replace(&mut handing.counter, Counter::noop());
                handing.handed = 0;
                slot.count.store(0, Ordering::Relaxed);
                slot.key.store(0, Ordering::Relaxed);
                deliver(&counter, delta);
            }
            // Release: the reset above is seen by the thread that takes the slot next.
            slot.owned.store(false, Ordering::Release);
        }
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Handing> {
        self.handing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands over what the owner counted and nobody handed yet. The owner may go on counting
    /// meanwhile: what this misses, the next hand-over takes.
    fn hand_over(&self) {
        let mut handing = self.lock();
        let count = self.count.load(Ordering::Relaxed);
        let delta = count - handing.handed;
        handing.handed = count;
        deliver(&handing.counter, delta);
    }
}

/// Gives `delta` successes to the recorder, with the slot's lock held: a hand-over that
/// returns has been counted, so [`flush`] is exact at once whoever else is handing over.
fn deliver(counter: &Counter, delta: u64) {
    if delta == 0 {
        return;
    }
    let _ = HANDING.try_with(|handing| handing.set(true));
    counter.increment(delta);
    let _ = HANDING.try_with(|handing| handing.set(false));
}

/// Starts the flusher if it is not running; whether it runs.
fn start_flusher() -> bool {
    FLUSHER.call_once(|| {
        let started = thread::Builder::new()
            // Its own first 15 bytes (what `top` and `/proc` show), apart from the store worker's.
            .name("rc-metrics-flusher".to_owned())
            .spawn(|| {
                loop {
                    thread::sleep(FLUSH_INTERVAL);
                    // A recorder that panics must not end the flusher.
                    let _ = std::panic::catch_unwind(flush);
                }
            });
        FLUSHING.store(started.is_ok(), Ordering::Relaxed);
    });
    FLUSHING.load(Ordering::Relaxed)
}

/// Hands every thread's batched CLOSED successes to the recorder now.
///
/// A background thread does this every [`FLUSH_INTERVAL`]; a thread also hands its batch over
/// when it counts a success of another key and when it exits. Call this where a count must be
/// exact at once: before rendering a scrape, or in a test.
///
/// ```
/// resilient_circuit_std::metrics::flush();
/// ```
pub fn flush() {
    // A copy of the list, so that the list is not locked while a recorder runs (a recorder
    // that makes a call may need a slot of its own).
    let slots: Vec<&'static Slot> = SLOTS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for slot in slots {
        slot.hand_over();
    }
}
