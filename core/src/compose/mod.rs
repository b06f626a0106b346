//! Policies as stages of one call: what [`SafetyNet`](crate::SafetyNet) and every single policy
//! run.
//!
//! A composed call is a loop, not a nest of closures: enter each stage from the outermost in,
//! run the operation, then leave each stage from the innermost out; a stage may send the call
//! back in (a retry) after a wait. Keeping the operation out of nested closures is what lets an
//! async composed call be `Send` when its parts are, so servers can spawn it.
//!
//! [`SafetyNet`](crate::SafetyNet), [`Timeout`](crate::Timeout) and the policy traits
//! ([`Policy`](crate::Policy), [`AsyncPolicy`](crate::AsyncPolicy)) live here too, and are
//! named from the crate's root.

pub(crate) mod policy;
pub(crate) mod safety_net;
mod stack;
mod stage;
pub(crate) mod timeout;

pub use stack::{AsyncStack, BlockingStack};
pub use stage::{AsyncStage, BlockingStage, Leave, Stage};
