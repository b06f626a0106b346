//! A stage's ticket while the stages inside it run. The ticket lives as long as the guard: it is
//! dropped as its loop ends, or with the call if that ends first (its future dropped, or a
//! panic), and its own `Drop` gives back what it holds. The guard itself needs no drop.

use core::marker::PhantomData;

use super::stage::{Leave, Stage};
use crate::Error;

/// A stage entered, and its ticket.
pub(super) struct Held<'a, T, E, S: Stage<T, E>> {
    stage: &'a mut S,
    ticket: S::Ticket,
    result: PhantomData<fn() -> Result<T, E>>,
}

impl<'a, T, E, S: Stage<T, E>> Held<'a, T, E, S> {
    /// Enters `stage`; `Err` when it refuses the call.
    #[inline]
    pub(super) fn enter(stage: &'a mut S) -> Result<Self, Error<E>> {
        let ticket = stage.enter()?;
        Ok(Held {
            stage,
            ticket,
            result: PhantomData,
        })
    }

    /// Leaves the stage with what the stages inside it gave, in place.
    #[inline]
    pub(super) fn leave(&mut self, result: &mut Result<T, Error<E>>) -> Leave {
        self.stage.leave(&mut self.ticket, result)
    }

    /// The call goes back in, after the stage's `Again`.
    #[inline]
    pub(super) fn again(&mut self) {
        self.stage.again(&mut self.ticket);
    }

    /// The stage.
    #[inline]
    pub(super) fn stage(&self) -> &S {
        self.stage
    }
}
