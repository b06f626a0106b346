//! Policies as stages of one call: what [`SafetyNet`] and every single policy
//! run.
//!
//! A composed call is a loop, not a nest of closures: enter each stage from the outermost in,
//! run the operation, then leave each stage from the innermost out; a stage may send the call
//! back in (a retry) after a wait. Keeping the operation out of nested closures is what lets an
//! async composed call be `Send` when its parts are, so servers can spawn it.
//!
//! [`SafetyNet`], [`Timeout`] and the policy traits ([`Policy`], [`AsyncPolicy`]) live here too;
//! the crate's root names them.

mod held;
mod operation;
mod policy;
mod safety_net;
mod stack;
mod stage;
mod timeout;

pub use operation::AsyncOperation;
pub use policy::{AsyncPolicy, Policy};
pub use safety_net::SafetyNet;
pub use stack::{AsyncStack, BlockingStack};
pub use stage::{AsyncStage, BlockingStage, Leave, Stage};
pub use timeout::Timeout;
