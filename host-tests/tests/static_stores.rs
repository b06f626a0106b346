//! The stores a `static` breaker shared by "tasks" and an "interrupt" sits on (threads here,
//! with critical-section's `std` implementation): the critical-section store, and the
//! embassy-sync store on `CriticalSectionRawMutex`, of embassy-sync 0.8 and of 0.7.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync_07::blocking_mutex::raw::CriticalSectionRawMutex as CriticalSectionRawMutex07;
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio, ValidConfig,
    classify::AllErrors,
    state::OutcomeWindow,
    store::{CriticalSectionStore, RawMutexStore, RawMutexStore07, StateStore},
    time::Instant,
};

const CONFIG: ValidConfig<OutcomeWindow<64>> = BreakerConfig::new()
    .failure_limit(Ratio::of::<64, 64>())
    .success_limit(Ratio::of::<2, 4>())
    .cooldown(Duration::from_secs(1))
    .validated();

/// A breaker as a `static` holds it: a plain function as its hook.
type StaticBreaker<St> = CircuitProtector<St, Instant, AllErrors, fn(CircuitState, CircuitState)>;

static CRITICAL_SECTION_TRANSITIONS: AtomicU32 = AtomicU32::new(0);
static ON_CRITICAL_SECTION: StaticBreaker<CriticalSectionStore<64>> = CircuitProtector::with_parts(
    CONFIG,
    CriticalSectionStore::new(),
    Instant::ZERO,
    AllErrors,
    |_, _| {
        CRITICAL_SECTION_TRANSITIONS.fetch_add(1, Ordering::Relaxed);
    },
);

static RAW_MUTEX_TRANSITIONS: AtomicU32 = AtomicU32::new(0);
static ON_RAW_MUTEX: StaticBreaker<RawMutexStore<CriticalSectionRawMutex, 64>> =
    CircuitProtector::with_parts(
        CONFIG,
        RawMutexStore::new(),
        Instant::ZERO,
        AllErrors,
        |_, _| {
            RAW_MUTEX_TRANSITIONS.fetch_add(1, Ordering::Relaxed);
        },
    );

static RAW_MUTEX_07_TRANSITIONS: AtomicU32 = AtomicU32::new(0);
static ON_RAW_MUTEX_07: StaticBreaker<RawMutexStore07<CriticalSectionRawMutex07, 64>> =
    CircuitProtector::with_parts(
        CONFIG,
        RawMutexStore07::new(),
        Instant::ZERO,
        AllErrors,
        |_, _| {
            RAW_MUTEX_07_TRANSITIONS.fetch_add(1, Ordering::Relaxed);
        },
    );

#[test]
fn static_breaker_on_an_embassy_sync_07_mutex_loses_no_outcome_and_caps_probes() {
    loses_no_outcome_and_caps_probes(
        &ON_RAW_MUTEX_07,
        &RAW_MUTEX_07_TRANSITIONS,
        RawMutexStore07::<CriticalSectionRawMutex07, 64>::new(),
    );
}

#[test]
fn static_breaker_on_a_critical_section_loses_no_outcome_and_caps_probes() {
    loses_no_outcome_and_caps_probes(
        &ON_CRITICAL_SECTION,
        &CRITICAL_SECTION_TRANSITIONS,
        CriticalSectionStore::new(),
    );
}

#[test]
fn static_breaker_on_an_embassy_sync_mutex_loses_no_outcome_and_caps_probes() {
    loses_no_outcome_and_caps_probes(
        &ON_RAW_MUTEX,
        &RAW_MUTEX_TRANSITIONS,
        RawMutexStore::<CriticalSectionRawMutex, 64>::new(),
    );
}

/// `shared` (counting its transitions in `transitions`) keeps every outcome of threads calling
/// it at once; and a breaker on `fresh` admits at most its probe window of threads.
fn loses_no_outcome_and_caps_probes<St>(
    shared: &'static StaticBreaker<St>,
    transitions: &AtomicU32,
    fresh: St,
) where
    St: StateStore<Window = OutcomeWindow<64>> + Sync,
{
    // 4 "tasks" record 16 failures each while an "interrupt" keeps reading the state.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..16 {
                    let _ = shared.call(|| Err::<(), _>("nak"));
                }
            });
        }
        s.spawn(|| {
            // Failures only accumulate (the window of 64 never drops one here): a torn or
            // lost update would show as a count going back.
            let mut seen = 0;
            for _ in 0..1_000 {
                let failures = shared.execution_log().failures();
                assert!(failures >= seen, "{failures} failures after {seen}");
                seen = failures;
            }
        });
    });
    // 64 failures in a window of 64: exactly one trip, with the full window kept.
    assert_eq!(shared.status(), CircuitState::Open);
    assert_eq!(shared.execution_log().failures(), 64);
    assert_eq!(transitions.load(Ordering::Relaxed), 1);

    // Probes from many threads are capped at the probe window of 4. Two breakers on one store
    // with fixed clocks: one opens it at 5 s, the other arrives at the 6 s deadline.
    let probing = CircuitProtector::new(CONFIG, fresh, Instant::from_secs(5));
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
