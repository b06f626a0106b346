//! [`RetryWithBackoff`]: its parts, and its rules as a function ([`RetryWithBackoff::decide`]).

use core::time::Duration;

use super::attempt::{Attempt, Decision};
use crate::{
    Classify, ClassifyValue,
    backoff::{Backoff, NoBackoff},
    classify::{AllErrors, AllValues, Verdict},
    time::NoSleep,
};

/// Runs an operation again after it fails (the Python package's `RetryWithBackoffPolicy`).
///
/// - `max_retries` counts retries: `max_retries = 3` runs the operation at most 4 times.
/// - After failed attempt `k` it waits `backoff.delay(k)`; nothing is waited after the last.
/// - An error the classifier does not call a failure is returned at once.
/// - A value is returned at once, unless the value classifier (see
///   [`classify_values`](Self::classify_values)) calls it a failure: then it is retried like a
///   failed attempt, and when the attempts run out the last value is returned.
/// - When the attempts run out: [`Error::RetryLimitReached`](crate::Error::RetryLimitReached) with the attempts and last error.
/// - A breaker's [`Error::Rejected`](crate::Error::Rejected) is waited out only if its `retry_after` is no longer than
///   the delay the retry would wait anyway; otherwise it is returned at once.
/// - A failed call that asks for a wait (a server's `Retry-After`, which the classifiers read:
///   [`Classify::retry_after`]) is retried after the longer of that wait and the backoff's
///   delay, or not at all if it asks for more than
///   [`max_retry_after`](Self::max_retry_after) (60 s unless
///   [`with_max_retry_after`](Self::with_max_retry_after) says otherwise).
///
/// `B` is the [`Backoff`], `S` the sleeper ([`Sleep`](crate::time::Sleep) for [`Policy`](crate::Policy), [`AsyncSleep`](crate::time::AsyncSleep) for
/// [`AsyncPolicy`](crate::AsyncPolicy)), `K` the [`Classify`]er of errors, `V` the [`ClassifyValue`] of values. A retry is cheap to build and holds per-call state
/// (a jitter generator), so each caller owns one; the breakers it wraps are shared.
///
/// ```
/// use core::{cell::Cell, time::Duration};
/// use resilient_circuit::{Error, Policy, RetryWithBackoff, backoff::FixedDelay, time::Sleep};
///
/// struct Recorder<'a>(&'a Cell<Duration>);
/// impl Sleep for Recorder<'_> {
///     fn sleep(&self, d: Duration) { self.0.set(self.0.get() + d); }
/// }
///
/// let slept = Cell::new(Duration::ZERO);
/// let mut retry = RetryWithBackoff::new(2)
///     .with_backoff(FixedDelay(Duration::from_secs(1)), Recorder(&slept));
/// let mut runs = 0;
/// let result: Result<(), _> = retry.call(|| { runs += 1; Err("down") });
/// assert_eq!(result, Err(Error::RetryLimitReached { attempts: 3, last_error: "down" }));
/// assert_eq!(slept.get(), Duration::from_secs(2)); // no wait after the last attempt
/// ```
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RetryWithBackoff<B = NoBackoff, S = NoSleep, K = AllErrors, V = AllValues> {
    max_retries: u32,
    max_retry_after: Duration,
    backoff: B,
    pub(super) sleeper: S,
    classifier: K,
    values: V,
}

impl RetryWithBackoff {
    /// The Python package's default: 3 retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// The longest wait a failed call may ask for (a server's `Retry-After`) and still be
    /// retried, unless [`with_max_retry_after`](RetryWithBackoff::with_max_retry_after) says
    /// otherwise: 60 s.
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

    /// At most `max_retries` retries (`max_retries + 1` attempts), no wait between them, every
    /// error retried.
    pub const fn new(max_retries: u32) -> Self {
        RetryWithBackoff {
            max_retries,
            max_retry_after: Self::DEFAULT_MAX_RETRY_AFTER,
            backoff: NoBackoff,
            sleeper: NoSleep,
            classifier: AllErrors,
            values: AllValues,
        }
    }
}

impl Default for RetryWithBackoff {
    /// [`DEFAULT_MAX_RETRIES`](Self::DEFAULT_MAX_RETRIES) retries, no wait, every error retried.
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_RETRIES)
    }
}

impl<B, S, K, V> RetryWithBackoff<B, S, K, V> {
    /// The same retry with the parts `parts` makes of these.
    fn with_parts<B2, S2, K2, V2>(
        self,
        parts: impl FnOnce(B, S, K, V) -> (B2, S2, K2, V2),
    ) -> RetryWithBackoff<B2, S2, K2, V2> {
        let RetryWithBackoff {
            max_retries,
            max_retry_after,
            backoff,
            sleeper,
            classifier,
            values,
        } = self;
        let (backoff, sleeper, classifier, values) = parts(backoff, sleeper, classifier, values);
        RetryWithBackoff {
            max_retries,
            max_retry_after,
            backoff,
            sleeper,
            classifier,
            values,
        }
    }
}

impl<K, V> RetryWithBackoff<NoBackoff, NoSleep, K, V> {
    /// Wait `backoff.delay(k)` after failed attempt `k`, using `sleeper` to wait.
    pub fn with_backoff<B: Backoff, S>(
        self,
        backoff: B,
        sleeper: S,
    ) -> RetryWithBackoff<B, S, K, V> {
        self.with_parts(|_, _, classifier, values| (backoff, sleeper, classifier, values))
    }
}

impl<B, S, V> RetryWithBackoff<B, S, AllErrors, V> {
    /// Decide which errors are worth another attempt: see [`Classify`]. Only
    /// [`Verdict::Failure`] is retried.
    pub fn should_handle<K>(self, classifier: K) -> RetryWithBackoff<B, S, K, V> {
        self.with_parts(|backoff, sleeper, _, values| (backoff, sleeper, classifier, values))
    }
}

impl<B, S, K> RetryWithBackoff<B, S, K, AllValues> {
    /// Decide which values are worth another attempt: see [`ClassifyValue`]. Only
    /// [`Verdict::Failure`] is retried; when the attempts run out, the last value is returned.
    ///
    /// ```
    /// use resilient_circuit::{Policy, RetryWithBackoff, classify::Verdict};
    ///
    /// let mut retry = RetryWithBackoff::new(2)
    ///     .classify_values(|status: &u16| if *status == 503 { Verdict::Failure } else { Verdict::Success });
    /// let mut replies = [503, 503, 200].into_iter();
    /// assert_eq!(retry.call(|| Ok::<_, ()>(replies.next().unwrap())), Ok(200));
    /// let mut runs = 0;
    /// assert_eq!(retry.call(|| { runs += 1; Ok::<_, ()>(503) }), Ok(503)); // the last value
    /// assert_eq!(runs, 3);
    /// ```
    pub fn classify_values<V>(self, values: V) -> RetryWithBackoff<B, S, K, V> {
        self.with_parts(|backoff, sleeper, classifier, _| (backoff, sleeper, classifier, values))
    }
}

impl<B: Backoff, S, K, V> RetryWithBackoff<B, S, K, V> {
    /// Retries after the first attempt.
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Attempts at most: `max_retries + 1`.
    pub const fn max_attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// The longest wait a failed call may ask for and still be retried.
    pub const fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// Retry a failed call that asks for a wait (a server's `Retry-After`, read by the
    /// classifiers' `retry_after`) only if it asks for at most `max`; a longer wait ends the
    /// call at once with its outcome, as a rejection longer than the retry's delay does.
    ///
    /// ```
    /// use core::time::Duration;
    /// use resilient_circuit::{ClassifyValue, RetryWithBackoff, classify::Verdict, retry::{Attempt, Decision}};
    ///
    /// /// A reply that is a status and the seconds the server asked to wait.
    /// struct Busy;
    /// impl ClassifyValue<(u16, u64)> for Busy {
    ///     fn classify_value(&self, reply: &(u16, u64)) -> Verdict {
    ///         if reply.0 == 503 { Verdict::Failure } else { Verdict::Success }
    ///     }
    ///     fn retry_after(&self, reply: &(u16, u64)) -> Option<Duration> {
    ///         Some(Duration::from_secs(reply.1))
    ///     }
    /// }
    ///
    /// let mut retry = RetryWithBackoff::new(3).classify_values(Busy).with_max_retry_after(Duration::from_secs(10));
    /// let two = Duration::from_secs(2);
    /// assert_eq!(retry.decide::<_, ()>(1, Attempt::Value(&(503, 2))), Decision::RetryAfter(two));
    /// assert_eq!(retry.decide::<_, ()>(1, Attempt::Value(&(503, 120))), Decision::Return);
    /// ```
    pub const fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Moves the backoff past the delays one call may draw (one per retry, up to 32), so that a copy
    /// made now draws other jitter than this retry will: for code that clones one retry per
    /// call (tower's retry does) instead of owning one per caller.
    ///
    /// ```
    /// use core::time::Duration;
    /// use resilient_circuit::{
    ///     RetryWithBackoff, backoff::{ExponentialDelay, FullJitter, SplitMix64}, retry::Attempt,
    /// };
    ///
    /// let exponential = ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(10)).unwrap();
    /// let backoff = FullJitter::new(exponential, SplitMix64::new(7));
    /// let mut template = RetryWithBackoff::new(3).with_backoff(backoff, ());
    /// let mut first = template.clone();
    /// template.skip_call_delays();
    /// let mut second = template.clone();
    /// let wait = |r: &mut RetryWithBackoff<_, _>| r.decide::<(), _>(1, Attempt::Failed(&"reset"));
    /// assert_ne!(wait(&mut first), wait(&mut second));
    /// ```
    pub fn skip_call_delays(&mut self) {
        // At most 32 draws, so a huge `max_retries` costs nothing: calls that retry more often
        // than that may share some jitter past their 32nd wait.
        for attempt in 1..=self.max_retries.min(32) {
            let _ = self.backoff.delay(attempt);
        }
    }

    /// What to do after attempt `attempt` (1-based) ended as `outcome`: the rules of this type,
    /// for code that runs the attempts itself (a tower retry policy does).
    ///
    /// ```
    /// use core::time::Duration;
    /// use resilient_circuit::{RejectReason, Rejected, RetryWithBackoff, backoff::FixedDelay,
    ///     retry::{Attempt, Decision}};
    ///
    /// let mut retry = RetryWithBackoff::new(2).with_backoff(FixedDelay(Duration::from_secs(1)), ());
    /// assert_eq!(retry.decide::<(), _>(1, Attempt::Failed(&"reset")), Decision::RetryAfter(Duration::from_secs(1)));
    /// assert_eq!(retry.decide::<(), _>(3, Attempt::Failed(&"reset")), Decision::GiveUp);
    /// assert_eq!(retry.decide::<_, &str>(1, Attempt::Value(&42)), Decision::Return);
    /// // A breaker open for longer than the retry would wait anyway: stop at once.
    /// let open = Rejected::new(Duration::from_secs(30), RejectReason::Open);
    /// assert_eq!(retry.decide::<(), &str>(1, Attempt::Rejected(open)), Decision::Return);
    /// ```
    pub fn decide<T, E>(&mut self, attempt: u32, outcome: Attempt<'_, T, E>) -> Decision
    where
        K: Classify<E>,
        V: ClassifyValue<T>,
    {
        let last = attempt >= self.max_attempts();
        let failed = match &outcome {
            Attempt::Value(value) => self.values.classify_value(value) == Verdict::Failure,
            Attempt::Failed(error) => self.classifier.classify(error) == Verdict::Failure,
            Attempt::TimedOut(_) => true,
            Attempt::Rejected(rejected) => {
                if last {
                    return Decision::Return;
                }
                let delay = self.backoff.delay(attempt);
                return if rejected.retry_after() <= delay {
                    Decision::RetryAfter(delay)
                } else {
                    Decision::Return
                };
            }
        };
        match (failed, last) {
            (false, _) => Decision::Return,
            (true, true) => Decision::GiveUp,
            (true, false) => {
                let delay = self.backoff.delay(attempt);
                // The wait the call asked for is read only here, where it decides something.
                let asked = match outcome {
                    Attempt::Value(value) => self.values.retry_after(value),
                    Attempt::Failed(error) => self.classifier.retry_after(error),
                    Attempt::TimedOut(_) | Attempt::Rejected(_) => None,
                };
                match asked {
                    Some(asked) if asked > self.max_retry_after => Decision::Return,
                    Some(asked) => Decision::RetryAfter(delay.max(asked)),
                    None => Decision::RetryAfter(delay),
                }
            }
        }
    }
}
