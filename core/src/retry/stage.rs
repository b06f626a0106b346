//! A retry as a stage of a composed call, and as a policy on its own.

use core::{future::Future, time::Duration};

use super::{
    attempt::{Attempt, Decision},
    policy::RetryWithBackoff,
};
use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy,
    backoff::Backoff,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    time::{AsyncSleep, Sleep},
};

impl<T, E, B: Backoff, S, K: Classify<E>, V: ClassifyValue<T>> Stage<T, E>
    for RetryWithBackoff<B, S, K, V>
{
    /// The attempt under way (1-based).
    type Ticket = u32;

    fn enter(&mut self) -> Result<u32, Error<E>> {
        Ok(1)
    }

    fn leave(&mut self, attempt: &mut u32, result: &mut Result<T, Error<E>>) -> Leave {
        match self.decide(*attempt, Attempt::of(result)) {
            Decision::RetryAfter(delay) => {
                *attempt += 1;
                Leave::Again(delay)
            }
            Decision::Return => Leave::Return,
            Decision::GiveUp => {
                if let Err(error) = result {
                    error.give_up_after(*attempt);
                }
                Leave::Return
            }
        }
    }
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
    async fn run_async(&mut self, operation: impl AsyncOperation<T, E>) -> Result<T, Error<E>> {
        (self,).run_stack_async(operation).await
    }
}
