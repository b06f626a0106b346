//! The `static` breaker guarding the sensor, shared by the scenario task and an interrupt.

use core::{
    cell::RefCell,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use critical_section::Mutex;
use resilient_circuit::{
    BreakerConfig, CircuitProtector, CircuitState, Ratio, ValidConfig, classify::AllErrors,
    state::OutcomeWindow, store::CriticalSectionStore, time::EmbassyClock,
};

/// Trip when 3 of the last 4 reads failed; stay open 300 ms; close after 2 good probes.
/// Checked at compile time.
pub const CONFIG: ValidConfig<OutcomeWindow<4, 1>> = BreakerConfig::new()
    .failure_limit(Ratio::of::<3, 4>())
    .success_limit(Ratio::of::<2, 2>())
    .cooldown(Duration::from_millis(300))
    .validated();

/// The breaker type: state behind a critical section, embassy time, a plain `fn` hook.
pub type SensorBreaker = CircuitProtector<
    CriticalSectionStore<4, 1>,
    EmbassyClock,
    AllErrors,
    fn(CircuitState, CircuitState),
>;

/// The sensor's breaker: one `static`, read by the scenario task and by an interrupt handler.
pub static BREAKER: SensorBreaker = CircuitProtector::with_parts(
    CONFIG,
    CriticalSectionStore::new(),
    EmbassyClock,
    AllErrors,
    record_transition,
);

/// The most transitions the scenario keeps.
pub const MAX_TRANSITIONS: usize = 16;

struct TransitionLog {
    seen: [(CircuitState, CircuitState); MAX_TRANSITIONS],
    len: usize,
}

static TRANSITIONS: Mutex<RefCell<TransitionLog>> = Mutex::new(RefCell::new(TransitionLog {
    seen: [(CircuitState::Closed, CircuitState::Closed); MAX_TRANSITIONS],
    len: 0,
}));

/// Interrupt ticks that found the breaker OPEN.
static OPEN_TICKS: AtomicU32 = AtomicU32::new(0);

/// The breaker's hook: log the transition and remember it.
fn record_transition(old: CircuitState, new: CircuitState) {
    log!(info, "breaker {} -> {}", old.as_str(), new.as_str());
    critical_section::with(|cs| {
        let mut log = TRANSITIONS.borrow_ref_mut(cs);
        if log.len < MAX_TRANSITIONS {
            let at = log.len;
            log.seen[at] = (old, new);
            log.len += 1;
        }
    });
}

/// How many transitions there were.
pub fn transition_count() -> usize {
    critical_section::with(|cs| TRANSITIONS.borrow_ref(cs).len)
}

/// Transition number `index`, in order.
pub fn transition(index: usize) -> Option<(CircuitState, CircuitState)> {
    critical_section::with(|cs| {
        let log = TRANSITIONS.borrow_ref(cs);
        log.seen[..log.len].get(index).copied()
    })
}

/// Called from an interrupt handler (the firmware's 1 kHz SysTick): reads the breaker's state
/// while the scenario task uses it.
pub fn observe_from_interrupt() {
    if BREAKER.status() == CircuitState::Open {
        OPEN_TICKS.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many interrupt ticks found the breaker OPEN.
pub fn open_ticks() -> u32 {
    OPEN_TICKS.load(Ordering::Relaxed)
}
