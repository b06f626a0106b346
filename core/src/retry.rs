//! Retry with backoff (SEMANTICS §3).

use core::{future::Future, time::Duration};

use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy,
    backoff::{Backoff, NoBackoff},
    classify::{AllErrors, AllValues, Verdict},
    compose::{AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    time::{AsyncSleep, NoSleep, Sleep},
};

/// Runs an operation again after it fails (the Python package's `RetryWithBackoffPolicy`).
///
/// - `max_retries` counts retries: `max_retries = 3` runs the operation at most 4 times.
/// - After failed attempt `k` it waits `backoff.delay(k)`; nothing is waited after the last.
/// - An error the classifier does not call a failure is returned at once.
/// - A value is returned at once, unless the value classifier (see
///   [`classify_values`](Self::classify_values)) calls it a failure: then it is retried like a
///   failed attempt, and when the attempts run out the last value is returned.
/// - When the attempts run out: [`Error::RetryLimitReached`] with the attempts and last error.
/// - A breaker's [`Error::Rejected`] is waited out only if its `retry_after` is no longer than
///   the delay the retry would wait anyway; otherwise it is returned at once.
///
/// `B` is the [`Backoff`], `S` the sleeper ([`Sleep`] for [`Policy`], [`AsyncSleep`] for
/// [`AsyncPolicy`]), `K` the [`Classify`]er of errors, `V` the [`ClassifyValue`] of values. A retry is cheap to build and holds per-call state
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
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RetryWithBackoff<B = NoBackoff, S = NoSleep, K = AllErrors, V = AllValues> {
    max_retries: u32,
    backoff: B,
    sleeper: S,
    classifier: K,
    values: V,
}

impl RetryWithBackoff {
    /// The Python package's default: 3 retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// At most `max_retries` retries (`max_retries + 1` attempts), no wait between them, every
    /// error retried.
    pub const fn new(max_retries: u32) -> Self {
        RetryWithBackoff {
            max_retries,
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

impl<K, V> RetryWithBackoff<NoBackoff, NoSleep, K, V> {
    /// Wait `backoff.delay(k)` after failed attempt `k`, using `sleeper` to wait.
    pub fn with_backoff<B: Backoff, S>(
        self,
        backoff: B,
        sleeper: S,
    ) -> RetryWithBackoff<B, S, K, V> {
        RetryWithBackoff {
            max_retries: self.max_retries,
            backoff,
            sleeper,
            classifier: self.classifier,
            values: self.values,
        }
    }
}

impl<B, S, V> RetryWithBackoff<B, S, AllErrors, V> {
    /// Decide which errors are worth another attempt: see [`Classify`]. Only
    /// [`Verdict::Failure`] is retried.
    pub fn should_handle<K>(self, classifier: K) -> RetryWithBackoff<B, S, K, V> {
        RetryWithBackoff {
            max_retries: self.max_retries,
            backoff: self.backoff,
            sleeper: self.sleeper,
            classifier,
            values: self.values,
        }
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
        RetryWithBackoff {
            max_retries: self.max_retries,
            backoff: self.backoff,
            sleeper: self.sleeper,
            classifier: self.classifier,
            values,
        }
    }
}

/// What to do after a failed attempt.
enum Next<E> {
    Wait(Duration),
    Stop(Error<E>),
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

    fn after_failure<E>(&mut self, attempt: u32, error: Error<E>) -> Next<E>
    where
        K: Classify<E>,
    {
        let last = attempt >= self.max_attempts();
        let operation_error = match &error {
            Error::Rejected(rejected) => {
                if last {
                    return Next::Stop(error);
                }
                let delay = self.backoff.delay(attempt);
                return if rejected.retry_after() <= delay {
                    Next::Wait(delay)
                } else {
                    Next::Stop(error)
                };
            }
            Error::Operation(e) | Error::RetryLimitReached { last_error: e, .. } => e,
        };
        if self.classifier.classify(operation_error) != Verdict::Failure {
            // A declined error comes back as it was given.
            return Next::Stop(error);
        }
        if !last {
            return Next::Wait(self.backoff.delay(attempt));
        }
        Next::Stop(match error {
            Error::Operation(e) | Error::RetryLimitReached { last_error: e, .. } => {
                Error::RetryLimitReached {
                    attempts: attempt,
                    last_error: e,
                }
            }
            rejected @ Error::Rejected(_) => rejected,
        })
    }
}

impl<T, E, B: Backoff, S, K: Classify<E>, V: ClassifyValue<T>> Stage<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    /// The attempt under way (1-based).
    type Ticket = u32;

    fn enter(&mut self) -> Result<u32, Error<E>> {
        Ok(1)
    }

    fn leave(&mut self, attempt: &mut u32, result: Result<T, Error<E>>) -> Leave<T, E> {
        let error = match result {
            Ok(value) => {
                if *attempt >= self.max_attempts()
                    || self.values.classify_value(&value) != Verdict::Failure
                {
                    return Leave::Return(Ok(value));
                }
                let delay = self.backoff.delay(*attempt);
                *attempt += 1;
                return Leave::Again(delay);
            }
            Err(error) => error,
        };
        match self.after_failure(*attempt, error) {
            Next::Stop(error) => Leave::Return(Err(error)),
            Next::Wait(delay) => {
                *attempt += 1;
                Leave::Again(delay)
            }
        }
    }

    fn abandon(&mut self, _: u32) {}
}

impl<T, E, B: Backoff, S: Sleep, K: Classify<E>, V: ClassifyValue<T>> BlockingStage<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    fn wait(&self, duration: Duration) {
        self.sleeper.sleep(duration)
    }
}

impl<T, E, B: Backoff, S: AsyncSleep, K: Classify<E>, V: ClassifyValue<T>> AsyncStage<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    fn wait(&self, duration: Duration) -> impl Future<Output = ()> {
        self.sleeper.sleep(duration)
    }
}

impl<T, E, B: Backoff, S: Sleep, K: Classify<E>, V: ClassifyValue<T>> Policy<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        (self,).run_stack(operation)
    }
}

impl<T, E, B: Backoff, S: AsyncSleep, K: Classify<E>, V: ClassifyValue<T>> AsyncPolicy<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    async fn run_async(
        &mut self,
        operation: impl AsyncFnMut() -> Result<T, Error<E>>,
    ) -> Result<T, Error<E>> {
        (self,).run_stack_async(operation).await
    }
}
