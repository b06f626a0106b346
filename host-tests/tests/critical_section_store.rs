//! The critical-section store: one `static` breaker shared by "tasks" and an "interrupt"
//! (threads here, with critical-section's `std` implementation).

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio, ValidConfig,
    state::OutcomeWindow, store::CriticalSectionStore, time::Instant,
};

const CONFIG: ValidConfig<OutcomeWindow<64>> = BreakerConfig::new()
    .failure_limit(Ratio::of::<64, 64>())
    .success_limit(Ratio::of::<2, 4>())
    .cooldown(Duration::from_secs(1))
    .validated();

static TRANSITIONS: AtomicU32 = AtomicU32::new(0);

fn count_transition(_: CircuitState, _: CircuitState) {
    TRANSITIONS.fetch_add(1, Ordering::Relaxed);
}

static SHARED: CircuitProtector<
    CriticalSectionStore<64>,
    Instant,
    resilient_circuit::classify::AllErrors,
    fn(CircuitState, CircuitState),
> = CircuitProtector::with_parts(
    CONFIG,
    CriticalSectionStore::new(),
    Instant::ZERO,
    resilient_circuit::classify::AllErrors,
    count_transition,
);

#[test]
fn static_breaker_shared_by_threads_loses_no_outcome_and_caps_probes() {
    // 4 "tasks" record 16 failures each while an "interrupt" keeps reading the state.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..16 {
                    let _ = SHARED.call(|| Err::<(), _>("nak"));
                }
            });
        }
        s.spawn(|| {
            for _ in 0..1_000 {
                let state = SHARED.status();
                assert!(matches!(state, CircuitState::Closed | CircuitState::Open));
            }
        });
    });
    // 64 failures in a window of 64: exactly one trip, with the full window kept.
    assert_eq!(SHARED.status(), CircuitState::Open);
    assert_eq!(SHARED.execution_log().failures(), 64);
    assert_eq!(TRANSITIONS.load(Ordering::Relaxed), 1);

    // Probes from many threads are capped at the probe window of 4. Two breakers on one store
    // with fixed clocks: one opens it at 5 s, the other arrives at the 6 s deadline.
    let probing: CircuitProtector<CriticalSectionStore<64>, Instant> =
        CircuitProtector::new(CONFIG, CriticalSectionStore::new(), Instant::from_secs(5));
    probing.force_open().unwrap();
    let later = CircuitProtector::new(CONFIG, probing.store(), Instant::from_secs(6));
    let admitted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                if let Ok(permit) = later.try_acquire() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                    std::mem::forget(permit); // stays in flight: never reports
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 4);
    assert_eq!(later.state().probes_in_flight(), 4);
}
