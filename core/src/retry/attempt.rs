//! How an attempt ended, and what a retry does next.

use core::time::Duration;

use crate::{Error, Rejected};

/// How an attempt ended, as a retry judges it.
#[derive(Debug)]
pub enum Attempt<'a, T, E> {
    /// The operation returned this value.
    Value(&'a T),
    /// The operation failed with this error.
    Failed(&'a E),
    /// A breaker refused the attempt; the operation did not run.
    Rejected(Rejected),
    /// A time limit inside the retry ran out (a failure).
    TimedOut(Duration),
}

impl<'a, T, E> Attempt<'a, T, E> {
    /// How an attempt that came through inner policies ended: a retry that gave up inside counts
    /// as its last error.
    pub fn of(result: &'a Result<T, Error<E>>) -> Self {
        match result {
            Ok(value) => Attempt::Value(value),
            Err(error) => Attempt::of_error(error),
        }
    }

    /// How an attempt that ended with `error` counts.
    pub fn of_error(error: &'a Error<E>) -> Self {
        match error {
            Error::Rejected(rejected) => Attempt::Rejected(*rejected),
            Error::Operation(e) | Error::RetryLimitReached { last_error: e, .. } => {
                Attempt::Failed(e)
            }
            Error::TimedOut(elapsed) => Attempt::TimedOut(elapsed.limit()),
        }
    }
}

/// What a retry does after an attempt: [`RetryWithBackoff::decide`](crate::RetryWithBackoff::decide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decision {
    /// Try again after waiting this long.
    RetryAfter(Duration),
    /// Stop and return the attempt's outcome as it is: a value or an error the classifiers do
    /// not call a failure, a rejection not worth waiting out, or a failure that asks for a wait
    /// longer than [`max_retry_after`](crate::RetryWithBackoff::max_retry_after).
    Return,
    /// Stop: the attempts ran out on a failure. An error becomes
    /// [`Error::RetryLimitReached`]; a value, or a time limit that ran out, is returned as it
    /// is.
    GiveUp,
}
