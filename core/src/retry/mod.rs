//! Retry with backoff (SEMANTICS §3): [`RetryWithBackoff`](crate::RetryWithBackoff), and its
//! rules as a function ([`RetryWithBackoff::decide`](crate::RetryWithBackoff::decide)) for code
//! that runs the attempts itself.

mod attempt;
pub(crate) mod policy;
mod stage;

pub use attempt::{Attempt, Decision};
