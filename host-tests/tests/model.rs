//! Property test: random sequences of admissions, outcomes, dropped calls, calls lost without a
//! word (a probe lease then frees their slots), time steps and manual control run through the
//! breaker and through a small, obviously correct model; both
//! must agree on the state, the window, the counts and every rejection.

use std::{collections::VecDeque, time::Duration};

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use host_tests::{FakeClock, SharedFakeClock, TransitionCounts, Transitions};
use proptest::{prelude::*, test_runner::TestCaseError};
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Permit, Ratio, TransitionHook,
    classify::{AllErrors, Verdict},
    state::{Outcome, Window},
    store::{FastPath, InlineStore, RawMutexStore, StateStore},
    time::{Clock, Instant},
};
use resilient_circuit_std::{BreakerKey, MemoryStore};

#[derive(Clone, Copy, Debug)]
struct Limits {
    failure: (u16, u16),
    success: Option<(u16, u16)>,
    cooldown_ms: u64,
    busy_ms: u64,
    lease_ms: Option<u64>,
}

/// The contract, written for clarity rather than speed: a deque for the window, a list of
/// calls in flight tagged with the period (time between transitions) they were admitted in,
/// and HALF_OPEN decided by asking whether the seed's full-window verdict is already certain.
#[derive(Debug)]
struct Model {
    limits: Limits,
    state: CircuitState,
    window: VecDeque<bool>, // true = failure, oldest first
    consecutive_failures: u32,
    open_until_ms: u64,
    period: u64,
    in_flight: Vec<(u64, bool)>, // (period, is_probe), in admission order
    leaked: Vec<(u64, bool)>,    // calls that will never report nor give anything back
    lease_end_ms: Option<u64>,   // the probe lease full slots started, in HALF_OPEN
    transitions: Vec<(CircuitState, CircuitState)>,
}

impl Model {
    fn new(limits: Limits) -> Self {
        Model {
            limits,
            state: CircuitState::Closed,
            window: VecDeque::new(),
            consecutive_failures: 0,
            open_until_ms: 0,
            period: 0,
            in_flight: Vec::new(),
            leaked: Vec::new(),
            lease_end_ms: None,
            transitions: Vec::new(),
        }
    }

    fn probe_window(&self) -> usize {
        self.limits.success.unwrap_or(self.limits.failure).1 as usize
    }

    fn go(&mut self, to: CircuitState) {
        if self.state != to {
            self.transitions.push((self.state, to));
        }
        self.state = to;
        self.period += 1;
    }

    fn open(&mut self, now_ms: u64) {
        self.open_until_ms = now_ms + self.limits.cooldown_ms;
        self.go(CircuitState::Open);
    }

    fn clear(&mut self) {
        self.window.clear();
        self.consecutive_failures = 0;
    }

    /// Ok(()) admitted (the call is appended to `in_flight`), Err(retry_after_ms) rejected.
    fn admit(&mut self, now_ms: u64) -> Result<(), u64> {
        match self.state {
            CircuitState::Closed => {
                self.in_flight.push((self.period, false));
                Ok(())
            }
            CircuitState::Open if now_ms < self.open_until_ms => Err(self.open_until_ms - now_ms),
            CircuitState::Open => {
                self.clear();
                self.go(CircuitState::HalfOpen);
                self.first_probe();
                Ok(())
            }
            CircuitState::HalfOpen => {
                if self.window.len() + self.probes_in_flight() < self.probe_window() {
                    self.in_flight.push((self.period, true));
                    self.lease_end_ms = None;
                    return Ok(());
                }
                let Some(lease_ms) = self.limits.lease_ms else {
                    return Err(self.limits.busy_ms);
                };
                match self.lease_end_ms {
                    // The first call refused starts the lease.
                    None => {
                        self.lease_end_ms = Some(now_ms + lease_ms);
                        Err(self.limits.busy_ms)
                    }
                    Some(end) if now_ms < end => Err(self.limits.busy_ms),
                    // The lease ended: the period starts over, with no transition.
                    Some(_) => {
                        self.clear();
                        self.period += 1;
                        self.first_probe();
                        Ok(())
                    }
                }
            }
        }
    }

    fn first_probe(&mut self) {
        self.in_flight.push((self.period, true));
        self.lease_end_ms = None;
    }

    fn probes_in_flight(&self) -> usize {
        self.in_flight
            .iter()
            .chain(&self.leaked)
            .filter(|(period, probe)| *probe && *period == self.period)
            .count()
    }

    /// The seed's verdict on a full HALF_OPEN window.
    fn full_window_verdict(&self, window: &[bool]) -> CircuitState {
        let failures = window.iter().filter(|f| **f).count() as u16;
        match self.limits.success {
            Some((s, _)) if window.len() as u16 - failures >= s => CircuitState::Closed,
            Some(_) => CircuitState::Open,
            None if failures >= self.limits.failure.0 => CircuitState::Open,
            None => CircuitState::Closed,
        }
    }

    fn report(&mut self, index: usize, verdict: Verdict, now_ms: u64) {
        let (period, _) = self.in_flight.remove(index);
        if period != self.period || verdict == Verdict::Ignore {
            return;
        }
        let failed = verdict == Verdict::Failure;
        let size = match self.state {
            CircuitState::Closed => self.limits.failure.1 as usize,
            CircuitState::HalfOpen => self.probe_window(),
            CircuitState::Open => return,
        };
        self.window.push_back(failed);
        while self.window.len() > size {
            self.window.pop_front();
        }
        self.consecutive_failures = if failed {
            self.consecutive_failures + 1
        } else {
            0
        };
        match self.state {
            CircuitState::Closed => {
                let failures = self.window.iter().filter(|f| **f).count() as u16;
                if failed && self.window.len() == size && failures >= self.limits.failure.0 {
                    self.open(now_ms);
                }
            }
            CircuitState::HalfOpen => {
                let left = size - self.window.len();
                let mut best: Vec<bool> = self.window.iter().copied().collect();
                let mut worst = best.clone();
                best.extend(std::iter::repeat_n(false, left));
                worst.extend(std::iter::repeat_n(true, left));
                let (if_all_succeed, if_all_fail) = (
                    self.full_window_verdict(&best),
                    self.full_window_verdict(&worst),
                );
                if if_all_succeed == if_all_fail {
                    match if_all_succeed {
                        CircuitState::Open => self.open(now_ms),
                        _ => {
                            self.clear();
                            self.go(CircuitState::Closed);
                        }
                    }
                }
            }
            CircuitState::Open => {}
        }
    }

    fn release(&mut self, index: usize) {
        self.in_flight.remove(index);
    }

    fn leak(&mut self, index: usize) {
        let call = self.in_flight.remove(index);
        self.leaked.push(call);
    }

    fn force_open(&mut self, now_ms: u64) {
        self.open(now_ms);
    }

    fn force_closed(&mut self) {
        if self.state != CircuitState::Closed {
            self.clear();
            self.go(CircuitState::Closed);
        }
    }

    fn reset(&mut self) {
        self.clear();
        self.go(CircuitState::Closed);
    }
}

#[derive(Clone, Debug)]
enum Step {
    Admit,
    Report(usize, Verdict),
    Drop(usize),
    Leak(usize),
    Wait(u64),
    ForceOpen,
    ForceClosed,
    Reset,
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![4 => Just(Verdict::Failure), 4 => Just(Verdict::Success), 1 => Just(Verdict::Ignore)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => Just(Step::Admit),
        8 => (any::<usize>(), verdict()).prop_map(|(i, v)| Step::Report(i, v)),
        1 => any::<usize>().prop_map(Step::Drop),
        1 => any::<usize>().prop_map(Step::Leak),
        4 => (0u64..3_000).prop_map(Step::Wait),
        1 => Just(Step::ForceOpen),
        1 => Just(Step::ForceClosed),
        1 => Just(Step::Reset),
    ]
}

fn ratio(max: u16) -> impl Strategy<Value = (u16, u16)> {
    (1..=max).prop_flat_map(|b| (0..=b, Just(b)))
}

/// Limits with windows up to `max_window`, and a probe lease sometimes if `leased`.
fn limits(max_window: u16, leased: bool) -> impl Strategy<Value = Limits> {
    (
        ratio(max_window),
        proptest::option::of(ratio(max_window)),
        0u64..5_000,
        1u64..500,
        proptest::option::of(1u64..1_500),
    )
        .prop_map(
            move |(failure, success, cooldown_ms, busy_ms, lease_ms)| Limits {
                failure,
                success,
                cooldown_ms,
                busy_ms,
                lease_ms: lease_ms.filter(|_| leased),
            },
        )
}

fn config_for(limits: Limits) -> BreakerConfig {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(limits.failure.0, limits.failure.1).unwrap())
        .cooldown(Duration::from_millis(limits.cooldown_ms))
        .busy_retry_after(Duration::from_millis(limits.busy_ms));
    let config = match limits.lease_ms {
        Some(ms) => config.probe_lease(Duration::from_millis(ms)),
        None => config,
    };
    match limits.success {
        Some((a, b)) => config.success_limit(Ratio::new(a, b).unwrap()),
        None => config,
    }
}

/// Runs `steps` through `breaker` and the model side by side; both must agree after each.
fn agrees_with_the_model<St: StateStore, C: Clock, H: TransitionHook>(
    breaker: &CircuitProtector<St, C, AllErrors, H>,
    config: &BreakerConfig,
    limits: Limits,
    steps: &[Step],
    advance: impl Fn(Duration),
    transitions: impl Fn() -> Vec<(CircuitState, CircuitState)>,
) -> Result<(), TestCaseError> {
    let mut model = Model::new(limits);
    let mut now_ms = 0;
    let mut permits: Vec<Permit<&_>> = Vec::new();

    for (n, step) in steps.iter().enumerate() {
        match *step {
            Step::Admit => {
                let real = breaker.try_acquire();
                let expected = model.admit(now_ms);
                match (real, expected) {
                    (Ok(permit), Ok(())) => {
                        prop_assert_eq!(permit.is_probe(), model.in_flight.last().unwrap().1);
                        permits.push(permit);
                    }
                    (Err(rejected), Err(ms)) => {
                        prop_assert_eq!(rejected.retry_after(), Duration::from_millis(ms))
                    }
                    (real, expected) => prop_assert!(
                        false,
                        "step {}: breaker {:?}, model {:?}",
                        n,
                        real.map(|_| ()),
                        expected
                    ),
                }
            }
            Step::Report(i, verdict) if !permits.is_empty() => {
                let i = i % permits.len();
                permits.remove(i).record(verdict);
                model.report(i, verdict, now_ms);
            }
            Step::Drop(i) if !permits.is_empty() => {
                let i = i % permits.len();
                drop(permits.remove(i));
                model.release(i);
            }
            Step::Leak(i) if !permits.is_empty() => {
                let i = i % permits.len();
                std::mem::forget(permits.remove(i));
                model.leak(i);
            }
            Step::Report(..) | Step::Drop(_) | Step::Leak(_) => {}
            Step::Wait(ms) => {
                now_ms += ms;
                advance(Duration::from_millis(ms));
            }
            Step::ForceOpen => {
                breaker.force_open().unwrap();
                model.force_open(now_ms);
            }
            Step::ForceClosed => {
                breaker.force_closed().unwrap();
                model.force_closed();
            }
            Step::Reset => {
                breaker.reset().unwrap();
                model.reset();
            }
        }
        let state = breaker.state();
        let window: Vec<bool> = state
            .window()
            .iter()
            .map(|o| o == Outcome::Failure)
            .collect();
        let expected_window: Vec<bool> = model.window.iter().copied().collect();
        prop_assert_eq!(state.status(), model.state, "step {}: {:?}", n, step);
        prop_assert_eq!(window, expected_window, "step {}: {:?}", n, step);
        prop_assert_eq!(state.failure_count(), model.consecutive_failures);
        prop_assert_eq!(state.probes_in_flight() as usize, model.probes_in_flight());
        if model.state == CircuitState::Open {
            prop_assert_eq!(
                state.open_until().map(|t| t.as_nanos()),
                Some(model.open_until_ms * 1_000_000)
            );
        }
        prop_assert_eq!(transitions(), std::mem::take(&mut model.transitions));

        // The one-word digest a thread-shared store reads without its lock: it admits only
        // in CLOSED, and a success it calls a no-op really changes nothing.
        let digest = FastPath::of(&state, config);
        prop_assert_eq!(digest.status(), state.status());
        prop_assert_eq!(
            digest.admit().is_some(),
            state.status() == CircuitState::Closed
        );
        if let Some(admission) = digest.admit() {
            prop_assert_eq!(admission.epoch(), state.epoch());
            let mut after = state;
            after.record(config, admission, Verdict::Success, &Instant::ZERO);
            if digest.success_changes_nothing(admission) {
                prop_assert_eq!(after, state);
            }
            // Successes counted without a lock and folded in later: the same as recording
            // them one by one.
            for count in [1u32, 3, config.closed_window() as u32 + 2] {
                let mut folded = state;
                folded.record_closed_successes(config, admission.epoch(), count);
                let mut one_by_one = state;
                for _ in 0..count {
                    one_by_one.record(config, admission, Verdict::Success, &Instant::ZERO);
                }
                prop_assert_eq!(folded, one_by_one);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn breaker_agrees_with_the_reference_model(limits in limits(8, true), steps in proptest::collection::vec(step(), 1..120)) {
        let config = config_for(limits);
        let clock = FakeClock::new();
        let recorded = Transitions::new();
        let breaker = CircuitProtector::new(config.validate().unwrap(), InlineStore::<8, 1>::new(), &clock)
            .on_status_change(recorded.hook());
        agrees_with_the_model(&breaker, &config, limits, &steps, |d| clock.advance(d), || recorded.take())?;
    }

    #[test]
    fn raw_mutex_breakers_agree_with_the_reference_model(limits in limits(8, true), steps in proptest::collection::vec(step(), 1..120)) {
        // The embassy-sync stores, without and with a critical section.
        let config = config_for(limits);
        let clock = FakeClock::new();
        let recorded = Transitions::new();
        let breaker = CircuitProtector::new(config.validate().unwrap(), RawMutexStore::<NoopRawMutex, 8, 1>::new(), &clock)
            .on_status_change(recorded.hook());
        agrees_with_the_model(&breaker, &config, limits, &steps, |d| clock.advance(d), || recorded.take())?;
        let clock = FakeClock::new();
        let breaker = CircuitProtector::new(config.validate().unwrap(), RawMutexStore::<CriticalSectionRawMutex, 8, 1>::new(), &clock)
            .on_status_change(recorded.hook());
        agrees_with_the_model(&breaker, &config, limits, &steps, |d| clock.advance(d), || recorded.take())?;
    }

    #[test]
    fn shared_breaker_agrees_with_the_reference_model(limits in limits(40, false), steps in proptest::collection::vec(step(), 1..160)) {
        // The thread-shared breaker's own paths (lock-free reads, locked changes), with windows
        // that span two words of the bit ring.
        let config = config_for(limits);
        let clock = SharedFakeClock::new();
        let counts = TransitionCounts::new();
        let breaker = MemoryStore::with_clock(clock.clone())
            .breaker(BreakerKey::resource("model").unwrap(), config)
            .unwrap()
            .on_status_change(TransitionCounts::hook(&counts));
        let seen = std::cell::Cell::new(0);
        let new_transitions = || {
            let all = counts.all();
            let fresh = all[seen.get()..].to_vec();
            seen.set(all.len());
            fresh
        };
        agrees_with_the_model(&breaker, &config, limits, &steps, |d| clock.advance(d), new_transitions)?;
    }
}
