//! A stage's ticket while the stages inside it run. If the call ends before the stage returns
//! (its future dropped, or a panic), the ticket is dropped with the guard, and the ticket's own
//! `Drop` gives back what it holds: the guard itself needs no drop.

use core::marker::PhantomData;

use super::stage::{Leave, Stage};
use crate::Error;

/// A stage entered, and its ticket until it returns.
pub(super) struct Held<'a, T, E, S: Stage<T, E>> {
    stage: &'a mut S,
    // `None` once the stage has returned or been given up.
    ticket: Option<S::Ticket>,
    result: PhantomData<fn() -> Result<T, E>>,
}

impl<'a, T, E, S: Stage<T, E>> Held<'a, T, E, S> {
    /// Enters `stage`; `Err` when it refuses the call.
    #[inline]
    pub(super) fn enter(stage: &'a mut S) -> Result<Self, Error<E>> {
        let ticket = stage.enter()?;
        Ok(Held {
            stage,
            ticket: Some(ticket),
            result: PhantomData,
        })
    }

    /// Leaves the stage with what the stages inside it gave.
    #[inline]
    pub(super) fn leave(&mut self, result: Result<T, Error<E>>) -> Leave<T, E> {
        let Some(ticket) = self.ticket.as_mut() else {
            // Not reached: a loop stops at its stage's `Return`.
            return Leave::Return(result);
        };
        let leave = self.stage.leave(ticket, result);
        if let Leave::Return(_) = leave {
            self.ticket = None;
        }
        leave
    }

    /// Drops the ticket: the call will not come back through the stage.
    #[inline]
    pub(super) fn give_up(&mut self) {
        self.ticket = None;
    }

    /// The call goes back in, after the stage's `Again`.
    #[inline]
    pub(super) fn again(&mut self) {
        if let Some(ticket) = self.ticket.as_mut() {
            self.stage.again(ticket);
        }
    }

    /// The stage.
    #[inline]
    pub(super) fn stage(&self) -> &S {
        self.stage
    }
}
