//! Where breaker state lives: the core's stores and seam, and [`MemoryStore`], the thread-safe
//! keyed store whose breakers ([`SharedBreaker`]s) share one [`KeyStore`] per key.
//!
//! How a key's state is shared by threads, and replicated to other processes, is told in the
//! project's `docs/ARCHITECTURE.md`.

#[cfg(not(loom))]
pub mod copies;
pub(crate) mod counters;
mod error;
pub(crate) mod key_store;
mod on_outage;
pub(crate) mod registry;
pub(crate) mod replica;
pub(crate) mod report;
pub(crate) mod shared_state;
mod window;

#[doc(no_inline)]
pub use resilient_circuit::store::{
    Control, CriticalSectionStore, FastPath, InlineStore, LocalHooks, StateStore, Watch,
};

#[cfg(not(loom))]
pub use copies::{CopyError, SharedCopies};
pub use error::StoreError;
pub use key_store::{KeyStore, SharedBreaker};
pub use on_outage::OnOutage;
pub use registry::{DEFAULT_MAX_ENTRIES, MemoryStore};
pub use window::{MAX_WINDOW, SharedWindow};
