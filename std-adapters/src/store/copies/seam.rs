//! The seam a key-value store implements to hold a fleet's shared copies.

use std::sync::Arc;

/// Why an update of a shared copy failed: the key-value store's own error.
pub type CopyError = Box<dyn std::error::Error + Send + Sync>;

/// Where a fleet keeps the shared copy of each breaker's state: a key-value store with an
/// atomic read-modify-write per key (Redis with `WATCH`/`MULTI`/`EXEC` or a script, etcd, a
/// database row). [`store::copies`](crate::store::copies) shows one in a dozen lines.
pub trait SharedCopies: Send + Sync + 'static {
    /// Replaces the bytes stored under `key` with `change(stored)`, in one atomic step;
    /// `stored` is `None` when nothing is stored yet.
    ///
    /// `change` may run more than once (a compare-and-swap that lost a race runs it again):
    /// the bytes of its last run are the ones to store. An error may leave them stored or not
    /// (a reply lost with the connection): the same changes are sent again, and a change
    /// already in the copy does not go in twice. Return in bounded time: a breaker made on the
    /// store waits for its key's first update, and [`Control`](crate::store::Control) for its
    /// own. The error's message is logged (one warning per outage): keep credentials out of
    /// it.
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError>;
}

impl<T: SharedCopies + ?Sized> SharedCopies for Arc<T> {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        (**self).update(key, change)
    }
}
