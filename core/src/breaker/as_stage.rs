//! A breaker by reference is a stage of a composed call, and a policy on its own.

use core::{future::Future, time::Duration};

use super::call::Breaker;
use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy, classify,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    state::Admission,
};

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
