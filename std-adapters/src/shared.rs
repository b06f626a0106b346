//! A breaker whose state is shared by threads: lock-free while healthy, exact always.

use std::{fmt, future::Future, time::Duration};

use resilient_circuit::{
    Admission, AllErrors, AsyncLayer, AsyncPolicy, AsyncStack, BlockingLayer, BlockingStack,
    BreakerConfig, BreakerState, CircuitState, Classify, Clock, Error, FastPath, Instant, Layer,
    Leave, NoHook, OutcomeWindow, Policy, Rejected, Transition, TransitionHook, Verdict,
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
/// nothing, and reject calls before an OPEN deadline from those atomics alone; anything that
/// changes the state takes the mutex. Each change is therefore applied exactly once, in one
/// order, and each transition is seen (and reported) by exactly one caller.
pub(crate) struct SharedState {
    state: Mutex<BreakerState<SharedWindow>>,
    digest: AtomicU64,
    open_until: AtomicU64,
    /// Registry bookkeeping: when a handle for this key was last made.
    pub(crate) last_used: AtomicU64,
}

impl SharedState {
    pub(crate) fn new(tick: u64) -> Self {
        let state = BreakerState::new();
        SharedState {
            digest: AtomicU64::new(FastPath::of(&state, &BreakerConfig::new()).to_bits()),
            state: Mutex::new(state),
            open_until: AtomicU64::new(0),
            last_used: AtomicU64::new(tick),
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
        let result = change(&mut state);
        if let Some(until) = state.open_until() {
            self.open_until.store(until.as_nanos(), Ordering::Relaxed);
        }
        // Release: a reader that sees this digest also sees the deadline stored above.
        self.digest
            .store(FastPath::of(&state, config).to_bits(), Ordering::Release);
        result
    }

    pub(crate) fn snapshot(&self) -> BreakerState<SharedWindow> {
        *lock(&self.state)
    }

    /// OPEN with its deadline still ahead of `now`.
    pub(crate) fn is_live_open(&self, now: Instant) -> bool {
        self.digest().status() == CircuitState::Open && now < self.open_until()
    }
}

/// A breaker on a shared state: `Send + Sync`, cheap to clone (clones share the state), and
/// free of locks and allocation on a healthy CLOSED call.
///
/// Made by [`MemoryStore::breaker`](crate::MemoryStore::breaker); every breaker made with the
/// same [`BreakerKey`] shares one state, whatever its own configuration, classifier and hook.
///
/// - CLOSED admission and a success into a full window of successes (a healthy upstream) read
///   two atomics and write nothing: threads calling one breaker do not contend.
/// - A rejection before the OPEN deadline reads the clock once and takes no lock.
/// - Every other change takes a short mutex (never held while the protected call runs), so no
///   outcome is lost and every transition fires its hook exactly once, on the thread that made
///   it. A panic in the hook is caught and reported; the breaker carries on.
///
/// ```
/// use resilient_circuit_std::{BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio};
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
    /// Runs `operation` if the breaker admits it, records how it went, and returns its result;
    /// a rejected call returns [`Error::Rejected`] without running.
    #[inline]
    pub fn call<T, E>(&self, operation: impl FnOnce() -> Result<T, E>) -> Result<T, Error<E>>
    where
        K: Classify<E>,
    {
        let permit = self.try_acquire()?;
        let result = operation();
        permit.record(self.classifier.verdict(&result));
        result.map_err(Error::Operation)
    }

    /// [`call`](Self::call) for an async operation. A future dropped before the operation
    /// finishes records nothing and gives back its HALF_OPEN probe slot.
    pub async fn call_async<T, E>(
        &self,
        operation: impl AsyncFnOnce() -> Result<T, E>,
    ) -> Result<T, Error<E>>
    where
        K: Classify<E>,
    {
        let permit = self.try_acquire()?;
        let result = operation().await;
        permit.record(self.classifier.verdict(&result));
        result.map_err(Error::Operation)
    }

    /// Asks to run one call; the [`SharedPermit`] records its outcome, or gives its probe slot
    /// back when dropped without one.
    #[inline]
    pub fn try_acquire(&self) -> Result<SharedPermit<'_, C, K, H>, Rejected> {
        let admission = self.admit()?;
        Ok(SharedPermit {
            breaker: self,
            admission,
        })
    }

    /// Admission without a guard, for layers that keep the [`Admission`] themselves: pair it
    /// with exactly one [`record`](Self::record) or [`release`](Self::release).
    #[inline]
    pub fn admit(&self) -> Result<Admission, Rejected> {
        let digest = self.shared.digest();
        match digest.admit() {
            Some(admission) => Ok(admission),
            None => self.admit_when_not_closed(digest),
        }
    }

    #[inline(never)]
    fn admit_when_not_closed(&self, digest: FastPath) -> Result<Admission, Rejected> {
        let mut now = None;
        if digest.status() == CircuitState::Open {
            let read = self.clock.now();
            let until = self.shared.open_until();
            if read < until {
                return Err(self.rejected(until.saturating_duration_since(read)));
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
            Err(rejected) => Err(self.rejected(rejected.retry_after)),
        }
    }

    fn rejected(&self, retry_after: Duration) -> Rejected {
        report::rejection(&self.key, retry_after);
        Rejected { retry_after }
    }

    /// Records the outcome of a call admitted by [`admit`](Self::admit).
    #[inline]
    pub fn record(&self, admission: Admission, verdict: Verdict) {
        if verdict == Verdict::Success
            && self
                .shared
                .digest()
                .success_changes_nothing(admission, &self.config)
        {
            return;
        }
        self.record_with_lock(admission, verdict);
    }

    #[inline(never)]
    fn record_with_lock(&self, admission: Admission, verdict: Verdict) {
        let transition = self.shared.update(&self.config, |state| {
            state.record(&self.config, admission, verdict, &self.clock)
        });
        self.announce(transition);
    }

    /// Gives back what a call admitted by [`admit`](Self::admit) held, when it will never
    /// report (only a HALF_OPEN probe holds something).
    pub fn release(&self, admission: Admission) {
        if admission.is_probe() {
            self.shared
                .update(&self.config, |state| state.release(admission));
        }
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

    /// This handle's classifier.
    pub fn classifier(&self) -> &K {
        &self.classifier
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

/// Permission to run one call, from [`SharedBreaker::try_acquire`].
#[must_use = "a permit records nothing unless `record` is called"]
pub struct SharedPermit<'a, C: Clock, K, H: TransitionHook> {
    breaker: &'a SharedBreaker<C, K, H>,
    admission: Admission,
}

impl<C: Clock, K, H: TransitionHook> SharedPermit<'_, C, K, H> {
    /// Records how the call went.
    #[inline]
    pub fn record(self, verdict: Verdict) {
        let (breaker, admission) = (self.breaker, self.admission);
        // The outcome is being reported: no release on drop.
        std::mem::forget(self);
        breaker.record(admission, verdict);
    }

    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.admission.is_probe()
    }
}

impl<C: Clock, K, H: TransitionHook> Drop for SharedPermit<'_, C, K, H> {
    fn drop(&mut self) {
        if self.admission.is_probe() {
            let (breaker, admission) = (self.breaker, self.admission);
            breaker
                .shared
                .update(&breaker.config, |state| state.release(admission));
        }
    }
}

impl<C: Clock, K, H: TransitionHook> fmt::Debug for SharedPermit<'_, C, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPermit")
            .field("key", &self.breaker.key)
            .field("admission", &self.admission)
            .finish()
    }
}

// A shared breaker is a layer, by reference (the usual case) and by value.

macro_rules! shared_layer {
    ($($breaker:ty),+) => {$(
        impl<E, C: Clock, K: Classify<E>, H: TransitionHook> Layer<E> for $breaker {
            type Ticket = Admission;

            fn enter(&mut self) -> Result<Admission, Error<E>> {
                Ok(self.admit()?)
            }

            fn leave<T>(&mut self, admission: &mut Admission, result: Result<T, Error<E>>) -> Leave<T, E> {
                self.record(*admission, self.classifier.verdict_of_layered(&result));
                Leave::Return(result)
            }

            fn abandon(&mut self, admission: Admission) {
                self.release(admission);
            }
        }

        impl<E, C: Clock, K: Classify<E>, H: TransitionHook> BlockingLayer<E> for $breaker {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) {}
        }

        impl<E, C: Clock, K: Classify<E>, H: TransitionHook> AsyncLayer<E> for $breaker {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) -> impl Future<Output = ()> {
                std::future::ready(())
            }
        }

        impl<E, C: Clock, K: Classify<E>, H: TransitionHook> Policy<E> for $breaker {
            fn run<T>(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
                (self,).run_stack(operation)
            }
        }

        impl<E, C: Clock, K: Classify<E>, H: TransitionHook> AsyncPolicy<E> for $breaker {
            fn run_async<T>(
                &mut self,
                operation: impl AsyncFnMut() -> Result<T, Error<E>>,
            ) -> impl Future<Output = Result<T, Error<E>>> {
                async move { (self,).run_stack_async(operation).await }
            }
        }
    )+};
}

shared_layer!(SharedBreaker<C, K, H>, &SharedBreaker<C, K, H>);
