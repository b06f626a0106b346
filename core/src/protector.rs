//! The circuit protector: a breaker state in a store, a clock, a classifier and a hook.

use core::{fmt, future::Future, time::Duration};

use crate::{
    Admission, AllErrors, AsyncLayer, AsyncPolicy, AsyncStack, BlockingLayer, BlockingStack,
    BreakerConfig, BreakerState, CircuitState, Classify, Clock, Error, Layer, Leave, NoHook,
    Policy, Rejected, StateStore, Transition, TransitionHook, ValidConfig, Verdict,
};

/// A circuit breaker (the Python package's `CircuitProtectorPolicy`).
///
/// - `St`: where the state lives ([`InlineStore`](crate::InlineStore) for one owner,
///   [`CriticalSectionStore`](crate::CriticalSectionStore) for a `static` shared with
///   interrupts; the std adapters add thread-shared and PostgreSQL stores).
/// - `C`: the [`Clock`].
/// - `K`: the [`Classify`]er deciding how errors count (default [`AllErrors`]).
/// - `H`: the [`TransitionHook`] (default [`NoHook`]).
///
/// Every method takes `&self`; the store makes each change atomic, and nothing is locked
/// while the protected call runs.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, CircuitState, InlineStore, Instant, Ratio, ShouldHandle,
/// };
///
/// #[derive(Debug)]
/// enum ApiError { Unavailable, NotFound }
///
/// let config = BreakerConfig::new()
///     .failure_limit(Ratio::of::<1, 1>())
///     .cooldown(Duration::from_secs(30))
///     .validate()
///     .unwrap();
/// let breaker = CircuitProtector::new(config, InlineStore::<64>::new(), Instant::ZERO)
///     .should_handle(ShouldHandle(|e: &ApiError| matches!(e, ApiError::Unavailable)))
///     .on_status_change(|old, new| println!("{old} -> {new}"));
///
/// // NotFound is the caller's problem, not the upstream's: it counts as a success.
/// let _ = breaker.call(|| Err::<(), _>(ApiError::NotFound));
/// assert_eq!(breaker.status(), CircuitState::Closed);
/// let _ = breaker.call(|| Err::<(), _>(ApiError::Unavailable));
/// assert_eq!(breaker.status(), CircuitState::Open);
/// ```
pub struct CircuitProtector<St, C, K = AllErrors, H = NoHook> {
    config: BreakerConfig,
    store: St,
    clock: C,
    classifier: K,
    hook: H,
}

impl<St: StateStore, C: Clock> CircuitProtector<St, C> {
    /// A breaker counting every error as a failure, with no hook. `const`, so it can be a
    /// `static`.
    pub const fn new(config: ValidConfig<St::Window>, store: St, clock: C) -> Self {
        CircuitProtector {
            config: *config.config(),
            store,
            clock,
            classifier: AllErrors,
            hook: NoHook,
        }
    }
}

impl<St: StateStore, C: Clock, K, H> CircuitProtector<St, C, K, H> {
    /// A breaker with every part given; `const`, for a `static` with a classifier and a hook
    /// (plain `fn` pointers work there).
    pub const fn with_parts(
        config: ValidConfig<St::Window>,
        store: St,
        clock: C,
        classifier: K,
        hook: H,
    ) -> Self {
        CircuitProtector {
            config: *config.config(),
            store,
            clock,
            classifier,
            hook,
        }
    }
}

impl<St, C, H> CircuitProtector<St, C, AllErrors, H> {
    /// Decide how errors count (the Python package's `should_handle`): see [`Classify`].
    pub fn should_handle<K>(self, classifier: K) -> CircuitProtector<St, C, K, H> {
        let CircuitProtector {
            config,
            store,
            clock,
            hook,
            ..
        } = self;
        CircuitProtector {
            config,
            store,
            clock,
            classifier,
            hook,
        }
    }
}

impl<St, C, K> CircuitProtector<St, C, K, NoHook> {
    /// Call `hook(old, new)` after every transition: see [`TransitionHook`].
    pub fn on_status_change<H: TransitionHook>(self, hook: H) -> CircuitProtector<St, C, K, H> {
        let CircuitProtector {
            config,
            store,
            clock,
            classifier,
            ..
        } = self;
        CircuitProtector {
            config,
            store,
            clock,
            classifier,
            hook,
        }
    }
}

impl<St: StateStore, C: Clock, K, H: TransitionHook> CircuitProtector<St, C, K, H> {
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

    /// [`call`](Self::call) for an async operation. If the returned future is dropped before
    /// the operation finishes, nothing is recorded and a HALF_OPEN probe slot is given back.
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

    /// Asks to run one call, for callers that run it themselves: the [`Permit`] records the
    /// outcome, and gives its slot back if dropped without one.
    ///
    /// ```
    /// use resilient_circuit::{BreakerConfig, CircuitProtector, InlineStore, Instant, Verdict};
    ///
    /// let breaker = CircuitProtector::new(
    ///     BreakerConfig::new().validate().unwrap(),
    ///     InlineStore::<8>::new(),
    ///     Instant::ZERO,
    /// );
    /// let permit = breaker.try_acquire().unwrap();
    /// permit.record(Verdict::Success);
    /// assert_eq!(breaker.execution_log().len(), 1);
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_, St, C, K, H>, Rejected> {
        let admission = self.admit()?;
        Ok(Permit {
            breaker: self,
            admission,
        })
    }

    /// Admission without a guard, for layers that keep the [`Admission`] themselves: pair it
    /// with exactly one [`record`](Self::record) or [`release`](Self::release).
    #[inline]
    pub fn admit(&self) -> Result<Admission, Rejected> {
        let (admission, transition) = self
            .store
            .update(|state| state.admit(&self.config, &self.clock))?;
        self.announce(transition);
        Ok(admission)
    }

    /// Records the outcome of a call admitted by [`admit`](Self::admit).
    #[inline]
    pub fn record(&self, admission: Admission, verdict: Verdict) {
        let transition = self
            .store
            .update(|state| state.record(&self.config, admission, verdict, &self.clock));
        self.announce(transition);
    }

    /// Gives back what a call admitted by [`admit`](Self::admit) held, when it will never
    /// report (only a HALF_OPEN probe holds something).
    #[inline]
    pub fn release(&self, admission: Admission) {
        if admission.is_probe() {
            self.store.update(|state| state.release(admission));
        }
    }

    /// The current state. Reading never changes it: an OPEN breaker whose cooldown ended stays
    /// OPEN until a call arrives.
    pub fn status(&self) -> CircuitState {
        self.store.update(|state| state.status())
    }

    /// A copy of the current window: the outcomes, oldest first (use
    /// [`Window::iter`](crate::Window::iter)).
    pub fn execution_log(&self) -> St::Window {
        self.store.update(|state| *state.window())
    }

    /// Consecutive failures recorded.
    pub fn failure_count(&self) -> u32 {
        self.store.update(|state| state.failure_count())
    }

    /// A copy of the whole state.
    pub fn state(&self) -> BreakerState<St::Window> {
        self.store.update(|state| *state)
    }

    /// Opens the breaker for a full cooldown from now.
    pub fn force_open(&self) {
        let transition = self
            .store
            .update(|state| state.force_open(&self.config, &self.clock));
        self.announce(transition);
    }

    /// Closes the breaker with an empty window (nothing happens if it is CLOSED).
    pub fn force_closed(&self) {
        let transition = self.store.update(|state| state.force_closed());
        self.announce(transition);
    }

    /// Back to the initial state: CLOSED, empty window, no failures; calls in flight are not
    /// counted.
    pub fn reset(&self) {
        let transition = self.store.update(|state| state.reset());
        self.announce(transition);
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The store holding the state.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The classifier.
    pub fn classifier(&self) -> &K {
        &self.classifier
    }

    #[inline]
    fn announce(&self, transition: Option<Transition>) {
        if let Some(Transition { from, to }) = transition {
            self.hook.on_status_change(from, to);
        }
    }
}

impl<St: StateStore, C, K, H> fmt::Debug for CircuitProtector<St, C, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.store.update(|state| *state);
        f.debug_struct("CircuitProtector")
            .field("config", &self.config)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<St: StateStore, C, K, H> defmt::Format for CircuitProtector<St, C, K, H>
where
    St::Window: defmt::Format,
{
    fn format(&self, f: defmt::Formatter<'_>) {
        let state = self.store.update(|state| *state);
        defmt::write!(
            f,
            "CircuitProtector {{ config: {}, state: {} }}",
            self.config,
            state
        );
    }
}

/// Permission to run one call, from [`CircuitProtector::try_acquire`].
///
/// Report the outcome with [`record`](Permit::record). Dropped without a report (the call
/// panicked, or its future was dropped), it records nothing and gives back its HALF_OPEN
/// probe slot.
#[must_use = "a permit records nothing unless `record` is called"]
pub struct Permit<'a, St: StateStore, C: Clock, K, H: TransitionHook> {
    breaker: &'a CircuitProtector<St, C, K, H>,
    admission: Admission,
}

impl<St: StateStore, C: Clock, K, H: TransitionHook> Permit<'_, St, C, K, H> {
    /// Records how the call went.
    #[inline]
    pub fn record(self, verdict: Verdict) {
        let (breaker, admission) = (self.breaker, self.admission);
        // The outcome is being reported: no release on drop.
        core::mem::forget(self);
        breaker.record(admission, verdict);
    }

    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.admission.is_probe()
    }
}

impl<St: StateStore, C: Clock, K, H: TransitionHook> Drop for Permit<'_, St, C, K, H> {
    fn drop(&mut self) {
        self.breaker.release(self.admission);
    }
}

impl<St: StateStore, C: Clock, K, H: TransitionHook> fmt::Debug for Permit<'_, St, C, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("admission", &self.admission)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<St: StateStore, C: Clock, K, H: TransitionHook> defmt::Format for Permit<'_, St, C, K, H> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Permit {{ admission: {} }}", self.admission);
    }
}

// A breaker is a layer, by reference (shared by many callers) and by value.

macro_rules! breaker_layer {
    ($($breaker:ty),+) => {$(
        impl<E, St: StateStore, C: Clock, K: Classify<E>, H: TransitionHook> Layer<E> for $breaker {
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

        impl<E, St: StateStore, C: Clock, K: Classify<E>, H: TransitionHook> BlockingLayer<E> for $breaker {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) {}
        }

        impl<E, St: StateStore, C: Clock, K: Classify<E>, H: TransitionHook> AsyncLayer<E> for $breaker {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) -> impl Future<Output = ()> {
                core::future::ready(())
            }
        }

        impl<E, St: StateStore, C: Clock, K: Classify<E>, H: TransitionHook> Policy<E> for $breaker {
            fn run<T>(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
                (self,).run_stack(operation)
            }
        }

        impl<E, St: StateStore, C: Clock, K: Classify<E>, H: TransitionHook> AsyncPolicy<E> for $breaker {
            fn run_async<T>(
                &mut self,
                operation: impl AsyncFnMut() -> Result<T, Error<E>>,
            ) -> impl Future<Output = Result<T, Error<E>>> {
                async move { (self,).run_stack_async(operation).await }
            }
        }
    )+};
}

breaker_layer!(CircuitProtector<St, C, K, H>, &CircuitProtector<St, C, K, H>);
