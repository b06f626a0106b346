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

/// The rest of a breaker stage `$stage` (over a breaker `B` with `$bound`): it never waits, as
/// a breaker does not send calls back in, and alone it is a policy, so that what takes any
/// policy takes a breaker alone (a `bus::ProtectedBus` over one breaker).
macro_rules! breaker_stage_rest {
    ($stage:ty, $($bound:tt)+) => {
        impl<T, E, B: $($bound)+> BlockingStage<T, E> for $stage
        where
            B::Classifier: Classify<E>,
            B::ValueClassifier: ClassifyValue<T>,
        {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) {}
        }

        impl<T, E, B: $($bound)+> AsyncStage<T, E> for $stage
        where
            B::Classifier: Classify<E>,
            B::ValueClassifier: ClassifyValue<T>,
        {
            /// Never asked to wait: a breaker does not send calls back in.
            fn wait(&self, _: Duration) -> impl Future<Output = ()> {
                core::future::ready(())
            }
        }

        /// A breaker stage alone is a policy. To call through a breaker, use
        /// [`Breaker::call`](crate::Breaker::call).
        impl<T, E, B: $($bound)+> Policy<T, E> for $stage
        where
            B::Classifier: Classify<E>,
            B::ValueClassifier: ClassifyValue<T>,
        {
            fn run(
                &mut self,
                operation: impl FnMut() -> Result<T, Error<E>>,
            ) -> Result<T, Error<E>> {
                (*self,).run_stack(operation)
            }
        }

        /// A breaker stage alone is an async policy. To call through a breaker, use
        /// [`Breaker::call_async`](crate::Breaker::call_async).
        impl<T, E, B: $($bound)+> AsyncPolicy<T, E> for $stage
        where
            B::Classifier: Classify<E>,
            B::ValueClassifier: ClassifyValue<T>,
        {
            fn run_async(
                &mut self,
                operation: impl AsyncOperation<T, E>,
            ) -> impl Future<Output = Result<T, Error<E>>> {
                let stage = *self;
                async move { (stage,).run_stack_async(operation).await }
            }
        }
    };
}
pub(super) use breaker_stage_rest;

breaker_stage_rest!(&B, Breaker + ?Sized);
