//! How a replicated store works, as its builder sets it and its thread reads it.

use std::time::Duration;

use crate::store::OnOutage;

/// How a replicated store works: see [`ReplicatedBuilder`](super::ReplicatedBuilder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CopiesOptions {
    pub(crate) sync_interval: Duration,
    pub(crate) max_staleness: Duration,
    pub(crate) probe_lease: Duration,
    pub(crate) on_outage: OnOutage,
}
