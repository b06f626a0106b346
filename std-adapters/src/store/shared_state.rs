//! One key's state shared by threads: a mutex for changes, atomics for lock-free readers.

use resilient_circuit::{
    BreakerConfig, CircuitState, state::BreakerState, store::FastPath, time::Instant,
};

use super::{
    counters::KeyCounters,
    replica::{Event, Replica, Replicator},
    window::SharedWindow,
};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering, lock};

/// One key's state: the whole value behind a mutex, plus what lock-free readers need.
///
/// Every change happens under the mutex and ends by publishing a [`FastPath`] digest (and the
/// OPEN deadline) in atomics. Readers admit CLOSED calls, recognise successes that change
/// nothing, and reject calls before an OPEN deadline from those atomics alone. Other CLOSED
/// successes are counted in an atomic tagged with their period and folded into the window at
/// the start of the next locked change (they never trip). Each change is therefore applied
/// exactly once, in one order, and each transition is seen (and reported) by exactly one
/// caller.
pub(crate) struct SharedState {
    state: Mutex<Locked>,
    /// The configuration the key was made with: every handle of the key has it.
    pub(crate) config: BreakerConfig,
    /// Set for a key whose state is replicated (the PostgreSQL store).
    replicator: Option<Arc<dyn Replicator>>,
    digest: AtomicU64,
    open_until: AtomicU64,
    /// CLOSED successes counted without the lock and not yet folded into the window: the CLOSED
    /// period they belong to (high 32 bits) and how many (low 32 bits).
    pending_successes: AtomicU64,
    /// Registry bookkeeping: when a handle for this key was last handed out.
    pub(crate) last_handed_out: AtomicU64,
    /// References the replicator holds (0 or 1): they hold the key for no breaker.
    pub(crate) replicator_refs: AtomicUsize,
    /// What the key's calls and transitions count (feature `metrics`).
    pub(crate) counters: KeyCounters,
}

/// What the lock guards: the state, and for a replicated key what replication needs.
struct Locked {
    state: BreakerState<SharedWindow>,
    replica: Option<Replica>,
}

impl SharedState {
    /// A key made with `config`, counting into `counters`.
    pub(crate) fn new(tick: u64, config: BreakerConfig, counters: KeyCounters) -> Self {
        Self::with_replica(tick, config, counters, None)
    }

    /// A key whose state `replicator` replicates; `config` is the configuration it applies.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn replicated(
        tick: u64,
        config: BreakerConfig,
        counters: KeyCounters,
        replicator: Arc<dyn Replicator>,
    ) -> Self {
        Self::with_replica(
            tick,
            config,
            counters,
            Some((Replica::new(config), replicator)),
        )
    }

    fn with_replica(
        tick: u64,
        config: BreakerConfig,
        counters: KeyCounters,
        replica: Option<(Replica, Arc<dyn Replicator>)>,
    ) -> Self {
        let state = BreakerState::new();
        let (replica, replicator) = replica.unzip();
        let digest = match &replica {
            Some(replica) => replica.digest(&state),
            None => FastPath::of(&state, &config),
        };
        SharedState {
            digest: AtomicU64::new(digest.to_bits()),
            state: Mutex::new(Locked { state, replica }),
            config,
            replicator,
            open_until: AtomicU64::new(0),
            pending_successes: AtomicU64::new(0),
            last_handed_out: AtomicU64::new(tick),
            replicator_refs: AtomicUsize::new(0),
            counters,
        }
    }

    #[inline]
    pub(crate) fn digest(&self) -> FastPath {
        FastPath::from_bits(self.digest.load(Ordering::Acquire))
    }

    /// The OPEN deadline last published; meaningful after a digest that says OPEN.
    #[inline]
    pub(crate) fn open_until(&self) -> Instant {
        Instant::from_nanos(self.open_until.load(Ordering::Relaxed))
    }

    /// The replicator sharing this key beyond the process, if any.
    pub(crate) fn replicator(&self) -> Option<&dyn Replicator> {
        self.replicator.as_deref()
    }

    /// Whether a replicator shares this key beyond the process.
    pub(crate) fn is_replicated(&self) -> bool {
        self.replicator.is_some()
    }

    /// Tells the replicator that something urgent was logged.
    pub(crate) fn wake(&self) {
        if let Some(replicator) = &self.replicator {
            replicator.wake();
        }
    }

    /// Runs `change` under the lock with the replica (for the replicator), then publishes.
    pub(crate) fn replicate<R>(
        &self,
        change: impl FnOnce(&mut BreakerState<SharedWindow>, &mut Replica) -> R,
    ) -> Option<R> {
        self.replicator.as_ref()?;
        Some(self.update(|state, replica| {
            change(state, replica.expect("a replicated key has a replica"))
        }))
    }

    /// Runs `change` under the lock, with the key's configuration, then publishes.
    pub(crate) fn update<R>(
        &self,
        change: impl FnOnce(&mut BreakerState<SharedWindow>, Option<&mut Replica>) -> R,
    ) -> R {
        let config = &self.config;
        let mut locked = lock(&self.state);
        let Locked { state, replica } = &mut *locked;
        let epoch = state.epoch();
        // First the successes counted without the lock: they happened before this change.
        let pending = self
            .pending_successes
            .swap(u64::from(epoch) << 32, Ordering::AcqRel);
        let (counted_in, counted) = ((pending >> 32) as u32, pending as u32);
        state.record_closed_successes(config, counted_in, counted);
        if let Some(replica) = replica.as_mut()
            && counted > 0
        {
            replica.push(Event::Successes {
                epoch: counted_in,
                count: counted,
            });
        }
        let result = change(state, replica.as_mut());
        let new_period = state.epoch() != epoch;
        if new_period {
            // Successes still being counted for the old period are stale, as they would be
            // under the lock.
            self.pending_successes
                .store(u64::from(state.epoch()) << 32, Ordering::Release);
        }
        if let Some(until) = state.open_until() {
            self.open_until.store(until.as_nanos(), Ordering::Relaxed);
        }
        let digest = match replica {
            Some(replica) => replica.digest(state),
            None => FastPath::of(state, config),
        };
        // Release: a reader that sees this digest also sees the deadline stored above.
        self.digest.store(digest.to_bits(), Ordering::Release);
        result
    }

    /// The state, with every success counted so far folded in.
    pub(crate) fn snapshot(&self) -> BreakerState<SharedWindow> {
        self.update(|state, _| *state)
    }

    /// Counts a success of a call admitted in CLOSED period `epoch` without taking the lock;
    /// how many are now pending, or `None` if that period is over.
    #[inline]
    pub(crate) fn count_success(&self, epoch: u32) -> Option<u32> {
        let mut current = self.pending_successes.load(Ordering::Relaxed);
        loop {
            if (current >> 32) as u32 != epoch {
                return None;
            }
            match self.pending_successes.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(current as u32 + 1),
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether the key has nothing to keep: not a live OPEN by `now` (a reading of the store's
    /// clock, which its breakers read), and no change that has yet to reach the shared copy (in
    /// the log, or with the replicator).
    fn has_nothing_to_keep(&self, now: Instant) -> bool {
        let live_open = self.digest().status() == CircuitState::Open && now < self.open_until();
        !live_open
            && lock(&self.state)
                .replica
                .as_ref()
                .is_none_or(|replica| !replica.has_pending() && !replica.is_sending())
    }
}

/// Whether the registry may forget `shared` (to make room, to remake it with another
/// configuration, or because its handles are gone): nothing holds it, and it has nothing to
/// keep.
pub(crate) fn is_forgettable(shared: &Arc<SharedState>, now: Instant) -> bool {
    !is_held(shared) && shared.has_nothing_to_keep(now)
}

/// Whether a breaker handle (or a caller about to make one) holds `shared`: a reference beyond
/// the registry's and the replicator's.
pub(crate) fn is_held(shared: &Arc<SharedState>) -> bool {
    // The count first: a replicator letting go gives up its reference count before its
    // reference, so a reading between the two errs towards "held".
    let references = Arc::strong_count(shared);
    references.saturating_sub(shared.replicator_refs.load(Ordering::Acquire)) > 1
}
