//! The thread that carries each replicated key's log to its shared copy and the copy back,
//! through a [`SharedCopies`]: one read-modify-write of the copy per key and turn.

use std::{
    cell::Cell,
    collections::HashMap,
    ops::Deref,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Condvar, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use resilient_circuit::{
    state::{BreakerState, Transition},
    store::Control,
    time::Instant,
};

use super::{
    copy::{Batch, FleetCopy},
    options::CopiesOptions,
    seam::SharedCopies,
};
use crate::{
    BreakerKey, StoreUnavailable,
    store::{
        OnOutage,
        registry::Replication,
        replica::{
            Event, MAX_LOGGED, Replicator, StateAddress, WorkerHook, on_local_timeline,
            reservation_ttl,
        },
        report,
        shared_state::SharedState,
        window::SharedWindow,
    },
    sync::lock,
};

/// The replication of a store's keys through a [`SharedCopies`], as the store's registry holds
/// it: when the store goes, what its keys have not sent yet is sent, once.
pub(crate) struct CopiesFleet {
    pub(crate) driver: Arc<Driver>,
}

/// What every replicated key's state reports to, and the thread works for.
pub(crate) struct Driver {
    copies: Box<dyn SharedCopies>,
    options: CopiesOptions,
    /// This store's name in the copies' writer records: random, so two stores never share it.
    writer: u64,
    /// Reads the store's clock (the one its breakers read).
    now: Box<dyn Fn() -> Instant + Send + Sync>,
    keys: Mutex<HashMap<BreakerKey, Arc<Tracked>>>,
    /// The last batch number given, for every key: a key forgotten and made again goes on
    /// from here, above what its copy holds of this writer.
    last_batch: AtomicU64,
    /// The store is gone: the last breaker of a key sends what is pending as it goes.
    store_gone: AtomicBool,
    woken: Mutex<bool>,
    wake: Condvar,
    /// The copies could not be reached at the last attempt (one warning per outage).
    in_outage: AtomicBool,
}

/// A replicated key as the driver follows it.
struct Tracked {
    key: BreakerKey,
    shared: Weak<SharedState>,
    exchange: Mutex<Exchange>,
}

/// What goes to a key's copy: batches taken from its log and not yet known to be in it.
#[derive(Default)]
struct Exchange {
    unsent: Vec<Batch>,
    /// When (store clock) the copy was last read.
    synced_at: Option<Instant>,
    warned_malformed: bool,
}

thread_local! {
    /// This thread is inside a [`SharedCopies::update`]: the implementer's code must not sync
    /// a key again (the key's exchange is locked), so what it asks of the replication waits.
    static IN_UPDATE: Cell<bool> = const { Cell::new(false) };
}

/// A key's state held for a sync: counted among the replicator's references, so that the
/// registry does not take the sync for a breaker holding the key (see `is_held`).
struct Held(Arc<SharedState>);

impl Held {
    fn of(shared: &Weak<SharedState>) -> Option<Held> {
        let shared = shared.upgrade()?;
        shared.replicator_refs.fetch_add(1, Ordering::AcqRel);
        Some(Held(shared))
    }
}

impl Deref for Held {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The count before the reference, so that a reading between the two errs towards
        // "held".
        self.0.replicator_refs.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A transition a sync observed, to announce once the key's locks are released, and the hooks
/// to run on it.
type Announced = (Option<Transition>, Vec<WorkerHook>);

/// The fleet's timeline: nanoseconds since the Unix epoch, by this host's clock.
fn fleet_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Maps instants between the store's clock and the fleet's timeline, as read at one moment.
#[derive(Clone, Copy)]
struct Timeline {
    offset: i128,
}

impl Timeline {
    fn new(local: Instant, fleet: u64) -> Self {
        Timeline {
            offset: i128::from(fleet) - i128::from(local.as_nanos()),
        }
    }

    fn fleet_of(self, local: Instant) -> Instant {
        Instant::from_nanos(clamp(i128::from(local.as_nanos()) + self.offset))
    }

    fn local_of(self, fleet: Instant) -> Instant {
        Instant::from_nanos(clamp(i128::from(fleet.as_nanos()) - self.offset))
    }
}

fn clamp(nanos: i128) -> u64 {
    u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)
}

impl Driver {
    pub(crate) fn new(
        copies: Box<dyn SharedCopies>,
        options: CopiesOptions,
        now: Box<dyn Fn() -> Instant + Send + Sync>,
    ) -> Self {
        let writer = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), fleet_now()),
        );
        Driver {
            copies,
            options,
            writer,
            now,
            keys: Mutex::new(HashMap::new()),
            last_batch: AtomicU64::new(0),
            store_gone: AtomicBool::new(false),
            woken: Mutex::new(false),
            wake: Condvar::new(),
            in_outage: AtomicBool::new(false),
        }
    }

    /// Starts the thread: it runs while the driver lives (held by the store and by every
    /// breaker of a replicated key).
    pub(crate) fn spawn(driver: &Arc<Driver>) {
        let weak = Arc::downgrade(driver);
        let interval = driver.options.sync_interval;
        // Without the thread nothing replicates; the store still serves from its own copies,
        // as during an outage, and says so.
        let spawned = std::thread::Builder::new()
            .name("rc-replicator".into())
            .spawn(move || {
                while let Some(driver) = weak.upgrade() {
                    driver.turn(interval);
                }
            });
        if let Err(error) = spawned {
            report::store_warning(&format!(
                "shared copies: the replication thread could not start ({error}); breakers keep to this process"
            ));
        }
    }

    /// Waits to be woken or for `interval`, then syncs every key that needs it.
    fn turn(&self, interval: Duration) {
        {
            let mut woken = lock(&self.woken);
            if !*woken {
                woken = self
                    .wake
                    .wait_timeout(woken, interval)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            *woken = false;
        }
        let keys: Vec<Arc<Tracked>> = {
            let mut keys = lock(&self.keys);
            keys.retain(|_, tracked| tracked.shared.strong_count() > 0);
            keys.values().cloned().collect()
        };
        for tracked in keys {
            if self.is_due(&tracked) {
                let _ = self.sync(&tracked, None, false);
            }
        }
    }

    /// Whether `tracked` has something to send, wants a probe, or was read `max_staleness` ago.
    fn is_due(&self, tracked: &Tracked) -> bool {
        let Some(shared) = Held::of(&tracked.shared) else {
            return false;
        };
        let waiting = shared
            .replicate(|_, replica| replica.has_pending() || replica.wants_probe())
            .unwrap_or(false);
        let exchange = lock(&tracked.exchange);
        let stale = exchange.synced_at.is_none_or(|at| {
            (self.now)().saturating_duration_since(at) >= self.options.max_staleness
        });
        waiting || stale || !exchange.unsent.is_empty()
    }

    /// Follows a key just made, and reads its copy before its first breaker is handed out.
    pub(crate) fn track(&self, key: &BreakerKey, shared: &Arc<SharedState>) {
        if self.options.on_outage == OnOutage::FailClosed {
            let wait = self.options.sync_interval;
            shared.replicate(|_, replica| replica.fail_closed(wait));
        }
        let tracked = Arc::new(Tracked {
            key: key.clone(),
            shared: Arc::downgrade(shared),
            exchange: Mutex::new(Exchange::default()),
        });
        lock(&self.keys).insert(key.clone(), Arc::clone(&tracked));
        let _ = self.sync(&tracked, None, true);
    }

    /// Sends every key's log now (the store is going).
    pub(crate) fn sync_all(&self) {
        let keys: Vec<Arc<Tracked>> = lock(&self.keys).values().cloned().collect();
        for tracked in keys {
            let _ = self.sync(&tracked, None, false);
        }
    }

    /// One read-modify-write of `tracked`'s copy: what its log holds goes in (and `manual`
    /// after it), a probe slot is taken if a caller wants one, and the copy that results
    /// becomes the in-process copy (its first, with no transition announced, if `load`).
    fn sync(
        &self,
        tracked: &Tracked,
        manual: Option<Control>,
        load: bool,
    ) -> Result<(), StoreUnavailable> {
        let Some(shared) = Held::of(&tracked.shared) else {
            return Ok(());
        };
        let mut exchange = lock(&tracked.exchange);
        let local_now = (self.now)();
        let fleet = fleet_now();
        let timeline = Timeline::new(local_now, fleet);
        let config = shared.config;
        let ttl = reservation_ttl(&config);
        let taken = shared.replicate(|state, replica| {
            let (mut events, _) = replica.take();
            // Slots no caller used go back, here as in the copy.
            for admission in replica.expire_reservations(local_now, ttl) {
                state.release(admission);
                events.push(Event::Release { admission });
            }
            replica.set_sending(true);
            (events, replica.take_probe_wish())
        });
        let Some((events, wants_probe)) = taken else {
            return Ok(());
        };
        if !events.is_empty() {
            let number = self.last_batch.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.unsent.push(Batch { number, events });
            keep_bounded(&mut exchange.unsent);
        }
        let lease = u64::try_from(self.options.probe_lease.as_nanos()).unwrap_or(u64::MAX);
        let mut result: Option<(BreakerState<SharedWindow>, bool)> = None;
        let mut malformed = None;
        let unsent = &exchange.unsent;
        let key = tracked.key.to_string();
        let mut change = |stored: Option<&[u8]>| {
            (result, malformed) = (None, None);
            let mut copy = match stored.map(FleetCopy::decode) {
                None => FleetCopy::new(),
                Some(Ok(copy)) => copy,
                // Not a copy this library can read: left as it is.
                Some(Err(error)) => {
                    malformed = Some(error);
                    return stored.unwrap_or_default().to_vec();
                }
            };
            copy.apply(self.writer, unsent, &config, fleet, lease, &|at| {
                timeline.fleet_of(at)
            });
            if let Some(control) = manual {
                let _ = control.apply(&mut copy.state, &config, &Instant::from_nanos(fleet));
            }
            let probe = wants_probe && copy.take_probe(&config, fleet, lease);
            result = Some((copy.state, probe));
            copy.encode()
        };
        // A panic in the implementer's store is an error like any other, not the end of the
        // thread (or of the caller making a breaker).
        IN_UPDATE.set(true);
        let written = catch_unwind(AssertUnwindSafe(|| self.copies.update(&key, &mut change)))
            .unwrap_or_else(|_| Err("the shared copies' update panicked".into()));
        IN_UPDATE.set(false);
        match (written, result) {
            (Ok(()), Some((state, probe))) => {
                exchange.unsent.clear();
                exchange.synced_at = Some(local_now);
                self.in_outage.store(false, Ordering::Relaxed);
                // Adopted before another sync of the key may write a newer copy: the key's
                // exchange is held until the in-process copy is this one.
                let state = on_local_timeline(state, |until| timeline.local_of(until));
                let announced = self.adopt(&shared, state, probe, load);
                drop(exchange);
                if let Some((transition, hooks)) = announced {
                    report::announce(&tracked.key, &shared.counters, transition, &hooks);
                }
                Ok(())
            }
            (written, _) => {
                if let Some(error) = malformed
                    && !std::mem::replace(&mut exchange.warned_malformed, true)
                {
                    report::store_warning(&format!(
                        "shared copies: breaker {}: the stored copy cannot be read ({error}); it is left as it is and this process keeps to its own copy",
                        tracked.key
                    ));
                }
                if let Err(error) = written
                    && !self.in_outage.swap(true, Ordering::Relaxed)
                {
                    report::store_warning(&format!(
                        "shared copies: unreachable ({error}); breakers keep to this process until they are back"
                    ));
                }
                let announced = self.keep(&shared, wants_probe);
                drop(exchange);
                if let Some((transition, hooks)) = announced {
                    report::announce(&tracked.key, &shared.counters, transition, &hooks);
                }
                Err(StoreUnavailable {
                    retry_after: self.options.sync_interval,
                })
            }
        }
    }

    /// Makes `state` (the copy, on the store's timeline) the in-process copy, with a probe slot
    /// for this process if one was taken: the transition to announce, and the hooks.
    fn adopt(
        &self,
        shared: &SharedState,
        state: BreakerState<SharedWindow>,
        probe: bool,
        load: bool,
    ) -> Option<Announced> {
        let now = (self.now)();
        if load {
            shared.counters.state(state.status());
        }
        shared.replicate(|copy, replica| {
            if load {
                replica.loaded(state.status());
            }
            replica.set_sending(false);
            let transition = replica.adopt(copy, state, &[], u16::from(probe), &now);
            (transition, replica.hooks())
        })
    }

    /// While the copy is out of reach: the in-process copy stands in for it (a wanted probe is
    /// admitted here, failing open), or every call is refused (failing closed). The transition
    /// to announce, and the hooks.
    fn keep(&self, shared: &SharedState, wants_probe: bool) -> Option<Announced> {
        let config = shared.config;
        let now = (self.now)();
        let fail_open = self.options.on_outage == OnOutage::FailOpen;
        let retry_after = self.options.sync_interval;
        shared.replicate(|copy, replica| {
            if fail_open {
                if wants_probe
                    && let Ok((admission, _)) = copy.admit(&config, &now)
                    && admission.is_probe()
                {
                    replica.reserve(1, copy.epoch(), now);
                }
            } else {
                replica.fail_closed(retry_after);
            }
            (replica.announce(copy.status()), replica.hooks())
        })
    }
}

impl Replicator for Driver {
    fn wake(&self) {
        *lock(&self.woken) = true;
        self.wake.notify_one();
    }

    /// Applies `manual` to the copy on the caller's thread, after what the key's log holds;
    /// refused from inside an update (the implementer's code).
    fn manual(&self, key: &BreakerKey, manual: Control) -> Result<(), StoreUnavailable> {
        let tracked = if IN_UPDATE.get() {
            None
        } else {
            lock(&self.keys).get(key).cloned()
        };
        match tracked {
            Some(tracked) => self.sync(&tracked, Some(manual), false),
            None => Err(StoreUnavailable {
                retry_after: self.options.sync_interval,
            }),
        }
    }

    /// The store is gone: what the key's breakers have logged goes as each is dropped (the
    /// last may be the process exiting). From inside an update, at the thread's next turn.
    fn handle_dropped(&self, state: StateAddress, _references: usize) {
        if !self.store_gone.load(Ordering::Acquire) {
            return;
        }
        if IN_UPDATE.get() {
            self.wake();
            return;
        }
        let tracked = lock(&self.keys)
            .values()
            .find(|tracked| StateAddress::of(tracked.shared.as_ptr()) == state)
            .cloned();
        if let Some(tracked) = tracked {
            let _ = self.sync(&tracked, None, false);
        }
    }
}

impl Replication for CopiesFleet {
    fn replicator(&self) -> Arc<dyn Replicator> {
        self.driver.clone()
    }

    fn made(&self, key: &BreakerKey, shared: &Arc<SharedState>) {
        self.driver.track(key, shared);
    }
}

impl Drop for CopiesFleet {
    fn drop(&mut self) {
        self.driver.store_gone.store(true, Ordering::Release);
        self.driver.sync_all();
    }
}

/// Keeps at most [`MAX_LOGGED`] changes unsent: past that the oldest go.
fn keep_bounded(unsent: &mut Vec<Batch>) {
    let mut total: usize = unsent.iter().map(|batch| batch.events.len()).sum();
    while total > MAX_LOGGED
        && let Some(oldest) = unsent.first_mut()
    {
        let excess = (total - MAX_LOGGED).min(oldest.events.len());
        oldest.events.drain(..excess);
        total -= excess;
        if oldest.events.is_empty() {
            unsent.remove(0);
        }
    }
}
