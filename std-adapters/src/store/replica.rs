//! What a replicated key adds to its in-process state: this process's changes not yet in the
//! shared copy, the probe slots reserved for it there, and the hooks its transitions fire.
//! The project's `docs/ARCHITECTURE.md` tells how callers, the log and the replicator meet.

// Only the PostgreSQL store replicates today.
#![cfg_attr(not(feature = "postgres"), allow(dead_code))]

use std::{
    collections::VecDeque,
    sync::{Arc, Weak},
    time::Duration,
};

use resilient_circuit::{
    BreakerConfig, CircuitState, RejectReason, Rejected, TransitionHook,
    classify::Verdict,
    state::{Admission, BreakerState, Transition},
    store::{Control, FastPath},
    time::{Clock, Instant},
};

use super::window::SharedWindow;
use crate::{BreakerKey, StoreUnavailable};

/// Changes a key's log keeps for its replicator; past this the oldest go, counted (a
/// replicator that keeps up takes the log long before: it is woken by every failure).
pub(crate) const MAX_LOGGED: usize = 1024;

/// A hook as the replicator holds it: alive while a breaker handle holds it.
pub(crate) type WorkerHook = Arc<dyn TransitionHook + Send + Sync>;

/// One change a process made to a key, in the order it made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// CLOSED successes of period `epoch` (a run; only the last window's worth can matter).
    Successes { epoch: u32, count: u32 },
    /// The outcome of an admitted call (a failure, a probe's outcome, a late outcome), and
    /// when it was recorded (on the store's clock).
    Outcome {
        admission: Admission,
        verdict: Verdict,
        at: Instant,
    },
    /// A probe that will never report gives its slot back.
    Release { admission: Admission },
}

impl Event {
    /// Applies the change to `state` with the core's transition functions, as of when it was
    /// made: `timeline` maps an instant of the store's clock to `state`'s timeline (the
    /// server's, for a row).
    pub(crate) fn apply(
        &self,
        state: &mut BreakerState<SharedWindow>,
        config: &BreakerConfig,
        timeline: &impl Fn(Instant) -> Instant,
    ) -> Option<Transition> {
        #[cfg(test)]
        tests::APPLIED.with(|applied| applied.set(applied.get() + 1));
        match *self {
            Event::Successes { epoch, count } => {
                state.record_closed_successes(config, epoch, count);
                None
            }
            Event::Outcome {
                admission,
                verdict,
                at,
            } => {
                // A HALF_OPEN period admits only probes: an outcome of a CLOSED period with the
                // same number (a shared copy can start a period on its own, as when a probe
                // lease runs out) is not one of them.
                if !admission.is_probe() && state.status() == CircuitState::HalfOpen {
                    return None;
                }
                let when = timeline(at);
                // A probe of the period after an OPEN one: its admission moved the process's
                // copy to HALF_OPEN (the log holds no admission), so it does here too, if the
                // cooldown was over by then. So a probe that closed the breaker while the row
                // was out of reach closes the row too.
                if admission.is_probe()
                    && state.status() == CircuitState::Open
                    && admission.epoch() == state.epoch().wrapping_add(1)
                {
                    let _ = state.admit(config, &when);
                }
                state.record(config, admission, verdict, &when)
            }
            Event::Release { admission } => {
                state.release(admission);
                None
            }
        }
    }

    /// Whether dropping this change loses nothing the row could show: it is a CLOSED outcome
    /// (or run of them) of the period of the newest change `newest`, and at least `window`
    /// newer changes follow it (each holds an outcome or more), which would push it out of the
    /// row's window anyway.
    pub(crate) fn is_superseded(&self, newest: Option<&Event>, newer: usize, window: u16) -> bool {
        let closed = match self {
            Event::Successes { .. } => true,
            Event::Outcome { admission, .. } => !admission.is_probe(),
            Event::Release { .. } => false,
        };
        closed
            && newer >= usize::from(window)
            && newest.is_some_and(|newest| newest.epoch() == self.epoch())
    }

    /// The period the change belongs to.
    pub(crate) fn epoch(&self) -> u32 {
        match *self {
            Event::Successes { epoch, .. } => epoch,
            Event::Outcome { admission, .. } | Event::Release { admission } => admission.epoch(),
        }
    }

    /// Whether the change is only CLOSED successes.
    pub(crate) fn is_successes(&self) -> bool {
        matches!(self, Event::Successes { .. })
    }
}

/// Which key's state, by its address: tells keys apart without reaching (or importing) the
/// state itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateAddress(usize);

impl StateAddress {
    pub(crate) fn of<T>(state: *const T) -> Self {
        StateAddress(state.cast::<()>() as usize)
    }
}

/// What a replicated key's state needs from its replicator.
pub(crate) trait Replicator: Send + Sync {
    /// Something urgent was logged (a failure, a probe's outcome, a probe wanted).
    fn wake(&self);
    /// Applies `manual` to the shared copy of `key` and waits (bounded) for the answer.
    fn manual(&self, key: &BreakerKey, manual: Control) -> Result<(), StoreUnavailable>;
    /// A breaker handle of the key whose state is at `state` is being dropped; `references`
    /// to the state remain, its own among them.
    fn handle_dropped(&self, state: StateAddress, references: usize);
}

/// How long a probe slot reserved for this process waits for a caller before it is given
/// back: a few of the waits a caller is told to make ([`BreakerConfig::busy_retry_after`]), at
/// least 50 ms.
pub(crate) fn reservation_ttl(config: &BreakerConfig) -> Duration {
    config
        .busy_retry_after
        .saturating_mul(4)
        .max(Duration::from_millis(50))
}

/// `state`, a shared copy's state, with its OPEN deadline moved to another timeline by
/// `local_of` (the shared copy's deadlines are on the server's or the fleet's clock).
pub(crate) fn on_local_timeline(
    state: BreakerState<SharedWindow>,
    local_of: impl Fn(Instant) -> Instant,
) -> BreakerState<SharedWindow> {
    match state.open_until() {
        Some(until) => BreakerState::restore(
            CircuitState::Open,
            *state.window(),
            state.failure_count(),
            local_of(until),
            0,
            state.epoch(),
        ),
        None => state,
    }
}

/// The replication part of a key's state, kept under the key's lock.
pub(crate) struct Replica {
    /// The configuration the key was first made with: the replicator applies it to the row.
    config: BreakerConfig,
    /// Changes not yet taken by the replicator, oldest first; at most [`MAX_LOGGED`].
    pending: VecDeque<Event>,
    /// Changes dropped from the log since the replicator last took it (the oldest go first),
    /// not counting those the row's window would have pushed out anyway.
    dropped: u64,
    /// The last pending change is a run of successes as long as the window: more change nothing.
    saturated: bool,
    /// The replicator holds changes taken from the log that are not yet in the shared copy.
    sending: bool,
    /// The replicator should run at once.
    urgent: bool,
    /// Probe slots reserved in the shared copy for this process, not yet given to a caller.
    reserved: u16,
    /// When (local clock) the oldest unused reservation was made.
    reserved_at: Option<Instant>,
    /// The period the reservations belong to.
    reserved_epoch: u32,
    /// A caller found no probe slot: the replicator should reserve one.
    wants_probe: bool,
    /// Set while failing closed: every admission is rejected with this wait.
    unavailable: Option<Duration>,
    /// The status last announced to the hooks: the shared copy's, as last adopted.
    announced: CircuitState,
    /// The period of the shared copy as last adopted (reservations belong to it).
    adopted_epoch: u32,
    hooks: Vec<Weak<dyn TransitionHook + Send + Sync>>,
}

impl Replica {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Replica {
            config,
            pending: VecDeque::new(),
            dropped: 0,
            saturated: false,
            sending: false,
            urgent: false,
            reserved: 0,
            reserved_at: None,
            reserved_epoch: 0,
            wants_probe: false,
            unavailable: None,
            announced: CircuitState::Closed,
            adopted_epoch: 0,
            hooks: Vec::new(),
        }
    }

    /// Something logged wants the replicator at once (a failure, a probe's outcome, a probe
    /// wanted).
    pub(crate) fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Whether a caller found no probe slot and the replicator has yet to hear of it.
    pub(crate) fn wants_probe(&self) -> bool {
        self.wants_probe
    }

    /// Takes the wish for a probe slot: whether the replicator should reserve one (a caller
    /// found none, and no reservation waits unused: one at a time is enough).
    pub(crate) fn take_probe_wish(&mut self) -> bool {
        std::mem::take(&mut self.wants_probe) && self.reserved == 0
    }

    /// Whether changes wait in the log for the replicator.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the replicator holds changes taken from the log that are not yet in the shared
    /// copy.
    pub(crate) fn is_sending(&self) -> bool {
        self.sending
    }

    /// The replicator says whether it holds changes not yet in the shared copy.
    pub(crate) fn set_sending(&mut self, sending: bool) {
        self.sending = sending;
    }

    /// While the shared copy is out of reach and the store fails closed: every admission is
    /// rejected, told to retry after `retry_after`, until a shared copy is adopted.
    pub(crate) fn fail_closed(&mut self, retry_after: Duration) {
        self.unavailable = Some(retry_after);
    }

    /// The key's state as first read: its status is announced as it is, with no transition.
    pub(crate) fn loaded(&mut self, status: CircuitState) {
        self.announced = status;
    }

    /// Appends a change to the log; past [`MAX_LOGGED`] the oldest goes (counted, unless the
    /// row's window would have pushed it out anyway).
    pub(crate) fn push(&mut self, event: Event) {
        if let (Event::Successes { epoch, count }, Some(Event::Successes { epoch: e, count: c })) =
            (event, self.pending.back_mut())
            && *e == epoch
        {
            let window = u32::from(self.config.closed_window());
            *c = c.saturating_add(count).min(window);
            self.saturated = *c >= window;
            return;
        }
        self.saturated = match event {
            Event::Successes { count, .. } => count >= u32::from(self.config.closed_window()),
            _ => false,
        };
        if !event.is_successes() {
            self.urgent = true;
        }
        if self.pending.len() >= MAX_LOGGED
            && let Some(oldest) = self.pending.pop_front()
        {
            let window = self.config.closed_window();
            // The log's new oldest in the period too: what follows is (nearly) all of it.
            let same_period = self
                .pending
                .front()
                .is_some_and(|e| e.epoch() == oldest.epoch());
            if !(same_period && oldest.is_superseded(Some(&event), self.pending.len() + 1, window))
            {
                self.dropped += 1;
            }
        }
        self.pending.push_back(event);
    }

    /// Takes the log, for the replicator, and how many older changes it dropped that the row
    /// could have shown.
    pub(crate) fn take(&mut self) -> (Vec<Event>, u64) {
        self.saturated = false;
        self.urgent = false;
        let events = Vec::from(std::mem::take(&mut self.pending));
        (events, std::mem::take(&mut self.dropped))
    }

    /// The digest to publish for `state`: held while failing closed, and counting every success
    /// until the log holds a window's worth of them.
    pub(crate) fn digest(&self, state: &BreakerState<SharedWindow>) -> FastPath {
        let digest = FastPath::of(state, &self.config);
        if self.unavailable.is_some() {
            digest.held()
        } else if self.saturated {
            digest
        } else {
            digest.counting()
        }
    }

    /// Admission on the in-process copy: CLOSED admits; OPEN rejects until its deadline; a
    /// probe runs only in a slot reserved in the shared copy, and until one is the caller is
    /// told the probes are busy. Never a transition: those are the shared copy's to make.
    pub(crate) fn admit(
        &mut self,
        state: &BreakerState<SharedWindow>,
        config: &BreakerConfig,
        clock: &impl Clock,
    ) -> Result<Admission, Rejected> {
        if let Some(retry_after) = self.unavailable {
            return Err(Rejected::new(retry_after, RejectReason::StoreUnavailable));
        }
        match state.status() {
            CircuitState::Closed => Ok(Admission::in_period(state.epoch(), false)),
            CircuitState::Open => {
                let now = clock.now();
                match state.open_until() {
                    Some(until) if now < until => Err(Rejected::new(
                        until.saturating_duration_since(now),
                        RejectReason::Open,
                    )),
                    _ => Err(self.probe_wanted(config)),
                }
            }
            CircuitState::HalfOpen if self.reserved > 0 => {
                self.reserved -= 1;
                if self.reserved == 0 {
                    self.reserved_at = None;
                }
                Ok(Admission::in_period(state.epoch(), true))
            }
            CircuitState::HalfOpen => Err(self.probe_wanted(config)),
        }
    }

    fn probe_wanted(&mut self, config: &BreakerConfig) -> Rejected {
        self.wants_probe = true;
        self.urgent = true;
        Rejected::new(config.busy_retry_after, RejectReason::ProbesBusy)
    }

    /// Logs the outcome of an admitted call recorded `at` (already applied to the in-process
    /// copy).
    pub(crate) fn record(&mut self, admission: Admission, verdict: Verdict, at: Instant) {
        if verdict == Verdict::Ignore && !admission.is_probe() {
            return;
        }
        self.push(Event::Outcome {
            admission,
            verdict,
            at,
        });
    }

    /// Registers a hook, fired for every transition of the shared copy this process adopts.
    pub(crate) fn add_hook(&mut self, hook: Weak<dyn TransitionHook + Send + Sync>) {
        self.hooks.retain(|hook| hook.strong_count() > 0);
        self.hooks.push(hook);
    }

    /// The hooks still held by a breaker handle.
    pub(crate) fn hooks(&self) -> Vec<WorkerHook> {
        self.hooks.iter().filter_map(Weak::upgrade).collect()
    }

    /// Makes `shared` (the shared copy, on the local timeline) the in-process copy, with the
    /// changes not yet in it (`unsent`, then the log) replayed on it, and `reserved` more probe
    /// slots for this process. The transition to announce, if the shared copy's status changed.
    pub(crate) fn adopt(
        &mut self,
        state: &mut BreakerState<SharedWindow>,
        shared: BreakerState<SharedWindow>,
        unsent: &[Event],
        reserved: u16,
        clock: &impl Clock,
    ) -> Option<Transition> {
        let mut local = shared;
        for event in unsent.iter().chain(&self.pending) {
            event.apply(&mut local, &self.config, &|at| at);
        }
        *state = local;
        self.unavailable = None;
        if shared.status() != CircuitState::HalfOpen || shared.epoch() != self.adopted_epoch {
            self.reserved = 0;
            self.reserved_at = None;
        }
        self.adopted_epoch = shared.epoch();
        self.reserve(reserved, shared.epoch(), clock.now());
        self.announce(shared.status())
    }

    /// `count` more probe slots reserved for this process in period `epoch`.
    pub(crate) fn reserve(&mut self, count: u16, epoch: u32, now: Instant) {
        if count > 0 {
            self.reserved = self.reserved.saturating_add(count);
            self.reserved_epoch = epoch;
            self.reserved_at.get_or_insert(now);
        }
    }

    /// Gives back the reservations no caller used within `ttl`: the admissions to release.
    pub(crate) fn expire_reservations(&mut self, now: Instant, ttl: Duration) -> Vec<Admission> {
        let expired = self
            .reserved_at
            .is_some_and(|at| now.saturating_duration_since(at) >= ttl);
        if !expired {
            return Vec::new();
        }
        let admission = Admission::in_period(self.reserved_epoch, true);
        let released = vec![admission; usize::from(self.reserved)];
        self.reserved = 0;
        self.reserved_at = None;
        released
    }

    /// Records `status` as observed: the transition to announce, if it changed.
    pub(crate) fn announce(&mut self, status: CircuitState) -> Option<Transition> {
        let from = std::mem::replace(&mut self.announced, status);
        (from != status).then_some(Transition { from, to: status })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use resilient_circuit::{BreakerConfig, Ratio};

    use super::*;

    thread_local! {
        /// Changes applied on this thread, by [`Event::apply`].
        pub(super) static APPLIED: Cell<usize> = const { Cell::new(0) };
    }

    fn never_trips() -> BreakerConfig {
        BreakerConfig::new().failure_limit(Ratio::new(1024, 1024).unwrap())
    }

    fn outcome(verdict: Verdict) -> Event {
        Event::Outcome {
            admission: Admission::in_period(0, false),
            verdict,
            at: Instant::ZERO,
        }
    }

    fn probe_outcome(epoch: u32) -> Event {
        Event::Outcome {
            admission: Admission::in_period(epoch, true),
            verdict: Verdict::Failure,
            at: Instant::ZERO,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_outcomes_and_counts_the_dropped_ones() {
        let mut replica = Replica::new(never_trips());
        // Probes' outcomes, of periods 0 to 99 999: each could change the row.
        for epoch in 0..100_000 {
            replica.push(probe_outcome(epoch));
        }
        let (events, dropped) = replica.take();
        assert_eq!(events.len(), MAX_LOGGED);
        assert_eq!(dropped, 100_000 - MAX_LOGGED as u64);
        // The newest kept, in order.
        let kept: Vec<u32> = events.iter().map(Event::epoch).collect();
        assert_eq!(kept, (100_000 - 1024..100_000).collect::<Vec<u32>>());
        assert_eq!(replica.take(), (Vec::new(), 0), "counted once");
    }

    #[test]
    fn outcomes_a_window_of_newer_ones_pushes_out_are_dropped_uncounted() {
        // A window of 100: with 1023 newer outcomes of its period after it, the oldest is out
        // of the row's window whatever happens.
        let config = BreakerConfig::new().failure_limit(Ratio::new(50, 100).unwrap());
        let mut replica = Replica::new(config);
        for i in 0..100_000 {
            let verdict = if i % 2 == 0 {
                Verdict::Failure
            } else {
                Verdict::Ignore
            };
            replica.push(outcome(verdict));
        }
        let (events, dropped) = replica.take();
        assert_eq!(events.len(), MAX_LOGGED);
        assert_eq!(events.last(), Some(&outcome(Verdict::Ignore)));
        assert_eq!(dropped, 0);
    }

    #[test]
    fn adoption_under_the_lock_is_bounded_whatever_the_backlog() {
        let config = never_trips();
        let clock = Instant::ZERO;
        let mut replica = Replica::new(config);
        // 100 000 outcomes logged while the replicator was away; the replicator's own queue
        // holds its bound too.
        for _ in 0..100_000 {
            replica.push(outcome(Verdict::Failure));
        }
        let unsent = vec![outcome(Verdict::Failure); MAX_LOGGED];
        let mut state = BreakerState::new();
        APPLIED.with(|applied| applied.set(0));
        replica.adopt(&mut state, BreakerState::new(), &unsent, 0, &clock);
        let applied = APPLIED.with(Cell::get);
        assert_eq!(
            applied,
            2 * MAX_LOGGED,
            "the work done under the key's lock"
        );
    }
}
