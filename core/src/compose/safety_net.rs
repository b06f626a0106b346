//! Composition of policies (SEMANTICS §4).

use core::future::Future;

use super::{
    operation::AsyncOperation,
    policy::{AsyncPolicy, Policy},
    stack::{AsyncStack, BlockingStack},
};
use crate::Error;

/// Policies composed into one: the first listed is the outermost.
///
/// With `(retry, breaker)` every attempt passes through the breaker; with `(breaker, retry)`
/// the breaker sees one outcome per retried call. Generic over a tuple of up to four
/// [`Stage`](crate::compose::Stage)s: no boxing, no allocation, and one [`Error`] type for
/// every way of saying no. An async safety net is `Send` when its policies are, so a server can spawn it.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, CircuitState, Error, Policy, RetryWithBackoff, SafetyNet,
///     store::InlineStore, time::Instant,
/// };
///
/// let breaker = CircuitProtector::new(
///     BreakerConfig::new().cooldown(Duration::from_secs(30)).validate().unwrap(),
///     InlineStore::<8>::new(),
///     Instant::ZERO,
/// );
/// let mut net = SafetyNet::new((RetryWithBackoff::new(3), &breaker));
/// let mut runs = 0;
/// let result: Result<(), Error<&str>> = net.call(|| { runs += 1; Err("down") });
/// // The first failure opened the breaker; the retry stopped instead of waiting 30 s.
/// assert_eq!(runs, 1);
/// assert_eq!(result.unwrap_err().retry_after(), Some(Duration::from_secs(30)));
/// assert_eq!(breaker.status(), CircuitState::Open);
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SafetyNet<P> {
    policies: P,
}

impl<P> SafetyNet<P> {
    /// Composes `policies`, a tuple, the first outermost.
    pub const fn new(policies: P) -> Self {
        SafetyNet { policies }
    }

    /// The policies.
    pub fn policies(&self) -> &P {
        &self.policies
    }

    /// The policies, mutably.
    pub fn policies_mut(&mut self) -> &mut P {
        &mut self.policies
    }

    /// The policies, by value.
    pub fn into_policies(self) -> P {
        self.policies
    }
}

impl<T, E, P: BlockingStack<T, E>> Policy<T, E> for SafetyNet<P> {
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        self.policies.run_stack(operation)
    }
}

impl<T, E, P: AsyncStack<T, E>> AsyncPolicy<T, E> for SafetyNet<P> {
    fn run_async(
        &mut self,
        operation: impl AsyncOperation<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>> {
        self.policies.run_stack_async(operation)
    }
}
