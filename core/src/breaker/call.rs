//! What every circuit protector offers the code around a call, whatever its store.

use core::{fmt, future::Future, ops::Deref};

use crate::{
    Classify, ClassifyValue, Error, Rejected,
    classify::{self, Verdict},
    state::Admission,
};

/// A circuit protector: admit a call, then record its outcome or release its admission.
///
/// Implemented by [`CircuitProtector`](crate::CircuitProtector), whatever its store. One way per
/// job:
///
/// - [`call`](Self::call) and [`call_async`](Self::call_async) run a call through the breaker;
/// - [`try_acquire`](Self::try_acquire) gives a [`Permit`] for a call you run yourself;
/// - a breaker composes by reference in a [`SafetyNet`](crate::SafetyNet):
///   `SafetyNet::new((retry, &breaker))`;
/// - [`admit`](Self::admit), [`record`](Self::record) and [`release`](Self::release) are the
///   seam underneath, which a breaker implements and those three use; code that calls them
///   itself must pair each admission with exactly one record or release.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{Breaker, BreakerConfig, CircuitProtector, Error, store::InlineStore, time::Instant};
///
/// let breaker = CircuitProtector::new(
///     BreakerConfig::new().cooldown(Duration::from_secs(5)).validate().unwrap(),
///     InlineStore::<8>::new(),
///     Instant::ZERO,
/// );
/// assert_eq!(breaker.call(|| Ok::<_, &str>(1)), Ok(1));
/// assert_eq!(breaker.call(|| Err::<u8, _>("down")), Err(Error::Operation("down")));
/// assert!(breaker.call(|| Ok::<_, &str>(2)).unwrap_err().is_rejected());
/// ```
pub trait Breaker {
    /// Decides how errors count.
    type Classifier;

    /// Decides how values count.
    type ValueClassifier;

    /// Asks to run one call. Pair a granted [`Admission`] with exactly one
    /// [`record`](Self::record) or [`release`](Self::release) (a [`Permit`] does that).
    fn admit(&self) -> Result<Admission, Rejected>;

    /// Records the outcome of an admitted call.
    fn record(&self, admission: Admission, verdict: Verdict);

    /// Gives back what an admitted call held when it will never report (only a HALF_OPEN
    /// probe holds something: its slot).
    fn release(&self, admission: Admission);

    /// The error classifier.
    fn classifier(&self) -> &Self::Classifier;

    /// The value classifier.
    fn value_classifier(&self) -> &Self::ValueClassifier;

    /// How a finished call counts, by the two classifiers.
    #[inline]
    fn verdict<T, E>(&self, result: &Result<T, E>) -> Verdict
    where
        Self::Classifier: Classify<E>,
        Self::ValueClassifier: ClassifyValue<T>,
    {
        classify::verdict(self.classifier(), self.value_classifier(), result)
    }

    /// Asks to run one call, for callers that run it themselves: the [`Permit`] records the
    /// outcome, and gives its slot back if dropped without one.
    #[inline]
    fn try_acquire(&self) -> Result<Permit<&Self>, Rejected> {
        Ok(Permit::new(self, self.admit()?))
    }

    /// Runs `operation` if the breaker admits it, records how it went, and returns its result;
    /// a rejected call returns [`Error::Rejected`] without running. A panic inside the
    /// operation records nothing and gives back a probe slot.
    #[inline(always)]
    fn call<T, E>(&self, operation: impl FnOnce() -> Result<T, E>) -> Result<T, Error<E>>
    where
        Self::Classifier: Classify<E>,
        Self::ValueClassifier: ClassifyValue<T>,
    {
        let permit = self.try_acquire()?;
        let result = operation();
        permit.record_borrowed(self.verdict(&result));
        result.map_err(Error::Operation)
    }

    /// [`call`](Self::call) for an async operation. If the returned future is dropped before
    /// the operation finishes, nothing is recorded and a HALF_OPEN probe slot is given back.
    fn call_async<T, E>(
        &self,
        operation: impl AsyncFnOnce() -> Result<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>>
    where
        Self::Classifier: Classify<E>,
        Self::ValueClassifier: ClassifyValue<T>,
    {
        async move {
            let permit = self.try_acquire()?;
            let result = operation().await;
            permit.record_borrowed(self.verdict(&result));
            result.map_err(Error::Operation)
        }
    }
}

/// Permission to run one call, from [`Breaker::try_acquire`], holding its breaker the way `P`
/// does: `&B` for a call in this scope, or an `Arc<B>` for a permit that outlives it (a tower
/// service's response future).
///
/// Report the outcome with [`record`](Permit::record). Dropped without a report (the call
/// panicked, or its future was dropped), it records nothing and gives back its HALF_OPEN
/// probe slot.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{Breaker, BreakerConfig, CircuitProtector, classify::Verdict};
/// use resilient_circuit::{store::InlineStore, time::Instant};
///
/// let config = BreakerConfig::new().validate().unwrap();
/// let breaker = CircuitProtector::new(config, InlineStore::<8>::new(), Instant::ZERO);
/// let permit = breaker.try_acquire().unwrap();
/// let answer = 6 * 7; // the call, run by the caller
/// permit.record(Verdict::Success);
/// assert_eq!(answer, 42);
/// ```
#[must_use = "a permit records nothing unless `record` is called"]
pub struct Permit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    breaker: P,
    // `None` once recorded: nothing left to give back on drop.
    admission: Option<Admission>,
}

impl<P> Permit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    /// A permit for `admission`, granted by `breaker`.
    #[inline]
    pub fn new(breaker: P, admission: Admission) -> Self {
        Permit {
            breaker,
            admission: Some(admission),
        }
    }

    /// The breaker that granted this permit.
    #[inline]
    pub fn breaker(&self) -> &P::Target {
        &self.breaker
    }

    /// Records how the call went.
    #[inline]
    pub fn record(mut self, verdict: Verdict) {
        self.record_in_place(verdict);
    }

    /// [`record`](Self::record) through a reference: the permit is then spent, and its drop
    /// gives nothing back.
    #[inline]
    pub(crate) fn record_in_place(&mut self, verdict: Verdict) {
        if let Some(admission) = self.admission.take() {
            self.breaker.record(admission, verdict);
        }
    }

    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.admission.is_some_and(|admission| admission.is_probe())
    }
}

impl<B: Breaker + ?Sized> Permit<&B> {
    /// [`record`](Self::record) for a permit that borrows its breaker: forgotten rather than
    /// dropped, so the protected call's path carries no check of whether it was recorded.
    #[inline(always)]
    pub(crate) fn record_borrowed(self, verdict: Verdict) {
        let (breaker, admission) = (self.breaker, self.admission);
        // Forgetting a borrow leaks nothing; the outcome is being reported: no release.
        core::mem::forget(self);
        if let Some(admission) = admission {
            breaker.record(admission, verdict);
        }
    }
}

impl<P> Drop for Permit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    #[inline]
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.breaker.release(admission);
        }
    }
}

impl<P> fmt::Debug for Permit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("admission", &self.admission)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<P> defmt::Format for Permit<P>
where
    P: Deref,
    P::Target: Breaker,
{
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Permit {{ admission: {} }}", self.admission);
    }
}
