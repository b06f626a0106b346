//! A store written outside the crates gets the whole breaker by implementing the seam
//! (`StateStore`): one method for a simple store, a few overrides for a store whose state lives
//! elsewhere and may be out of reach.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use host_tests::{FakeClock, SharedFakeClock, TransitionCounts, Transitions, secs};
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Error, Policy, Ratio, RejectReason,
    Rejected, RetryWithBackoff, SafetyNet, StoreUnavailable,
    state::{Admission, BreakerState, Outcome, OutcomeWindow, Transition},
    store::{Control, LocalHooks, StateStore},
    time::Clock,
};

type Win = OutcomeWindow<16>;

/// A store that implements only `update`: the state behind a standard mutex.
#[derive(Default)]
struct MutexStore {
    state: Mutex<BreakerState<Win>>,
    updates: AtomicU32,
}

impl StateStore for MutexStore {
    type Window = Win;

    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Win>) -> R) -> R {
        self.updates.fetch_add(1, Ordering::Relaxed);
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

// Its breakers make every transition: they run their hooks themselves.
impl LocalHooks for MutexStore {}

fn config() -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(2, 3).unwrap())
        .success_limit(Ratio::new(2, 2).unwrap())
        .cooldown(secs(10.0))
}

/// §2 and §4 through a store of one method: trip, reject with a deadline, probe, close, and
/// inspect and control it all along.
#[test]
fn a_store_of_one_method_gets_the_whole_breaker() {
    let clock = FakeClock::new();
    let seen = Transitions::new();
    let breaker =
        CircuitProtector::new(config().validate().unwrap(), MutexStore::default(), &clock)
            .on_status_change(seen.hook());

    assert_eq!(
        breaker.call(|| Err::<(), _>("down")),
        Err(Error::Operation("down"))
    );
    assert_eq!(breaker.call(|| Ok::<_, &str>(1)), Ok(1));
    assert_eq!(breaker.failure_count(), 0);
    let _ = breaker.call(|| Err::<(), _>("down"));
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(seen.take(), [(CircuitState::Closed, CircuitState::Open)]);
    let log: Vec<Outcome> = breaker.execution_log().iter().collect();
    assert_eq!(log, [Outcome::Failure, Outcome::Success, Outcome::Failure]);

    clock.advance(secs(4.0));
    match breaker.call(|| Ok::<_, &str>(2)) {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.retry_after(), secs(6.0));
            assert_eq!(r.reason(), RejectReason::Open);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    clock.advance(secs(6.0));
    // A probe dropped without an outcome gives its slot back: two probes still close it.
    let permit = breaker.try_acquire().expect("a probe after the cooldown");
    assert!(permit.is_probe());
    drop(permit);
    assert_eq!(seen.take(), [(CircuitState::Open, CircuitState::HalfOpen)]);
    assert_eq!(breaker.call(|| Ok::<_, &str>(3)), Ok(3));
    assert_eq!(breaker.call(|| Ok::<_, &str>(4)), Ok(4));
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(
        seen.take(),
        [(CircuitState::HalfOpen, CircuitState::Closed)]
    );

    assert_eq!(breaker.force_open(), Ok(()));
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(
        breaker.state().open_until(),
        Some(clock.now().saturating_add(secs(10.0)))
    );
    assert_eq!(breaker.reset(), Ok(()));
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(breaker.execution_log().len(), 0);
    assert_eq!(
        seen.take(),
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::Closed)
        ]
    );
}

/// The store's breaker composes like any other: a retry outside it, in a `SafetyNet`.
#[test]
fn a_store_of_one_method_composes_in_a_safety_net() {
    let breaker = CircuitProtector::new(
        config().validate().unwrap(),
        MutexStore::default(),
        FakeClock::new(),
    );
    let mut net = SafetyNet::new((RetryWithBackoff::new(3), &breaker));
    let mut runs = 0;
    let result: Result<(), Error<&str>> = net.call(|| {
        runs += 1;
        Err("down")
    });
    // Three failures fill the window of three and trip it; the fourth attempt is rejected
    // without running.
    assert_eq!(runs, 3);
    assert!(result.unwrap_err().is_rejected());
    // One update to admit and one to record each attempt that ran, one for the rejection.
    assert_eq!(breaker.store().updates.load(Ordering::Relaxed), 7);
    assert_eq!(breaker.status(), CircuitState::Open);
}

/// Threads share a breaker on a `Sync` store of one method: every outcome counted once, every
/// transition reported once.
#[test]
fn a_store_of_one_method_is_shared_by_threads() {
    let counts = TransitionCounts::new();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(16, 16).unwrap())
        .cooldown(Duration::from_secs(60));
    let breaker = CircuitProtector::new(
        config.validate().unwrap(),
        MutexStore::default(),
        SharedFakeClock::new(),
    )
    .on_status_change(TransitionCounts::hook(&counts));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..4 {
                    let _ = breaker.call(|| Err::<(), _>("down"));
                }
            });
        }
    });
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(breaker.failure_count(), 16);
    assert_eq!(counts.all(), [(CircuitState::Closed, CircuitState::Open)]);
}

/// A store whose state lives elsewhere (a stand-in for a remote one): it overrides admission
/// and manual control to say when the state is out of reach.
#[derive(Default)]
struct RemoteStore {
    state: MutexStore,
    unreachable: AtomicBool,
}

const RECONNECT: Duration = Duration::from_millis(250);

impl StateStore for RemoteStore {
    type Window = Win;

    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Win>) -> R) -> R {
        self.state.update(change)
    }

    fn admit(
        &self,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        if self.unreachable.load(Ordering::Relaxed) {
            return Err(Rejected::new(RECONNECT, RejectReason::StoreUnavailable));
        }
        self.update(|state| state.admit(config, clock))
    }

    fn control(
        &self,
        config: &BreakerConfig,
        control: Control,
        clock: &impl Clock,
    ) -> Result<Option<Transition>, StoreUnavailable> {
        if self.unreachable.load(Ordering::Relaxed) {
            return Err(StoreUnavailable {
                retry_after: RECONNECT,
            });
        }
        Ok(self.update(|state| control.apply(state, config, clock)))
    }
}

// Its breakers make every transition: they run their hooks themselves.
impl LocalHooks for RemoteStore {}

/// §5's failing closed and manual control under an outage, through a third-party store used
/// by reference (so `&S` must forward the overrides): a refused admission runs nothing, a
/// refused control changes nothing, and both say when to try again.
#[test]
fn a_store_out_of_reach_refuses_calls_and_manual_control() {
    let seen = Transitions::new();
    let remote = RemoteStore::default();
    let breaker = CircuitProtector::new(config().validate().unwrap(), &remote, FakeClock::new())
        .on_status_change(seen.hook());
    breaker.force_open().unwrap();
    assert_eq!(seen.take(), [(CircuitState::Closed, CircuitState::Open)]);
    remote.unreachable.store(true, Ordering::Relaxed);

    let mut ran = false;
    match breaker.call(|| {
        ran = true;
        Ok::<_, &str>(())
    }) {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.reason(), RejectReason::StoreUnavailable);
            assert_eq!(r.retry_after(), RECONNECT);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!ran);
    let unavailable = Err(StoreUnavailable {
        retry_after: RECONNECT,
    });
    assert_eq!(breaker.force_closed(), unavailable);
    assert_eq!(breaker.reset(), unavailable);
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(seen.take(), []);

    remote.unreachable.store(false, Ordering::Relaxed);
    assert_eq!(breaker.force_closed(), Ok(()));
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(seen.take(), [(CircuitState::Open, CircuitState::Closed)]);
}
