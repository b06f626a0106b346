//! `Timeout` on embassy-time's mock driver: the limit is kept in virtual time, and a timed-out
//! probe frees its slot. (Its own test binary: the mock clock is global.)

mod common;

use std::future::pending;

use common::run_on_virtual_time;
use embassy_time::{Duration, Instant, MockDriver, Timer};
use resilient_circuit::{
    AsyncPolicy, BreakerConfig, CircuitProtector, CircuitState, Elapsed, Error, SafetyNet, Timeout,
    store::InlineStore,
    time::{EmbassyClock, EmbassySleep},
};

#[test]
fn a_timeout_keeps_its_limit_in_virtual_time_and_frees_a_probe_slot() {
    let limit = core::time::Duration::from_millis(50);

    // A call that would take a second is cut at 50 ms.
    let start = Instant::now();
    let mut net = SafetyNet::new((Timeout::new(limit, EmbassySleep),));
    let result: Result<(), Error<()>> = run_on_virtual_time(net.call_async(async || {
        Timer::after_millis(1000).await;
        Ok(())
    }));
    assert_eq!(result, Err(Error::TimedOut(Elapsed::new(limit))));
    assert_eq!(start.elapsed(), Duration::from_millis(50));

    // A HALF_OPEN probe that hangs: the timeout records a failure, which frees its slot.
    let config = BreakerConfig::new()
        .cooldown(core::time::Duration::from_millis(200))
        .validate()
        .unwrap();
    let breaker = CircuitProtector::new(config, InlineStore::<4>::new(), EmbassyClock);
    breaker.force_open().unwrap();
    MockDriver::get().advance(Duration::from_millis(200));
    let mut net = SafetyNet::new((&breaker, Timeout::new(limit, EmbassySleep)));
    let result: Result<(), Error<()>> =
        run_on_virtual_time(net.call_async(async || pending().await));
    assert!(result.unwrap_err().is_timed_out());
    assert_eq!(
        (breaker.status(), breaker.state().probes_in_flight()),
        (CircuitState::Open, 0)
    );
}
