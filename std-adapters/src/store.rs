//! Where breaker state lives: the core's stores and seam, and the thread-shared keyed store.

pub use resilient_circuit::store::*;

pub use crate::memory_store::{DEFAULT_MAX_ENTRIES, MemoryStore, StoreError};
pub use crate::shared::{MAX_WINDOW, SharedWindow};
pub use crate::shared_key::{SharedHook, SharedKey};
