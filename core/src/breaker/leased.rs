//! A breaker whose probe slots come back by their lease, not by the call giving them back: a
//! stage whose ticket needs no drop.

use core::{future::Future, time::Duration};

use super::{call::Breaker, config::ConfigError, protector::CircuitProtector};
use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy, TransitionHook, classify,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    state::Admission,
    store::StateStore,
    time::Clock,
};

/// A breaker, by reference, as a stage that leaves a probe slot to its
/// [lease](crate::BreakerConfig::probe_lease) when a call ends without an outcome (its future
/// dropped, or a panic), rather than giving the slot back itself.
///
/// Its ticket is a plain [`Admission`], so a stack of it and other plain stages (a
/// [`RetryWithBackoff`](crate::RetryWithBackoff)) makes a future that needs no drop: on a
/// firmware, the futures that hold it (a driver's, a task's) carry no drop code for it. With
/// `&breaker` as the stage instead, a dropped probe gives its slot back at once. Outcomes are
/// recorded the same way.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, Policy, RetryWithBackoff, SafetyNet, breaker::Leased,
///     store::InlineStore, time::Instant,
/// };
///
/// let config = BreakerConfig::new().probe_lease(Duration::from_secs(1)).validate().unwrap();
/// let breaker = CircuitProtector::new(config, InlineStore::<8>::new(), Instant::ZERO);
/// let mut net = SafetyNet::new((RetryWithBackoff::new(2), Leased::new(&breaker)?));
/// assert_eq!(net.call(|| Ok::<_, &str>(7)), Ok(7));
///
/// // Without a lease, a probe slot a dropped call held would never come back.
/// let unleased = CircuitProtector::new(BreakerConfig::new().validate().unwrap(), InlineStore::<8>::new(), Instant::ZERO);
/// assert!(Leased::new(&unleased).is_err());
/// # Ok::<(), resilient_circuit::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Leased<'a, B: ?Sized> {
    breaker: &'a B,
}

impl<B: ?Sized> Clone for Leased<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Leased<'_, B> {}

impl<'a, St: StateStore, C: Clock, K, H: TransitionHook, V>
    Leased<'a, CircuitProtector<St, C, K, H, V>>
{
    /// `breaker` as a leasing stage; [`ConfigError::NoProbeLease`] if its configuration has no
    /// [`probe_lease`](crate::BreakerConfig::probe_lease).
    pub fn new(breaker: &'a CircuitProtector<St, C, K, H, V>) -> Result<Self, ConfigError> {
        match breaker.config().probe_lease {
            Some(_) => Ok(Leased { breaker }),
            None => Err(ConfigError::NoProbeLease),
        }
    }
}

impl<'a, B: ?Sized> Leased<'a, B> {
    /// The breaker.
    pub fn breaker(&self) -> &'a B {
        self.breaker
    }
}

impl<T, E, B: Breaker + ?Sized> Stage<T, E> for Leased<'_, B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    type Ticket = Admission;

    #[inline]
    fn enter(&mut self) -> Result<Admission, Error<E>> {
        Ok(self.breaker.admit()?)
    }

    #[inline]
    fn leave(&mut self, admission: &mut Admission, result: Result<T, Error<E>>) -> Leave<T, E> {
        let breaker = self.breaker;
        let verdict = classify::verdict_of_composed(
            breaker.classifier(),
            breaker.value_classifier(),
            &result,
        );
        breaker.record(*admission, verdict);
        Leave::Return(result)
    }
}

impl<T, E, B: Breaker + ?Sized> BlockingStage<T, E> for Leased<'_, B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    /// Never asked to wait: a breaker does not send calls back in.
    fn wait(&self, _: Duration) {}
}

impl<T, E, B: Breaker + ?Sized> AsyncStage<T, E> for Leased<'_, B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    /// Never asked to wait: a breaker does not send calls back in.
    fn wait(&self, _: Duration) -> impl Future<Output = ()> {
        core::future::ready(())
    }
}

/// A leasing breaker alone is a policy, as `&breaker` is.
impl<T, E, B: Breaker + ?Sized> Policy<T, E> for Leased<'_, B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        (*self,).run_stack(operation)
    }
}

/// A leasing breaker alone is an async policy, as `&breaker` is.
impl<T, E, B: Breaker + ?Sized> AsyncPolicy<T, E> for Leased<'_, B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run_async(
        &mut self,
        operation: impl AsyncOperation<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>> {
        let leased = *self;
        async move { (leased,).run_stack_async(operation).await }
    }
}
