//! What every circuit protector offers the code around a call, whatever its store.

use core::{fmt, future::Future, time::Duration};

use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy, Rejected,
    classify::{self, Verdict},
    compose::{AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    state::Admission,
};

/// A circuit protector: admit a call, then record its outcome or release its admission.
///
/// Implemented by [`CircuitProtector`](crate::CircuitProtector) (state in a store of the core)
/// and by the std adapters' thread-shared breaker; the protected-call methods (`call`,
/// `call_async`, `try_acquire`) and the composition in a [`SafetyNet`](crate::SafetyNet) come
/// with the trait. A breaker composes by reference: `SafetyNet::new((retry, &breaker))`.
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
    fn try_acquire(&self) -> Result<Permit<'_, Self>, Rejected> {
        let admission = self.admit()?;
        Ok(Permit {
            breaker: self,
            admission,
        })
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
        permit.record(self.verdict(&result));
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
            permit.record(self.verdict(&result));
            result.map_err(Error::Operation)
        }
    }
}

/// Permission to run one call, from [`Breaker::try_acquire`].
///
/// Report the outcome with [`record`](Permit::record). Dropped without a report (the call
/// panicked, or its future was dropped), it records nothing and gives back its HALF_OPEN
/// probe slot.
#[must_use = "a permit records nothing unless `record` is called"]
pub struct Permit<'a, B: Breaker + ?Sized> {
    breaker: &'a B,
    admission: Admission,
}

impl<'a, B: Breaker + ?Sized> Permit<'a, B> {
    /// A permit for `admission`, granted by `breaker`.
    pub fn new(breaker: &'a B, admission: Admission) -> Self {
        Permit { breaker, admission }
    }

    /// The admission, leaving the caller to record or release it.
    pub fn into_admission(self) -> Admission {
        let admission = self.admission;
        core::mem::forget(self);
        admission
    }

    /// Records how the call went.
    #[inline]
    pub fn record(self, verdict: Verdict) {
        let (breaker, admission) = (self.breaker, self.admission);
        // The outcome is being reported: no release on drop.
        core::mem::forget(self);
        breaker.record(admission, verdict);
    }

    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.admission.is_probe()
    }
}

impl<B: Breaker + ?Sized> Drop for Permit<'_, B> {
    #[inline]
    fn drop(&mut self) {
        self.breaker.release(self.admission);
    }
}

impl<B: Breaker + ?Sized> fmt::Debug for Permit<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("admission", &self.admission)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<B: Breaker + ?Sized> defmt::Format for Permit<'_, B> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Permit {{ admission: {} }}", self.admission);
    }
}

// Every breaker is a stage by reference: it admits on the way in and records on the way out.

impl<T, E, B: Breaker + ?Sized> Stage<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    type Ticket = Admission;

    #[inline]
    fn enter(&mut self) -> Result<Admission, Error<E>> {
        Ok(self.admit()?)
    }

    #[inline]
    fn leave(&mut self, admission: &mut Admission, result: Result<T, Error<E>>) -> Leave<T, E> {
        let verdict =
            classify::verdict_of_composed(self.classifier(), self.value_classifier(), &result);
        self.record(*admission, verdict);
        Leave::Return(result)
    }

    fn abandon(&mut self, admission: Admission) {
        self.release(admission);
    }
}

impl<T, E, B: Breaker + ?Sized> BlockingStage<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    /// Never asked to wait: a breaker does not send calls back in.
    fn wait(&self, _: Duration) {}
}

impl<T, E, B: Breaker + ?Sized> AsyncStage<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    /// Never asked to wait: a breaker does not send calls back in.
    fn wait(&self, _: Duration) -> impl Future<Output = ()> {
        core::future::ready(())
    }
}

impl<T, E, B: Breaker + ?Sized> Policy<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        (*self,).run_stack(operation)
    }
}

impl<T, E, B: Breaker + ?Sized> AsyncPolicy<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run_async(
        &mut self,
        operation: impl AsyncFnMut() -> Result<T, Error<E>>,
    ) -> impl Future<Output = Result<T, Error<E>>> {
        let breaker = *self;
        async move { (breaker,).run_stack_async(operation).await }
    }
}
