//! A breaker whose state is shared by threads: lock-free while CLOSED, exact always.

use std::fmt;

use resilient_circuit::{
    Admission, AllErrors, Breaker, BreakerConfig, BreakerState, CircuitState, Clock, FastPath,
    Instant, NoHook, OutcomeWindow, RejectReason, Rejected, Transition, TransitionHook, Verdict,
};

use crate::{
    BreakerKey, CoarseClock, report,
    sync::{Arc, AtomicU64, Mutex, Ordering, lock},
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
    state: Mutex<BreakerState<SharedWindow>>,
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

impl SharedState {
    pub(crate) fn new(tick: u64) -> Self {
        let state = BreakerState::new();
        SharedState {
            digest: AtomicU64::new(FastPath::of(&state, &BreakerConfig::new()).to_bits()),
            state: Mutex::new(state),
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

    fn update<R>(
        &self,
        config: &BreakerConfig,
        change: impl FnOnce(&mut BreakerState<SharedWindow>) -> R,
    ) -> R {
        let mut state = lock(&self.state);
        let epoch = state.epoch();
        // First the successes counted without the lock: they happened before this change.
        let pending = self
            .pending_successes
            .swap(u64::from(epoch) << 32, Ordering::AcqRel);
        state.record_closed_successes(config, (pending >> 32) as u32, pending as u32);
        let result = change(&mut state);
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
                let live = CoarseClock.now().saturating_add(config.get_cooldown());
                self.live_open_until
                    .store(live.as_nanos(), Ordering::Relaxed);
            }
        }
        // Release: a reader that sees this digest also sees the deadline stored above.
        self.digest
            .store(FastPath::of(&state, config).to_bits(), Ordering::Release);
        result
    }

    /// The state, with every success counted so far folded in.
    pub(crate) fn snapshot(&self, config: &BreakerConfig) -> BreakerState<SharedWindow> {
        self.update(config, |state| *state)
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

    /// OPEN with its deadline still ahead of `now`, a [`CoarseClock`] reading.
    pub(crate) fn is_live_open(&self, now: Instant) -> bool {
        self.digest().status() == CircuitState::Open
            && now.as_nanos() < self.live_open_until.load(Ordering::Relaxed)
    }
}

/// A breaker on a shared state: `Send + Sync`, cheap to clone (clones share the state), and
/// free of locks and allocation on every CLOSED call.
///
/// Made by [`MemoryStore::breaker`](crate::MemoryStore::breaker); every breaker made with the
/// same [`BreakerKey`] shares one state, whatever its own configuration, classifier and hook.
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
/// - Handles of one key should share one configuration: each applies its own limits (window
///   sizes, probe cap, cooldown) to the shared state.
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
    shared: Arc<SharedState>,
    key: BreakerKey,
    config: BreakerConfig,
    clock: C,
    classifier: K,
    hook: H,
}

impl<C: Clone, K: Clone, H: Clone> Clone for SharedBreaker<C, K, H> {
    fn clone(&self) -> Self {
        SharedBreaker {
            shared: Arc::clone(&self.shared),
            key: self.key.clone(),
            config: self.config,
            clock: self.clock.clone(),
            classifier: self.classifier.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl SharedBreaker {
    pub(crate) fn new(shared: Arc<SharedState>, key: BreakerKey, config: BreakerConfig) -> Self {
        SharedBreaker {
            shared,
            key,
            config,
            clock: CoarseClock,
            classifier: AllErrors,
            hook: NoHook,
        }
    }
}

impl<K, H> SharedBreaker<CoarseClock, K, H> {
    /// Use another clock than [`CoarseClock`]: [`StdClock`](crate::StdClock) for full
    /// resolution, [`TokioClock`](crate::TokioClock) under a paused runtime, a fake in tests.
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
    /// Call `hook(old, new)` after every transition this handle makes.
    pub fn on_status_change<H: TransitionHook>(self, hook: H) -> SharedBreaker<C, K, H> {
        let SharedBreaker {
            shared,
            key,
            config,
            clock,
            classifier,
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
        // Read the clock at most once: reuse the reading taken above.
        let clock = now.map_or_else(
            || ClockOrReading::Clock(&self.clock),
            ClockOrReading::Reading,
        );
        let admitted = self
            .shared
            .update(&self.config, |state| state.admit(&self.config, &clock));
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
        let transition = self.shared.update(&self.config, |state| {
            state.record(&self.config, admission, verdict, &self.clock)
        });
        self.announce(transition);
    }

    fn announce(&self, transition: Option<Transition>) {
        if let Some(Transition { from, to }) = transition {
            report::transition(&self.key, &self.hook, from, to);
        }
    }

    /// The current state; reading never changes it.
    pub fn status(&self) -> CircuitState {
        self.shared.digest().status()
    }

    /// A copy of the current window: the outcomes, oldest first.
    pub fn execution_log(&self) -> SharedWindow {
        *self.shared.snapshot(&self.config).window()
    }

    /// Consecutive failures recorded.
    pub fn failure_count(&self) -> u32 {
        self.shared.snapshot(&self.config).failure_count()
    }

    /// A copy of the whole state.
    pub fn state(&self) -> BreakerState<SharedWindow> {
        self.shared.snapshot(&self.config)
    }

    /// Opens the breaker for a full cooldown from now.
    pub fn force_open(&self) {
        let transition = self
            .shared
            .update(&self.config, |s| s.force_open(&self.config, &self.clock));
        self.announce(transition);
    }

    /// Closes the breaker with an empty window (nothing happens if it is CLOSED).
    pub fn force_closed(&self) {
        let transition = self.shared.update(&self.config, |s| s.force_closed());
        self.announce(transition);
    }

    /// Back to CLOSED with an empty window; calls in flight are not counted.
    pub fn reset(&self) {
        let transition = self.shared.update(&self.config, |s| s.reset());
        self.announce(transition);
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
            .field("state", &self.shared.snapshot(&self.config))
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
                    self.shared.update(&self.config, |_| ());
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
            self.shared
                .update(&self.config, |state| state.release(admission));
        }
    }

    fn classifier(&self) -> &K {
        &self.classifier
    }
}
