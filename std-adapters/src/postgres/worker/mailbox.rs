//! How the store and its breakers reach the worker: requests with a reply channel, a wake-up,
//! and what the worker publishes (whether it is connected, how many statements it sent).

use std::{
    cell::Cell,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
        mpsc::{self, SyncSender},
    },
    time::Duration,
};

use resilient_circuit::store::Control;
use tokio::sync::{
    Notify,
    mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
};

use crate::{
    BreakerKey, StoreUnavailable,
    store::{
        replica::{Replicator, StateAddress},
        shared_state::SharedState,
    },
};

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is a store's worker (a hook runs there).
fn on_worker_thread() -> bool {
    ON_WORKER.with(Cell::get)
}

/// Marks this thread as a store's worker: a request made from it (by a hook) is refused, as
/// the worker would wait for itself.
pub(super) fn mark_worker_thread() {
    ON_WORKER.with(|on| on.set(true));
}

/// What the store and its breakers ask of the worker.
pub(crate) enum Request {
    /// A key was just made: read its row; answer when it is in.
    Load {
        key: BreakerKey,
        shared: Arc<SharedState>,
        reply: SyncSender<()>,
    },
    /// Manual control of a key, on its row, unless its caller gave up first.
    Manual {
        key: BreakerKey,
        manual: Control,
        ticket: Arc<Ticket>,
        reply: SyncSender<Result<(), StoreUnavailable>>,
    },
    /// Send everything recorded so far; answer whether it is all in the rows (its caller waits
    /// until `until`, and the worker no longer).
    Flush {
        reply: SyncSender<bool>,
        until: std::time::Instant,
    },
    /// The store was dropped: flush (until `until`), and stop once no breaker handle is left.
    Shutdown {
        reply: SyncSender<bool>,
        until: std::time::Instant,
    },
}

/// A manual change's claim, taken by the worker or given up by its caller, whichever comes
/// first: a change its caller was told failed is never applied later. The worker starts no
/// statement for it past `deadline`, when its caller stops waiting for a change not yet begun.
pub(crate) struct Ticket {
    claim: AtomicU8,
    pub(super) deadline: std::time::Instant,
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

impl Ticket {
    fn new(deadline: std::time::Instant) -> Self {
        Ticket {
            claim: AtomicU8::new(QUEUED),
            deadline,
        }
    }

    /// The worker takes the change on: whether its caller still waits for it.
    pub(super) fn take(&self) -> bool {
        self.claim
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The caller gives up: whether the worker had yet to take the change on (it never will).
    fn give_up(&self) -> bool {
        self.claim
            .compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the caller's wait for a change not yet begun is over.
    pub(super) fn expired(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }
}

/// What breakers and the store share with the worker.
pub(crate) struct Mailbox {
    /// Wakes the worker for something urgent a breaker logged.
    pub(super) wake: Notify,
    requests: UnboundedSender<Request>,
    /// Statements the worker has sent.
    pub(super) round_trips: AtomicU64,
    /// Changes of any key dropped before reaching its row (past the bound on what waits).
    pub(super) dropped_outcomes: AtomicU64,
    /// Whether the worker's connection is up.
    pub(super) connected: AtomicBool,
    pub(crate) round_trip_timeout: Duration,
    /// Cleared when the last clone of the store is dropped.
    store_alive: AtomicBool,
}

impl Mailbox {
    /// A mailbox, and the worker's end of it.
    pub(crate) fn new(round_trip_timeout: Duration) -> (Arc<Mailbox>, UnboundedReceiver<Request>) {
        let (requests, inbox) = unbounded_channel();
        let mailbox = Mailbox {
            wake: Notify::new(),
            requests,
            round_trips: AtomicU64::new(0),
            dropped_outcomes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            round_trip_timeout,
            store_alive: AtomicBool::new(true),
        };
        (Arc::new(mailbox), inbox)
    }

    /// How many statements the worker has sent.
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// How many changes were dropped before reaching their rows.
    pub(crate) fn dropped_outcomes(&self) -> u64 {
        self.dropped_outcomes.load(Ordering::Relaxed)
    }

    /// Whether the worker's connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether a clone of the store is alive (or its start still awaited).
    pub(super) fn store_alive(&self) -> bool {
        self.store_alive.load(Ordering::Acquire)
    }

    /// The last clone of the store is gone (or its start was given up on): the last breaker
    /// handle dropped flushes.
    pub(crate) fn store_dropped(&self) {
        self.store_alive.store(false, Ordering::Release);
    }

    /// Sends `request` (made with a reply channel) and waits up to `wait` for the answer. On
    /// the worker's own thread (a hook calling back into its store, or dropping the last clone
    /// of it) the request is queued for the worker's next turn and not waited for: waiting
    /// would be for itself.
    pub(crate) fn ask<T>(
        &self,
        wait: Duration,
        request: impl FnOnce(mpsc::SyncSender<T>) -> Request,
    ) -> Option<T> {
        if on_worker_thread() {
            let (reply, _) = mpsc::sync_channel(1);
            let _ = self.requests.send(request(reply));
            return None;
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests.send(request(reply)).ok()?;
        answer.recv_timeout(wait).ok()
    }

    /// The answer for a request that got none in time.
    pub(crate) fn unavailable(&self) -> StoreUnavailable {
        StoreUnavailable {
            retry_after: self.round_trip_timeout,
        }
    }
}

impl Replicator for Mailbox {
    fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits up to twice the round-trip timeout for the worker to take the change on; once it
    /// has, for its answer (the worker starts no statement for it past that wait, and each
    /// statement has the round-trip timeout).
    fn manual(&self, key: &BreakerKey, manual: Control) -> Result<(), StoreUnavailable> {
        if on_worker_thread() {
            return Err(self.unavailable());
        }
        let wait = self.round_trip_timeout * 2;
        let ticket = Arc::new(Ticket::new(std::time::Instant::now() + wait));
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request::Manual {
            key: key.clone(),
            manual,
            ticket: Arc::clone(&ticket),
            reply,
        };
        if self.requests.send(request).is_err() {
            return Err(self.unavailable());
        }
        if let Ok(answer) = answer.recv_timeout(wait) {
            return answer;
        }
        if ticket.give_up() {
            return Err(self.unavailable());
        }
        // Taken on: settling a lost reply may take a reconnection and two statements more.
        answer
            .recv_timeout(self.round_trip_timeout * 4 + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(self.unavailable()))
    }

    fn handle_dropped(&self, _: StateAddress, references: usize) {
        // The store is gone and this is the last handle (the worker holds the other
        // reference): send what is pending now, bounded, before the process may exit.
        if !self.store_alive.load(Ordering::Acquire) && references <= 2 {
            let wait = self.round_trip_timeout * 2;
            self.ask(wait, |reply| Request::Flush {
                reply,
                until: std::time::Instant::now() + wait,
            });
        }
    }
}
