//! One error type for every way a policy says no, and the values it carries. The crate's root
//! names the same items.

use core::{fmt, time::Duration};

use crate::divide::duration_new;

/// A call refused by an OPEN breaker, a HALF_OPEN one with every probe slot taken, or a
/// breaker whose shared store is unreachable and set to fail closed. The operation did not run.
/// Cheap to make and to return: 8 bytes, no allocation.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{RejectReason, Rejected};
///
/// let r = Rejected::new(Duration::from_secs(3), RejectReason::Open);
/// assert_eq!(r.retry_after(), Duration::from_secs(3));
/// assert_eq!(r.reason(), RejectReason::Open);
/// assert_eq!(r.to_string(), "the circuit breaker is OPEN; retry after 3s");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rejected {
    // Eight bytes keep every `Result` carrying a rejection small on 32-bit targets: the
    // `Duration` in two u32 halves (seconds saturate at about 136 years), the reason in the two
    // bits above the nanoseconds (which stay below 2^30).
    secs: u32,
    nanos_and_reason: u32,
}

const NANOS: u32 = (1 << 30) - 1;

/// `duration`'s whole seconds, saturating at `u32::MAX` (about 136 years).
const fn saturating_secs(duration: Duration) -> u32 {
    let secs = duration.as_secs();
    if secs > u32::MAX as u64 {
        u32::MAX
    } else {
        secs as u32
    }
}

impl Rejected {
    /// A rejection: call again after `retry_after`, refused for `reason`.
    pub const fn new(retry_after: Duration, reason: RejectReason) -> Self {
        Rejected {
            secs: saturating_secs(retry_after),
            nanos_and_reason: retry_after.subsec_nanos() | (reason as u32) << 30,
        }
    }

    /// How long until the breaker admits a call again.
    pub const fn retry_after(&self) -> Duration {
        duration_new(self.secs as u64, self.nanos_and_reason & NANOS)
    }

    /// Why the call was refused.
    pub const fn reason(&self) -> RejectReason {
        match self.nanos_and_reason >> 30 {
            0 => RejectReason::Open,
            1 => RejectReason::ProbesBusy,
            _ => RejectReason::StoreUnavailable,
        }
    }

    /// [`retry_after`](Self::retry_after) in `embassy_time`'s ticks (feature `embassy`), rounded
    /// up, for `Timer::after`; computed without a 64-bit division.
    ///
    /// ```
    /// use core::time::Duration;
    /// use resilient_circuit::{RejectReason, Rejected};
    ///
    /// let rejected = Rejected::new(Duration::from_millis(1500), RejectReason::Open);
    /// assert_eq!(rejected.retry_after_embassy(), embassy_time::Duration::from_millis(1500));
    /// ```
    #[cfg(feature = "embassy")]
    pub fn retry_after_embassy(&self) -> embassy_time::Duration {
        crate::time::ticks_of(self.retry_after())
    }
}

/// The rejection in `error` or in its chain of [`source`](core::error::Error::source)s: how
/// code reads `retry_after` back from an error that went through other layers (a driver's
/// error that wraps a `bus::ProtectedBus`'s, a boxed error). An [`Error::Rejected`]'s
/// source is its [`Rejected`].
///
/// ```
/// use core::{fmt, time::Duration};
/// use resilient_circuit::{Error, RejectReason, Rejected, error::find_rejection};
///
/// /// A driver's error, wrapping the bus's.
/// #[derive(Debug)]
/// enum SensorError<E> {
///     Bus(E),
///     BadChecksum,
/// }
/// impl<E: fmt::Debug> fmt::Display for SensorError<E> {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "{self:?}")
///     }
/// }
/// impl<E: core::error::Error + 'static> core::error::Error for SensorError<E> {
///     fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
///         match self {
///             SensorError::Bus(e) => Some(e),
///             SensorError::BadChecksum => None,
///         }
///     }
/// }
///
/// let refused = Rejected::new(Duration::from_secs(2), RejectReason::Open);
/// let error = SensorError::Bus(Error::<fmt::Error>::Rejected(refused));
/// assert_eq!(find_rejection(&error), Some(refused));
/// assert_eq!(find_rejection(&SensorError::<Error<fmt::Error>>::BadChecksum), None);
/// ```
pub fn find_rejection(error: &(dyn core::error::Error + 'static)) -> Option<Rejected> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rejected) = error.downcast_ref::<Rejected>() {
            return Some(*rejected);
        }
        next = error.source();
    }
    None
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("retry_after", &self.retry_after())
            .field("reason", &self.reason())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Rejected {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Rejected {{ retry_after: {}.{=u32:09} s, reason: {} }}",
            self.secs,
            self.nanos_and_reason & NANOS,
            self.reason()
        );
    }
}

/// Why a breaker refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[non_exhaustive]
pub enum RejectReason {
    /// The breaker is OPEN and its cooldown has not ended.
    Open,
    /// The breaker is HALF_OPEN and every probe slot is taken.
    ProbesBusy,
    /// The breaker's shared store cannot be reached and its owner chose to fail closed: the
    /// state is unknown, so no call runs.
    StoreUnavailable,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason() {
            RejectReason::Open => "the circuit breaker is OPEN",
            RejectReason::ProbesBusy => {
                "the circuit breaker is HALF_OPEN with every probe slot taken"
            }
            RejectReason::StoreUnavailable => {
                "the circuit breaker's store is unreachable (failing closed)"
            }
        };
        write!(f, "{why}; retry after {:?}", self.retry_after())
    }
}

impl core::error::Error for Rejected {}

/// What a protected call returns instead of its value: the operation's own error, a rejection,
/// a retry that ran out of attempts, or a time limit that ran out. The same type for a breaker, a retry and any
/// [`SafetyNet`](crate::SafetyNet) of them.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{Error, RejectReason, Rejected};
///
/// let e: Error<&str> = Error::RetryLimitReached { attempts: 4, last_error: "timeout" };
/// assert_eq!(e.to_string(), "gave up after 4 attempts; last error: timeout");
/// assert_eq!(e.operation_error(), Some(&"timeout"));
/// let r: Error<&str> = Error::Rejected(Rejected::new(Duration::from_secs(3), RejectReason::Open));
/// assert_eq!(r.retry_after(), Some(Duration::from_secs(3)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The operation ran and failed with this error, returned unchanged.
    Operation(E),
    /// A breaker refused the call; the operation did not run (this time).
    Rejected(Rejected),
    /// A retry ran the operation `attempts` times and every attempt failed.
    RetryLimitReached {
        /// How many times the operation ran.
        attempts: u32,
        /// The last attempt's error.
        last_error: E,
    },
    /// A [`Timeout`](crate::Timeout) ran out: what ran inside it was dropped.
    TimedOut(Elapsed),
}

impl<E> Error<E> {
    /// The operation's error, if the operation ran and failed.
    pub fn operation_error(&self) -> Option<&E> {
        match self {
            Error::Operation(e) | Error::RetryLimitReached { last_error: e, .. } => Some(e),
            Error::Rejected(_) | Error::TimedOut(_) => None,
        }
    }

    /// The operation's error, by value.
    pub fn into_operation_error(self) -> Option<E> {
        match self {
            Error::Operation(e) | Error::RetryLimitReached { last_error: e, .. } => Some(e),
            Error::Rejected(_) | Error::TimedOut(_) => None,
        }
    }

    /// Whether a [`Timeout`](crate::Timeout) ran out.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Error::TimedOut(_))
    }

    /// How long to wait before calling again, if a breaker said no.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Rejected(r) => Some(r.retry_after()),
            _ => None,
        }
    }

    /// Whether a breaker refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }

    /// In place: a retry gave up after `attempts`, the last of which failed with this error. An
    /// operation's error becomes a [`RetryLimitReached`](Error::RetryLimitReached) (an inner
    /// retry's keeps its error and takes the outer count); a rejection or a timeout stays.
    pub(crate) fn give_up_after(&mut self, attempts: u32) {
        match self {
            Error::RetryLimitReached {
                attempts: count, ..
            } => *count = attempts,
            Error::Operation(_) => {
                // The error moves from one variant to the other through a placeholder.
                let placeholder = Error::TimedOut(Elapsed::new(Duration::ZERO));
                if let Error::Operation(last_error) = core::mem::replace(self, placeholder) {
                    *self = Error::RetryLimitReached {
                        attempts,
                        last_error,
                    };
                }
            }
            Error::Rejected(_) | Error::TimedOut(_) => {}
        }
    }
}

impl<E> From<Rejected> for Error<E> {
    fn from(rejected: Rejected) -> Self {
        Error::Rejected(rejected)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Operation(e) => e.fmt(f),
            Error::Rejected(r) => r.fmt(f),
            Error::RetryLimitReached {
                attempts,
                last_error,
            } => {
                write!(
                    f,
                    "gave up after {attempts} attempts; last error: {last_error}"
                )
            }
            Error::TimedOut(elapsed) => elapsed.fmt(f),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Operation(e) => e.source(),
            Error::Rejected(rejected) => Some(rejected),
            Error::TimedOut(elapsed) => Some(elapsed),
            Error::RetryLimitReached { last_error, .. } => Some(last_error),
        }
    }
}

/// A [`Timeout`](crate::Timeout)'s limit ran out before the call finished. Eight bytes, as a
/// [`Rejected`].
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::Elapsed;
///
/// let elapsed = Elapsed::new(Duration::from_millis(250));
/// assert_eq!(elapsed.limit(), Duration::from_millis(250));
/// assert_eq!(elapsed.to_string(), "the call took longer than 250ms");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Elapsed {
    // As in `Rejected`: seconds saturating at about 136 years, so the value stays 8 bytes.
    secs: u32,
    nanos: u32,
}

impl Elapsed {
    /// The limit `limit` ran out.
    pub const fn new(limit: Duration) -> Self {
        Elapsed {
            secs: saturating_secs(limit),
            nanos: limit.subsec_nanos(),
        }
    }

    /// The limit that ran out.
    pub const fn limit(&self) -> Duration {
        duration_new(self.secs as u64, self.nanos)
    }
}

impl fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elapsed")
            .field("limit", &self.limit())
            .finish()
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the call took longer than {:?}", self.limit())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Elapsed {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Elapsed {{ limit: {}.{=u32:09} s }}",
            self.secs,
            self.nanos
        );
    }
}

impl core::error::Error for Elapsed {}

/// Manual control could not reach the breaker's state in time; nothing was changed.
///
/// Only a store whose state lives elsewhere (a database shared by a fleet) says this; the
/// core's stores and the in-process store always succeed.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::StoreUnavailable;
///
/// let e = StoreUnavailable { retry_after: Duration::from_millis(400) };
/// assert_eq!(e.to_string(), "the shared breaker store is unreachable; it tries again in 400ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreUnavailable {
    /// When the store expects to reach its state again.
    pub retry_after: Duration,
}

impl fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the shared breaker store is unreachable; it tries again in {:?}",
            self.retry_after
        )
    }
}

impl core::error::Error for StoreUnavailable {}
