//! The store seam: [`StateStore`], one closure that changes a breaker's state atomically, and
//! manual control ([`Control`]).

use crate::{
    BreakerConfig, CircuitState, Rejected, StoreUnavailable, TransitionHook,
    classify::Verdict,
    state::{Admission, BreakerState, Transition, Window},
    time::Clock,
};

/// Where a [`CircuitProtector`](crate::CircuitProtector)'s state lives, and how a change to it
/// is made atomic: the one seam under the core's breaker.
///
/// A store implements [`update`](StateStore::update) (and, for a hook on its breakers, the
/// marker [`LocalHooks`](super::LocalHooks), or [`Watch`](super::Watch) if its state also changes elsewhere); the breaker's
/// every other need (admission, recording, release, inspection, manual control) has a default
/// made of one `update` that applies the state machine's pure functions. A store overrides a default to
/// make that path faster (a lock-free CLOSED path), to refuse calls while its state is out of
/// reach (an admission rejected with
/// [`RejectReason::StoreUnavailable`](crate::RejectReason::StoreUnavailable)),
/// or to carry manual control somewhere else (a database), which may then fail with
/// [`StoreUnavailable`]. It never decides what a change is: that is [`BreakerState`]'s.
///
/// A store of your own gets the whole breaker, [`CircuitProtector`](crate::CircuitProtector)
/// and the [`Breaker`](crate::Breaker) trait:
///
/// ```
/// use resilient_circuit::{Breaker, BreakerConfig, CircuitProtector, CircuitState};
/// use resilient_circuit::{state::{BreakerState, OutcomeWindow}, time::Instant};
/// use resilient_circuit::store::{LocalHooks, StateStore};
/// use std::sync::Mutex;
///
/// /// State behind a standard mutex.
/// struct MutexStore(Mutex<BreakerState<OutcomeWindow<64>>>);
///
/// impl StateStore for MutexStore {
///     type Window = OutcomeWindow<64>;
///     fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
///         change(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
///     }
/// }
/// // Every transition is made by a call of this store's breakers: they run their hooks.
/// impl LocalHooks for MutexStore {}
///
/// let store = MutexStore(Mutex::new(BreakerState::new()));
/// let breaker = CircuitProtector::new(BreakerConfig::new().validate()?, store, Instant::ZERO);
/// let _ = breaker.call(|| Err::<(), _>("down"));
/// assert_eq!(breaker.status(), CircuitState::Open);
/// breaker.reset()?;
/// assert_eq!(breaker.status(), CircuitState::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait StateStore {
    /// The outcome window the state holds.
    type Window: Window;

    /// Whether the state machine runs with the configuration the breaker passes, and so
    /// applies its [`probe_lease`](crate::BreakerConfig::probe_lease): `true` by default. A
    /// store that applies a configuration of its own (a keyed store's shared state) says
    /// `false`, and a [`Leased`](crate::breaker::Leased) breaker refuses it.
    const APPLIES_PROBE_LEASE: bool = true;

    /// Runs `change` on the state, atomically with respect to every other change of this
    /// store. The closure is short and never runs the protected call.
    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R;

    /// The answer to an admission that changes nothing, read without `update` (a lock-free
    /// path): a CLOSED admission, or a rejection before an OPEN deadline; `None` when the call
    /// must go through [`admit`](StateStore::admit). The breaker asks this first; by default
    /// there is none.
    #[inline]
    fn admit_read_only(&self, clock: &impl Clock) -> Option<Result<Admission, Rejected>> {
        let _ = clock;
        None
    }

    /// Asks to admit one call now: the admission, and the transition it made (an OPEN
    /// breaker whose cooldown ended turns HALF_OPEN), or why the call is refused.
    #[inline]
    fn admit(
        &self,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        self.update(|state| state.admit(config, clock))
    }

    /// Records the outcome of an admitted call; the transition it made, if any.
    #[inline]
    fn record(
        &self,
        config: &BreakerConfig,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        self.update(|state| state.record(config, admission, verdict, clock))
    }

    /// Gives back what an admitted call held when it will never report (a probe's slot).
    #[inline]
    fn release(&self, admission: Admission) {
        if admission.is_probe() {
            self.update(|state| state.release(admission));
        }
    }

    /// The current state; reading never changes it.
    #[inline]
    fn status(&self) -> CircuitState {
        self.update(|state| state.status())
    }

    /// A copy of the whole state.
    #[inline]
    fn state(&self) -> BreakerState<Self::Window> {
        self.update(|state| *state)
    }

    /// Applies manual control; the transition it made, if any, or [`StoreUnavailable`] if the
    /// state could not be reached (then nothing changed).
    #[inline]
    fn control(
        &self,
        config: &BreakerConfig,
        control: Control,
        clock: &impl Clock,
    ) -> Result<Option<Transition>, StoreUnavailable> {
        Ok(self.update(|state| control.apply(state, config, clock)))
    }

    /// Tells `hook` of a transition a breaker's call made, after the state is stored; by
    /// default by calling it. A store overrides this to say which state changed, or to keep a
    /// hook's panic from reaching the caller.
    #[inline]
    fn announce(&self, hook: &impl TransitionHook, transition: Transition) {
        hook.on_status_change(transition.from, transition.to);
    }
}

impl<S: StateStore + ?Sized> StateStore for &S {
    type Window = S::Window;
    const APPLIES_PROBE_LEASE: bool = S::APPLIES_PROBE_LEASE;

    #[inline]
    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
        (**self).update(change)
    }

    #[inline]
    fn admit_read_only(&self, clock: &impl Clock) -> Option<Result<Admission, Rejected>> {
        (**self).admit_read_only(clock)
    }

    #[inline]
    fn admit(
        &self,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        (**self).admit(config, clock)
    }

    #[inline]
    fn record(
        &self,
        config: &BreakerConfig,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        (**self).record(config, admission, verdict, clock)
    }

    #[inline]
    fn release(&self, admission: Admission) {
        (**self).release(admission)
    }

    #[inline]
    fn status(&self) -> CircuitState {
        (**self).status()
    }

    #[inline]
    fn state(&self) -> BreakerState<Self::Window> {
        (**self).state()
    }

    #[inline]
    fn control(
        &self,
        config: &BreakerConfig,
        control: Control,
        clock: &impl Clock,
    ) -> Result<Option<Transition>, StoreUnavailable> {
        (**self).control(config, control, clock)
    }

    #[inline]
    fn announce(&self, hook: &impl TransitionHook, transition: Transition) {
        (**self).announce(hook, transition)
    }
}

/// Manual control of a breaker: what [`force_open`](crate::CircuitProtector::force_open),
/// [`force_closed`](crate::CircuitProtector::force_closed) and
/// [`reset`](crate::CircuitProtector::reset) ask of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Control {
    /// OPEN for a full cooldown from now.
    ForceOpen,
    /// CLOSED with an empty window (nothing happens if it is CLOSED).
    ForceClosed,
    /// Back to the initial state: CLOSED, empty window, no failures.
    Reset,
}

impl Control {
    /// Applies this control to `state`; the transition it made, if any.
    #[inline]
    pub fn apply<Win: Window>(
        self,
        state: &mut BreakerState<Win>,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Option<Transition> {
        match self {
            Control::ForceOpen => state.force_open(config, clock),
            Control::ForceClosed => state.force_closed(),
            Control::Reset => state.reset(),
        }
    }
}
