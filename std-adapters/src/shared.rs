//! A breaker whose state is shared by threads: lock-free while CLOSED, exact always.

use std::fmt;

use resilient_circuit::{
    Breaker, BreakerConfig, CircuitState, RejectReason, Rejected, StoreUnavailable, TransitionHook,
    classify::{AllErrors, Verdict},
    hook::NoHook,
    state::{Admission, BreakerState, OutcomeWindow, Transition},
    store::{Control, FastPath},
    time::{Clock, Instant},
};

use crate::{
    BreakerKey,
    replica::{Event, Replica, Replicator, SharedHook},
    report,
    sync::{Arc, AtomicU64, Mutex, Ordering, lock},
    time::CoarseClock,
};

/// The largest window (a ratio's denominator) a shared breaker accepts.
pub const MAX_WINDOW: u16 = 1024;

/// The outcome window of a shared breaker state.
pub type SharedWindow = OutcomeWindow<1024, 32>;

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
    state: Mutex<Cell>,
    /// The configuration the key was made with: every handle of the key has it.
    pub(crate) config: BreakerConfig,
    /// Set for a key whose state is replicated (the PostgreSQL store).
    replicator: Option<Arc<dyn Replicator>>,
    digest: AtomicU64,
    open_until: AtomicU64,
    /// The OPEN deadline on the store's own timeline ([`CoarseClock`]), whatever clock the
    /// breaker that opened it reads: the store judges "live OPEN" by it.
    live_open_until: AtomicU64,
    /// CLOSED successes counted without the lock and not yet folded into the window: the CLOSED
    /// period they belong to (high 32 bits) and how many (low 32 bits).
    pending_successes: AtomicU64,
    /// Registry bookkeeping: when a handle for this key was last handed out.
    pub(crate) last_handed_out: AtomicU64,
}

/// What the lock guards: the state, and for a replicated key what replication needs.
struct Cell {
    state: BreakerState<SharedWindow>,
    replica: Option<Replica>,
}

impl SharedState {
    /// A key made with `config`.
    pub(crate) fn new(tick: u64, config: BreakerConfig) -> Self {
        Self::with_replica(tick, config, None)
    }

    /// A key whose state `replicator` replicates; `config` is the configuration it applies.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn replicated(
        tick: u64,
        config: BreakerConfig,
        replicator: Arc<dyn Replicator>,
    ) -> Self {
        Self::with_replica(tick, config, Some((Replica::new(config), replicator)))
    }

    fn with_replica(
        tick: u64,
        config: BreakerConfig,
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
            state: Mutex::new(Cell { state, replica }),
            config,
            replicator,
            open_until: AtomicU64::new(0),
            live_open_until: AtomicU64::new(0),
            pending_successes: AtomicU64::new(0),
            last_handed_out: AtomicU64::new(tick),
        }
    }

    #[inline]
    fn digest(&self) -> FastPath {
        FastPath::from_bits(self.digest.load(Ordering::Acquire))
    }

    /// The OPEN deadline last published; meaningful after a digest that says OPEN.
    #[inline]
    fn open_until(&self) -> Instant {
        Instant::from_nanos(self.open_until.load(Ordering::Relaxed))
    }

    /// Whether a replicator shares this key beyond the process.
    pub(crate) fn is_replicated(&self) -> bool {
        self.replicator.is_some()
    }

    /// Tells the replicator that something urgent was logged.
    fn wake(&self) {
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
    fn update<R>(
        &self,
        change: impl FnOnce(&mut BreakerState<SharedWindow>, Option<&mut Replica>) -> R,
    ) -> R {
        let config = &self.config;
        let mut cell = lock(&self.state);
        let Cell { state, replica } = &mut *cell;
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
            if new_period {
                // Just opened: the same cooldown, measured on the store's timeline.
                let live = CoarseClock.now().saturating_add(config.cooldown);
                self.live_open_until
                    .store(live.as_nanos(), Ordering::Relaxed);
            }
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
    fn count_success(&self, epoch: u32) -> Option<u32> {
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

    /// Whether the registry may forget this key: not a live OPEN by `now` (a [`CoarseClock`]
    /// reading), and nothing logged that the replicator has yet to take.
    pub(crate) fn is_evictable(&self, now: Instant) -> bool {
        let live_open = self.digest().status() == CircuitState::Open
            && now.as_nanos() < self.live_open_until.load(Ordering::Relaxed);
        !live_open
            && lock(&self.state)
                .replica
                .as_ref()
                .is_none_or(|replica| replica.pending.is_empty())
    }
}

/// A breaker on a shared state: `Send + Sync`, cheap to clone (clones share the state), and
/// free of locks and allocation on every CLOSED call.
///
/// Made by [`MemoryStore::breaker`](crate::MemoryStore::breaker); every breaker made with the
/// same [`BreakerKey`] shares one state and its configuration (a handle asking for another is
/// refused), whatever its own classifier and hook.
/// The protected-call methods (`call`, `call_async`, `try_acquire`) come from the [`Breaker`]
/// trait.
///
/// - CLOSED admission and a success into a full window of successes (a healthy upstream) read
///   two atomics and write nothing: threads calling one breaker do not contend. Any other CLOSED
///   success is counted with one atomic add and folded into the window by the next change made
///   under the lock (or once a window's worth has been counted): successes never trip.
/// - A rejection before the OPEN deadline reads the clock once and takes no lock.
/// - Every other change takes a short mutex (never held while the protected call runs): a
///   failure, a HALF_OPEN probe's outcome, a transition. So no
///   outcome is lost and every transition fires its hook exactly once, on the thread that made
///   it, after the state is stored and the lock released (hooks of transitions made on
///   different threads may therefore run in either order). A panic in the hook is caught and
///   reported; the breaker carries on.
///
/// ```
/// use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// let config = BreakerConfig::new().failure_limit(Ratio::new(2, 2)?).cooldown(Duration::from_secs(30));
/// let breaker = store.breaker(BreakerKey::resource("payments-api")?, config)?;
/// let other = store.breaker(BreakerKey::resource("payments-api")?, config)?;
///
/// std::thread::scope(|s| {
///     s.spawn(|| breaker.call(|| Err::<(), _>("timeout")));
///     s.spawn(|| other.call(|| Err::<(), _>("timeout")));
/// });
/// assert_eq!(breaker.status(), CircuitState::Open);
/// assert!(other.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedBreaker<C = CoarseClock, K = AllErrors, H = NoHook> {
    shared: KeyHandle,
    key: BreakerKey,
    config: BreakerConfig,
    clock: C,
    classifier: K,
    hook: std::sync::Arc<H>,
}

impl<C: Clone, K: Clone, H> Clone for SharedBreaker<C, K, H> {
    fn clone(&self) -> Self {
        SharedBreaker {
            shared: self.shared.clone(),
            key: self.key.clone(),
            config: self.config,
            clock: self.clock.clone(),
            classifier: self.classifier.clone(),
            hook: std::sync::Arc::clone(&self.hook),
        }
    }
}

/// A breaker handle's reference to its key's state: the last one dropped after its store
/// tells the replicator, which sends what is pending.
struct KeyHandle(Arc<SharedState>);

impl Clone for KeyHandle {
    fn clone(&self) -> Self {
        KeyHandle(Arc::clone(&self.0))
    }
}

impl std::ops::Deref for KeyHandle {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl Drop for KeyHandle {
    fn drop(&mut self) {
        if let Some(replicator) = &self.0.replicator {
            replicator.handle_dropped(Arc::strong_count(&self.0));
        }
    }
}

impl SharedBreaker {
    pub(crate) fn new(shared: Arc<SharedState>, key: BreakerKey, config: BreakerConfig) -> Self {
        SharedBreaker {
            shared: KeyHandle(shared),
            key,
            config,
            clock: CoarseClock,
            classifier: AllErrors,
            hook: std::sync::Arc::new(NoHook),
        }
    }
}

impl<K, H> SharedBreaker<CoarseClock, K, H> {
    /// Use another clock than [`CoarseClock`]: [`StdClock`](crate::time::StdClock) for full
    /// resolution, [`TokioClock`](crate::time::TokioClock) under a paused runtime, a fake in tests.
    /// Breakers sharing a key must read the same timeline.
    pub fn with_clock<C: Clock>(self, clock: C) -> SharedBreaker<C, K, H> {
        let SharedBreaker {
            shared,
            key,
            config,
            classifier,
            hook,
            ..
        } = self;
        SharedBreaker {
            shared,
            key,
            config,
            clock,
            classifier,
            hook,
        }
    }
}

impl<C, H> SharedBreaker<C, AllErrors, H> {
    /// Decide how errors count (the Python package's `should_handle`).
    pub fn should_handle<K>(self, classifier: K) -> SharedBreaker<C, K, H> {
        let SharedBreaker {
            shared,
            key,
            config,
            clock,
            hook,
            ..
        } = self;
        SharedBreaker {
            shared,
            key,
            config,
            clock,
            classifier,
            hook,
        }
    }
}

impl<C, K> SharedBreaker<C, K, NoHook> {
    /// Call `hook(old, new)` after every transition this handle makes; on a replicated key
    /// (PostgreSQL), after every transition of the shared state this process adopts, its own
    /// or a peer's, from the store's worker thread.
    pub fn on_status_change<H: TransitionHook + Send + Sync + 'static>(
        self,
        hook: H,
    ) -> SharedBreaker<C, K, H> {
        let SharedBreaker {
            shared,
            key,
            config,
            clock,
            classifier,
            ..
        } = self;
        let hook = std::sync::Arc::new(hook);
        let shared_hook: SharedHook = hook.clone();
        shared.replicate(|_, replica| replica.add_hook(std::sync::Arc::downgrade(&shared_hook)));
        SharedBreaker {
            shared,
            key,
            config,
            clock,
            classifier,
            hook,
        }
    }
}

impl<C: Clock, K, H: TransitionHook> SharedBreaker<C, K, H> {
    #[inline(never)]
    fn admit_when_not_closed(&self, digest: FastPath) -> Result<Admission, Rejected> {
        let mut now = None;
        if digest.status() == CircuitState::Open {
            let read = self.clock.now();
            let until = self.shared.open_until();
            if read < until {
                return Err(self.rejected(Rejected::new(
                    until.saturating_duration_since(read),
                    RejectReason::Open,
                )));
            }
            now = Some(read);
        }
        self.admit_with_lock(now)
    }

    /// Admission under the lock (HALF_OPEN, an OPEN whose deadline passed, a held digest): out
    /// of line, so that a rejection before the deadline stays a small function. `now` is a
    /// clock reading already taken, if any.
    #[inline(never)]
    fn admit_with_lock(&self, now: Option<Instant>) -> Result<Admission, Rejected> {
        // Read the clock at most once: reuse the reading taken above.
        let clock = now.map_or_else(
            || ClockOrReading::Clock(&self.clock),
            ClockOrReading::Reading,
        );
        let admitted = self.shared.update(|state, replica| match replica {
            None => state.admit(&self.config, &clock),
            Some(replica) => {
                let admitted = replica.admit(state, &self.config, &clock);
                Ok((admitted?, None))
            }
        });
        if admitted.is_err() || self.shared.is_replicated() {
            // A probe wanted, or a probe admitted in a reserved slot: the worker refills.
            self.shared.wake();
        }
        match admitted {
            Ok((admission, transition)) => {
                self.announce(transition);
                Ok(admission)
            }
            Err(rejected) => Err(self.rejected(rejected)),
        }
    }

    fn rejected(&self, rejected: Rejected) -> Rejected {
        report::rejection(&self.key, rejected.retry_after());
        rejected
    }

    #[inline(never)]
    fn record_with_lock(&self, admission: Admission, verdict: Verdict) {
        let (transition, urgent) = self.shared.update(|state, replica| {
            let transition = state.record(&self.config, admission, verdict, &self.clock);
            match replica {
                None => (transition, false),
                // The in-process copy predicts; the shared copy decides and announces.
                Some(replica) => {
                    replica.record(admission, verdict);
                    (None, replica.urgent)
                }
            }
        });
        if urgent {
            self.shared.wake();
        }
        self.announce(transition);
    }

    fn announce(&self, transition: Option<Transition>) {
        if let Some(Transition { from, to }) = transition {
            report::transition(&self.key, &*self.hook, from, to);
        }
    }

    /// The current state; reading never changes it.
    pub fn status(&self) -> CircuitState {
        self.shared.digest().status()
    }

    /// A copy of the current window: the outcomes, oldest first.
    pub fn execution_log(&self) -> SharedWindow {
        *self.shared.snapshot().window()
    }

    /// Consecutive failures recorded.
    pub fn failure_count(&self) -> u32 {
        self.shared.snapshot().failure_count()
    }

    /// A copy of the whole state.
    pub fn state(&self) -> BreakerState<SharedWindow> {
        self.shared.snapshot()
    }

    /// Opens the breaker for a full cooldown from now. On a replicated key, in every process:
    /// the store's worker changes the shared state, and this waits (bounded) for it.
    pub fn force_open(&self) -> Result<(), StoreUnavailable> {
        self.manual(Control::ForceOpen)
    }

    /// Closes the breaker with an empty window (nothing happens if it is CLOSED); on a
    /// replicated key, in every process.
    pub fn force_closed(&self) -> Result<(), StoreUnavailable> {
        self.manual(Control::ForceClosed)
    }

    /// Back to CLOSED with an empty window; calls in flight are not counted. On a replicated
    /// key, in every process.
    pub fn reset(&self) -> Result<(), StoreUnavailable> {
        self.manual(Control::Reset)
    }

    fn manual(&self, manual: Control) -> Result<(), StoreUnavailable> {
        if let Some(replicator) = &self.shared.replicator {
            return replicator.manual(&self.key, manual);
        }
        let transition = self
            .shared
            .update(|state, _| manual.apply(state, &self.config, &self.clock));
        self.announce(transition);
        Ok(())
    }

    /// The key whose state this breaker shares.
    pub fn key(&self) -> &BreakerKey {
        &self.key
    }

    /// This handle's configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }
}

/// A clock, or a reading already taken from it.
enum ClockOrReading<'a, C> {
    Clock(&'a C),
    Reading(Instant),
}

impl<C: Clock> Clock for ClockOrReading<'_, C> {
    fn now(&self) -> Instant {
        match self {
            ClockOrReading::Clock(clock) => clock.now(),
            ClockOrReading::Reading(now) => *now,
        }
    }
}

impl<C, K, H> fmt::Debug for SharedBreaker<C, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("key", &self.key)
            .field("config", &self.config)
            .field("state", &self.shared.snapshot())
            .finish_non_exhaustive()
    }
}

impl<C: Clock, K, H: TransitionHook> Breaker for SharedBreaker<C, K, H> {
    type Classifier = K;

    #[inline]
    fn admit(&self) -> Result<Admission, Rejected> {
        let digest = self.shared.digest();
        match digest.admit() {
            Some(admission) => Ok(admission),
            None => self.admit_when_not_closed(digest),
        }
    }

    #[inline]
    fn record(&self, admission: Admission, verdict: Verdict) {
        if verdict == Verdict::Success && !admission.is_probe() {
            if self
                .shared
                .digest()
                .success_changes_nothing(admission, &self.config)
            {
                return;
            }
            // A CLOSED success never trips: count it now, fold it into the window later.
            match self.shared.count_success(admission.epoch()) {
                Some(pending) if pending < u32::from(self.config.closed_window()) => return,
                Some(_) => {
                    // Enough to fill the window: fold them in, so the window can turn clean
                    // and later successes need no write at all.
                    self.shared.update(|_, _| ());
                    return;
                }
                None => {}
            }
        }
        self.record_with_lock(admission, verdict);
    }

    #[inline]
    fn release(&self, admission: Admission) {
        if admission.is_probe() {
            self.shared.update(|state, replica| {
                state.release(admission);
                if let Some(replica) = replica {
                    replica.push(Event::Release { admission });
                }
            });
            self.shared.wake();
        }
    }

    fn classifier(&self) -> &K {
        &self.classifier
    }
}
