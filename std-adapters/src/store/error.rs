//! Why a keyed store could not make a breaker.

use std::fmt;

use resilient_circuit::{BreakerConfig, ConfigError};

use crate::key::{BreakerKey, KeyError};

/// Why a breaker could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The key is not usable.
    Key(KeyError),
    /// The configuration does not fit ([`MAX_WINDOW`](crate::store::MAX_WINDOW) outcomes at most).
    Config(ConfigError),
    /// Every key is held by a breaker or OPEN, so no room for a new one.
    Full {
        /// The store's bound.
        max_entries: usize,
    },
    /// The key's state, held by a handle or a live OPEN, was made with another configuration:
    /// every handle of a key applies the same limits.
    ConfigMismatch {
        /// The key.
        key: BreakerKey,
        /// The configuration the key was made with.
        existing: BreakerConfig,
    },
    /// The configuration has a [`probe_lease`](BreakerConfig::probe_lease): a keyed store gives
    /// a probe slot back itself when its call ends without an outcome (and the PostgreSQL store
    /// leases the slots of its row with its builder's own `probe_lease`).
    ProbeLease,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Key(e) => e.fmt(f),
            StoreError::Config(e) => e.fmt(f),
            StoreError::Full { max_entries } => write!(
                f,
                "the breaker store is full: all {max_entries} keys are in use or OPEN; raise its max_entries"
            ),
            StoreError::ConfigMismatch { key, existing } => write!(
                f,
                "breaker {key} already exists with another configuration ({existing:?}); every handle of a key must use the same one"
            ),
            StoreError::ProbeLease => f.write_str(
                "a keyed store takes no probe_lease in a breaker's configuration: it gives probe slots back itself (a PostgreSQL store's builder sets how long its row lends them)"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Key(e) => Some(e),
            StoreError::Config(e) => Some(e),
            StoreError::Full { .. }
            | StoreError::ConfigMismatch { .. }
            | StoreError::ProbeLease => None,
        }
    }
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        StoreError::Key(e)
    }
}

impl From<ConfigError> for StoreError {
    fn from(e: ConfigError) -> Self {
        StoreError::Config(e)
    }
}
