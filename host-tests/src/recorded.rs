//! A recorder of a test's own (feature `metrics`), read back by metric and labels.

use std::{cell::RefCell, collections::HashMap};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use resilient_circuit_std::{
    BreakerKey, CircuitState,
    metrics::{CALLS, STATE, TRANSITIONS},
};

/// A metric's name and its labels, sorted.
type MetricId = (String, Vec<(String, String)>);

/// A recorder of the test's own, and what it has counted so far.
pub struct Recorded {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    /// Counters as totals (a snapshot hands over what was counted since the last one).
    counters: RefCell<HashMap<MetricId, u64>>,
    /// Gauges as of the last snapshot: a snapshot drains them, so after a change read the
    /// gauge before any counter.
    gauges: RefCell<HashMap<MetricId, f64>>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorded {
    /// A recorder with nothing counted.
    pub fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Recorded {
            recorder,
            snapshotter,
            counters: RefCell::default(),
            gauges: RefCell::default(),
        }
    }

    /// The recorder itself, for a recorder of a test's own that hands its counts on to it.
    pub fn recorder(&self) -> &DebuggingRecorder {
        &self.recorder
    }

    /// Runs `f` with this recorder installed on this thread.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        ::metrics::with_local_recorder(&self.recorder, f)
    }

    fn snapshot(&self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            labels.sort();
            let id = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *self.counters.borrow_mut().entry(id).or_default() += n,
                DebugValue::Gauge(g) => {
                    self.gauges.borrow_mut().insert(id, g.into_inner());
                }
                DebugValue::Histogram(_) => panic!("no histograms are recorded"),
            }
        }
    }

    fn id(name: &str, key: &BreakerKey, extra: &[(&str, &str)]) -> MetricId {
        let mut labels = vec![
            ("namespace".to_owned(), key.namespace().to_owned()),
            ("resource_key".to_owned(), key.resource_key().to_owned()),
        ];
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels.sort();
        (name.to_owned(), labels)
    }

    /// A counter's total; `None` if it was never registered.
    pub fn counter(&self, name: &str, key: &BreakerKey, extra: &[(&str, &str)]) -> Option<u64> {
        self.snapshot();
        self.counters
            .borrow()
            .get(&Self::id(name, key, extra))
            .copied()
    }

    /// The calls of `key` that ended with `outcome`.
    pub fn calls(&self, key: &BreakerKey, outcome: &str) -> u64 {
        self.counter(CALLS, key, &[("outcome", outcome)])
            .expect("registered with the key")
    }

    /// The calls of `key` refused for `reason`.
    pub fn rejected(&self, key: &BreakerKey, reason: &str) -> u64 {
        self.counter(CALLS, key, &[("outcome", "rejected"), ("reason", reason)])
            .expect("registered with the key")
    }

    /// The transitions of `key` from `from` to `to`.
    pub fn transitions(&self, key: &BreakerKey, from: CircuitState, to: CircuitState) -> u64 {
        self.counter(
            TRANSITIONS,
            key,
            &[("from", from.as_str()), ("to", to.as_str())],
        )
        .expect("registered with the key")
    }

    /// The state gauge's three values, CLOSED, OPEN, HALF_OPEN, as last set.
    pub fn state(&self, key: &BreakerKey) -> [f64; 3] {
        self.snapshot();
        let gauges = self.gauges.borrow();
        [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ]
        .map(|state| gauges[&Self::id(STATE, key, &[("state", state.as_str())])])
    }
}
