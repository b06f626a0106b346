//! A transaction the policy runs by reference: the transaction stays in the bus method's
//! future, and the policy's future holds a pointer to it. Moving it in by value costs a
//! `memcpy` per call on a Cortex-M0+.

use core::future::Future;

use crate::{Error, compose::AsyncOperation};

/// One bus transaction, attempted as many times as the policy says.
pub(super) trait Transaction<E> {
    /// Runs the transaction once.
    fn attempt(&mut self) -> impl Future<Output = Result<(), Error<E>>>;
}

/// A transaction by reference, as the policy's operation.
pub(super) struct ByRef<'t, T>(pub(super) &'t mut T);

impl<E, T: Transaction<E>> AsyncOperation<(), E> for ByRef<'_, T> {
    #[inline]
    fn attempt(&mut self) -> impl Future<Output = Result<(), Error<E>>> {
        self.0.attempt()
    }
}
