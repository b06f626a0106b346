//! How an outcome counts: failure, success or not at all.
//!
//! A breaker and a retry each judge an outcome with two classifiers: one for errors
//! ([`Classify`], set with `should_handle`) and one for values ([`ClassifyValue`], set with
//! `classify_values`), so an `Ok` response can count as a failure (an HTTP 503, a gRPC
//! `UNAVAILABLE`, an `"ok": false` body) while the error classifiers stay what they were.

use core::time::Duration;

use crate::Error;

/// How a breaker counts an outcome, and whether a retry tries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// A failure: counts towards tripping; a retry tries again.
    Failure,
    /// A success: the error is still returned to the caller unchanged; a retry stops.
    Success,
    /// Not recorded at all; a retry stops.
    Ignore,
}

impl From<bool> for Verdict {
    /// `true` (handled) is a failure, `false` a success, as the Python package's `should_handle`.
    fn from(handled: bool) -> Self {
        if handled {
            Verdict::Failure
        } else {
            Verdict::Success
        }
    }
}

/// Decides how an error of type `E` counts.
///
/// Implemented by [`AllErrors`] (the default), [`ShouldHandle`] (a yes/no predicate, as the
/// Python package's `should_handle`) and by any `Fn(&E) -> Verdict` closure.
///
/// ```
/// use resilient_circuit::{Classify, ShouldHandle, classify::Verdict};
///
/// #[derive(Debug)]
/// enum SensorError { Nak, Timeout, BadRequest }
///
/// let transient = ShouldHandle(|e: &SensorError| matches!(e, SensorError::Nak | SensorError::Timeout));
/// assert_eq!(transient.classify(&SensorError::Timeout), Verdict::Failure);
/// assert_eq!(transient.classify(&SensorError::BadRequest), Verdict::Success);
///
/// let three_way = |e: &SensorError| match e {
///     SensorError::Nak => Verdict::Failure,
///     SensorError::Timeout => Verdict::Ignore,
///     SensorError::BadRequest => Verdict::Success,
/// };
/// assert_eq!(three_way.classify(&SensorError::Timeout), Verdict::Ignore);
/// ```
pub trait Classify<E> {
    /// How `error` counts.
    fn classify(&self, error: &E) -> Verdict;

    /// How long the failed call asked to wait before it is tried again (a server's
    /// `Retry-After`), if it said; `None` by default. A retry waits the longer of this and its
    /// own delay, and gives up if this is longer than its
    /// [`max_retry_after`](crate::RetryWithBackoff::max_retry_after).
    #[inline]
    fn retry_after(&self, error: &E) -> Option<Duration> {
        let _ = error;
        None
    }

    /// How a finished call counts: a value is a success, an error as [`classify`](Self::classify)
    /// says.
    #[inline]
    fn verdict<T>(&self, result: &Result<T, E>) -> Verdict
    where
        Self: Sized,
    {
        verdict(self, &AllValues, result)
    }

    /// How a finished call counts when its error came through inner policies: a rejection by an
    /// inner breaker is not recorded; a retry that gave up counts as its last error; a time
    /// limit that ran out is a failure.
    #[inline]
    fn verdict_of_composed<T>(&self, result: &Result<T, Error<E>>) -> Verdict
    where
        Self: Sized,
    {
        verdict_of_composed(self, &AllValues, result)
    }
}

/// Every error is a failure (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AllErrors;

impl<E> Classify<E> for AllErrors {
    #[inline]
    fn classify(&self, _: &E) -> Verdict {
        Verdict::Failure
    }
}

/// A yes/no predicate: `true` counts the error as a failure, `false` as a success.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShouldHandle<F>(pub F);

impl<E, F: Fn(&E) -> bool> Classify<E> for ShouldHandle<F> {
    #[inline]
    fn classify(&self, error: &E) -> Verdict {
        Verdict::from((self.0)(error))
    }
}

impl<E, F: Fn(&E) -> Verdict> Classify<E> for F {
    #[inline]
    fn classify(&self, error: &E) -> Verdict {
        self(error)
    }
}

/// Decides how a value of type `T` (a call that returned `Ok`) counts.
///
/// Implemented by [`AllValues`] (the default: every value is a success) and by any
/// `Fn(&T) -> Verdict` closure. A [`Verdict::Failure`] counts towards tripping and is retried;
/// the value itself is still returned to the caller.
///
/// ```
/// use resilient_circuit::{ClassifyValue, classify::Verdict};
///
/// struct Reply { status: u16 }
///
/// let unavailable_fails = |r: &Reply| if r.status == 503 { Verdict::Failure } else { Verdict::Success };
/// assert_eq!(unavailable_fails.classify_value(&Reply { status: 503 }), Verdict::Failure);
/// assert_eq!(unavailable_fails.classify_value(&Reply { status: 200 }), Verdict::Success);
/// ```
pub trait ClassifyValue<T> {
    /// How `value` counts.
    fn classify_value(&self, value: &T) -> Verdict;

    /// How long the call that returned `value` asked to wait before it is tried again (an HTTP
    /// response's `Retry-After`), if it said; `None` by default. Asked only of a value judged a
    /// failure; see [`Classify::retry_after`].
    #[inline]
    fn retry_after(&self, value: &T) -> Option<Duration> {
        let _ = value;
        None
    }
}

/// Every value is a success (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AllValues;

impl<T> ClassifyValue<T> for AllValues {
    #[inline]
    fn classify_value(&self, _: &T) -> Verdict {
        Verdict::Success
    }
}

impl<T, F: Fn(&T) -> Verdict> ClassifyValue<T> for F {
    #[inline]
    fn classify_value(&self, value: &T) -> Verdict {
        self(value)
    }
}

/// How a finished call counts: a value as `values` says, an error as `errors` says.
///
/// ```
/// use resilient_circuit::classify::{self, AllErrors, Verdict};
///
/// let values = |v: &u16| if *v >= 500 { Verdict::Failure } else { Verdict::Success };
/// assert_eq!(classify::verdict(&AllErrors, &values, &Ok::<u16, ()>(503)), Verdict::Failure);
/// assert_eq!(classify::verdict(&AllErrors, &values, &Err::<u16, ()>(())), Verdict::Failure);
/// ```
#[inline]
pub fn verdict<T, E>(
    errors: &impl Classify<E>,
    values: &impl ClassifyValue<T>,
    result: &Result<T, E>,
) -> Verdict {
    match result {
        Ok(value) => values.classify_value(value),
        Err(error) => errors.classify(error),
    }
}

/// How a finished call counts when its error came through inner policies: a value as `values`
/// says; a rejection by an inner breaker is not recorded; a retry that gave up counts as its
/// last error; a time limit that ran out is a failure.
#[inline]
pub fn verdict_of_composed<T, E>(
    errors: &impl Classify<E>,
    values: &impl ClassifyValue<T>,
    result: &Result<T, Error<E>>,
) -> Verdict {
    // On the result itself, not through `Attempt::of`: nothing needs copying out.
    match result {
        Ok(value) => values.classify_value(value),
        Err(
            Error::Operation(error)
            | Error::RetryLimitReached {
                last_error: error, ..
            },
        ) => errors.classify(error),
        Err(Error::Rejected(_)) => Verdict::Ignore,
        Err(Error::TimedOut(_)) => Verdict::Failure,
    }
}

#[cfg(feature = "defmt")]
impl<F> defmt::Format for ShouldHandle<F> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "ShouldHandle(..)");
    }
}
