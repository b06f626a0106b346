//! A breaker by reference is a stage of a composed call, and a policy on its own.

use core::{future::Future, time::Duration};

use super::call::{Breaker, Permit};
use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy, classify,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
};

// Every breaker is a stage by reference: it admits on the way in and records on the way out.
// Its ticket is a permit, which gives a probe slot back if the call ends without an outcome.

impl<'a, T, E, B: Breaker + ?Sized> Stage<T, E> for &'a B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    type Ticket = Permit<&'a B>;

    #[inline]
    fn enter(&mut self) -> Result<Permit<&'a B>, Error<E>> {
        Ok(self.try_acquire()?)
    }

    #[inline]
    fn leave(&mut self, permit: &mut Permit<&'a B>, result: &mut Result<T, Error<E>>) -> Leave {
        let verdict =
            classify::verdict_of_composed(self.classifier(), self.value_classifier(), result);
        permit.record_in_place(verdict);
        Leave::Return
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

/// A breaker by reference is a policy so that what takes any policy takes a breaker alone (a
/// `bus::ProtectedBus` over one breaker). To call through a breaker, use
/// [`Breaker::call`].
impl<T, E, B: Breaker + ?Sized> Policy<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>> {
        (*self,).run_stack(operation)
    }
}

/// A breaker by reference is an async policy so that what takes any policy takes a breaker
/// alone (a `bus::ProtectedBus` over one breaker). To call through a breaker, use
/// [`Breaker::call_async`].
impl<T, E, B: Breaker + ?Sized> AsyncPolicy<T, E> for &B
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    fn run_async(
        &mut self,
        operation: impl AsyncOperation<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>> {
        let breaker = *self;
        async move { (breaker,).run_stack_async(operation).await }
    }
}
