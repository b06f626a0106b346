//! [`BreakerState`] and its pure transition functions, and the values they hand out.

use core::{fmt, time::Duration};

use super::window::{Outcome, OutcomeWindow, Window};
use crate::{
    BreakerConfig, RejectReason, Rejected,
    classify::Verdict,
    time::{Clock, Instant},
};

/// `wait` after `now`: out of line, as the cooldown and the probe lease share it (on a 32-bit
/// core it is a multiply call and two overflow checks).
#[inline(never)]
fn deadline(now: Instant, wait: Duration) -> Instant {
    now.saturating_add(wait)
}

/// `open_until` in HALF_OPEN while no probe lease runs: never reached.
const NO_LEASE_RUNNING: Instant = Instant::MAX;

/// Where a circuit protector stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum CircuitState {
    /// Calls run; outcomes fill the window.
    Closed,
    /// Calls are rejected until the cooldown ends.
    Open,
    /// A limited number of probe calls run and decide between CLOSED and OPEN.
    HalfOpen,
}

impl CircuitState {
    /// The name the Python package stores: `"CLOSED"`, `"OPEN"` or `"HALF_OPEN"`.
    ///
    /// ```
    /// assert_eq!(resilient_circuit::CircuitState::HalfOpen.as_str(), "HALF_OPEN");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "CLOSED",
            CircuitState::Open => "OPEN",
            CircuitState::HalfOpen => "HALF_OPEN",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state: `from` then `to`, never equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transition {
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
}

/// What admission grants: which period the call belongs to and whether it is a HALF_OPEN probe.
///
/// An outcome is applied only to the period (the time between two transitions) its call was
/// admitted in; a late outcome from an earlier period changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Admission {
    epoch: u32,
    probe: bool,
}

impl Admission {
    /// An admission in the period numbered `epoch` (see [`BreakerState::epoch`]). Stores that
    /// admit without the state at hand (from a [`FastPath`](crate::store::FastPath)) build it here.
    pub const fn in_period(epoch: u32, probe: bool) -> Self {
        Admission { epoch, probe }
    }

    /// Whether the call was admitted as a HALF_OPEN probe (it holds a probe slot).
    pub const fn is_probe(&self) -> bool {
        self.probe
    }

    /// The period the call was admitted in.
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }
}

/// The whole state of one breaker: a small `Copy` value (32 bytes with a 64-outcome window).
///
/// The methods are the pure transition functions of the contract: given the configuration,
/// an event and a clock, they change the value and report the transition, if any. Stores decide
/// only where the value lives and how a change is made atomic.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitState, Ratio, state::{BreakerState, OutcomeWindow, Transition},
///     time::Instant, classify::Verdict,
/// };
///
/// let config = BreakerConfig::new().cooldown(Duration::from_secs(5));
/// let mut state = BreakerState::<OutcomeWindow<64>>::new();
/// let (admission, _) = state.admit(&config, &Instant::ZERO).unwrap();
/// let transition = state.record(&config, admission, Verdict::Failure, &Instant::ZERO);
/// assert_eq!(transition, Some(Transition { from: CircuitState::Closed, to: CircuitState::Open }));
/// let rejected = state.admit(&config, &Instant::from_secs(2)).unwrap_err();
/// assert_eq!(rejected.retry_after(), Duration::from_secs(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BreakerState<Win = OutcomeWindow<64>> {
    window: Win,
    /// When OPEN ends; in HALF_OPEN, when the probe lease that full slots started ends
    /// ([`NO_LEASE_RUNNING`] while none runs).
    open_until: Instant,
    consecutive_failures: u32,
    probes_in_flight: u16,
    /// Bumped on every transition; admissions carry it.
    epoch: u32,
    state: CircuitState,
}

impl<Win: Window> Default for BreakerState<Win> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Win: Window> BreakerState<Win> {
    /// CLOSED with an empty window.
    pub const fn new() -> Self {
        BreakerState {
            window: Win::EMPTY,
            open_until: Instant::ZERO,
            consecutive_failures: 0,
            probes_in_flight: 0,
            epoch: 0,
            state: CircuitState::Closed,
        }
    }

    /// A state rebuilt from its parts, for a store that keeps them outside memory (the
    /// PostgreSQL store reads them from a row). `open_until` matters only when `status` is OPEN
    /// (and, with a probe lease, HALF_OPEN: when the lease full slots started ends, or
    /// `Instant::MAX` while none runs);
    /// `probes_in_flight` only when it is HALF_OPEN.
    ///
    /// ```
    /// use resilient_circuit::{CircuitState, state::{BreakerState, Outcome, OutcomeWindow, Window}, time::Instant};
    ///
    /// let mut window = OutcomeWindow::<64>::EMPTY;
    /// window.push(Outcome::Failure, 64);
    /// let state = BreakerState::restore(CircuitState::Closed, window, 1, Instant::ZERO, 0, 7);
    /// assert_eq!((state.status(), state.failure_count(), state.epoch()), (CircuitState::Closed, 1, 7));
    /// ```
    pub const fn restore(
        status: CircuitState,
        window: Win,
        failure_count: u32,
        open_until: Instant,
        probes_in_flight: u16,
        epoch: u32,
    ) -> Self {
        BreakerState {
            window,
            open_until,
            consecutive_failures: failure_count,
            probes_in_flight: match status {
                CircuitState::HalfOpen => probes_in_flight,
                _ => 0,
            },
            epoch,
            state: status,
        }
    }

    /// The current state. Reading never changes it: an expired OPEN stays OPEN until a call.
    pub const fn status(&self) -> CircuitState {
        self.state
    }

    /// The outcomes of the current window, oldest first (OPEN keeps the window that tripped it).
    pub const fn window(&self) -> &Win {
        &self.window
    }

    /// Consecutive failures recorded (reset by a success and by entering HALF_OPEN or CLOSED).
    pub const fn failure_count(&self) -> u32 {
        self.consecutive_failures
    }

    /// When OPEN ends; `None` unless OPEN.
    pub const fn open_until(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Open => Some(self.open_until),
            _ => None,
        }
    }

    /// The current period: a counter bumped (wrapping) by every transition and reset. Admissions
    /// carry it, so an outcome is applied only to the period its call was admitted in.
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }

    /// HALF_OPEN probes admitted and not yet reported.
    pub const fn probes_in_flight(&self) -> u16 {
        self.probes_in_flight
    }

    /// Asks to run a call. CLOSED admits without reading the clock; OPEN reads it once and
    /// either rejects or moves to HALF_OPEN and admits the call as a probe; HALF_OPEN admits
    /// while a probe slot is free. With a [probe lease](BreakerConfig::probe_lease), a call
    /// that finds every slot taken reads the clock: the first such call starts the lease, and
    /// one after it ends (no probe admitted meanwhile) starts the period over (a new epoch, an
    /// empty window, no transition reported), admitted as its first probe.
    #[inline]
    pub fn admit(
        &mut self,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<(Admission, Option<Transition>), Rejected> {
        match self.state {
            CircuitState::Closed => {
                return Ok((
                    Admission {
                        epoch: self.epoch,
                        probe: false,
                    },
                    None,
                ));
            }
            CircuitState::HalfOpen => {
                let taken = self.window.len() as u32 + self.probes_in_flight as u32;
                if taken < config.probe_window() as u32 {
                    self.probes_in_flight += 1;
                    self.open_until = NO_LEASE_RUNNING;
                    return Ok((
                        Admission {
                            epoch: self.epoch,
                            probe: true,
                        },
                        None,
                    ));
                }
                if config.probe_lease.is_none() {
                    return Err(Self::probes_busy(config));
                }
            }
            CircuitState::Open => {}
        }
        // OPEN until its deadline; HALF_OPEN with every slot taken, until the lease ends.
        let now = clock.now();
        if now < self.open_until {
            if self.state == CircuitState::Open {
                return Err(Rejected::new(
                    self.open_until.saturating_duration_since(now),
                    RejectReason::Open,
                ));
            }
            if let Some(lease) = config.probe_lease
                && self.open_until == NO_LEASE_RUNNING
            {
                self.open_until = deadline(now, lease);
            }
            return Err(Self::probes_busy(config));
        }
        // A HALF_OPEN period starts (again, when a lease ended), with this call its first probe.
        let transition = self.enter_half_open();
        self.probes_in_flight = 1;
        self.open_until = NO_LEASE_RUNNING;
        Ok((
            Admission {
                epoch: self.epoch,
                probe: true,
            },
            (transition.from != transition.to).then_some(transition),
        ))
    }

    /// Why a call is refused when every probe slot is taken.
    #[cold]
    fn probes_busy(config: &BreakerConfig) -> Rejected {
        Rejected::new(config.busy_retry_after, RejectReason::ProbesBusy)
    }

    /// Records the outcome of an admitted call. Reads the clock only when entering OPEN.
    #[inline]
    pub fn record(
        &mut self,
        config: &BreakerConfig,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        if admission.epoch != self.epoch {
            return None;
        }
        // The hot path: a success in CLOSED (no probe slot to return, nothing to decide).
        if verdict == Verdict::Success && self.state == CircuitState::Closed {
            self.push(Outcome::Success, config.closed_window());
            return None;
        }
        self.record_in_period(config, admission, verdict, clock)
    }

    // Everything but a CLOSED success, out of line so the hot path stays small.
    #[inline(never)]
    fn record_in_period(
        &mut self,
        config: &BreakerConfig,
        admission: Admission,
        verdict: Verdict,
        clock: &impl Clock,
    ) -> Option<Transition> {
        if admission.probe {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
        let outcome = match verdict {
            Verdict::Ignore => return None,
            Verdict::Success => Outcome::Success,
            Verdict::Failure => Outcome::Failure,
        };
        match self.state {
            CircuitState::Closed => {
                let limit = config.failure_limit;
                self.push(outcome, limit.denominator());
                let trips = outcome == Outcome::Failure
                    && self.window.len() >= limit.denominator()
                    && self.window.failures() >= limit.numerator();
                trips.then(|| self.enter_open(config.cooldown, clock.now()))
            }
            CircuitState::Open => None,
            CircuitState::HalfOpen => {
                let size = config.probe_window();
                self.push(outcome, size);
                let len = self.window.len();
                let failures = self.window.failures();
                let left = size.saturating_sub(len);
                let (close, reopen) = match config.success_limit {
                    Some(limit) => {
                        let successes = len - failures;
                        let needed = limit.numerator();
                        (successes >= needed, successes + left < needed)
                    }
                    None => {
                        let needed = config.failure_limit.numerator();
                        (failures + left < needed, failures >= needed)
                    }
                };
                if reopen {
                    Some(self.enter_open(config.cooldown, clock.now()))
                } else if close {
                    Some(self.enter_closed())
                } else {
                    None
                }
            }
        }
    }

    /// Records `count` successes of calls admitted in CLOSED period `epoch`, exactly as
    /// `count` calls to [`record`](Self::record) with [`Verdict::Success`] would: a store that
    /// counts CLOSED successes without its lock folds them in with this. Successes never trip, so
    /// no transition can follow; outside that CLOSED period nothing changes.
    pub fn record_closed_successes(&mut self, config: &BreakerConfig, epoch: u32, count: u32) {
        if count == 0 || epoch != self.epoch || self.state != CircuitState::Closed {
            return;
        }
        // Only the last `size` outcomes can remain: older successes would be pushed out anyway.
        let size = config.closed_window();
        for _ in 0..count.min(size as u32) {
            self.push(Outcome::Success, size);
        }
    }

    /// Gives back what an admitted call held when it will never report (its future was dropped
    /// or it panicked): a probe's slot.
    pub fn release(&mut self, admission: Admission) {
        if admission.probe && admission.epoch == self.epoch {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Moves to OPEN with a fresh deadline `now + cooldown`. Already OPEN: the deadline restarts
    /// and no transition is reported.
    pub fn force_open(&mut self, config: &BreakerConfig, clock: &impl Clock) -> Option<Transition> {
        let transition = self.enter_open(config.cooldown, clock.now());
        (transition.from != transition.to).then_some(transition)
    }

    /// Moves to CLOSED with an empty window, as when probes close the breaker. Already CLOSED:
    /// nothing changes.
    pub fn force_closed(&mut self) -> Option<Transition> {
        (self.state != CircuitState::Closed).then(|| self.enter_closed())
    }

    /// Back to the initial state: CLOSED, empty window, no failures counted. Calls in flight
    /// will not be counted.
    pub fn reset(&mut self) -> Option<Transition> {
        let from = self.state;
        let epoch = self.epoch.wrapping_add(1);
        *self = Self::new();
        self.epoch = epoch;
        (from != CircuitState::Closed).then_some(Transition {
            from,
            to: CircuitState::Closed,
        })
    }

    #[inline]
    fn push(&mut self, outcome: Outcome, size: u16) {
        self.window.push(outcome, size);
        self.consecutive_failures = match outcome {
            Outcome::Success => 0,
            Outcome::Failure => self.consecutive_failures.saturating_add(1),
        };
    }

    fn enter(&mut self, to: CircuitState) -> Transition {
        let from = self.state;
        self.state = to;
        self.epoch = self.epoch.wrapping_add(1);
        self.probes_in_flight = 0;
        Transition { from, to }
    }

    fn enter_open(&mut self, cooldown: Duration, now: Instant) -> Transition {
        self.open_until = deadline(now, cooldown);
        self.enter(CircuitState::Open)
    }

    fn enter_half_open(&mut self) -> Transition {
        self.window.clear();
        self.consecutive_failures = 0;
        self.enter(CircuitState::HalfOpen)
    }

    fn enter_closed(&mut self) -> Transition {
        self.window.clear();
        self.consecutive_failures = 0;
        self.enter(CircuitState::Closed)
    }
}
