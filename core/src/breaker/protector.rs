//! The circuit protector: a breaker state in a store, a clock, a classifier and a hook.

use core::fmt;

use crate::{
    Breaker, BreakerConfig, CircuitState, Permit, Rejected, StoreUnavailable, TransitionHook,
    ValidConfig,
    classify::{AllErrors, AllValues, Verdict},
    hook::NoHook,
    state::{Admission, BreakerState, Transition},
    store::{Control, StateStore, Watch},
    time::Clock,
};

/// A circuit breaker (the Python package's `CircuitProtectorPolicy`).
///
/// - `St`: where the state lives ([`InlineStore`](crate::store::InlineStore) for one owner,
///   [`CriticalSectionStore`](crate::store::CriticalSectionStore) for a `static` shared with
///   interrupts, or a [`StateStore`] of your own; the std adapters' keyed stores hand out
///   breakers on one key's shared state, `SharedBreaker`, this type over their store).
/// - `C`: the [`Clock`].
/// - `K`: the [`Classify`](crate::Classify)er deciding how errors count (default [`AllErrors`]).
/// - `H`: the [`TransitionHook`] (default [`NoHook`]).
/// - `V`: the [`ClassifyValue`](crate::ClassifyValue) deciding how values count (default
///   [`AllValues`]: every `Ok` is a success).
///
/// Every method takes `&self`; the store makes each change atomic, and nothing is locked
/// while the protected call runs. The protected-call methods (`call`, `call_async`,
/// `try_acquire`) come from the [`Breaker`] trait. A breaker is `Clone` when its parts are;
/// clones share the state only if the store does (a keyed store's handle does, an
/// [`InlineStore`](crate::store::InlineStore) is not `Clone`).
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio, ShouldHandle,
///     store::InlineStore, time::Instant,
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
// In this order (`repr(C)`), a breaker's address is its clock's (when the clock is a unit type)
// and its store's: the call paths pass both to the store, and one register then holds all three.
#[repr(C)]
pub struct CircuitProtector<St, C, K = AllErrors, H = NoHook, V = AllValues> {
    clock: C,
    store: St,
    config: BreakerConfig,
    classifier: K,
    values: V,
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
            values: AllValues,
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
            values: AllValues,
            hook,
        }
    }
}

impl<St, C, H, V> CircuitProtector<St, C, AllErrors, H, V> {
    /// Decide how errors count (the Python package's `should_handle`): see [`Classify`](crate::Classify).
    pub fn should_handle<K>(self, classifier: K) -> CircuitProtector<St, C, K, H, V> {
        self.judged_by(|_, values| (classifier, values))
    }
}

impl<St, C, K, H, V> CircuitProtector<St, C, K, H, V> {
    /// The same breaker with the classifiers `judges` makes of these.
    fn judged_by<K2, V2>(
        self,
        judges: impl FnOnce(K, V) -> (K2, V2),
    ) -> CircuitProtector<St, C, K2, H, V2> {
        let CircuitProtector {
            clock,
            store,
            config,
            classifier,
            values,
            hook,
        } = self;
        let (classifier, values) = judges(classifier, values);
        CircuitProtector {
            clock,
            store,
            config,
            classifier,
            values,
            hook,
        }
    }
}

impl<St, C, K, H> CircuitProtector<St, C, K, H, AllValues> {
    /// Decide how values count: see [`ClassifyValue`](crate::ClassifyValue). A value judged a
    /// failure counts towards tripping and is still returned to the caller.
    ///
    /// ```
    /// use resilient_circuit::{
    ///     Breaker, BreakerConfig, CircuitProtector, CircuitState, classify::Verdict,
    ///     store::InlineStore, time::Instant,
    /// };
    ///
    /// struct Reply { status: u16 }
    ///
    /// let breaker = CircuitProtector::new(BreakerConfig::new().validate().unwrap(), InlineStore::<1>::new(), Instant::ZERO)
    ///     .classify_values(|r: &Reply| if r.status >= 500 { Verdict::Failure } else { Verdict::Success });
    /// let reply = breaker.call(|| Ok::<_, ()>(Reply { status: 503 })).unwrap();
    /// assert_eq!(reply.status, 503); // returned as it came
    /// assert_eq!(breaker.status(), CircuitState::Open); // and counted as a failure
    /// ```
    pub fn classify_values<V>(self, values: V) -> CircuitProtector<St, C, K, H, V> {
        self.judged_by(|classifier, _| (classifier, values))
    }
}

impl<St, C, K, V> CircuitProtector<St, C, K, NoHook, V> {
    /// Call `hook(old, new)` after every transition: see [`TransitionHook`]. The store decides
    /// how the hook is held ([`Watch`]): the core's stores keep it as it is; a store shared
    /// beyond the process also calls it for the transitions made elsewhere.
    pub fn on_status_change<H>(self, hook: H) -> CircuitProtector<St, C, K, St::Hook, V>
    where
        St: Watch<H>,
    {
        let CircuitProtector {
            config,
            store,
            clock,
            classifier,
            values,
            ..
        } = self;
        let hook = store.watch(hook);
        CircuitProtector {
            config,
            store,
            clock,
            classifier,
            values,
            hook,
        }
    }
}

impl<St: Clone, C: Clone, K: Clone, H: Clone, V: Clone> Clone for CircuitProtector<St, C, K, H, V> {
    fn clone(&self) -> Self {
        CircuitProtector {
            config: self.config,
            store: self.store.clone(),
            clock: self.clock.clone(),
            classifier: self.classifier.clone(),
            values: self.values.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<St: StateStore, C: Clock, K, H: TransitionHook, V> CircuitProtector<St, C, K, H, V> {
    /// The current state. Reading never changes it: an OPEN breaker whose cooldown ended stays
    /// OPEN until a call arrives.
    pub fn status(&self) -> CircuitState {
        self.store.status()
    }

    /// A copy of the current window: the outcomes, oldest first (use
    /// [`Window::iter`](crate::state::Window::iter)).
    pub fn execution_log(&self) -> St::Window {
        *self.store.state().window()
    }

    /// Consecutive failures recorded.
    pub fn failure_count(&self) -> u32 {
        self.store.state().failure_count()
    }

    /// A copy of the whole state.
    pub fn state(&self) -> BreakerState<St::Window> {
        self.store.state()
    }

    /// Opens the breaker for a full cooldown from now. Only a store whose state lives
    /// elsewhere can fail to (then nothing changed).
    pub fn force_open(&self) -> Result<(), StoreUnavailable> {
        self.control(Control::ForceOpen)
    }

    /// Closes the breaker with an empty window (nothing happens if it is CLOSED).
    pub fn force_closed(&self) -> Result<(), StoreUnavailable> {
        self.control(Control::ForceClosed)
    }

    /// Back to the initial state: CLOSED, empty window, no failures; calls in flight are not
    /// counted.
    pub fn reset(&self) -> Result<(), StoreUnavailable> {
        self.control(Control::Reset)
    }

    fn control(&self, control: Control) -> Result<(), StoreUnavailable> {
        let transition = self.store.control(&self.config, control, &self.clock)?;
        self.announce(transition);
        Ok(())
    }

    /// The configuration.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The store holding the state.
    pub fn store(&self) -> &St {
        &self.store
    }

    #[inline]
    fn announce(&self, transition: Option<Transition>) {
        if let Some(transition) = transition {
            self.announce_transition(transition);
        }
    }

    // Cold: transitions are rare, and the calls that make none stay small.
    #[cold]
    fn announce_transition(&self, transition: Transition) {
        self.store.announce(&self.hook, transition);
    }

    /// Announces a transition an admission made.
    #[cold]
    fn announce_admitted(&self, admission: Admission, transition: Transition) -> Admission {
        // The admission holds a probe slot before the hook runs: if the hook panics, the
        // permit gives the slot back as the panic unwinds.
        let permit = Permit::new(self, admission);
        self.store.announce(&self.hook, transition);
        // The caller holds the admission from here; forgetting a permit that borrows leaks
        // nothing.
        core::mem::forget(permit);
        admission
    }
}

impl<St: StateStore, C, K, H, V> fmt::Debug for CircuitProtector<St, C, K, H, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.store.state();
        f.debug_struct("CircuitProtector")
            .field("config", &self.config)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<St: StateStore, C, K, H, V> defmt::Format for CircuitProtector<St, C, K, H, V>
where
    St::Window: defmt::Format,
{
    fn format(&self, f: defmt::Formatter<'_>) {
        let state = self.store.state();
        defmt::write!(
            f,
            "CircuitProtector {{ config: {}, state: {} }}",
            self.config,
            state
        );
    }
}

impl<St: StateStore, C: Clock, K, H: TransitionHook, V> Breaker
    for CircuitProtector<St, C, K, H, V>
{
    type Classifier = K;
    type ValueClassifier = V;

    #[inline]
    fn admit(&self) -> Result<Admission, Rejected> {
        // Apart from `admit`, so that the common answers return without a transition to check.
        if let Some(answer) = self.store.admit_read_only(&self.clock) {
            return answer;
        }
        let (admission, transition) = self.store.admit(&self.config, &self.clock)?;
        match transition {
            None => Ok(admission),
            Some(transition) => Ok(self.announce_admitted(admission, transition)),
        }
    }

    #[inline]
    fn record(&self, admission: Admission, verdict: Verdict) {
        let transition = self
            .store
            .record(&self.config, admission, verdict, &self.clock);
        self.announce(transition);
    }

    #[inline]
    fn release(&self, admission: Admission) {
        self.store.release(admission);
    }

    fn classifier(&self) -> &K {
        &self.classifier
    }

    fn value_classifier(&self) -> &V {
        &self.values
    }
}
