//! Transition hooks: the core's, how a shared breaker holds one, and a boxed closure whose type
//! can be named.

pub use resilient_circuit::hook::*;

pub use crate::shared_key::SharedHook;

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

use crate::CircuitState;
