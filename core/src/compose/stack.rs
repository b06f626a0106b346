//! Stages run as one call: nested loops, one a stage, each entering its stage, running the
//! stages inside it and leaving it, until the stage returns. A stage's ticket is held by a guard
//! (`held.rs`), and dropped with it as the stage's loop ends, or with the call if it ends early.

use core::{
    future::{Future, poll_fn},
    pin::pin,
    task::Poll,
};

use super::{
    held::Held,
    operation::AsyncOperation,
    stage::{AsyncStage, BlockingStage, Leave},
};
use crate::{Elapsed, Error};

/// Stages outermost first, run as one blocking call. Implemented for tuples of one to four
/// [`BlockingStage`]s.
pub trait BlockingStack<T, E> {
    /// Runs `operation` through every stage.
    fn run_stack(&mut self, operation: impl FnMut() -> Result<T, Error<E>>) -> Result<T, Error<E>>;
}

/// Stages outermost first, run as one async call. Implemented for tuples of one to four
/// [`AsyncStage`]s.
pub trait AsyncStack<T, E> {
    /// Runs `operation` through every stage.
    fn run_stack_async(
        &mut self,
        operation: impl AsyncOperation<T, E>,
    ) -> impl Future<Output = Result<T, Error<E>>>;
}

/// Awaits `future` while watching the armed timers: `Ok` with its output, or `Err` with the
/// level whose timer ran out (the outermost, if several) and its limit.
macro_rules! race {
    ($future:expr; [$($i:tt $L:ident $timer:ident),+]) => {{
        let mut future = pin!($future);
        poll_fn(|cx| {
            // The timers first: a limit already run out is noticed even if every attempt ends
            // on its first poll.
            $(if $L::TIME_LIMITED {
                if let Some(timer) = $timer.as_mut().as_pin_mut() {
                    if let Poll::Ready(limit) = timer.poll(cx) {
                        return Poll::Ready(Err(($i, limit)));
                    }
                }
            })+
            future.as_mut().poll(cx).map(Ok)
        })
        .await
    }};
}

/// Drops the timer of `level`, if it has one.
macro_rules! disarm {
    ($level:expr; [$($i:tt $L:ident $timer:ident),+]) => {
        match $level {
            $($i => if $L::TIME_LIMITED {
                $timer.set(None);
            },)+
            _ => unreachable!(),
        }
    };
}

/// The timer of level `at` ran out with `limit`: drops it, notes it in `$timed_out`, and gives
/// the result the stages inside it (and it) are left with.
macro_rules! ran_out {
    ($at:expr, $limit:expr; $levels:tt $timed_out:ident) => {{
        disarm!($at; $levels);
        let elapsed = Elapsed::new($limit);
        $timed_out = Some(($at, elapsed));
        Err(Error::TimedOut(elapsed))
    }};
}

/// Whether any of the stages has a time limit: known at compile time, so that a stack without
/// one keeps no code for timeouts.
macro_rules! any_limit {
    ([$($i:tt $L:ident $timer:ident),+]) => {
        ($($L::TIME_LIMITED)||+)
    };
}

/// The stages `$i` around `$operation`, the first outermost, as nested loops: each stage
/// entered (its timer armed, if it has one), the stages inside it run, and the stage left, until
/// it returns. Every await races the armed timers; `$timed_out` is the level whose time ran out
/// and its limit, while the stages inside it (and it) are being left.
macro_rules! nested {
    ($levels:tt $stages:ident $operation:ident $timed_out:ident;) => {
        match race!($operation.attempt(); $levels) {
            Ok(result) => result,
            Err((at, limit)) => ran_out!(at, limit; $levels $timed_out),
        }
    };
    ($levels:tt $stages:ident $operation:ident $timed_out:ident;
        $i:tt $L:ident $timer:ident $(, $($inner:tt)+)?) => {
        match Held::enter(&mut $stages.$i) {
            Err(error) => Err(error),
            Ok(mut held) => {
                if $L::TIME_LIMITED {
                    $timer.set(held.stage().time_limit());
                }
                'attempts: loop {
                    let mut result = nested!($levels $stages $operation $timed_out; $($($inner)+)?);
                    loop {
                        match held.leave(&mut result) {
                            Leave::Return => {
                                disarm!($i; $levels);
                                if any_limit!($levels)
                                    && matches!($timed_out, Some((at, _)) if at == $i)
                                {
                                    $timed_out = None;
                                }
                                break 'attempts result;
                            }
                            Leave::Again(delay) => {
                                // The attempt's result is done with: not held through the wait
                                // (a response may hold a connection).
                                drop(result);
                                if any_limit!($levels)
                                    && let Some((at, elapsed)) = $timed_out
                                    && $i >= at
                                {
                                    // Inside a limit that ran out (or at it), no stage sends
                                    // the call back in: the ticket is dropped as the loop ends.
                                    disarm!($i; $levels);
                                    if $i == at {
                                        $timed_out = None;
                                    }
                                    break 'attempts Err(Error::TimedOut(elapsed));
                                }
                                // With a limit armed, no wait still checks the timers (with
                                // the call's own waker: embassy's timer queue refuses any
                                // other): no attempt starts once a limit has run out.
                                let waited = if any_limit!($levels) || !delay.is_zero() {
                                    let mut wait = pin!(if delay.is_zero() {
                                        None
                                    } else {
                                        Some(AsyncStage::wait(held.stage(), delay))
                                    });
                                    let wait = poll_fn(|cx| match wait.as_mut().as_pin_mut() {
                                        Some(wait) => wait.poll(cx),
                                        None => Poll::Ready(()),
                                    });
                                    race!(wait; $levels)
                                } else {
                                    Ok(())
                                };
                                if let Err((at, limit)) = waited {
                                    // Leave this stage again, now with the timeout.
                                    result = ran_out!(at, limit; $levels $timed_out);
                                    continue;
                                }
                                held.again();
                                continue 'attempts;
                            }
                        }
                    }
                }
            }
        }
    };
}

/// The stages `$i` around `$operation`, the first outermost, as nested loops in one blocking
/// call: each stage entered, the stages inside it run, and the stage left, until it returns.
macro_rules! nested_blocking {
    ($stages:ident $operation:ident;) => {
        $operation()
    };
    ($stages:ident $operation:ident; $i:tt $($inner:tt)*) => {
        match Held::enter(&mut $stages.$i) {
            Err(error) => Err(error),
            Ok(mut held) => loop {
                let mut result = nested_blocking!($stages $operation; $($inner)*);
                match held.leave(&mut result) {
                    Leave::Return => break result,
                    Leave::Again(delay) => {
                        // Not held through the wait (a response may hold a connection).
                        drop(result);
                        if !delay.is_zero() {
                            BlockingStage::wait(held.stage(), delay);
                        }
                        held.again();
                    }
                }
            },
        }
    };
}

macro_rules! stack {
    ($($i:tt $L:ident $timer:ident),+) => {
        impl<T, E, $($L: BlockingStage<T, E>),+> BlockingStack<T, E> for ($($L,)+) {
            fn run_stack(
                &mut self,
                mut operation: impl FnMut() -> Result<T, Error<E>>,
            ) -> Result<T, Error<E>> {
                let stages = self;
                nested_blocking!(stages operation; $($i)+)
            }
        }

        impl<T, E, $($L: AsyncStage<T, E>),+> AsyncStack<T, E> for ($($L,)+) {
            // The outermost stage clears `timed_out` as the others do, and nothing reads it after.
            #[allow(unused_assignments)]
            async fn run_stack_async(
                &mut self,
                mut operation: impl AsyncOperation<T, E>,
            ) -> Result<T, Error<E>> {
                // One timer per stage, armed while a time-limited stage is entered. A stack
                // without one compiles to the plain nested loops.
                $(let mut $timer = pin!(if false { self.$i.time_limit() } else { None });)+
                let mut timed_out: Option<(usize, Elapsed)> = None;
                let stages = self;
                nested!([$($i $L $timer),+] stages operation timed_out; $($i $L $timer),+)
            }
        }
    };
}

stack!(0 L0 timer0);
stack!(0 L0 timer0, 1 L1 timer1);
stack!(0 L0 timer0, 1 L1 timer1, 2 L2 timer2);
stack!(0 L0 timer0, 1 L1 timer1, 2 L2 timer2, 3 L3 timer3);
