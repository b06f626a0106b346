//! What a key counts: the `metrics` feature's counters, or nothing.

#[cfg(feature = "metrics")]
pub(crate) use crate::metrics::KeyCounters;

#[cfg(not(feature = "metrics"))]
pub(crate) use nothing::KeyCounters;

#[cfg(not(feature = "metrics"))]
mod nothing {
    use resilient_circuit::{CircuitState, RejectReason, classify::Verdict};

    use crate::BreakerKey;

    /// Without the `metrics` feature a key counts nothing, at no cost.
    pub(crate) struct KeyCounters;

    impl KeyCounters {
        pub(crate) fn new(_: &BreakerKey) -> Self {
            KeyCounters
        }

        #[inline(always)]
        pub(crate) fn closed_success(&self) {}

        #[inline(always)]
        pub(crate) fn outcome(&self, _: Verdict) {}

        #[inline(always)]
        pub(crate) fn rejected(&self, _: RejectReason) {}

        #[inline(always)]
        pub(crate) fn transition(&self, _: CircuitState, _: CircuitState) {}

        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        #[inline(always)]
        pub(crate) fn state(&self, _: CircuitState) {}

        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        #[inline(always)]
        pub(crate) fn failed_write(&self) {}

        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        #[inline(always)]
        pub(crate) fn dropped_outcomes(&self, _: u64) {}
    }
}
