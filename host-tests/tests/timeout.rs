//! SEMANTICS §4, time limits: `Timeout` in an async `SafetyNet` on tokio's paused time.

use std::{cell::Cell, future::pending, time::Duration};

use host_tests::{FakeClock, on_paused_time, secs};
use resilient_circuit_std::{
    AsyncPolicy, Breaker, BreakerConfig, CircuitState, Error, Ratio, RetryWithBackoff, SafetyNet,
    Timeout, backoff::FixedDelay, breaker::CircuitProtector, error::Elapsed, state::Outcome,
    store::InlineStore, time::TokioSleep,
};
use tokio::time::{Instant, sleep};

use Outcome::{Failure as F, Success as S};

fn breaker(clock: &FakeClock) -> CircuitProtector<InlineStore<16>, &FakeClock> {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(5, 5).unwrap())
        .cooldown(secs(30.0));
    CircuitProtector::new(config.validate().unwrap(), InlineStore::new(), clock)
}

fn log(b: &CircuitProtector<InlineStore<16>, &FakeClock>) -> Vec<Outcome> {
    b.execution_log().iter().collect()
}

fn limit(ms: u64) -> Timeout<TokioSleep> {
    Timeout::new(Duration::from_millis(ms), TokioSleep)
}

#[test]
fn a_call_that_takes_longer_is_dropped_and_gets_the_limit_back() {
    on_paused_time(async {
        let dropped = Cell::new(false);
        struct SetOnDrop<'a>(&'a Cell<bool>);
        impl Drop for SetOnDrop<'_> {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let mut net = SafetyNet::new((limit(250),));
        let start = Instant::now();
        let result: Result<(), Error<&str>> = net
            .call_async(async || {
                let _guard = SetOnDrop(&dropped);
                pending().await
            })
            .await;
        assert_eq!(
            result,
            Err(Error::TimedOut(Elapsed::new(Duration::from_millis(250))))
        );
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert!(dropped.get(), "the operation's future was dropped");
        assert_eq!(
            result.unwrap_err().to_string(),
            "the call took longer than 250ms"
        );
    });
}

#[test]
fn a_call_that_finishes_in_time_is_untouched() {
    on_paused_time(async {
        let mut net = SafetyNet::new((limit(250),));
        let start = Instant::now();
        let result = net
            .call_async(async || {
                sleep(Duration::from_millis(249)).await;
                Ok::<_, &str>(7)
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(start.elapsed(), Duration::from_millis(249));
    });
}

#[test]
fn innermost_it_limits_each_attempt_and_each_counts_against_the_breaker() {
    let clock = FakeClock::new();
    let b = breaker(&clock);
    on_paused_time(async {
        let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(1.0)), TokioSleep);
        let mut net = SafetyNet::new((retry, &b, limit(100)));
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result = net
            .call_async(async || {
                attempts.set(attempts.get() + 1);
                if attempts.get() <= 2 {
                    pending::<()>().await;
                }
                Ok::<_, &str>(attempts.get())
            })
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100 + 1000 + 100 + 1000)
        );
    });
    assert_eq!(log(&b), [F, F, S]);
}

#[test]
fn outermost_it_limits_the_whole_call_waits_included() {
    let clock = FakeClock::new();
    let b = breaker(&clock);
    on_paused_time(async {
        let retry = RetryWithBackoff::new(10).with_backoff(FixedDelay(secs(1.0)), TokioSleep);
        let mut net = SafetyNet::new((limit(2500), retry, &b));
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result: Result<(), _> = net
            .call_async(async || {
                attempts.set(attempts.get() + 1);
                sleep(Duration::from_millis(100)).await;
                Err("reset")
            })
            .await;
        // Attempts at 0, 1.1 and 2.2 s; the limit runs out in the third one, at 2.5 s.
        assert_eq!(
            result,
            Err(Error::TimedOut(Elapsed::new(Duration::from_millis(2500))))
        );
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
        assert_eq!(attempts.get(), 3);
    });
    assert_eq!(log(&b), [F, F, F], "the attempt cut short counts too");
    assert_eq!(b.state().probes_in_flight(), 0);
}

#[test]
fn outermost_it_cuts_a_retry_wait_short() {
    let clock = FakeClock::new();
    let b = breaker(&clock);
    on_paused_time(async {
        let retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(10.0)), TokioSleep);
        let mut net = SafetyNet::new((limit(500), retry, &b));
        let start = Instant::now();
        let result: Result<(), _> = net.call_async(async || Err("reset")).await;
        assert_eq!(
            result,
            Err(Error::TimedOut(Elapsed::new(Duration::from_millis(500))))
        );
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(500),
            "not the 10 s wait"
        );
    });
    assert_eq!(log(&b), [F], "one attempt ran; the wait after it was cut");
}

#[test]
fn a_timed_out_probe_frees_its_slot_and_reopens_the_breaker() {
    let clock = FakeClock::new();
    // One probe decides: a failure reopens.
    let config = BreakerConfig::new().cooldown(secs(30.0));
    let b = CircuitProtector::new(config.validate().unwrap(), InlineStore::<16>::new(), &clock);
    b.force_open().unwrap();
    clock.advance(secs(30.0));
    on_paused_time(async {
        let mut net = SafetyNet::new((&b, limit(100)));
        let probe = net.call_async(async || pending::<Result<(), &str>>().await);
        let result = probe.await;
        assert!(result.unwrap_err().is_timed_out());
    });
    assert_eq!(
        (b.status(), b.state().probes_in_flight()),
        (CircuitState::Open, 0)
    );
}

#[test]
fn a_breaker_outside_counts_the_timeout_as_a_failure() {
    let clock = FakeClock::new();
    let b = breaker(&clock);
    on_paused_time(async {
        let mut net = SafetyNet::new((&b, limit(100)));
        let _: Result<(), _> = net
            .call_async(async || pending::<Result<(), &str>>().await)
            .await;
        let mut net = SafetyNet::new((limit(100), &b));
        let _: Result<(), _> = net
            .call_async(async || pending::<Result<(), &str>>().await)
            .await;
    });
    assert_eq!(log(&b), [F, F]);
}

#[test]
fn of_two_limits_the_one_that_runs_out_first_wins() {
    on_paused_time(async {
        let retry = RetryWithBackoff::new(5).with_backoff(FixedDelay(secs(0.05)), TokioSleep);
        let mut net = SafetyNet::new((limit(300), retry, limit(100)));
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result: Result<(), Error<&str>> = net
            .call_async(async || {
                attempts.set(attempts.get() + 1);
                pending().await
            })
            .await;
        // Each attempt is cut at 100 ms, 50 ms apart (0-100, 150-250 ms); the outer limit runs
        // out at 300 ms, as the wait before a third attempt ends: no third attempt starts.
        assert_eq!(
            result,
            Err(Error::TimedOut(Elapsed::new(Duration::from_millis(300))))
        );
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert_eq!(attempts.get(), 2);
    });
}

#[test]
fn a_retry_that_runs_out_on_timeouts_returns_the_timeout() {
    on_paused_time(async {
        let mut net = SafetyNet::new((RetryWithBackoff::new(2), limit(10)));
        let attempts = Cell::new(0);
        let result: Result<(), Error<&str>> = net
            .call_async(async || {
                attempts.set(attempts.get() + 1);
                pending().await
            })
            .await;
        assert_eq!(
            result,
            Err(Error::TimedOut(Elapsed::new(Duration::from_millis(10))))
        );
        assert_eq!(attempts.get(), 3);
    });
}

#[test]
fn a_net_with_a_timeout_can_be_spawned() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        tokio::spawn(async {
            let retry =
                RetryWithBackoff::new(1).with_backoff(FixedDelay(Duration::ZERO), TokioSleep);
            let mut net = SafetyNet::new((retry, limit(1000)));
            net.call_async(async || Ok::<_, std::io::Error>(5)).await
        })
        .await
        .unwrap()
    });
    assert_eq!(result.unwrap(), 5);
}

#[test]
fn breaker_still_works_when_the_limit_is_not_reached() {
    let clock = FakeClock::new();
    let b = breaker(&clock);
    on_paused_time(async {
        let mut net = SafetyNet::new((&b, limit(100)));
        assert_eq!(net.call_async(async || Ok::<_, &str>(1)).await, Ok(1));
    });
    assert_eq!(log(&b), [S]);
    assert_eq!(b.call(|| Ok::<_, &str>(2)), Ok(2));
}

/// A `Timeout`'s sleeper whose timer runs out once three attempts have started, whatever the
/// clock says.
#[derive(Clone, Copy)]
struct RunsOutAfterThree<'a>(&'a Cell<u32>);

impl resilient_circuit_std::time::AsyncSleep for RunsOutAfterThree<'_> {
    async fn sleep(&self, _: Duration) {
        std::future::poll_fn(|_| {
            if self.0.get() >= 3 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

#[test]
fn a_limit_run_out_is_noticed_even_when_every_attempt_ends_at_once() {
    let attempts = Cell::new(0);
    let timer = RunsOutAfterThree(&attempts);
    let mut net = SafetyNet::new((Timeout::new(secs(1.0), timer), RetryWithBackoff::new(1000)));
    let result: Result<(), Error<&str>> = host_tests::block_on(net.call_async(async || {
        attempts.set(attempts.get() + 1);
        Err("reset")
    }));
    assert_eq!(result, Err(Error::TimedOut(Elapsed::new(secs(1.0)))));
    assert_eq!(attempts.get(), 3, "not the retry's 1001");
}

#[test]
fn a_limit_run_out_before_a_retry_without_wait_admits_no_attempt_more() {
    // As above, with a breaker inside the retry: the limit runs out as the third attempt fails,
    // and the retry (which does not wait) must not take the breaker's admission for a fourth
    // attempt that the limit stops before it runs.
    let clock = FakeClock::new();
    let b = breaker(&clock);
    let attempts = Cell::new(0);
    let timer = RunsOutAfterThree(&attempts);
    let mut net = SafetyNet::new((
        Timeout::new(secs(1.0), timer),
        RetryWithBackoff::new(1000),
        &b,
    ));
    let result: Result<(), Error<&str>> = host_tests::block_on(net.call_async(async || {
        attempts.set(attempts.get() + 1);
        Err("reset")
    }));
    assert_eq!(result, Err(Error::TimedOut(Elapsed::new(secs(1.0)))));
    assert_eq!(attempts.get(), 3);
    assert_eq!(log(&b), [F, F, F], "one outcome per attempt that ran");
}

#[test]
fn a_limit_is_checked_with_the_calls_own_waker() {
    use std::{cell::RefCell, task::Poll, task::Waker};
    // embassy's timer queue panics on a waker its executor did not make: every poll of a
    // limit's timer, the check before a retry that does not wait included, must pass the
    // call's own.
    let wakers: RefCell<Vec<Waker>> = RefCell::new(Vec::new());
    let timer = |_: Duration| {
        std::future::poll_fn(|cx| {
            wakers.borrow_mut().push(cx.waker().clone());
            Poll::<()>::Pending
        })
    };
    let mut net = SafetyNet::new((Timeout::new(secs(1.0), timer), RetryWithBackoff::new(2)));
    // A waker of its own, told apart from any other (`block_on`'s is a no-op one).
    struct CallsOwn;
    impl std::task::Wake for CallsOwn {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let own = Waker::from(std::sync::Arc::new(CallsOwn));
    let call = std::pin::pin!(net.call_async(async || Err::<(), &str>("reset")));
    let result = std::future::Future::poll(call, &mut std::task::Context::from_waker(&own));
    assert!(matches!(
        result,
        Poll::Ready(Err(Error::RetryLimitReached { attempts: 3, .. }))
    ));
    let wakers = wakers.borrow();
    assert!(wakers.len() >= 3, "polled before each attempt");
    assert!(wakers.iter().all(|waker| waker.will_wake(&own)));
}
