//! Model checking of the shared breaker's lock-free paths with loom: every interleaving of
//! lock-free reads (CLOSED admission, no-op successes, rejections) with locked changes.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p resilient-circuit-std --test loom --release`
//! (`cargo xtask test` runs it in its own target directory).
#![cfg(loom)]

use std::time::Duration;

use loom::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio, SharedBreaker,
    time::Instant,
};

type LoomBreaker = SharedBreaker<Instant>;

fn breaker(config: BreakerConfig) -> LoomBreaker {
    MemoryStore::with_clock(Instant::ZERO)
        .breaker(BreakerKey::resource("loom").unwrap(), config)
        .unwrap()
}

/// A healthy window (full of successes) takes successes without the lock; a failure racing
/// with them must still be recorded, and the window must hold exactly the outcomes given.
#[test]
fn lock_free_successes_race_a_failure_without_losing_it() {
    loom::model(|| {
        let config = BreakerConfig::new().failure_limit(Ratio::new(2, 2).unwrap());
        let b = Arc::new(breaker(config));
        for _ in 0..2 {
            b.call(|| Ok::<_, ()>(())).unwrap();
        }
        let other = Arc::clone(&b);
        let t = thread::spawn(move || other.call(|| Ok::<_, ()>(())).unwrap());
        let _ = b.call(|| Err::<(), _>(()));
        t.join().unwrap();
        let log = b.execution_log();
        assert_eq!(
            (log.len(), log.failures()),
            (2, 1),
            "a window of 2 holding the failure"
        );
        assert_eq!(b.status(), CircuitState::Closed);
    });
}

/// Two failures racing to trip: one transition, reported once, and the rejection after it.
#[test]
fn racing_trips_report_one_transition() {
    loom::model(|| {
        let config = BreakerConfig::new().cooldown(Duration::from_secs(1));
        let transitions = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&transitions);
        let b = Arc::new(breaker(config).on_status_change(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        let other = Arc::clone(&b);
        let t = thread::spawn(move || {
            let _ = other.call(|| Err::<(), _>(()));
        });
        let _ = b.call(|| Err::<(), _>(()));
        t.join().unwrap();
        assert_eq!(b.status(), CircuitState::Open);
        assert_eq!(transitions.load(Ordering::SeqCst), 1);
        assert!(b.call(|| Ok::<_, ()>(())).unwrap_err().is_rejected());
    });
}

/// A reader admitting on the lock-free path while another thread trips the breaker: the
/// admitted call's late outcome is applied to the period it was admitted in, or ignored.
#[test]
fn a_lock_free_admission_racing_a_trip_is_consistent() {
    loom::model(|| {
        let config = BreakerConfig::new()
            .failure_limit(Ratio::new(1, 1).unwrap())
            .cooldown(Duration::from_secs(1));
        let b = Arc::new(breaker(config));
        let other = Arc::clone(&b);
        let t = thread::spawn(move || {
            let _ = other.call(|| Ok::<_, ()>(()));
        });
        let _ = b.call(|| Err::<(), _>(()));
        t.join().unwrap();
        let state = b.state();
        // Whatever the order, the failure tripped the breaker and nothing reopened it.
        assert_eq!(state.status(), CircuitState::Open);
        assert_eq!(state.window().failures(), 1);
    });
}

/// A CLOSED success counted without the lock races a failure that may trip the breaker: the
/// result is one of the two orders, never a lost or misplaced outcome.
#[test]
fn a_counted_success_racing_a_failure_lands_in_one_order() {
    loom::model(|| {
        let config = BreakerConfig::new()
            .failure_limit(Ratio::new(2, 2).unwrap())
            .cooldown(Duration::from_secs(1));
        let b = Arc::new(breaker(config));
        b.call(|| Ok::<_, ()>(())).unwrap();
        let _ = b.call(|| Err::<(), _>(())); // window [S, F]: not clean, not tripped
        let other = Arc::clone(&b);
        // Rejected if the failure tripped the breaker first.
        let t = thread::spawn(move || {
            let _ = other.call(|| Ok::<_, ()>(()));
        });
        let _ = b.call(|| Err::<(), _>(()));
        t.join().unwrap();
        let state = b.state();
        let log: Vec<bool> = state
            .window()
            .iter()
            .map(|o| o == resilient_circuit_std::state::Outcome::Failure)
            .collect();
        match state.status() {
            // The success first: [F, S], then the failure: [S, F], 1 of 2.
            CircuitState::Closed => assert_eq!(log, [false, true]),
            // The failure first: [F, F] trips; the success belonged to the old period.
            CircuitState::Open => assert_eq!(log, [true, true]),
            CircuitState::HalfOpen => panic!("no probe ran"),
        }
    });
}
