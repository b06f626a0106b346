//! The breaker: the [`Breaker`] trait every circuit protector offers, [`CircuitProtector`] (a
//! state in a store), its configuration, the [`Ratio`]s its limits are written in, and
//! [`Leased`], a breaker stage that leaves a lost probe's slot to its lease. The crate's root
//! names the same items but `Leased`.

mod as_stage;
mod call;
mod config;
mod leased;
mod protector;
mod ratio;

pub use call::{Breaker, Permit};
pub use config::{BreakerConfig, ConfigError, ValidConfig};
pub use leased::Leased;
pub use protector::CircuitProtector;
pub use ratio::{Ratio, RatioError};
