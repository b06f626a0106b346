//! Real threads on one shared breaker: nothing lost, the probe cap holds, every transition
//! reported exactly once.

use std::{
    sync::{
        Barrier,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use host_tests::{SharedFakeClock, TransitionCounts};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio, classify::Verdict,
    state::Outcome,
};

use CircuitState::{Closed, HalfOpen, Open};

const THREADS: usize = 4;

#[test]
fn threads_lose_no_outcome() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new().failure_limit(Ratio::new(1000, 1000).unwrap());
    let breaker = store
        .breaker(BreakerKey::resource("counted").unwrap(), config)
        .unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (breaker, barrier) = (&breaker, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..250 {
                    // Half the calls of every thread fail.
                    let _ = breaker.call(|| {
                        if (i + t) % 2 == 0 {
                            Err("down")
                        } else {
                            Ok(())
                        }
                    });
                }
            });
        }
    });
    let log = breaker.execution_log();
    assert_eq!(log.len(), 1000, "4 x 250 outcomes, none lost");
    assert_eq!(log.failures(), 500);
    assert_eq!(log.iter().filter(|o| *o == Outcome::Success).count(), 500);
    assert_eq!(breaker.status(), Closed);
}

#[test]
fn threads_tripping_at_the_same_instant_report_one_transition() {
    for _ in 0..50 {
        let store = MemoryStore::with_clock(SharedFakeClock::new());
        let counts = TransitionCounts::new();
        let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
        let breaker = store
            .breaker(BreakerKey::resource("race").unwrap(), config)
            .unwrap()
            .on_status_change(TransitionCounts::hook(&counts));
        let barrier = Barrier::new(THREADS * 2);
        std::thread::scope(|s| {
            for _ in 0..THREADS * 2 {
                let (breaker, barrier) = (&breaker, &barrier);
                s.spawn(move || {
                    let permit = breaker.try_acquire();
                    barrier.wait();
                    if let Ok(permit) = permit {
                        permit.record(Verdict::Failure);
                    }
                });
            }
        });
        assert_eq!(counts.all(), [(Closed, Open)], "exactly one trip reported");
    }
}

#[test]
fn half_open_admits_exactly_the_probe_window_across_threads() {
    for _ in 0..50 {
        let clock = SharedFakeClock::new();
        let store = MemoryStore::with_clock(clock.clone());
        let counts = TransitionCounts::new();
        let config = BreakerConfig::new()
            .success_limit(Ratio::new(3, 3).unwrap())
            .cooldown(Duration::from_secs(5));
        let breaker = store
            .breaker(BreakerKey::resource("probes").unwrap(), config)
            .unwrap()
            .on_status_change(TransitionCounts::hook(&counts));
        breaker.force_open().unwrap();
        clock.advance(Duration::from_secs(5));
        let admitted = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS * 2);
        std::thread::scope(|s| {
            for _ in 0..THREADS * 2 {
                let (breaker, barrier, admitted) = (&breaker, &barrier, &admitted);
                s.spawn(move || {
                    barrier.wait();
                    if let Ok(permit) = breaker.try_acquire() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        std::mem::forget(permit); // still in flight
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 3);
        assert_eq!(breaker.state().probes_in_flight(), 3);
        assert_eq!(counts.count(Open, HalfOpen), 1);
    }
}

#[test]
fn handles_with_one_key_share_state_across_threads() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(8, 8).unwrap())
        .cooldown(Duration::from_secs(60));
    let key = BreakerKey::new("shop", "inventory").unwrap();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let store = store.clone();
            let key = key.clone();
            s.spawn(move || {
                let mine = store.breaker(key, config).unwrap();
                for _ in 0..2 {
                    let _ = mine.call(|| Err::<(), _>("down"));
                }
            });
        }
    });
    let breaker = store.breaker(key, config).unwrap();
    assert_eq!(
        breaker.status(),
        Open,
        "4 threads x 2 failures filled one shared window of 8"
    );
    assert_eq!(breaker.execution_log().failures(), 8);
}

#[test]
fn a_panicking_hook_is_caught_and_the_breaker_carries_on() {
    let store = MemoryStore::new();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&calls);
    let breaker = store
        .breaker(BreakerKey::resource("hook").unwrap(), BreakerConfig::new())
        .unwrap()
        .on_status_change(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
            panic!("hook bug");
        });
    assert_eq!(
        breaker
            .call(|| Err::<(), _>("down"))
            .unwrap_err()
            .operation_error(),
        Some(&"down")
    );
    assert_eq!(breaker.status(), Open);
    assert_eq!(
        breaker.call(|| Ok::<_, &str>(7)),
        Ok(7),
        "cooldown 0: the next call probes and closes"
    );
    assert_eq!(breaker.status(), Closed);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "C->O, O->H, H->C all reached the hook"
    );
}

#[test]
fn a_closed_call_never_reads_the_clock_and_a_rejection_reads_it_once() {
    let clock = SharedFakeClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(2, 4).unwrap())
        .cooldown(Duration::from_secs(9));
    let breaker = store
        .breaker(BreakerKey::resource("clock").unwrap(), config)
        .unwrap();
    for i in 0..100 {
        let _ = breaker.call(|| if i % 7 == 0 { Err("down") } else { Ok(()) });
    }
    assert_eq!(
        (breaker.status(), clock.reads()),
        (Closed, 0),
        "CLOSED calls, failures included"
    );
    breaker.force_open().unwrap();
    let before = clock.reads();
    assert!(
        breaker
            .call(|| Ok::<_, &str>(()))
            .unwrap_err()
            .is_rejected()
    );
    assert_eq!(clock.reads() - before, 1);
    // The deadline passed: the lock-free path reads the clock and finds it passed; the locked
    // admission reads it once and hands that reading to the state machine.
    clock.advance(Duration::from_secs(9));
    let before = clock.reads();
    let permit = breaker.try_acquire().unwrap();
    assert_eq!(
        (breaker.status(), clock.reads() - before),
        (HalfOpen, 2),
        "admitting the probe"
    );
    permit.record(Verdict::Success);
}

#[test]
fn the_hook_runs_after_the_new_state_is_stored() {
    let store = MemoryStore::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, observer) = (
        std::sync::Arc::clone(&seen),
        store
            .breaker(
                BreakerKey::resource("stored").unwrap(),
                BreakerConfig::new(),
            )
            .unwrap(),
    );
    let breaker = store
        .breaker(
            BreakerKey::resource("stored").unwrap(),
            BreakerConfig::new(),
        )
        .unwrap()
        .on_status_change(move |old, new| log.lock().unwrap().push((old, new, observer.status())));
    let _ = breaker.call(|| Err::<(), _>("down")); // C -> O
    let _ = breaker.call(|| Ok::<_, &str>(())); // cooldown 0: O -> H, H -> C
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open, Open),
            (Open, HalfOpen, HalfOpen),
            (HalfOpen, Closed, Closed)
        ]
    );
}
