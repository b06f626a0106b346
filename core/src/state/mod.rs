//! The breaker's state and its pure transition functions (SEMANTICS §2).

mod machine;
mod window;

pub use machine::{Admission, BreakerState, CircuitState, Transition};
pub use window::{Outcome, OutcomeWindow, Outcomes, Window};
