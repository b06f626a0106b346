//! Policies as stages of one call: what [`SafetyNet`](crate::SafetyNet) and every single policy
//! run.
//!
//! A composed call is a loop, not a nest of closures: enter each stage from the outermost in,
//! run the operation, then leave each stage from the innermost out; a stage may send the call
//! back in (a retry) after a wait. Keeping the operation out of nested closures is what lets an
//! async composed call be `Send` when its parts are, so servers can spawn it.

use core::{
    future::{Future, poll_fn},
    marker::PhantomData,
    pin::pin,
    task::Poll,
    time::Duration,
};

use crate::{Elapsed, Error};

/// What a stage decides once the stages inside it have finished.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Leave<T, E> {
    /// Pass this result outward.
    Return(Result<T, Error<E>>),
    /// Run the stages inside again after waiting this long.
    Again(Duration),
}

/// One policy's part in a call returning `Result<T, E>`.
///
/// `enter` runs before the stages inside it (a breaker admits or rejects), `leave` after them
/// with their result (a breaker records it; a retry decides whether to go again). A ticket
/// entered but never left (the call panicked, or its future was dropped) is `abandon`ed.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{Error, SafetyNet, Policy, compose::{BlockingStage, Stage, Leave}};
///
/// /// Counts the calls that pass through it.
/// struct Counter(u32);
/// impl<T, E> Stage<T, E> for Counter {
///     type Ticket = ();
///     fn enter(&mut self) -> Result<(), Error<E>> {
///         self.0 += 1;
///         Ok(())
///     }
///     fn leave(&mut self, _: &mut (), result: Result<T, Error<E>>) -> Leave<T, E> {
///         Leave::Return(result)
///     }
///     fn abandon(&mut self, _: ()) {}
/// }
/// impl<T, E> BlockingStage<T, E> for Counter {
///     fn wait(&self, _: Duration) {}
/// }
///
/// let mut net = SafetyNet::new((resilient_circuit::RetryWithBackoff::new(2), Counter(0)));
/// let _: Result<(), Error<&str>> = net.call(|| Err("down"));
/// assert_eq!(net.policies().1.0, 3);
/// ```
pub trait Stage<T, E> {
    /// What the stage keeps while the stages inside it run.
    type Ticket;

    /// Before the stages inside: `Err` refuses the call.
    fn enter(&mut self) -> Result<Self::Ticket, Error<E>>;

    /// After the stages inside, with their result.
    fn leave(&mut self, ticket: &mut Self::Ticket, result: Result<T, Error<E>>) -> Leave<T, E>;

    /// The call will never come back through this stage.
    fn abandon(&mut self, ticket: Self::Ticket);

    /// The call goes back in after this stage's [`Leave::Again`], its wait (if any) over: the
    /// attempt it asked for starts. Nothing by default; a stage that counts retries counts here,
    /// so that an `Again` a run-out time limit cancels is not counted.
    #[inline]
    fn again(&mut self, ticket: &mut Self::Ticket) {
        let _ = ticket;
    }
}

/// A stage usable in a blocking call: it waits by blocking.
pub trait BlockingStage<T, E>: Stage<T, E> {
    /// Waits before [`Leave::Again`].
    fn wait(&self, duration: Duration);
}

/// A stage usable in an async call: it waits asynchronously.
pub trait AsyncStage<T, E>: Stage<T, E> {
    /// Whether this stage limits the time of what is inside it ([`time_limit`](Self::time_limit)
    /// is asked only if so); `false` by default.
    const TIME_LIMITED: bool = false;

    /// Waits before [`Leave::Again`].
    fn wait(&self, duration: Duration) -> impl Future<Output = ()>;

    /// A timer started as the stage is entered: when it completes (with the limit) before the
    /// stages inside have finished, what runs inside is dropped and every stage inside is left
    /// with [`Error::TimedOut`], none of them sending the call back in; then this stage is left
    /// with that error. `None` (the default): no limit. See [`Timeout`](crate::Timeout).
    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<Self, T, E>> {
        None::<core::future::Pending<Duration>>
    }
}

impl<T, E, L: Stage<T, E> + ?Sized> Stage<T, E> for &mut L {
    type Ticket = L::Ticket;
    fn enter(&mut self) -> Result<Self::Ticket, Error<E>> {
        (**self).enter()
    }
    fn leave(&mut self, ticket: &mut Self::Ticket, result: Result<T, Error<E>>) -> Leave<T, E> {
        (**self).leave(ticket, result)
    }
    fn abandon(&mut self, ticket: Self::Ticket) {
        (**self).abandon(ticket)
    }
    fn again(&mut self, ticket: &mut Self::Ticket) {
        (**self).again(ticket)
    }
}

impl<T, E, L: BlockingStage<T, E> + ?Sized> BlockingStage<T, E> for &mut L {
    fn wait(&self, duration: Duration) {
        (**self).wait(duration)
    }
}

impl<'a, T, E, L: AsyncStage<T, E> + ?Sized> AsyncStage<T, E> for &'a mut L {
    const TIME_LIMITED: bool = L::TIME_LIMITED;

    fn wait(&self, duration: Duration) -> impl Future<Output = ()> {
        (**self).wait(duration)
    }

    fn time_limit(&self) -> Option<impl Future<Output = Duration> + use<'a, T, E, L>> {
        (**self).time_limit()
    }
}

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
        operation: impl AsyncFnMut() -> Result<T, Error<E>>,
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
                mut operation: impl AsyncFnMut() -> Result<T, Error<E>>,
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
                            match race!(operation(); $levels) {
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
