//! What a replicated store's breakers do while their shared copies are out of reach.

/// What a breaker does while its store cannot reach the shared copies (the database, or a
/// [`SharedCopies`](crate::store::SharedCopies) of your own).
///
/// ```
/// use resilient_circuit_std::{MemoryStore, store::OnOutage};
/// # use resilient_circuit_std::store::{CopyError, SharedCopies};
/// # struct Nowhere;
/// # impl SharedCopies for Nowhere {
/// #     fn update(&self, _: &str, _: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>) -> Result<(), CopyError> {
/// #         Err("nowhere".into())
/// #     }
/// # }
///
/// // Payments must not run on a guess: reject while the shared state is unknown.
/// let store = MemoryStore::replicated(Nowhere).on_outage(OnOutage::FailClosed).build();
/// # drop(store);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnOutage {
    /// Keep serving from this process's copy of the state, changed by its own outcomes (which
    /// are written once the shared copies are back). One warning per outage. As the Python
    /// package does.
    FailOpen,
    /// Reject every call with [`RejectReason::StoreUnavailable`](crate::RejectReason) until
    /// the shared copies are back: the state is unknown, so nothing runs.
    FailClosed,
}
