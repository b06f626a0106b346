//! The breaker: the [`Breaker`] trait every circuit protector offers, [`CircuitProtector`] (a
//! state in a store), and its configuration. Its items are named from the crate's root.

mod as_stage;
mod call;
mod config;
mod protector;

pub use call::{Breaker, Permit};
pub use config::{BreakerConfig, ConfigError, ValidConfig};
pub use protector::CircuitProtector;
