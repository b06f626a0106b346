//! The breaker: the [`Breaker`] trait every circuit protector offers, [`CircuitProtector`] (a
//! state in a store), its configuration, and the [`Ratio`]s its limits are written in. The
//! crate's root names the same items.

mod as_stage;
mod call;
mod config;
mod protector;
mod ratio;

pub use call::{Breaker, Permit};
pub use config::{BreakerConfig, ConfigError, ValidConfig};
pub use protector::CircuitProtector;
pub use ratio::{Ratio, RatioError};
