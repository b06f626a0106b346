//! SEMANTICS §1 (ratios) and §2 (circuit protector), rule by rule, on a fake clock.

use std::{
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

use host_tests::{FakeClock, Transitions, block_on};
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, ConfigError, Error, Ratio, RatioError,
    RejectReason, Rejected, ShouldHandle, TransitionHook,
    classify::{AllErrors, Verdict},
    state::{Outcome, OutcomeWindow},
    store::InlineStore,
    time::Instant,
};

use CircuitState::{Closed, HalfOpen, Open};

type TestBreaker<'a> = CircuitProtector<InlineStore<64>, &'a FakeClock>;

fn breaker(config: BreakerConfig, clock: &FakeClock) -> TestBreaker<'_> {
    CircuitProtector::new(config.validate().unwrap(), InlineStore::new(), clock)
}

fn limit(a: u16, b: u16) -> Ratio {
    Ratio::new(a, b).unwrap()
}

type AnyBreaker<'a, H> = CircuitProtector<InlineStore<64>, &'a FakeClock, AllErrors, H>;

fn fail<H: TransitionHook>(b: &AnyBreaker<'_, H>) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn succeed<H: TransitionHook>(b: &AnyBreaker<'_, H>) -> Result<(), Error<&'static str>> {
    b.call(|| Ok(()))
}

fn log<H: TransitionHook>(b: &AnyBreaker<'_, H>) -> Vec<Outcome> {
    b.execution_log().iter().collect()
}

use Outcome::{Failure as F, Success as S};

// §1 Ratios

#[test]
fn ratio_is_never_reduced() {
    let clock = FakeClock::new();
    // 5 of 10: a window of 10 (Python would use 1/2, a window of 2).
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(5, 10))
            .cooldown(Duration::from_secs(1)),
        &clock,
    );
    for _ in 0..9 {
        fail(&b).unwrap_err();
    }
    assert_eq!(
        b.status(),
        Closed,
        "no trip before the window of 10 is full"
    );
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
    assert_eq!(limit(5, 10).denominator(), 10);
}

#[test]
fn ratio_with_zero_denominator_is_an_error() {
    assert_eq!(Ratio::new(0, 0), Err(RatioError::ZeroDenominator));
    assert_eq!(
        RatioError::ZeroDenominator.to_string(),
        "ratio denominator must be at least 1"
    );
}

#[test]
fn ratio_with_numerator_above_denominator_is_an_error() {
    let error = Ratio::new(3, 2).unwrap_err();
    assert_eq!(
        error,
        RatioError::NumeratorAboveDenominator {
            numerator: 3,
            denominator: 2
        }
    );
    assert_eq!(
        error.to_string(),
        "ratio numerator must not exceed its denominator (got 3/2)"
    );
}

#[test]
fn ratio_above_window_capacity_is_a_configuration_error() {
    let too_big = BreakerConfig::new().failure_limit(limit(1, 65));
    let error = too_big.validate::<OutcomeWindow<64>>().unwrap_err();
    assert_eq!(
        error,
        ConfigError::WindowAboveCapacity {
            window: 65,
            capacity: 64
        }
    );
    assert_eq!(
        error.to_string(),
        "a limit's window of 65 outcomes exceeds the outcome window's capacity of 64"
    );
    let success_too_big = BreakerConfig::new().success_limit(limit(1, 9));
    assert_eq!(
        success_too_big.validate::<OutcomeWindow<8>>(),
        Err(ConfigError::WindowAboveCapacity {
            window: 9,
            capacity: 8
        })
    );
    assert!(
        BreakerConfig::new()
            .failure_limit(limit(64, 64))
            .validate::<OutcomeWindow<64>>()
            .is_ok()
    );
}

#[test]
fn ratio_with_zero_numerator_trips_on_any_failure_in_a_full_window() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(0, 3))
            .cooldown(Duration::from_secs(1)),
        &clock,
    );
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.status(), Closed, "successes never trip");
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
}

// §2 CLOSED

#[test]
fn closed_admits_every_call() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new().failure_limit(limit(3, 3)), &clock);
    let runs = Cell::new(0);
    for i in 0..10 {
        let _ = b.call(|| {
            runs.set(runs.get() + 1);
            if i % 2 == 0 { Err("x") } else { Ok(()) }
        });
    }
    assert_eq!(runs.get(), 10);
    assert_eq!(b.status(), Closed);
}

#[test]
fn closed_window_holds_the_last_b_outcomes_oldest_first() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new().failure_limit(limit(4, 4)), &clock);
    fail(&b).unwrap_err();
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    succeed(&b).unwrap();
    assert_eq!(log(&b), [S, S, F, S]);
}

#[test]
fn closed_success_resets_and_failure_adds_to_the_consecutive_failure_count() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new().failure_limit(limit(5, 5)), &clock);
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.failure_count(), 2);
    succeed(&b).unwrap();
    assert_eq!(b.failure_count(), 0);
    fail(&b).unwrap_err();
    assert_eq!(b.failure_count(), 1);
}

#[test]
fn closed_trip_needs_a_full_window() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(1, 4))
            .cooldown(Duration::from_secs(1)),
        &clock,
    );
    for _ in 0..3 {
        fail(&b).unwrap_err();
        assert_eq!(b.status(), Closed);
    }
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
}

#[test]
fn closed_trip_when_a_full_window_holds_at_least_a_failures() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(3, 5))
            .cooldown(Duration::from_secs(1)),
        &clock,
    );
    for outcome in [F, S, F, S, S] {
        let _ = if outcome == F { fail(&b) } else { succeed(&b) };
    }
    assert_eq!(b.status(), Closed, "2 of 5");
    fail(&b).unwrap_err(); // window S F S S F: still 2 of 5
    assert_eq!(b.status(), Closed);
    fail(&b).unwrap_err(); // F S S F F: 3 of 5
    assert_eq!(b.status(), Open);
}

#[test]
fn closed_success_never_trips() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(2, 3))
            .cooldown(Duration::from_secs(1)),
        &clock,
    );
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    succeed(&b).unwrap();
    assert_eq!(log(&b), [F, F, S]);
    assert_eq!(
        b.status(),
        Closed,
        "a full window with 2 of 3 failures, completed by a success"
    );
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
}

#[test]
fn closed_call_never_reads_the_clock() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new().failure_limit(limit(3, 3)), &clock);
    for _ in 0..100 {
        succeed(&b).unwrap();
    }
    fail(&b).unwrap_err();
    assert_eq!(clock.reads(), 0);
}

// §2 OPEN

#[test]
fn open_deadline_is_now_plus_cooldown_when_the_failure_is_recorded() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(10)),
        &clock,
    );
    let _ = b.call(|| {
        clock.advance(Duration::from_secs(3)); // the failing call takes 3 s
        Err::<(), _>("slow failure")
    });
    assert_eq!(b.state().open_until(), Some(Instant::from_secs(13)));
}

#[test]
fn open_rejects_before_the_deadline_without_running_and_says_how_long() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(10)),
        &clock,
    );
    fail(&b).unwrap_err();
    clock.advance(Duration::from_millis(2_500));
    let ran = Cell::new(false);
    let result = b.call(|| {
        ran.set(true);
        Ok::<_, &str>(())
    });
    assert_eq!(
        result,
        Err(Error::Rejected(Rejected::new(
            Duration::from_millis(7_500),
            RejectReason::Open
        )))
    );
    assert!(!ran.get());
}

#[test]
fn open_rejection_reads_the_clock_once() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(10)),
        &clock,
    );
    fail(&b).unwrap_err();
    let before = clock.reads();
    succeed(&b).unwrap_err();
    assert_eq!(clock.reads() - before, 1);
}

#[test]
fn open_first_call_at_the_deadline_inclusive_becomes_a_half_open_probe() {
    let clock = FakeClock::new();
    let transitions = Transitions::new();
    let b = breaker(
        BreakerConfig::new()
            .cooldown(Duration::from_secs(10))
            .success_limit(limit(2, 2)),
        &clock,
    )
    .on_status_change(transitions.hook());
    fail(&b).unwrap_err();
    clock.set_secs(9.999);
    succeed(&b).unwrap_err();
    clock.set_secs(10.0);
    let was_probe = Cell::new(None);
    b.call(|| {
        was_probe.set(Some(b.status()));
        Ok::<_, &str>(())
    })
    .unwrap();
    assert_eq!(
        was_probe.get(),
        Some(HalfOpen),
        "the call ran as a HALF_OPEN probe"
    );
    assert_eq!(transitions.take(), [(Closed, Open), (Open, HalfOpen)]);
}

#[test]
fn open_reading_the_state_never_changes_it() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(10)),
        &clock,
    );
    fail(&b).unwrap_err();
    clock.set_secs(100.0);
    assert_eq!(b.status(), Open);
    assert_eq!(b.status(), Open);
    assert_eq!(b.state().open_until(), Some(Instant::from_secs(10)));
}

#[test]
fn open_outcome_of_a_call_admitted_earlier_changes_nothing() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(1, 2))
            .cooldown(Duration::from_secs(10)),
        &clock,
    );
    let slow_success = b.try_acquire().unwrap();
    let slow_failure = b.try_acquire().unwrap();
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
    let before = b.state();
    slow_success.record(Verdict::Success);
    slow_failure.record(Verdict::Failure);
    assert_eq!(b.state(), before);
}

#[test]
fn open_state_always_carries_its_deadline() {
    let clock = FakeClock::new();
    clock.set_secs(5.0);
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(1)),
        &clock,
    );
    b.force_open().unwrap();
    assert_eq!(b.state().open_until(), Some(Instant::from_secs(6)));
    b.force_closed().unwrap();
    assert_eq!(b.state().open_until(), None);
}

#[test]
fn open_cooldown_zero_never_rejects() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new(), &clock);
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);
    succeed(&b).unwrap();
    assert_eq!(b.status(), Closed);
}

// §2 HALF_OPEN

fn tripped(config: BreakerConfig, clock: &FakeClock) -> TestBreaker<'_> {
    let b = breaker(config.cooldown(Duration::from_secs(10)), clock);
    b.force_open().unwrap();
    clock.advance(Duration::from_secs(10));
    b
}

#[test]
fn half_open_probe_window_comes_from_success_limit_else_failure_limit() {
    let clock = FakeClock::new();
    let with_success = tripped(
        BreakerConfig::new()
            .failure_limit(limit(1, 5))
            .success_limit(limit(3, 3)),
        &clock,
    );
    let permits: Vec<_> = (0..3)
        .map(|_| with_success.try_acquire().unwrap())
        .collect();
    assert!(
        with_success.try_acquire().is_err(),
        "3 probes for a success window of 3"
    );
    drop(permits);

    let clock = FakeClock::new();
    let without = tripped(BreakerConfig::new().failure_limit(limit(5, 5)), &clock);
    let permits: Vec<_> = (0..5).map(|_| without.try_acquire().unwrap()).collect();
    assert!(
        without.try_acquire().is_err(),
        "5 probes for a failure window of 5"
    );
    drop(permits);
}

#[test]
fn half_open_starts_with_an_empty_window_and_no_failures() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(2, 2))
            .success_limit(limit(2, 3))
            .cooldown(Duration::from_secs(10)),
        &clock,
    );
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(
        (b.status(), b.failure_count(), log(&b)),
        (Open, 2, vec![F, F])
    );
    clock.advance(Duration::from_secs(10));
    let permit = b.try_acquire().unwrap();
    assert_eq!(
        (b.status(), b.failure_count(), log(&b)),
        (HalfOpen, 0, vec![])
    );
    drop(permit);
}

#[test]
fn half_open_admits_at_most_window_size_probes_then_rejects_briefly() {
    let clock = FakeClock::new();
    let b = tripped(
        BreakerConfig::new()
            .success_limit(limit(2, 3))
            .busy_retry_after(Duration::from_millis(250)),
        &clock,
    );
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let p3 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe() && p3.is_probe());
    assert_eq!(
        b.try_acquire().unwrap_err(),
        Rejected::new(Duration::from_millis(250), RejectReason::ProbesBusy)
    );
    // A recorded outcome keeps its slot: the window has room for 3 outcomes in all.
    p1.record(Verdict::Success);
    assert!(b.try_acquire().is_err());
    drop((p2, p3));
}

#[test]
fn half_open_dropped_probe_gives_its_slot_back() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(1, 1)), &clock);
    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(probe);
    assert_eq!(b.state().probes_in_flight(), 0);
    let again = b.try_acquire().unwrap();
    again.record(Verdict::Success);
    assert_eq!(b.status(), Closed);
}

#[test]
fn half_open_with_a_probe_lease_takes_the_probes_out_for_lost_once_full_slots_outlast_it() {
    let clock = FakeClock::new();
    let b = tripped(
        BreakerConfig::new()
            .success_limit(limit(1, 1))
            .probe_lease(Duration::from_secs(2)),
        &clock,
    );
    let lost = b.admit().unwrap();
    assert!(lost.is_probe());
    // The first call refused starts the lease; the slot stays lent until it ends.
    clock.advance(Duration::from_secs(30));
    let busy = Rejected::new(
        BreakerConfig::DEFAULT_BUSY_RETRY_AFTER,
        RejectReason::ProbesBusy,
    );
    assert_eq!(b.try_acquire().unwrap_err(), busy);
    clock.advance(Duration::from_millis(1_999));
    assert_eq!(b.try_acquire().unwrap_err(), busy);
    clock.advance(Duration::from_millis(1));
    let probe = b.admit().unwrap();
    assert!(probe.is_probe());
    assert_ne!(probe.epoch(), lost.epoch(), "a new period");
    assert_eq!((b.status(), b.state().probes_in_flight()), (HalfOpen, 1));
    // The lost probe's late outcome changes nothing; the new probe's decides.
    b.record(lost, Verdict::Failure);
    assert_eq!((b.status(), log(&b)), (HalfOpen, vec![]));
    b.record(probe, Verdict::Success);
    assert_eq!(b.status(), Closed);
}

#[test]
fn half_open_lease_starts_again_when_a_probe_is_admitted() {
    let clock = FakeClock::new();
    let b = tripped(
        BreakerConfig::new()
            .success_limit(limit(2, 2))
            .probe_lease(Duration::from_secs(2)),
        &clock,
    );
    let first = b.admit().unwrap();
    let second = b.admit().unwrap();
    assert!(b.try_acquire().is_err(), "the lease starts");
    // A slot given back is taken again at once, and the probe then admitted gets a whole
    // lease, from the next call refused.
    clock.advance(Duration::from_secs(1));
    b.release(second);
    let third = b.admit().unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(b.try_acquire().is_err(), "a new lease starts");
    clock.advance(Duration::from_millis(1_999));
    assert!(b.try_acquire().is_err());
    assert_eq!(third.epoch(), first.epoch());
    clock.advance(Duration::from_millis(1));
    let fourth = b.admit().unwrap();
    assert_ne!(fourth.epoch(), first.epoch());
    assert_eq!(b.state().probes_in_flight(), 1);
}

#[test]
fn a_zero_probe_lease_is_refused() {
    let zero = BreakerConfig::new().probe_lease(Duration::ZERO);
    assert_eq!(
        zero.validate::<OutcomeWindow<64>>(),
        Err(ConfigError::ZeroProbeLease)
    );
    let shortest = BreakerConfig::new().probe_lease(Duration::from_nanos(1));
    assert!(shortest.validate::<OutcomeWindow<64>>().is_ok());
}

#[test]
fn without_a_probe_lease_a_probe_never_reported_keeps_its_slot() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(1, 1)), &clock);
    let _lost = b.admit().unwrap();
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::ProbesBusy
    );
}

#[test]
fn half_open_probe_whose_future_is_dropped_gives_its_slot_back() {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Waker},
    };
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(1, 1)), &clock);
    {
        let mut call = pin!(b.call_async(async || {
            std::future::pending::<()>().await;
            Ok::<(), &str>(())
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.state().probes_in_flight(), 1);
        // the future is dropped here, mid-call
    }
    assert_eq!(b.state().probes_in_flight(), 0);
    assert_eq!(b.status(), HalfOpen);
    assert_eq!(block_on(b.call_async(async || Ok::<_, &str>(7))), Ok(7));
    assert_eq!(b.status(), Closed);
}

#[test]
fn half_open_with_success_limit_closes_at_s_successes_and_reopens_when_out_of_reach() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(3, 4)), &clock);
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    succeed(&b).unwrap();
    assert_eq!(b.status(), HalfOpen);
    succeed(&b).unwrap();
    assert_eq!(b.status(), Closed, "3 of 4 succeeded");

    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(3, 4)), &clock);
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    assert_eq!(b.status(), HalfOpen, "3 of 4 is still reachable");
    fail(&b).unwrap_err();
    assert_eq!(
        b.status(),
        Open,
        "3 of 4 is out of reach after 2 failures: decided without a 4th probe"
    );
}

#[test]
fn half_open_without_success_limit_opens_at_a_failures_and_closes_when_out_of_reach() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().failure_limit(limit(2, 5)), &clock);
    fail(&b).unwrap_err();
    succeed(&b).unwrap();
    assert_eq!(b.status(), HalfOpen);
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open, "2 failures reach the limit of 2");

    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().failure_limit(limit(2, 5)), &clock);
    for _ in 0..3 {
        succeed(&b).unwrap();
        assert_eq!(b.status(), HalfOpen);
    }
    succeed(&b).unwrap();
    assert_eq!(
        b.status(),
        Closed,
        "with 1 outcome left, 2 failures are out of reach"
    );
}

/// The seed's verdict on a full HALF_OPEN window.
fn seed_verdict(window: &[bool], config: &BreakerConfig) -> CircuitState {
    let failures = window.iter().filter(|&&failed| failed).count() as u16;
    match config.success_limit {
        Some(limit) => {
            if window.len() as u16 - failures >= limit.numerator() {
                Closed
            } else {
                Open
            }
        }
        None => {
            if failures >= config.failure_limit.numerator() {
                Open
            } else {
                Closed
            }
        }
    }
}

#[test]
fn half_open_early_decision_gives_the_seeds_full_window_verdict() {
    // Every sequence of probe outcomes for every limit with a window up to 6.
    for n in 1..=6u16 {
        for a in 0..=n {
            for with_success_limit in [false, true] {
                let config = if with_success_limit {
                    BreakerConfig::new()
                        .failure_limit(limit(1, 1))
                        .success_limit(limit(a, n))
                } else {
                    BreakerConfig::new().failure_limit(limit(a, n))
                };
                for bits in 0..(1u32 << n) {
                    let sequence: Vec<bool> = (0..n).map(|i| bits & (1 << i) != 0).collect();
                    let expected = seed_verdict(&sequence, &config);
                    let clock = FakeClock::new();
                    let b = tripped(config, &clock);
                    let mut used = 0;
                    for &failed in &sequence {
                        if b.status() != HalfOpen && used > 0 {
                            break;
                        }
                        let _ = if failed { fail(&b) } else { succeed(&b) };
                        used += 1;
                    }
                    assert_eq!(
                        b.status(),
                        expected,
                        "limit {a}/{n} success_limit={with_success_limit} sequence {sequence:?}"
                    );
                    assert!(used <= n as usize);
                }
            }
        }
    }
}

#[test]
fn half_open_entering_closed_starts_an_empty_window() {
    let clock = FakeClock::new();
    let b = tripped(
        BreakerConfig::new()
            .failure_limit(limit(2, 3))
            .success_limit(limit(1, 1)),
        &clock,
    );
    succeed(&b).unwrap();
    assert_eq!(
        (b.status(), log(&b), b.failure_count()),
        (Closed, vec![], 0)
    );
}

#[test]
fn half_open_entering_open_sets_a_new_deadline() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new(), &clock);
    clock.advance(Duration::from_secs(5)); // now 15 s
    fail(&b).unwrap_err();
    assert_eq!(b.state().open_until(), Some(Instant::from_secs(25)));
}

#[test]
fn half_open_probe_result_is_returned_unchanged_even_when_it_reopens() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(3, 4)), &clock);
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.status(), Open);

    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().failure_limit(limit(1, 1)), &clock);
    assert_eq!(b.call(|| Err::<(), _>(17)), Err(Error::Operation(17)));
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().failure_limit(limit(1, 1)), &clock);
    assert_eq!(b.call(|| Ok::<_, u8>("value")), Ok("value"));
}

#[test]
fn half_open_late_outcome_from_an_earlier_period_changes_nothing() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(2, 2)), &clock);
    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().unwrap();
    first.record(Verdict::Failure); // 2 of 2 now out of reach: OPEN
    assert_eq!(b.status(), Open);
    clock.advance(Duration::from_secs(10));
    let probe = b.try_acquire().unwrap(); // a new HALF_OPEN period
    second.record(Verdict::Failure); // from the old period: ignored
    assert_eq!(
        (b.status(), b.state().probes_in_flight(), log(&b)),
        (HalfOpen, 1, vec![])
    );
    probe.record(Verdict::Success);
    assert_eq!(b.status(), HalfOpen);
}

// §2 Classification

#[derive(Debug, PartialEq, Clone, Copy)]
enum ApiError {
    Unavailable,
    NotFound,
    Cancelled,
}

#[test]
fn classification_declined_error_is_returned_unchanged_and_counts_as_success() {
    let clock = FakeClock::new();
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .cooldown(Duration::from_secs(10))
            .validate()
            .unwrap(),
        InlineStore::<64>::new(),
        &clock,
    )
    .should_handle(ShouldHandle(|e: &ApiError| *e == ApiError::Unavailable));
    assert_eq!(
        b.call(|| Err::<(), _>(ApiError::NotFound)),
        Err(Error::Operation(ApiError::NotFound))
    );
    assert_eq!(b.status(), Closed);
    assert_eq!(b.execution_log().iter().collect::<Vec<_>>(), [S]);
    let _ = b.call(|| Err::<(), _>(ApiError::Unavailable));
    assert_eq!(b.status(), Open);
}

#[test]
fn classification_ignore_records_nothing() {
    let clock = FakeClock::new();
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .failure_limit(limit(2, 2))
            .validate()
            .unwrap(),
        InlineStore::<64>::new(),
        &clock,
    )
    .should_handle(|e: &ApiError| match e {
        ApiError::Cancelled => Verdict::Ignore,
        _ => Verdict::Failure,
    });
    let _ = b.call(|| Err::<(), _>(ApiError::Unavailable));
    assert_eq!(
        b.call(|| Err::<(), _>(ApiError::Cancelled)),
        Err(Error::Operation(ApiError::Cancelled))
    );
    assert_eq!(b.execution_log().len(), 1);
    assert_eq!(b.status(), Closed);
}

#[test]
fn classification_ignored_probe_gives_its_slot_back() {
    let clock = FakeClock::new();
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .cooldown(Duration::from_secs(1))
            .validate()
            .unwrap(),
        InlineStore::<64>::new(),
        &clock,
    )
    .should_handle(|_: &ApiError| Verdict::Ignore);
    b.force_open().unwrap();
    clock.advance(Duration::from_secs(1));
    let _ = b.call(|| Err::<(), _>(ApiError::Cancelled));
    assert_eq!((b.status(), b.state().probes_in_flight()), (HalfOpen, 0));
    b.call(|| Ok::<_, ApiError>(())).unwrap();
    assert_eq!(b.status(), Closed);
}

/// An HTTP-like reply: `Ok` at the transport level whatever its status.
#[derive(Debug, PartialEq)]
struct Reply(u16);

fn by_status(reply: &Reply) -> Verdict {
    match reply.0 {
        503 => Verdict::Failure,
        499 => Verdict::Ignore,
        _ => Verdict::Success,
    }
}

#[test]
fn classification_a_value_judged_a_failure_counts_and_is_returned_unchanged() {
    let clock = FakeClock::new();
    let b =
        breaker(BreakerConfig::new().failure_limit(limit(2, 3)), &clock).classify_values(by_status);
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(503))), Ok(Reply(503)));
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(200))), Ok(Reply(200)));
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(499))), Ok(Reply(499)));
    let log: Vec<_> = b.execution_log().iter().collect();
    assert_eq!(log, [F, S], "499 is ignored: not recorded");
    assert_eq!(b.failure_count(), 0);
    // Errors still go to the error classifier (every error a failure): F S F trips.
    assert_eq!(
        b.call(|| Err::<Reply, _>("reset")),
        Err(Error::Operation("reset"))
    );
    assert_eq!(b.status(), Open);
}

#[test]
fn classification_a_failing_value_reopens_a_half_open_breaker() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new(), &clock).classify_values(by_status);
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(503))), Ok(Reply(503)));
    assert_eq!(b.status(), Open);
    clock.advance(Duration::from_secs(10));
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(499))), Ok(Reply(499)));
    assert_eq!(
        (b.status(), b.state().probes_in_flight()),
        (HalfOpen, 0),
        "an ignored probe value gives its slot back"
    );
    assert_eq!(b.call(|| Ok::<_, &str>(Reply(204))), Ok(Reply(204)));
    assert_eq!(b.status(), Closed);
}

#[test]
fn classification_values_and_errors_are_judged_apart_in_async_calls_too() {
    let clock = FakeClock::new();
    let b = breaker(BreakerConfig::new(), &clock)
        .should_handle(|_: &&str| Verdict::Success)
        .classify_values(by_status);
    assert_eq!(
        block_on(b.call_async(async || Err::<Reply, _>("not found"))),
        Err(Error::Operation("not found"))
    );
    assert_eq!(b.status(), Closed);
    assert_eq!(
        block_on(b.call_async(async || Ok::<_, &str>(Reply(503)))),
        Ok(Reply(503))
    );
    assert_eq!(b.status(), Open);
}

#[test]
fn classification_panic_is_not_recorded_and_releases_the_probe_slot() {
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().success_limit(limit(1, 1)), &clock);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _ = b.call(|| -> Result<(), &str> { panic!("peripheral driver bug") });
    }));
    assert!(panicked.is_err());
    assert_eq!(
        (b.status(), b.state().probes_in_flight(), log(&b)),
        (HalfOpen, 0, vec![])
    );

    let clock = FakeClock::new();
    let closed = breaker(BreakerConfig::new(), &clock);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _ = closed.call(|| -> Result<(), &str> { panic!("bug") });
    }));
    assert_eq!((closed.status(), closed.execution_log().len()), (Closed, 0));
}

// §2 Hooks and inspection

#[test]
fn hook_fires_once_per_real_transition_after_the_state_is_stored() {
    let clock = FakeClock::new();
    let store = InlineStore::<64>::new();
    let seen = std::cell::RefCell::new(Vec::new());
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .cooldown(Duration::from_secs(1))
            .validate()
            .unwrap(),
        &store,
        &clock,
    )
    .on_status_change(|old, new| {
        // The store already holds the new state when the hook runs.
        let stored = resilient_circuit::store::StateStore::update(&store, |s| s.status());
        seen.borrow_mut().push((old, new, stored));
    });
    let _ = b.call(|| Err::<(), _>("x")); // C -> O
    let _ = b.call(|| Ok::<_, &str>(())); // rejected, no transition
    clock.advance(Duration::from_secs(1));
    let _ = b.call(|| Ok::<_, &str>(())); // O -> H, H -> C
    assert_eq!(
        seen.into_inner(),
        [
            (Closed, Open, Open),
            (Open, HalfOpen, HalfOpen),
            (HalfOpen, Closed, Closed)
        ]
    );
}

#[test]
fn hook_never_fires_for_same_to_same() {
    let clock = FakeClock::new();
    let transitions = Transitions::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(5)),
        &clock,
    )
    .on_status_change(transitions.hook());
    b.force_closed().unwrap();
    b.reset().unwrap();
    assert_eq!(transitions.take(), []);
    b.force_open().unwrap();
    b.force_open().unwrap();
    assert_eq!(transitions.take(), [(Closed, Open)]);
    b.reset().unwrap();
    b.reset().unwrap();
    assert_eq!(transitions.take(), [(Open, Closed)]);
}

#[test]
fn inspection_and_manual_control() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new()
            .failure_limit(limit(3, 3))
            .cooldown(Duration::from_secs(5)),
        &clock,
    );
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(
        (b.status(), b.failure_count(), log(&b)),
        (Closed, 2, vec![F, F])
    );

    // force_open restarts the cooldown from now, keeping the window as evidence.
    clock.set_secs(1.0);
    b.force_open().unwrap();
    assert_eq!(b.state().open_until(), Some(Instant::from_secs(6)));
    assert_eq!(
        succeed(&b),
        Err(Error::Rejected(Rejected::new(
            Duration::from_secs(5),
            RejectReason::Open
        )))
    );

    // force_closed: CLOSED with an empty window.
    b.force_closed().unwrap();
    assert_eq!(
        (b.status(), b.failure_count(), log(&b)),
        (Closed, 0, vec![])
    );

    // reset clears a CLOSED window too, and late outcomes are not counted.
    fail(&b).unwrap_err();
    let in_flight = b.try_acquire().unwrap();
    b.reset().unwrap();
    in_flight.record(Verdict::Failure);
    assert_eq!(
        (b.status(), b.failure_count(), log(&b)),
        (Closed, 0, vec![])
    );
}

#[test]
fn async_call_follows_the_same_rules() {
    let clock = FakeClock::new();
    let b = breaker(
        BreakerConfig::new().cooldown(Duration::from_secs(3)),
        &clock,
    );
    assert_eq!(
        block_on(b.call_async(async || Err::<(), _>("down"))),
        Err(Error::Operation("down"))
    );
    assert_eq!(
        block_on(b.call_async(async || Ok::<_, &str>(()))),
        Err(Error::Rejected(Rejected::new(
            Duration::from_secs(3),
            RejectReason::Open
        )))
    );
    clock.advance(Duration::from_secs(3));
    assert_eq!(block_on(b.call_async(async || Ok::<_, &str>(5))), Ok(5));
    assert_eq!(b.status(), Closed);
}

#[test]
fn defaults_are_the_seeds() {
    let config = BreakerConfig::new();
    assert_eq!(config.failure_limit, limit(1, 1));
    assert_eq!(config.success_limit, None);
    assert_eq!(config.cooldown, Duration::ZERO);
    assert_eq!(BreakerConfig::default(), config);
    assert_eq!(
        config.probe_window(),
        1,
        "HALF_OPEN decides by failure_limit without a success_limit"
    );
}

#[test]
fn half_open_with_a_zero_failure_limit_and_no_success_limit_reopens_on_any_outcome() {
    // 0 of b: any failure in a full window trips; in HALF_OPEN "failures reach 0" at the first
    // outcome, so without a success_limit every probe reopens the breaker (set a success_limit).
    let clock = FakeClock::new();
    let b = tripped(BreakerConfig::new().failure_limit(limit(0, 2)), &clock);
    succeed(&b).unwrap();
    assert_eq!(b.status(), Open);
    let clock = FakeClock::new();
    let b = tripped(
        BreakerConfig::new()
            .failure_limit(limit(0, 2))
            .success_limit(limit(1, 1)),
        &clock,
    );
    succeed(&b).unwrap();
    assert_eq!(b.status(), Closed);
}

#[test]
fn a_panicking_hook_on_the_way_into_half_open_gives_back_the_probe_slot() {
    let clock = FakeClock::new();
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .success_limit(limit(1, 1))
            .cooldown(Duration::from_secs(1))
            .validate()
            .unwrap(),
        InlineStore::<64>::new(),
        &clock,
    )
    .on_status_change(|_, new| {
        if new == HalfOpen {
            panic!("hook bug");
        }
    });
    b.force_open().unwrap();
    clock.advance(Duration::from_secs(1));
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _ = b.call(|| Ok::<_, &str>(()));
    }));
    assert!(unwound.is_err());
    assert_eq!(
        (b.status(), b.state().probes_in_flight()),
        (HalfOpen, 0),
        "the slot came back"
    );
}
