//! SEMANTICS §4 (SafetyNet): composition order, one error type, async.

use std::{cell::Cell, time::Duration};

use host_tests::{FakeClock, FakeSleep, block_on, secs};
use resilient_circuit::{
    AsyncPolicy, BreakerConfig, CircuitProtector, CircuitState, ConfigError, Error, Policy, Ratio,
    RejectReason, Rejected, RetryWithBackoff, SafetyNet, backoff::FixedDelay, breaker::Leased,
    store::InlineStore,
};

fn breaker(
    a: u16,
    b: u16,
    cooldown: f64,
    clock: &FakeClock,
) -> CircuitProtector<InlineStore<64>, &FakeClock> {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(a, b).unwrap())
        .cooldown(secs(cooldown));
    CircuitProtector::new(config.validate().unwrap(), InlineStore::new(), clock)
}

#[test]
fn retry_outside_breaker_sends_every_attempt_through_the_breaker() {
    let clock = FakeClock::new();
    let b = breaker(5, 5, 30.0, &clock);
    let mut net = SafetyNet::new((RetryWithBackoff::new(3), &b));
    let runs = Cell::new(0);
    let result: Result<(), _> = net.call(|| {
        runs.set(runs.get() + 1);
        Err("down")
    });
    assert_eq!(
        result,
        Err(Error::RetryLimitReached {
            attempts: 4,
            last_error: "down"
        })
    );
    assert_eq!(b.execution_log().len(), 4, "four attempts, four outcomes");
}

#[test]
fn breaker_outside_retry_sees_one_outcome_per_retried_call() {
    let clock = FakeClock::new();
    let b = breaker(5, 5, 30.0, &clock);
    let mut net = SafetyNet::new((&b, RetryWithBackoff::new(3)));
    let runs = Cell::new(0);
    let _: Result<(), _> = net.call(|| {
        runs.set(runs.get() + 1);
        Err("down")
    });
    assert_eq!(runs.get(), 4);
    assert_eq!(b.execution_log().len(), 1, "one retried call, one outcome");
    assert_eq!(b.failure_count(), 1);
}

#[test]
fn retry_stops_at_a_breaker_that_would_make_it_wait_beyond_its_schedule() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let b = breaker(1, 1, 30.0, &clock);
    let mut net = SafetyNet::new((
        RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(1.0)), &sleep),
        &b,
    ));
    let runs = Cell::new(0);
    let result: Result<(), _> = net.call(|| {
        runs.set(runs.get() + 1);
        Err("down")
    });
    assert_eq!(runs.get(), 1);
    assert_eq!(
        result,
        Err(Error::Rejected(Rejected::new(
            secs(29.0),
            RejectReason::Open
        )))
    );
    assert_eq!(
        sleep.waits(),
        [secs(1.0)],
        "waited its own delay once, then saw 29 s left"
    );
}

#[test]
fn retry_rides_through_a_cooldown_shorter_than_its_delay() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let b = breaker(1, 1, 0.5, &clock);
    let mut net = SafetyNet::new((
        RetryWithBackoff::new(3).with_backoff(FixedDelay(secs(1.0)), &sleep),
        &b,
    ));
    let runs = Cell::new(0);
    let result = net.call(|| {
        runs.set(runs.get() + 1);
        if runs.get() < 2 {
            Err("down")
        } else {
            Ok("up")
        }
    });
    assert_eq!(result, Ok("up"));
    assert_eq!(b.status(), CircuitState::Closed);
}

#[test]
fn one_error_type_for_every_way_of_saying_no() {
    let clock = FakeClock::new();
    let b = breaker(1, 1, 10.0, &clock);
    let mut net = SafetyNet::new((RetryWithBackoff::new(1), &b));
    let outcomes: Vec<Result<u8, Error<&str>>> = vec![
        net.call(|| Ok(1)),
        net.call(|| Err("down")), // breaker opens after the first attempt; the retry stops
        net.call(|| Ok(2)),
    ];
    assert!(matches!(outcomes[1], Err(Error::Rejected(_))));
    assert!(matches!(outcomes[2], Err(Error::Rejected(_))));
}

#[test]
fn three_and_four_policies_nest_first_outermost() {
    let clock = FakeClock::new();
    let outer = breaker(10, 10, 1.0, &clock);
    let inner = breaker(10, 10, 1.0, &clock);
    let mut net = SafetyNet::new((&outer, RetryWithBackoff::new(2), &inner));
    let _: Result<(), _> = net.call(|| Err("down"));
    assert_eq!(
        (outer.execution_log().len(), inner.execution_log().len()),
        (1, 3)
    );

    let mut four = SafetyNet::new((
        RetryWithBackoff::new(1),
        &outer,
        RetryWithBackoff::new(1),
        &inner,
    ));
    let _: Result<(), _> = four.call(|| Err("down"));
    assert_eq!(
        (outer.execution_log().len(), inner.execution_log().len()),
        (3, 7)
    );
}

#[test]
fn async_safety_net_follows_the_same_rules() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let b = breaker(3, 3, 10.0, &clock);
    let mut net = SafetyNet::new((
        RetryWithBackoff::new(4).with_backoff(FixedDelay(Duration::from_millis(10)), &sleep),
        &b,
    ));
    let mut reads = 0;
    let result: Result<u32, Error<&str>> = block_on(net.call_async(async || {
        reads += 1;
        if reads < 3 { Err("nak") } else { Ok(reads) }
    }));
    assert_eq!(result, Ok(3));
    assert_eq!(b.execution_log().len(), 3);
    assert_eq!(sleep.waits().len(), 2);
}

/// A breaker OPEN until 10 s, now at 10 s: the next call is a probe, and the only one allowed.
fn one_probe_left(clock: &FakeClock) -> CircuitProtector<InlineStore<64>, &FakeClock> {
    let b = CircuitProtector::new(
        BreakerConfig::new()
            .success_limit(Ratio::new(1, 1).unwrap())
            .cooldown(secs(10.0))
            .validate()
            .unwrap(),
        InlineStore::new(),
        clock,
    );
    b.force_open().unwrap();
    clock.advance(secs(10.0));
    b
}

/// Starts a call through `net` whose operation never finishes, polls it once, runs
/// `while_in_flight`, and drops the call.
fn drop_a_call_in_flight(
    net: &mut impl AsyncPolicy<(), &'static str>,
    while_in_flight: impl FnOnce(),
) {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Waker},
    };
    let mut call = pin!(net.call_async(async || {
        std::future::pending::<()>().await;
        Ok(())
    }));
    let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(polled.is_pending());
    while_in_flight();
}

#[test]
fn a_dropped_safety_net_future_gives_back_the_probe_slot() {
    let clock = FakeClock::new();
    let b = one_probe_left(&clock);
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &b));
    drop_a_call_in_flight(&mut net, || {
        assert_eq!(b.state().probes_in_flight(), 1);
    });
    assert_eq!(
        (b.status(), b.state().probes_in_flight()),
        (CircuitState::HalfOpen, 0)
    );
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &b));
    assert_eq!(block_on(net.call_async(async || Ok::<_, &str>(3))), Ok(3));
    assert_eq!(b.status(), CircuitState::Closed);
}

#[test]
fn a_leased_breaker_leaves_a_dropped_probes_slot_to_its_lease() {
    let clock = FakeClock::new();
    let b = Leased::new(CircuitProtector::new(
        BreakerConfig::new()
            .success_limit(Ratio::new(1, 1).unwrap())
            .cooldown(secs(10.0))
            .probe_lease(secs(5.0))
            .validate()
            .unwrap(),
        InlineStore::<64>::new(),
        &clock,
    ))
    .unwrap();
    b.force_open().unwrap();
    clock.advance(secs(10.0));
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &b));
    drop_a_call_in_flight(&mut net, || {});
    // Nothing gave the slot back: calls are refused, the first one starting the lease.
    assert_eq!(b.state().probes_in_flight(), 1);
    clock.advance(secs(1.0));
    let refused: Result<(), Error<&str>> = net.call(|| Ok(()));
    assert!(matches!(refused, Err(Error::Rejected(r)) if r.reason() == RejectReason::ProbesBusy));
    clock.advance(secs(4.999));
    assert!(net.call(|| Ok::<_, &str>(())).is_err());
    clock.advance(secs(0.001));
    let probed: Result<(), Error<&str>> = net.call(|| Ok(()));
    assert_eq!((probed, b.status()), (Ok(()), CircuitState::Closed));
}

#[test]
fn a_leased_breaker_needs_a_probe_lease() {
    let clock = FakeClock::new();
    let refused = Leased::new(breaker(1, 1, 1.0, &clock)).unwrap_err();
    assert_eq!(refused, ConfigError::NoProbeLease);
    assert!(refused.to_string().contains("probe_lease"));
}

#[test]
fn a_panic_inside_a_safety_net_records_nothing_and_gives_back_the_probe_slot() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let clock = FakeClock::new();
    let b = one_probe_left(&clock);
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &b));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _: Result<(), Error<&str>> = net.call(|| panic!("driver bug"));
    }));
    assert!(panicked.is_err());
    assert_eq!(
        (
            b.status(),
            b.state().probes_in_flight(),
            b.execution_log().len()
        ),
        (CircuitState::HalfOpen, 0, 0)
    );
    assert_eq!(net.call(|| Ok::<_, &str>(1)), Ok(1));
    assert_eq!(b.status(), CircuitState::Closed);
}

#[test]
fn a_failing_value_is_recorded_by_the_breaker_and_retried_into_it() {
    use resilient_circuit::classify::Verdict;
    fn unavailable(status: &u16) -> Verdict {
        if *status == 503 {
            Verdict::Failure
        } else {
            Verdict::Success
        }
    }
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let b = breaker(2, 2, 30.0, &clock).classify_values(unavailable);
    let retry = RetryWithBackoff::new(5)
        .with_backoff(FixedDelay(secs(1.0)), &sleep)
        .classify_values(unavailable);
    let mut net = SafetyNet::new((retry, &b));
    let runs = Cell::new(0);
    let result = net.call(|| {
        runs.set(runs.get() + 1);
        Ok::<_, &str>(503)
    });
    // Two 503s (at 0 s and 1 s) trip the breaker until 31 s; the third attempt, at 2 s, meets a
    // 29 s rejection, longer than the retry's 1 s delay, so the retry stops there.
    assert_eq!(runs.get(), 2);
    assert_eq!(b.status(), CircuitState::Open);
    assert_eq!(
        result,
        Err(Error::Rejected(Rejected::new(
            secs(29.0),
            RejectReason::Open
        )))
    );
}

/// A stage whose ticket writes the stage's name into a shared log when dropped unspent: the
/// call ended without coming back through the stage.
struct Named<'a> {
    name: &'static str,
    abandoned: &'a std::cell::RefCell<Vec<&'static str>>,
}

/// [`Named`]'s ticket: `None` once the stage has been left.
struct NamedTicket<'a>(Option<(&'static str, &'a std::cell::RefCell<Vec<&'static str>>)>);

impl Drop for NamedTicket<'_> {
    fn drop(&mut self) {
        if let Some((name, abandoned)) = self.0.take() {
            abandoned.borrow_mut().push(name);
        }
    }
}

impl<'a, T, E> resilient_circuit::compose::Stage<T, E> for Named<'a> {
    type Ticket = NamedTicket<'a>;
    fn enter(&mut self) -> Result<NamedTicket<'a>, Error<E>> {
        Ok(NamedTicket(Some((self.name, self.abandoned))))
    }
    fn leave(
        &mut self,
        ticket: &mut NamedTicket<'a>,
        _: &mut Result<T, Error<E>>,
    ) -> resilient_circuit::compose::Leave {
        ticket.0 = None;
        resilient_circuit::compose::Leave::Return
    }
}

impl<T, E> resilient_circuit::compose::BlockingStage<T, E> for Named<'_> {
    fn wait(&self, _: Duration) {}
}

impl<T, E> resilient_circuit::compose::AsyncStage<T, E> for Named<'_> {
    async fn wait(&self, _: Duration) {}
}

#[test]
fn a_dropped_call_abandons_its_stages_innermost_first() {
    use std::cell::RefCell;
    let abandoned = RefCell::new(Vec::new());
    let stage = |name| Named {
        name,
        abandoned: &abandoned,
    };
    let mut net = SafetyNet::new((stage("outer"), stage("middle"), stage("inner")));
    drop_a_call_in_flight(&mut net, || assert!(abandoned.borrow().is_empty()));
    assert_eq!(*abandoned.borrow(), ["inner", "middle", "outer"]);

    // A panic in a blocking call unwinds the same way.
    abandoned.borrow_mut().clear();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error<&str>> = net.call(|| panic!("driver bug"));
    }));
    assert!(panicked.is_err());
    assert_eq!(*abandoned.borrow(), ["inner", "middle", "outer"]);
}
