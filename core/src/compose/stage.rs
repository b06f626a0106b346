//! The stage traits: what a policy does on the way in and on the way out of a call.

use core::{future::Future, time::Duration};

use crate::Error;

/// What a stage decides once the stages inside it have finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Leave {
    /// Pass the result (as the stage left it) outward.
    Return,
    /// Run the stages inside again after waiting this long.
    Again(Duration),
}

/// One policy's part in a call returning `Result<T, E>`.
///
/// `enter` runs before the stages inside it (a breaker admits or rejects), `leave` after them
/// with their result, in place (a breaker records it; a retry decides whether to go again, and
/// when it gives up, makes the error a `RetryLimitReached`). A result is never moved from stage
/// to stage, which keeps a composed call's code small.
///
/// Every ticket is dropped once its stage is done with: after `leave` returns
/// [`Leave::Return`], or when the call ends without coming back through the stage (it panicked,
/// its future was dropped, or a time limit ran out). A ticket that holds something gives it
/// back in its `Drop`, and so marks in `leave` that it was spent, as a breaker's
/// [`Permit`](crate::Permit) does (recorded, it gives nothing back). A stack whose tickets
/// need no drop (plain data) makes a future with no drop code, which keeps firmware small.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{Error, SafetyNet, Policy, compose::{BlockingStage, Stage, Leave}};
///
/// /// Counts the calls that pass through it.
/// struct Counter(u32);
/// impl<T, E> Stage<T, E> for Counter {
///     type Ticket = ();
///     fn enter(&mut self) -> Result<(), Error<E>> {
///         self.0 += 1;
///         Ok(())
///     }
///     fn leave(&mut self, _: &mut (), _: &mut Result<T, Error<E>>) -> Leave {
///         Leave::Return
///     }
/// }
/// impl<T, E> BlockingStage<T, E> for Counter {
///     fn wait(&self, _: Duration) {}
/// }
///
/// let mut net = SafetyNet::new((resilient_circuit::RetryWithBackoff::new(2), Counter(0)));
/// let _: Result<(), Error<&str>> = net.call(|| Err("down"));
/// assert_eq!(net.policies().1.0, 3);
/// ```
pub trait Stage<T, E> {
    /// What the stage keeps while the stages inside it run.
    type Ticket;

    /// Before the stages inside: `Err` refuses the call.
    fn enter(&mut self) -> Result<Self::Ticket, Error<E>>;

    /// After the stages inside, with their result: the stage may change it before it goes
    /// outward.
    fn leave(&mut self, ticket: &mut Self::Ticket, result: &mut Result<T, Error<E>>) -> Leave;

    /// The call goes back in after this stage's [`Leave::Again`], its wait (if any) over: the
    /// attempt it asked for starts. Nothing by default; a stage that counts retries counts here,
    /// so that an `Again` a run-out time limit cancels is not counted.
    #[inline]
    fn again(&mut self, ticket: &mut Self::Ticket) {
        let _ = ticket;
    }
}

/// A stage usable in a blocking call: it waits by blocking.
pub trait BlockingStage<T, E>: Stage<T, E> {
    /// Waits before [`Leave::Again`].
    fn wait(&self, duration: Duration);
}

/// A stage usable in an async call: it waits asynchronously.
pub trait AsyncStage<T, E>: Stage<T, E> {
    /// Whether this stage limits the time of what is inside it ([`time_limit`](Self::time_limit)
    /// is asked only if so); `false` by default.
    const TIME_LIMITED: bool = false;

    /// Waits before [`Leave::Again`].
    fn wait(&self, duration: Duration) -> impl Future<Output = ()>;

    /// A timer started as the stage is entered: when it completes (with the limit) before the
    /// stages inside have finished, what runs inside is dropped and every stage inside is left
    /// with [`Error::TimedOut`], none of them sending the call back in; then this stage is left
    /// with that error. `None` (the default): no limit. See [`Timeout`](crate::Timeout).
    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<Self, T, E>> {
        None::<core::future::Pending<Duration>>
    }
}

impl<T, E, L: Stage<T, E> + ?Sized> Stage<T, E> for &mut L {
    type Ticket = L::Ticket;
    fn enter(&mut self) -> Result<Self::Ticket, Error<E>> {
        (**self).enter()
    }
    fn leave(&mut self, ticket: &mut Self::Ticket, result: &mut Result<T, Error<E>>) -> Leave {
        (**self).leave(ticket, result)
    }
    fn again(&mut self, ticket: &mut Self::Ticket) {
        (**self).again(ticket)
    }
}

impl<T, E, L: BlockingStage<T, E> + ?Sized> BlockingStage<T, E> for &mut L {
    fn wait(&self, duration: Duration) {
        (**self).wait(duration)
    }
}

impl<'a, T, E, L: AsyncStage<T, E> + ?Sized> AsyncStage<T, E> for &'a mut L {
    const TIME_LIMITED: bool = L::TIME_LIMITED;

    fn wait(&self, duration: Duration) -> impl Future<Output = ()> {
        (**self).wait(duration)
    }

    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<'a, T, E, L>> {
        (**self).time_limit()
    }
}
