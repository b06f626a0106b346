//! How a store has a breaker's hook told of transitions.

use super::seam::StateStore;
use crate::TransitionHook;

/// How a store has a breaker's [`TransitionHook`] told of transitions: what
/// [`CircuitProtector::on_status_change`](crate::CircuitProtector::on_status_change) asks of
/// the store.
///
/// Most stores see every transition through their own breaker's calls, and the breaker runs
/// the hook itself on the thread whose call made it: those stores implement [`LocalHooks`],
/// and this trait comes with it. A store whose state also changes elsewhere (the std crate's
/// PostgreSQL store, where a peer process can open the breaker) implements this trait itself,
/// to keep the hook where it can be called from there too, and may ask more of the hook (that
/// it be `Send + Sync + 'static`).
///
/// ```
/// use resilient_circuit::{CircuitState, TransitionHook};
/// use resilient_circuit::{state::{BreakerState, OutcomeWindow}, store::{StateStore, Watch}};
/// use std::sync::{Arc, Mutex};
///
/// /// A store that also learns of transitions made elsewhere, and tells its breakers' hooks.
/// #[derive(Default)]
/// struct FleetStore {
///     state: Mutex<BreakerState<OutcomeWindow<8>>>,
///     hooks: Mutex<Vec<Arc<dyn TransitionHook + Send + Sync>>>,
/// }
///
/// impl StateStore for FleetStore {
///     type Window = OutcomeWindow<8>;
///     fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
///         change(&mut self.state.lock().unwrap())
///     }
/// }
///
/// /// A hook shared by the breaker and the store.
/// struct Kept<H>(Arc<H>);
/// impl<H: TransitionHook> TransitionHook for Kept<H> {
///     fn on_status_change(&self, old: CircuitState, new: CircuitState) {
///         self.0.on_status_change(old, new)
///     }
/// }
///
/// impl<H: TransitionHook + Send + Sync + 'static> Watch<H> for FleetStore {
///     type Hook = Kept<H>;
///     fn watch(&self, hook: H) -> Kept<H> {
///         let hook = Arc::new(hook);
///         self.hooks.lock().unwrap().push(hook.clone());
///         Kept(hook)
///     }
/// }
///
/// let store = FleetStore::default();
/// let kept = store.watch(|old, new| println!("{old} -> {new}"));
/// // A peer opened the breaker: the store tells every hook.
/// for hook in store.hooks.lock().unwrap().iter() {
///     hook.on_status_change(CircuitState::Closed, CircuitState::Open);
/// }
/// # drop(kept);
/// ```
pub trait Watch<H>: StateStore {
    /// The hook as the breaker holds it.
    type Hook: TransitionHook;

    /// Takes `hook` for a breaker on this store; the breaker calls what this returns (through
    /// [`StateStore::announce`]) on every transition its calls make.
    fn watch(&self, hook: H) -> Self::Hook;
}

/// A store whose transitions are all made by its breakers' calls, so the breaker holds its
/// hook as it is and runs it itself: the core's stores, and most stores of your own
/// (`impl LocalHooks for MyStore {}`).
///
/// ```
/// use resilient_circuit::{BreakerConfig, CircuitProtector, store::{InlineStore, LocalHooks}, time::Instant};
///
/// fn runs_its_own_hooks<S: LocalHooks>(_: &S) {}
/// runs_its_own_hooks(&InlineStore::<8, 1>::new());
/// // So a breaker on it holds the hook as it is: here a plain closure.
/// let breaker = CircuitProtector::new(BreakerConfig::new().validated(), InlineStore::<8, 1>::new(), Instant::ZERO)
///     .on_status_change(|old, new| println!("{old} -> {new}"));
/// # let _ = breaker;
/// ```
pub trait LocalHooks: StateStore {}

impl<S: LocalHooks, H: TransitionHook> Watch<H> for S {
    type Hook = H;

    #[inline]
    fn watch(&self, hook: H) -> H {
        hook
    }
}

impl<S: LocalHooks + ?Sized> LocalHooks for &S {}
