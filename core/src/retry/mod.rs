//! Retry with backoff (SEMANTICS §3): [`RetryWithBackoff`], and its rules as a function
//! ([`RetryWithBackoff::decide`]) for code that runs the attempts itself. The crate's root names
//! [`RetryWithBackoff`] too.

mod attempt;
mod policy;
mod stage;

pub use attempt::{Attempt, Decision};
pub use policy::RetryWithBackoff;
