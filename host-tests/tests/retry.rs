//! SEMANTICS §3 (retry with backoff), rule by rule; waits go to a fake clock.

use std::{cell::Cell, time::Duration};

use host_tests::{FakeClock, FakeSleep, SplitMix64, block_on, secs};
use resilient_circuit::{
    AsyncPolicy, Error, Policy, RejectReason, Rejected, RetryWithBackoff, ShouldHandle,
    backoff::{
        Backoff, BackoffError, DecorrelatedJitter, ExponentialDelay, FixedDelay, FullJitter,
    },
    classify::Verdict,
    fixed_point::{U1F31, U32F32},
};

fn exponential(min: f64, max: f64) -> ExponentialDelay {
    ExponentialDelay::new(secs(min), secs(max)).unwrap()
}

#[test]
fn max_retries_counts_retries_not_attempts() {
    let mut runs = 0;
    let result: Result<(), _> = RetryWithBackoff::new(3).call(|| {
        runs += 1;
        Err("down")
    });
    assert_eq!(runs, 4);
    assert_eq!(
        result,
        Err(Error::RetryLimitReached {
            attempts: 4,
            last_error: "down"
        })
    );
    let mut once = 0;
    let _: Result<(), _> = RetryWithBackoff::new(0).call(|| {
        once += 1;
        Err("down")
    });
    assert_eq!(once, 1);
}

#[test]
fn a_retry_around_a_retry_that_gave_up_counts_its_own_attempts_and_keeps_the_error() {
    let runs = Cell::new(0);
    let mut net =
        resilient_circuit::SafetyNet::new((RetryWithBackoff::new(2), RetryWithBackoff::new(1)));
    let result: Result<(), Error<&str>> = net.call(|| {
        runs.set(runs.get() + 1);
        Err("down")
    });
    assert_eq!(runs.get(), 6, "three outer attempts of two inner ones");
    assert_eq!(
        result,
        Err(Error::RetryLimitReached {
            attempts: 3,
            last_error: "down"
        })
    );
}

#[test]
fn a_failed_attempts_result_is_dropped_before_the_wait() {
    use std::cell::RefCell;
    /// An error that holds something (a connection, say): its drop is logged.
    struct Held<'a>(&'a RefCell<Vec<&'static str>>);
    impl Drop for Held<'_> {
        fn drop(&mut self) {
            self.0.borrow_mut().push("dropped");
        }
    }
    let log = RefCell::new(Vec::new());
    let sleep = |_: Duration| log.borrow_mut().push("wait");
    let mut retry = RetryWithBackoff::new(1).with_backoff(
        resilient_circuit::backoff::FixedDelay(Duration::from_millis(10)),
        sleep,
    );
    let result: Result<(), Error<Held>> = retry.call(|| Err(Held(&log)));
    assert!(result.is_err());
    assert_eq!(*log.borrow(), ["dropped", "wait"]);
    drop(result);

    // The same in an async call.
    log.borrow_mut().clear();
    let sleep = |_: Duration| {
        log.borrow_mut().push("wait");
        std::future::ready(())
    };
    let mut retry = RetryWithBackoff::new(1).with_backoff(
        resilient_circuit::backoff::FixedDelay(Duration::from_millis(10)),
        sleep,
    );
    let result: Result<(), Error<Held>> = block_on(retry.call_async(async || Err(Held(&log))));
    assert!(result.is_err());
    assert_eq!(*log.borrow(), ["dropped", "wait"]);
}

#[test]
fn no_delay_follows_the_last_attempt() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(2).with_backoff(FixedDelay(secs(1.0)), &sleep);
    let _: Result<(), _> = retry.call(|| Err("down"));
    assert_eq!(sleep.waits(), [secs(1.0), secs(1.0)]);
}

#[test]
fn waits_backoff_delay_k_after_failed_attempt_k() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(4).with_backoff(exponential(0.1, 1.0), &sleep);
    let _: Result<(), _> = retry.call(|| Err("down"));
    assert_eq!(sleep.waits(), [secs(0.1), secs(0.2), secs(0.4), secs(0.8)]);
}

#[test]
fn no_backoff_means_no_wait() {
    let mut runs = 0;
    let result: Result<(), _> = RetryWithBackoff::new(3).call(|| {
        runs += 1;
        Err("down")
    });
    assert!(result.is_err());
    assert_eq!(runs, 4);
}

#[test]
fn success_returns_at_once() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3).with_backoff(exponential(0.1, 1.0), &sleep);
    let mut runs = 0;
    let result = retry.call(|| {
        runs += 1;
        if runs < 3 { Err("down") } else { Ok(runs) }
    });
    assert_eq!(result, Ok(3));
    assert_eq!(sleep.waits(), [secs(0.1), secs(0.2)]);
}

#[test]
fn declined_error_is_returned_at_once() {
    #[derive(Debug, PartialEq)]
    enum E {
        Connection,
        Key,
    }
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3)
        .with_backoff(FixedDelay(secs(1.0)), &sleep)
        .should_handle(ShouldHandle(|e: &E| *e == E::Connection));
    let mut runs = 0;
    let result: Result<(), _> = retry.call(|| {
        runs += 1;
        Err(if runs == 1 { E::Connection } else { E::Key })
    });
    assert_eq!(result, Err(Error::Operation(E::Key)));
    assert_eq!(runs, 2);
    assert_eq!(sleep.waits(), [secs(1.0)]);
}

fn unavailable_fails(status: &u16) -> Verdict {
    match status {
        503 => Verdict::Failure,
        429 => Verdict::Ignore,
        _ => Verdict::Success,
    }
}

#[test]
fn a_value_judged_a_failure_is_retried_on_the_same_schedule() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3)
        .with_backoff(exponential(0.1, 1.0), &sleep)
        .classify_values(unavailable_fails);
    let mut replies = [503, 503, 200, 503].into_iter();
    let result = retry.call(|| Ok::<_, &str>(replies.next().unwrap()));
    assert_eq!(result, Ok(200));
    assert_eq!(sleep.waits(), [secs(0.1), secs(0.2)]);
}

#[test]
fn a_value_not_judged_a_failure_is_returned_at_once() {
    let mut retry = RetryWithBackoff::new(3).classify_values(unavailable_fails);
    for status in [429, 404, 200] {
        let mut runs = 0;
        let result = retry.call(|| {
            runs += 1;
            Ok::<_, &str>(status)
        });
        assert_eq!((result, runs), (Ok(status), 1));
    }
}

#[test]
fn attempts_that_run_out_on_a_failing_value_return_the_last_value() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(2)
        .with_backoff(FixedDelay(secs(1.0)), &sleep)
        .classify_values(|reply: &(u16, u32)| {
            if reply.0 == 503 {
                Verdict::Failure
            } else {
                Verdict::Success
            }
        });
    let mut runs = 0;
    let result = retry.call(|| {
        runs += 1;
        Ok::<_, &str>((503, runs))
    });
    assert_eq!(result, Ok((503, 3)), "the third and last reply");
    assert_eq!(
        sleep.waits(),
        [secs(1.0), secs(1.0)],
        "no wait after the last"
    );
}

#[test]
fn values_and_errors_are_classified_apart() {
    // An error the error classifier declines stops the retry; a failing value goes on.
    let mut retry = RetryWithBackoff::new(3)
        .should_handle(ShouldHandle(|e: &&str| *e == "reset"))
        .classify_values(unavailable_fails);
    let mut replies = [Ok(503), Err("reset"), Err("bad request"), Ok(200)].into_iter();
    let result = retry.call(|| replies.next().unwrap());
    assert_eq!(result, Err(Error::Operation("bad request")));
    assert_eq!(replies.len(), 1);
}

#[test]
fn attempts_run_out_with_retry_limit_reached_and_the_last_error() {
    let mut runs = 0;
    let result: Result<(), _> = RetryWithBackoff::new(2).call(|| {
        runs += 1;
        Err(runs)
    });
    assert_eq!(
        result,
        Err(Error::RetryLimitReached {
            attempts: 3,
            last_error: 3
        })
    );
    assert_eq!(
        result.unwrap_err().to_string(),
        "gave up after 3 attempts; last error: 3"
    );
}

/// An operation that answers with a rejection `retry_after` long, then succeeds.
fn rejected_then_ok(
    retry_after: Duration,
    runs: &Cell<u32>,
) -> impl FnMut() -> Result<u32, Error<&'static str>> + '_ {
    move || {
        runs.set(runs.get() + 1);
        if runs.get() == 1 {
            Err(Error::Rejected(Rejected::new(
                retry_after,
                RejectReason::Open,
            )))
        } else {
            Ok(runs.get())
        }
    }
}

#[test]
fn rejection_no_longer_than_the_delay_is_waited_out() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(2.0)), &sleep);
    let runs = Cell::new(0);
    assert_eq!(retry.run(rejected_then_ok(secs(2.0), &runs)), Ok(2));
    assert_eq!(sleep.waits(), [secs(2.0)]);
}

#[test]
fn rejection_longer_than_the_delay_is_returned_at_once() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(2.0)), &sleep);
    let runs = Cell::new(0);
    assert_eq!(
        retry.run(rejected_then_ok(secs(2.5), &runs)),
        Err(Error::Rejected(Rejected::new(
            secs(2.5),
            RejectReason::Open
        )))
    );
    assert_eq!(runs.get(), 1);
    assert!(sleep.waits().is_empty());
}

#[test]
fn rejection_on_the_last_attempt_is_returned_as_is() {
    let mut retry = RetryWithBackoff::new(0);
    let result: Result<(), _> = retry.run(|| {
        Err::<(), Error<&str>>(Error::Rejected(Rejected::new(
            Duration::ZERO,
            RejectReason::Open,
        )))
    });
    assert_eq!(
        result,
        Err(Error::Rejected(Rejected::new(
            Duration::ZERO,
            RejectReason::Open
        )))
    );
}

#[test]
fn async_retry_follows_the_same_rules_and_borrows_the_operation_mutably() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(3).with_backoff(exponential(0.05, 1.0), &sleep);
    let mut bus: Vec<u8> = Vec::new();
    let result: Result<usize, Error<&str>> = block_on(retry.call_async(async || {
        bus.push(1);
        if bus.len() < 3 {
            Err("nak")
        } else {
            Ok(bus.len())
        }
    }));
    assert_eq!(result, Ok(3));
    assert_eq!(sleep.waits(), [secs(0.05), secs(0.1)]);
    assert_eq!(clock.now_secs(), 0.15);
}

trait NowSecs {
    fn now_secs(&self) -> f64;
}
impl NowSecs for FakeClock {
    fn now_secs(&self) -> f64 {
        let nanos = resilient_circuit::time::Clock::now(self).as_nanos();
        (nanos as f64 / 1e6).round() / 1e3
    }
}

// ExponentialDelay and FixedDelay

fn delays(backoff: &mut impl Backoff, attempts: impl IntoIterator<Item = u32>) -> Vec<Duration> {
    attempts.into_iter().map(|k| backoff.delay(k)).collect()
}

#[test]
fn exponential_delay_doubles_from_min_capped_at_max() {
    let mut backoff = ExponentialDelay::new(Duration::from_millis(50), secs(100.0)).unwrap();
    let expected: Vec<Duration> = [
        50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200,
    ]
    .map(Duration::from_millis)
    .to_vec();
    assert_eq!(delays(&mut backoff, 1..=11), expected);
    assert_eq!(backoff.delay(12), secs(100.0));
}

#[test]
fn exponential_delay_with_factor_three() {
    let mut backoff = exponential(1.0, 10.0)
        .with_factor(U32F32::from_num(3))
        .unwrap();
    assert_eq!(
        delays(&mut backoff, 1..=5),
        [1.0, 3.0, 9.0, 10.0, 10.0].map(secs)
    );
    let mut one_and_a_half = exponential(1.0, 10.0)
        .with_factor(U32F32::from_num(1.5))
        .unwrap();
    assert_eq!(one_and_a_half.delay(3), secs(2.25));
}

#[test]
fn exponential_delay_never_overflows() {
    let mut backoff = exponential(1.0, 10.0);
    assert_eq!(backoff.delay(1_000_000), secs(10.0));
    assert_eq!(backoff.delay(u32::MAX), secs(10.0));
    let mut huge = ExponentialDelay::new(Duration::from_secs(1), Duration::MAX)
        .unwrap()
        .with_factor(U32F32::MAX)
        .unwrap();
    assert!(huge.delay(u32::MAX) >= Duration::from_secs(1));
    let mut zero = exponential(0.0, 10.0);
    assert_eq!(zero.delay(50), Duration::ZERO, "min 0 never delays");
}

#[test]
fn exponential_delay_jitter_stays_within_its_fraction_and_the_bounds() {
    let mut backoff = exponential(1.0, 100.0)
        .with_jitter(U1F31::from_num(0.5), SplitMix64::new(42))
        .unwrap();
    let draws: Vec<Duration> = (0..2_000).map(|_| backoff.delay(3)).collect();
    assert!(draws.iter().all(|d| *d >= secs(2.0) && *d <= secs(6.0)));
    let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
    assert!((mean - 4.0).abs() < 0.1, "uniform around 4 s, mean {mean}");
    assert!(draws.iter().any(|d| *d < secs(2.5)) && draws.iter().any(|d| *d > secs(5.5)));

    // Clamped to [min, max]: about half the draws at attempt 1 are exactly min.
    let at_min = (0..2_000).filter(|_| backoff.delay(1) == secs(1.0)).count();
    assert!(
        (800..1_200).contains(&at_min),
        "{at_min} of 2000 at the lower bound"
    );
    assert!((0..100).all(|_| backoff.delay(1) <= secs(1.5)));
}

#[test]
fn exponential_delay_construction_errors_are_the_seeds() {
    assert_eq!(
        ExponentialDelay::new(secs(2.0), secs(1.0)).unwrap_err(),
        BackoffError::MaxBelowMin
    );
    assert_eq!(
        BackoffError::MaxBelowMin.to_string(),
        "`max_delay` must be >= `min_delay`."
    );
    assert_eq!(
        exponential(1.0, 2.0)
            .with_factor(U32F32::from_num(0.99))
            .unwrap_err(),
        BackoffError::FactorBelowOne
    );
    assert_eq!(
        BackoffError::FactorBelowOne.to_string(),
        "`factor` must be >= 1."
    );
    assert_eq!(
        exponential(1.0, 2.0)
            .with_jitter(U1F31::from_num(1.01), SplitMix64::new(1))
            .unwrap_err(),
        BackoffError::JitterOutOfRange
    );
    assert_eq!(
        BackoffError::JitterOutOfRange.to_string(),
        "`jitter` must be in range [0, 1]."
    );
    assert!(
        exponential(1.0, 2.0)
            .with_jitter(U1F31::ONE, SplitMix64::new(1))
            .is_ok()
    );
    assert!(exponential(1.0, 2.0).with_factor(U32F32::ONE).is_ok());
    assert!(ExponentialDelay::new(secs(1.0), secs(1.0)).is_ok());
}

#[test]
fn fixed_delay_always_waits_the_same() {
    let mut backoff = FixedDelay(secs(1.5));
    assert_eq!(delays(&mut backoff, [1, 2, 100, u32::MAX]), [secs(1.5); 4]);
}

#[test]
fn full_jitter_is_uniform_up_to_the_exponential_delay() {
    let mut backoff = FullJitter::new(exponential(0.1, 10.0), SplitMix64::new(7));
    let draws: Vec<Duration> = (0..2_000).map(|_| backoff.delay(3)).collect();
    assert!(draws.iter().all(|d| *d <= secs(0.4)));
    let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.2).abs() < 0.01, "mean {mean}");
}

#[test]
fn decorrelated_jitter_stays_between_min_and_three_times_the_previous_wait_capped() {
    assert_eq!(
        DecorrelatedJitter::new(secs(2.0), secs(1.0), SplitMix64::new(1)).unwrap_err(),
        BackoffError::MaxBelowMin
    );
    let mut backoff = DecorrelatedJitter::new(secs(0.1), secs(5.0), SplitMix64::new(9)).unwrap();
    for _ in 0..200 {
        let mut previous = secs(0.1);
        for k in 1..=10 {
            let d = backoff.delay(k);
            assert!(
                d >= secs(0.1) && d <= secs(5.0) && d <= previous * 3,
                "k={k} d={d:?} prev={previous:?}"
            );
            previous = d;
        }
    }
}

/// An error that carries the wait its server asked for.
#[derive(Debug, PartialEq)]
struct Throttled(u64);

struct ReadsThrottling;

impl resilient_circuit::Classify<Throttled> for ReadsThrottling {
    fn classify(&self, _: &Throttled) -> Verdict {
        Verdict::Failure
    }
    fn retry_after(&self, error: &Throttled) -> Option<Duration> {
        Some(secs(error.0 as f64))
    }
}

#[test]
fn an_error_that_asks_for_a_wait_gets_the_longer_of_it_and_the_delay_up_to_the_cap() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(5)
        .with_backoff(FixedDelay(secs(3.0)), &sleep)
        .should_handle(ReadsThrottling)
        .with_max_retry_after(secs(10.0));
    let mut asked = [1, 7, 10, 11].into_iter();
    let result: Result<(), _> = retry.call(|| Err(Throttled(asked.next().unwrap())));
    // 1 s < the 3 s delay; 7 s and 10 s are waited; 11 s is past the cap: given back at once.
    assert_eq!(result, Err(Error::Operation(Throttled(11))));
    assert_eq!(sleep.waits(), [secs(3.0), secs(7.0), secs(10.0)]);
}
