//! How long to wait after a failed attempt (SEMANTICS §3).

mod delay;
mod exponential;
mod jitter;
mod rng;

pub use delay::{Backoff, BackoffError, FixedDelay, NoBackoff};
pub use exponential::{ExponentialDelay, NoJitter};
pub use jitter::{DecorrelatedJitter, FullJitter, UniformJitter};
pub use rng::SplitMix64;
