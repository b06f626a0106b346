//! Stages run as one call: the loop that enters, runs and leaves them.

use core::{
    future::{Future, poll_fn},
    marker::PhantomData,
    pin::pin,
    task::Poll,
};

use super::{
    operation::AsyncOperation,
    stage::{AsyncStage, BlockingStage, Leave, Stage},
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

macro_rules! stack {
    ($run:ident; $depth:literal; [$($i:tt $L:ident $timer:ident),+]) => {
        stack!(@expand $run; $depth; [$($i $L $timer),+]; $($i $L $timer),+);
    };
    (@expand $run:ident; $depth:literal; $levels:tt; $($i:tt $L:ident $timer:ident),+) => {
        /// One call's tickets; abandons those still held if the call ends early.
        struct $run<'a, T, E, $($L: Stage<T, E>),+> {
            stages: &'a mut ($($L,)+),
            tickets: ($(Option<$L::Ticket>,)+),
            result: PhantomData<fn() -> Result<T, E>>,
        }

        impl<'a, T, E, $($L: Stage<T, E>),+> $run<'a, T, E, $($L),+> {
            fn new(stages: &'a mut ($($L,)+)) -> Self {
                $run { stages, tickets: ($(None::<$L::Ticket>,)+), result: PhantomData }
            }

            fn enter(&mut self, level: usize) -> Result<(), Error<E>> {
                match level {
                    $($i => self.tickets.$i = Some(self.stages.$i.enter()?),)+
                    _ => unreachable!("no stage {level}"),
                }
                Ok(())
            }

            fn leave(&mut self, level: usize, result: Result<T, Error<E>>) -> Leave<T, E> {
                match level {
                    $($i => {
                        let ticket = self.tickets.$i.as_mut().expect("a stage is left only after it was entered");
                        let leave = self.stages.$i.leave(ticket, result);
                        if let Leave::Return(_) = leave {
                            self.tickets.$i = None;
                        }
                        leave
                    })+
                    _ => unreachable!("no stage {level}"),
                }
            }

            /// The call goes back in at `level`, after its `Again`.
            fn again(&mut self, level: usize) {
                match level {
                    $($i => if let Some(ticket) = self.tickets.$i.as_mut() {
                        self.stages.$i.again(ticket);
                    },)+
                    _ => unreachable!("no stage {level}"),
                }
            }
        }

        impl<T, E, $($L: Stage<T, E>),+> $run<'_, T, E, $($L),+> {
            /// Abandons the ticket of a stage the call will not come back through.
            fn cancel(&mut self, level: usize) {
                match level {
                    $($i => if let Some(ticket) = self.tickets.$i.take() {
                        self.stages.$i.abandon(ticket);
                    },)+
                    _ => unreachable!(),
                }
            }
        }

        impl<T, E, $($L: Stage<T, E>),+> Drop for $run<'_, T, E, $($L),+> {
            fn drop(&mut self) {
                for level in 0..$depth {
                    self.cancel(level);
                }
            }
        }

        impl<T, E, $($L: BlockingStage<T, E>),+> BlockingStack<T, E> for ($($L,)+) {
            fn run_stack(
                &mut self,
                mut operation: impl FnMut() -> Result<T, Error<E>>,
            ) -> Result<T, Error<E>> {
                let mut run = $run::new(self);
                let mut level = 0;
                loop {
                    let mut result = loop {
                        if level == $depth {
                            break operation();
                        }
                        if let Err(error) = run.enter(level) {
                            break Err(error);
                        }
                        level += 1;
                    };
                    loop {
                        if level == 0 {
                            return result;
                        }
                        level -= 1;
                        match run.leave(level, result) {
                            Leave::Return(outward) => result = outward,
                            Leave::Again(delay) => {
                                if !delay.is_zero() {
                                    match level {
                                        $($i => run.stages.$i.wait(delay),)+
                                        _ => unreachable!("no stage {level}"),
                                    }
                                }
                                run.again(level);
                                level += 1;
                                break;
                            }
                        }
                    }
                }
            }
        }

        impl<T, E, $($L: AsyncStage<T, E>),+> AsyncStack<T, E> for ($($L,)+) {
            async fn run_stack_async(
                &mut self,
                mut operation: impl AsyncOperation<T, E>,
            ) -> Result<T, Error<E>> {
                let mut run = $run::new(self);
                // One timer per stage, armed while a time-limited stage is entered. A stack
                // without one compiles to the plain loop.
                $(let mut $timer = pin!(if false { run.stages.$i.time_limit() } else { None });)+
                let mut level = 0;
                loop {
                    // The level whose time ran out, and its limit, while the stages inside it
                    // are being left.
                    let (mut result, mut timed_out) = loop {
                        if level == $depth {
                            match race!(operation.attempt(); $levels) {
                                Ok(result) => break (result, None),
                                Err((at, limit)) => {
                                    disarm!(at; $levels);
                                    let elapsed = Elapsed::new(limit);
                                    break (Err(Error::TimedOut(elapsed)), Some((at, elapsed)));
                                }
                            }
                        }
                        if let Err(error) = run.enter(level) {
                            break (Err(error), None);
                        }
                        match level {
                            $($i => if $L::TIME_LIMITED {
                                $timer.set(run.stages.$i.time_limit());
                            },)+
                            _ => unreachable!(),
                        }
                        level += 1;
                    };
                    loop {
                        if level == 0 {
                            return result;
                        }
                        level -= 1;
                        match (run.leave(level, result), timed_out) {
                            (Leave::Return(outward), _) => {
                                disarm!(level; $levels);
                                if matches!(timed_out, Some((at, _)) if at == level) {
                                    timed_out = None;
                                }
                                result = outward;
                            }
                            (Leave::Again(_), Some((at, elapsed))) if level >= at => {
                                // Inside a limit that ran out (or at it), no stage sends the
                                // call back in.
                                run.cancel(level);
                                disarm!(level; $levels);
                                if level == at {
                                    timed_out = None;
                                }
                                result = Err(Error::TimedOut(elapsed));
                            }
                            (Leave::Again(delay), _) => {
                                if !delay.is_zero() {
                                    let waited = match level {
                                        $($i => race!(run.stages.$i.wait(delay); $levels),)+
                                        _ => unreachable!(),
                                    };
                                    if let Err((at, limit)) = waited {
                                        disarm!(at; $levels);
                                        let elapsed = Elapsed::new(limit);
                                        timed_out = Some((at, elapsed));
                                        // Leave this stage again, now with the timeout.
                                        result = Err(Error::TimedOut(elapsed));
                                        level += 1;
                                        continue;
                                    }
                                }
                                run.again(level);
                                level += 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
    };
}

stack!(Run1; 1; [0 L0 timer0]);
stack!(Run2; 2; [0 L0 timer0, 1 L1 timer1]);
stack!(Run3; 3; [0 L0 timer0, 1 L1 timer1, 2 L2 timer2]);
stack!(Run4; 4; [0 L0 timer0, 1 L1 timer1, 2 L2 timer2, 3 L3 timer3]);
