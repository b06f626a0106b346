//! The outcome window of every shared key, and so the largest window a shared breaker accepts.

use resilient_circuit::state::OutcomeWindow;

/// The largest window (a ratio's denominator) a shared breaker accepts.
pub const MAX_WINDOW: u16 = 1024;

/// The outcome window of a shared breaker state.
pub type SharedWindow = OutcomeWindow<1024, 32>;
