//! The transition hook.

use crate::CircuitState;

/// Called once per real transition, after the new state is stored, never for same-to-same.
///
/// Implemented by [`NoHook`] and by any `Fn(CircuitState, CircuitState)`, including plain `fn`
/// pointers, which a `static` breaker on firmware can hold.
///
/// ```
/// use core::cell::Cell;
/// use resilient_circuit::{CircuitState, TransitionHook};
///
/// let seen = Cell::new(0);
/// let hook = |_old: CircuitState, _new: CircuitState| seen.set(seen.get() + 1);
/// hook.on_status_change(CircuitState::Closed, CircuitState::Open);
/// assert_eq!(seen.get(), 1);
/// ```
pub trait TransitionHook {
    /// `old` was left for `new`.
    fn on_status_change(&self, old: CircuitState, new: CircuitState);
}

/// No hook (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoHook;

impl TransitionHook for NoHook {
    #[inline]
    fn on_status_change(&self, _: CircuitState, _: CircuitState) {}
}

impl<F: Fn(CircuitState, CircuitState)> TransitionHook for F {
    #[inline]
    fn on_status_change(&self, old: CircuitState, new: CircuitState) {
        self(old, new)
    }
}
