//! Where a breaker's state lives and how a change to it is made atomic.

mod fast_path;
mod inline;
#[cfg(any(feature = "embassy-sync", feature = "embassy-sync-07"))]
mod raw_mutex;
mod seam;
mod watch;

pub use fast_path::FastPath;
pub use inline::{CriticalSectionStore, InlineStore};
#[cfg(feature = "embassy-sync")]
pub use raw_mutex::RawMutexStore;
#[cfg(feature = "embassy-sync-07")]
pub use raw_mutex::RawMutexStore07;
pub use seam::{Control, StateStore};
pub use watch::{LocalHooks, Watch};
