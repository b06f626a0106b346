//! Transition hooks: the core's, how a shared breaker holds one, and a boxed closure whose type
//! can be named.

#[doc(no_inline)]
pub use resilient_circuit::hook::{NoHook, TransitionHook};

use std::{fmt, sync::Arc};

use crate::CircuitState;

/// A closure hook, boxed, so that a breaker with it has a type a struct field (axum's state)
/// can name: `SharedBreaker<C, K, SharedHook<BoxedHook>, V>`.
///
/// ```
/// use resilient_circuit_std::{
///     BreakerConfig, BreakerKey, MemoryStore, SharedBreaker,
///     classify::{AllErrors, AllValues},
///     hook::{BoxedHook, SharedHook},
///     time::CoarseClock,
/// };
///
/// struct AppState {
///     breaker: SharedBreaker<CoarseClock, AllErrors, SharedHook<BoxedHook>, AllValues>,
/// }
///
/// let store = MemoryStore::new();
/// let name = "inventory";
/// let hook: BoxedHook = Box::new(move |from, to| println!("{name}: {from} -> {to}"));
/// let state = AppState {
///     breaker: store
///         .breaker(BreakerKey::resource(name)?, BreakerConfig::new())?
///         .on_status_change(hook),
/// };
/// # drop(state);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type BoxedHook = Box<dyn Fn(CircuitState, CircuitState) + Send + Sync>;

/// A [`SharedBreaker`](crate::SharedBreaker)'s hook: shared by the breaker's clones and, on a
/// replicated key, called by the store's worker too, as long as a breaker holds it.
pub struct SharedHook<H>(Arc<H>);

impl<H> SharedHook<H> {
    /// The hook a key's store watches with, `hook` being the reference its worker holds weakly.
    pub(crate) fn new(hook: Arc<H>) -> Self {
        SharedHook(hook)
    }
}

impl<H: TransitionHook> TransitionHook for SharedHook<H> {
    #[inline]
    fn on_status_change(&self, old: CircuitState, new: CircuitState) {
        self.0.on_status_change(old, new);
    }
}

impl<H> Clone for SharedHook<H> {
    fn clone(&self) -> Self {
        SharedHook(Arc::clone(&self.0))
    }
}

impl<H> fmt::Debug for SharedHook<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedHook")
    }
}
