//! [`MemoryStore::replicated`] and its builder.

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use resilient_circuit::time::Clock;

use super::{
    driver::{CopiesFleet, Driver},
    options::CopiesOptions,
    seam::SharedCopies,
};
use crate::{
    key::DEFAULT_NAMESPACE,
    store::{DEFAULT_MAX_ENTRIES, MemoryStore, OnOutage},
    time::CoarseClock,
};

/// The shortest interval a replicated store waits between turns.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Builds a [`MemoryStore`] whose keys are shared through a [`SharedCopies`]:
/// [`MemoryStore::replicated`].
#[must_use = "a builder does nothing until `build`"]
pub struct ReplicatedBuilder<C = CoarseClock> {
    copies: Box<dyn SharedCopies>,
    options: CopiesOptions,
    clock: C,
    max_entries: NonZeroUsize,
}

impl MemoryStore {
    /// A store whose keys every process replicating through `copies` shares (see
    /// [`store::copies`](crate::store::copies)). Defaults: changes sent within 100 ms (at once
    /// after a failure), every copy read at least every second, probe slots leased for 60 s,
    /// fail open, [`CoarseClock`], [`DEFAULT_MAX_ENTRIES`] keys.
    pub fn replicated(copies: impl SharedCopies) -> ReplicatedBuilder {
        ReplicatedBuilder {
            copies: Box::new(copies),
            options: CopiesOptions {
                sync_interval: Duration::from_millis(100),
                max_staleness: Duration::from_secs(1),
                probe_lease: Duration::from_secs(60),
                on_outage: OnOutage::FailOpen,
            },
            clock: CoarseClock,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> ReplicatedBuilder<C> {
    /// How long a change may wait before it is sent (a failure, a probe's outcome and a wanted
    /// probe go at once); at least a millisecond.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.options.sync_interval = interval.max(MIN_INTERVAL);
        self
    }

    /// How old this process's view of a key may get: every copy is read at least this often; at
    /// least a millisecond.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.options.max_staleness = staleness.max(MIN_INTERVAL);
        self
    }

    /// How long a probe slot taken by a process is held for it if it never reports.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.options.probe_lease = lease;
        self
    }

    /// What breakers do while the copies cannot be reached.
    pub fn on_outage(mut self, on_outage: OnOutage) -> Self {
        self.options.on_outage = on_outage;
        self
    }

    /// At most `max_entries` keys in the process.
    pub fn max_entries(mut self, max_entries: NonZeroUsize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The clock the breakers read.
    pub fn clock<C2: Clock + Clone + Send + Sync + 'static>(
        self,
        clock: C2,
    ) -> ReplicatedBuilder<C2> {
        ReplicatedBuilder {
            copies: self.copies,
            options: self.options,
            clock,
            max_entries: self.max_entries,
        }
    }

    /// The store, its replication thread started (`rc-replicator`; it runs while the store or
    /// any of its breakers lives).
    pub fn build(self) -> MemoryStore<C> {
        let store =
            MemoryStore::with_parts(self.clock.clone(), self.max_entries, DEFAULT_NAMESPACE);
        let clock = self.clock;
        let driver = Arc::new(Driver::new(
            self.copies,
            self.options,
            Box::new(move || clock.now()),
        ));
        Driver::spawn(&driver);
        let replicates = store.replicate_through(Arc::new(CopiesFleet { driver }));
        debug_assert!(replicates, "a new store replicates through nothing yet");
        store
    }
}
