//! One key's counters and gauges, registered once when the key is made.

use metrics::{Counter, Gauge, Label, Level, Metadata};
use resilient_circuit::{CircuitState, RejectReason, classify::Verdict};

use super::{
    CALLS, DROPPED_OUTCOMES, STATE, TRANSITIONS, WRITE_ERRORS,
    batch::{self, BatchedCounter},
};
use crate::BreakerKey;

use CircuitState::{Closed, HalfOpen, Open};

/// The states, in the order of the per-state handles.
const STATES: [CircuitState; 3] = [Closed, Open, HalfOpen];

/// Every `(from, to)` of two different states, in the order of the per-transition handles.
const TRANSITION_PAIRS: [(CircuitState, CircuitState); 6] = [
    (Closed, Open),
    (Closed, HalfOpen),
    (Open, Closed),
    (Open, HalfOpen),
    (HalfOpen, Closed),
    (HalfOpen, Open),
];

/// The handles of one key's metrics, made with the recorder installed when the key is made.
pub(crate) struct KeyCounters {
    successes: BatchedCounter,
    failures: Counter,
    ignored: Counter,
    /// By [`RejectReason`]: open, probes busy, store unavailable.
    rejected: [Counter; 3],
    /// By `(from, to)`, in the order of [`TRANSITION_PAIRS`].
    transitions: [Counter; 6],
    /// By state, in the order of [`STATES`]: 1 for the current one, 0 for the others.
    state: [Gauge; 3],
    /// Writes of the key's row that failed (a shared store's).
    write_errors: Counter,
    /// Outcomes dropped before reaching the key's row (a shared store's, past its bound).
    dropped_outcomes: Counter,
    /// The key's labels.
    labels: Vec<Label>,
}

impl KeyCounters {
    /// Registers `key`'s metrics with the recorder installed now, and sets its state gauge to
    /// CLOSED (a new key's state).
    pub(crate) fn new(key: &BreakerKey) -> Self {
        let labels = |extra: &[(&'static str, &'static str)]| {
            let mut labels = key_labels(key);
            labels.extend(extra.iter().map(|&(name, value)| Label::new(name, value)));
            labels
        };
        let calls =
            |extra: &[(&'static str, &'static str)]| registered_counter(CALLS, labels(extra));
        let reason = |reason: &'static str| calls(&[("outcome", "rejected"), ("reason", reason)]);
        let counters = KeyCounters {
            successes: BatchedCounter::new(calls(&[("outcome", "success")])),
            failures: calls(&[("outcome", "failure")]),
            ignored: calls(&[("outcome", "ignored")]),
            rejected: [
                reason("open"),
                reason("probes_busy"),
                reason("store_unavailable"),
            ],
            transitions: TRANSITION_PAIRS.map(|(from, to)| {
                registered_counter(
                    TRANSITIONS,
                    labels(&[("from", from.as_str()), ("to", to.as_str())]),
                )
            }),
            state: STATES.map(|state| gauge(STATE, labels(&[("state", state.as_str())]))),
            write_errors: registered_counter(WRITE_ERRORS, labels(&[])),
            dropped_outcomes: registered_counter(DROPPED_OUTCOMES, labels(&[])),
            labels: key_labels(key),
        };
        counters.state(Closed);
        counters
    }

    /// A CLOSED call's success (not a probe's), counted in this thread's batch.
    #[inline]
    pub(crate) fn closed_success(&self) {
        batch::count(&self.successes);
    }

    /// Any other outcome recorded: a failure, an ignored outcome, a probe's success.
    pub(crate) fn outcome(&self, verdict: Verdict) {
        match verdict {
            Verdict::Success => self.successes.counter(),
            Verdict::Failure => &self.failures,
            Verdict::Ignore => &self.ignored,
        }
        .increment(1);
    }

    /// A call refused.
    pub(crate) fn rejected(&self, reason: RejectReason) {
        let index = match reason {
            RejectReason::Open => 0,
            RejectReason::ProbesBusy => 1,
            RejectReason::StoreUnavailable => 2,
            // A reason newer than this code: counted, under a label of its own.
            _ => {
                let mut labels = self.labels.clone();
                labels.extend([
                    Label::new("outcome", "rejected"),
                    Label::new("reason", "other"),
                ]);
                return registered_counter(CALLS, labels).increment(1);
            }
        };
        self.rejected[index].increment(1);
    }

    /// A transition made or adopted: counted, and the state gauge moved to `to`.
    pub(crate) fn transition(&self, from: CircuitState, to: CircuitState) {
        // A state to itself is never a transition, so it has no counter.
        if let Some(index) = TRANSITION_PAIRS.iter().position(|&pair| pair == (from, to)) {
            self.transitions[index].increment(1);
        }
        self.state(to);
    }

    /// A write of the key's row failed (a constraint, an operator's trigger, a privilege).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn failed_write(&self) {
        self.write_errors.increment(1);
    }

    /// `count` outcomes went before reaching the key's row (past the bound on what waits).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn dropped_outcomes(&self, count: u64) {
        self.dropped_outcomes.increment(count);
    }

    /// The state gauge set to `state` (a replicated key's state as loaded).
    pub(crate) fn state(&self, state: CircuitState) {
        for (gauge, of) in self.state.iter().zip(STATES) {
            gauge.set(if of == state { 1.0 } else { 0.0 });
        }
    }
}

/// The labels every metric of `key` has.
pub(super) fn key_labels(key: &BreakerKey) -> Vec<Label> {
    vec![
        Label::new("namespace", key.namespace().to_owned()),
        Label::new("resource_key", key.resource_key().to_owned()),
    ]
}

/// A counter registered with the recorder installed now.
pub(super) fn registered_counter(name: &'static str, labels: Vec<Label>) -> Counter {
    metrics::with_recorder(|recorder| {
        recorder.register_counter(&metrics::Key::from_parts(name, labels), &METADATA)
    })
}

fn gauge(name: &'static str, labels: Vec<Label>) -> Gauge {
    metrics::with_recorder(|recorder| {
        recorder.register_gauge(&metrics::Key::from_parts(name, labels), &METADATA)
    })
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
