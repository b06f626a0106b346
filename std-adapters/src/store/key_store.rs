//! One key's shared state as a breaker's store: lock-free while CLOSED, exact always.

use std::fmt;

use resilient_circuit::{
    BreakerConfig, CircuitProtector, CircuitState, RejectReason, Rejected, StoreUnavailable,
    TransitionHook, ValidConfig,
    classify::{AllErrors, AllValues, Verdict},
    hook::NoHook,
    state::{Admission, BreakerState, Transition},
    store::{Control, FastPath, StateStore, Watch},
    time::{Clock, Instant},
};

use super::{
    replica::{Event, StateAddress, WorkerHook},
    report,
    shared_state::SharedState,
    window::SharedWindow,
};
use crate::{BreakerKey, hook::SharedHook, sync::Arc, time::CoarseClock};

/// A breaker on one key's shared state: `Send + Sync`, cheap to clone (clones share the
/// state), and free of locks and allocation on every CLOSED call. It is the core's
/// [`CircuitProtector`] over a [`KeyStore`], with the same API as every other breaker.
///
/// Made by [`MemoryStore::breaker`](crate::MemoryStore::breaker), replicated or not; every
/// breaker made with the same [`BreakerKey`] shares one state, its configuration (a handle
/// asking for another is refused) and its store's clock `C`, whatever its own classifier and
/// hook. The protected-call methods (`call`, `call_async`, `try_acquire`) come from the
/// [`Breaker`](crate::Breaker) trait.
///
/// - CLOSED admission and a success into a full window of successes (a healthy upstream) read
///   two atomics and write nothing: threads calling one breaker do not contend (on a
///   PostgreSQL key, the first window's worth of successes after each send to the row is
///   counted, as below, so that the row hears of them). Any other CLOSED
///   success is counted with one atomic add and folded into the window by the next change made
///   under the lock (or once a window's worth has been counted): successes never trip.
/// - A rejection before the OPEN deadline reads the clock once and takes no lock.
/// - Every other change takes a short mutex (never held while the protected call runs): a
///   failure, a HALF_OPEN probe's outcome, a transition. So no outcome is lost and every
///   transition fires its hook exactly once, on the thread that made it, after the state is
///   stored and the lock released (hooks of transitions made on different threads may
///   therefore run in either order). A panic in the hook is caught and reported; the breaker
///   carries on.
/// - A hook must be `Send + Sync + 'static`; the breaker holds it as a [`SharedHook`], so a
///   breaker with a hook is a `SharedBreaker<C, K, SharedHook<H>>`.
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
/// assert_eq!(other.store().key().resource_key(), "payments-api");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type SharedBreaker<C = CoarseClock, K = AllErrors, H = NoHook, V = AllValues> =
    CircuitProtector<KeyStore, C, K, H, V>;

/// A breaker on `key`'s state, reading its store's clock.
pub(crate) fn shared_breaker<C: Clock>(
    shared: Arc<SharedState>,
    key: BreakerKey,
    config: ValidConfig<SharedWindow>,
    clock: C,
) -> SharedBreaker<C> {
    CircuitProtector::new(config, KeyStore::new(shared, key), clock)
}

/// The store of a [`SharedBreaker`]: one key's state in a
/// [`MemoryStore`](crate::MemoryStore) or a PostgreSQL store, as one breaker handle holds it.
///
/// Its [`StateStore`] methods are the breaker's fast paths (see [`SharedBreaker`]). On a
/// replicated key (PostgreSQL), the in-process copy predicts and the row decides, as the
/// project's `docs/ARCHITECTURE.md` tells. [`update`](StateStore::update) changes this
/// process's copy alone (on a replicated key the row's state replaces it when the worker next
/// adopts a new version of the row): change a breaker through its methods.
///
/// Every change applies the key's configuration, whatever the breaker passes. The store's
/// breakers read the store's clock; a breaker built by hand over a clone of this (with
/// [`CircuitProtector::new`]) must read it too, or its deadlines are on another timeline.
pub struct KeyStore {
    shared: KeyHandle,
    key: BreakerKey,
}

impl KeyStore {
    fn new(shared: Arc<SharedState>, key: BreakerKey) -> Self {
        KeyStore {
            shared: KeyHandle(shared),
            key,
        }
    }

    /// The key whose state this is.
    pub fn key(&self) -> &BreakerKey {
        &self.key
    }

    /// For a breaker that `digest` says is OPEN: its rejection if the deadline has not passed,
    /// else the clock reading that says it has (`Ok(None)` when not OPEN). Out of line, so the
    /// CLOSED path stays small.
    #[inline(never)]
    fn rejected_before_deadline(
        &self,
        digest: FastPath,
        clock: &impl Clock,
    ) -> Result<Option<Instant>, Rejected> {
        if digest.status() != CircuitState::Open {
            return Ok(None);
        }
        let now = clock.now();
        let until = self.shared.open_until();
        if now < until {
            return Err(self.rejected(Rejected::new(
                until.saturating_duration_since(now),
                RejectReason::Open,
            )));
        }
        Ok(Some(now))
    }

    /// Admission under the lock (HALF_OPEN, an OPEN whose deadline passed, a held digest), with
    /// the key's configuration. `now` is a clock reading already taken, if any.
    #[inline]
    fn admit_with_lock(
        &self,
        now: Option<Instant>,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        let config = &self.shared.config;
        // Read the clock at most once here: reuse the reading taken before.
        let clock = now.map_or(ClockOrReading::Clock(clock), ClockOrReading::Reading);
        let admitted = self.shared.update(|state, replica| match replica {
            None => state.admit(config, &clock),
            Some(replica) => {
                let admitted = replica.admit(state, config, &clock);
                Ok((admitted?, None))
            }
        });
        if admitted.is_err() || self.shared.is_replicated() {
            // A probe wanted, or a probe admitted in a reserved slot: the worker refills.
            self.shared.wake();
        }
        admitted.map_err(|rejected| self.rejected(rejected))
    }

    fn rejected(&self, rejected: Rejected) -> Rejected {
        self.shared.counters.rejected(rejected.reason());
        report::rejection(&self.key, rejected.retry_after());
        rejected
    }

    /// Enough successes counted to fill the window: fold them in, so the window can turn clean
    /// and later successes need no write at all. Out of line, as the locked paths are.
    #[inline(never)]
    fn fold_counted_successes(&self) {
        self.shared.update(|_, _| ());
    }

    /// Recording under the lock, with the key's configuration.
    #[inline(never)]
    fn record_with_lock(
        &self,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        let config = &self.shared.config;
        let (transition, urgent) = self.shared.update(|state, replica| {
            let transition = state.record(config, admission, verdict, clock);
            match replica {
                None => (transition, false),
                // The in-process copy predicts; the shared copy decides and announces.
                Some(replica) => {
                    replica.record(admission, verdict, clock.now());
                    (None, replica.is_urgent())
                }
            }
        });
        if urgent {
            self.shared.wake();
        }
        transition
    }
}

impl StateStore for KeyStore {
    type Window = SharedWindow;
    /// The key's own configuration applies, which has no lease: a `Leased` breaker would keep
    /// a dropped probe's slot for good.
    const APPLIES_PROBE_LEASE: bool = false;

    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<SharedWindow>) -> R) -> R {
        self.shared.update(|state, _| change(state))
    }

    /// From the published digest alone: a CLOSED admission, or a rejection before the OPEN
    /// deadline (one clock reading).
    #[inline]
    fn admit_read_only(&self, clock: &impl Clock) -> Option<Result<Admission, Rejected>> {
        let digest = self.shared.digest();
        match digest.admit() {
            Some(admission) => Some(Ok(admission)),
            None => self.rejected_before_deadline(digest, clock).err().map(Err),
        }
    }

    /// The path of an OPEN breaker whose deadline passed, or a HALF_OPEN one: under the lock,
    /// out of line (the breaker asks [`admit_read_only`](StateStore::admit_read_only) first, so
    /// an OPEN breaker whose deadline passed reads the clock there and once here). The state
    /// machine applies the key's configuration.
    #[inline(never)]
    fn admit(
        &self,
        _config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        let digest = self.shared.digest();
        if let Some(admission) = digest.admit() {
            return Ok((admission, None));
        }
        let now = self.rejected_before_deadline(digest, clock)?;
        self.admit_with_lock(now, clock)
    }

    /// With the key's configuration, as every change.
    #[inline]
    fn record(
        &self,
        _config: &BreakerConfig,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        if verdict == Verdict::Success && !admission.is_probe() {
            self.shared.counters.closed_success();
            if self.shared.digest().success_changes_nothing(admission) {
                return None;
            }
            // A CLOSED success never trips: count it now, fold it into the window later.
            match self.shared.count_success(admission.epoch()) {
                Some(pending) if pending < u32::from(self.shared.config.closed_window()) => {
                    return None;
                }
                Some(_) => {
                    self.fold_counted_successes();
                    return None;
                }
                None => {}
            }
        } else {
            self.shared.counters.outcome(verdict);
        }
        self.record_with_lock(admission, verdict, clock)
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

    #[inline]
    fn status(&self) -> CircuitState {
        self.shared.digest().status()
    }

    fn state(&self) -> BreakerState<SharedWindow> {
        self.shared.snapshot()
    }

    /// With the key's configuration. On a replicated key, in every process: the store's worker
    /// changes the shared state, and this waits (bounded) for it; the worker fires the hooks.
    fn control(
        &self,
        _config: &BreakerConfig,
        control: Control,
        clock: &impl Clock,
    ) -> Result<Option<Transition>, StoreUnavailable> {
        if let Some(replicator) = self.shared.replicator() {
            return replicator.manual(&self.key, control).map(|()| None);
        }
        Ok(self
            .shared
            .update(|state, _| control.apply(state, &self.shared.config, clock)))
    }

    /// With the key, and with a panic in the hook caught and reported. Out of line: the call
    /// paths that make no transition stay small.
    #[inline(never)]
    fn announce(&self, hook: &impl TransitionHook, transition: Transition) {
        self.shared
            .counters
            .transition(transition.from, transition.to);
        report::transition(&self.key, hook, transition.from, transition.to);
    }
}

impl<H: TransitionHook + Send + Sync + 'static> Watch<H> for KeyStore {
    type Hook = SharedHook<H>;

    /// On a replicated key, the store's worker also calls the hook, for every transition of
    /// the shared state this process adopts, its own or a peer's.
    fn watch(&self, hook: H) -> SharedHook<H> {
        let hook = std::sync::Arc::new(hook);
        let for_worker: WorkerHook = hook.clone();
        self.shared
            .replicate(|_, replica| replica.add_hook(std::sync::Arc::downgrade(&for_worker)));
        SharedHook::new(hook)
    }
}

impl Clone for KeyStore {
    fn clone(&self) -> Self {
        KeyStore {
            shared: self.shared.clone(),
            key: self.key.clone(),
        }
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("key", &self.key)
            .field("state", &self.shared.snapshot())
            .finish()
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
        if let Some(replicator) = self.0.replicator() {
            replicator.handle_dropped(
                StateAddress::of(Arc::as_ptr(&self.0)),
                Arc::strong_count(&self.0),
            );
        }
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
