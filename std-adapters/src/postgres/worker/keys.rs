//! One key as the worker keeps it: the row as last known, the changes not yet in it, and what
//! those changes come to on the row.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use resilient_circuit::{
    BreakerConfig, CircuitState, state::BreakerState, store::Control, time::Instant,
};

use super::{server_time::ServerTime, statements::Version};
use crate::{
    BreakerKey,
    postgres::{
        MAX_PENDING_OUTCOMES,
        row::{StoredRow, timestamp_of},
    },
    store::{SharedWindow, replica::Event, report, shared_state::SharedState},
};

/// One key, as the worker keeps it.
pub(super) struct KeyState {
    pub(super) shared: Arc<SharedState>,
    pub(super) config: BreakerConfig,
    /// The row as last read or written, with its version.
    pub(super) row: Option<(StoredRow, Version)>,
    /// The row's version as last seen (kept across reconnections, unlike `row`).
    pub(super) seen: Option<Version>,
    /// When (server's clock) a change of the row by another writer was last seen: no change of
    /// this process is applied as of an earlier time (the row moved on since).
    pub(super) changed_at: Instant,
    /// Changes taken from the key's log and not yet in the row: at most
    /// [`MAX_PENDING_OUTCOMES`], plus those a batch in doubt holds.
    pub(super) unsent: Vec<Event>,
    /// How many of `unsent`'s first changes a batch in doubt holds: never dropped.
    pub(super) in_doubt: usize,
    /// The row was read this round (so a change that is a no-op on it is a no-op).
    pub(super) confirmed: bool,
    /// The row must be read before the next write (notified, conflicting, or never read).
    pub(super) stale: bool,
    /// A caller wants a probe slot reserved.
    pub(super) wants_probe: bool,
    /// When (local clock) the log was last taken.
    pub(super) last_taken: Instant,
    /// After a statement error, or a row locked elsewhere: not before this.
    pub(super) retry_at: Option<Instant>,
    /// The last wait for a row locked elsewhere, while it stays locked.
    pub(super) held_back: Option<Duration>,
    pub(super) warned_malformed: bool,
    warned_overflow: bool,
    /// When a failed write of this key was last reported (at most one a minute).
    pub(super) warned_statement: Option<Instant>,
    /// Since when (local clock) no breaker handle has held the key, as last seen.
    pub(super) unheld_since: Option<Instant>,
    /// Whether the key's replica was last told that changes wait here.
    told_sending: bool,
}

impl Drop for KeyState {
    fn drop(&mut self) {
        self.shared.replicator_refs.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One key's part of a batch, ready to write.
pub(super) struct Entry {
    pub(super) key: BreakerKey,
    pub(super) version: Version,
    pub(super) new_row: StoredRow,
    /// The state `new_row` holds, on the server's timeline.
    pub(super) next: BreakerState<SharedWindow>,
    /// How many of the key's unsent changes it holds.
    pub(super) events: usize,
    pub(super) reserved: u16,
    pub(super) unguarded: bool,
}

/// What a key's unsent changes come to.
pub(super) enum Prepared {
    /// Nothing to write now.
    Nothing,
    /// Nothing to write, and `reserved` probe slots (a no-op on the row) for this process.
    Reserved(u16),
    /// A write, ready (boxed: an entry holds a whole state).
    Write(Box<Entry>),
}

impl KeyState {
    /// A key just made: its row is to be read.
    pub(super) fn new(shared: Arc<SharedState>, now: Instant) -> Self {
        shared.replicator_refs.fetch_add(1, Ordering::AcqRel);
        KeyState {
            config: shared.config,
            shared,
            row: None,
            seen: None,
            changed_at: Instant::ZERO,
            unsent: Vec::new(),
            in_doubt: 0,
            confirmed: false,
            stale: true,
            wants_probe: false,
            last_taken: now,
            retry_at: None,
            held_back: None,
            warned_malformed: false,
            warned_overflow: false,
            warned_statement: None,
            unheld_since: None,
            told_sending: false,
        }
    }

    /// Tells the key's replica whether changes taken from its log wait here: a key with such
    /// changes is not forgotten, nor remade with another configuration. (Taking the log tells
    /// it "yes" under the same lock: see [`taken`](Self::taken).)
    pub(super) fn tell_sending(&mut self) {
        let sending = !self.unsent.is_empty();
        if sending != self.told_sending {
            self.told_sending = sending;
            self.shared
                .replicate(|_, replica| replica.set_sending(sending));
        }
    }

    /// Changes were taken from the log, and the replica told that they wait here.
    pub(super) fn taken(&mut self) {
        self.told_sending = true;
    }

    /// Adds `events` to the unsent changes kept for the row; how many older changes had to go
    /// that the row could have shown (see [`Event::is_superseded`]). Past
    /// [`MAX_PENDING_OUTCOMES`] (not counting those a batch in doubt holds, which may be in the
    /// row already) the oldest go.
    pub(super) fn push_unsent(&mut self, events: impl IntoIterator<Item = Event>) -> u64 {
        self.unsent.extend(events);
        let excess = (self.unsent.len() - self.in_doubt).saturating_sub(MAX_PENDING_OUTCOMES);
        if excess == 0 {
            return 0;
        }
        let window = self.config.closed_window();
        let newest = self.unsent.last().copied();
        let len = self.unsent.len();
        let lost = self.unsent[self.in_doubt..self.in_doubt + excess]
            .iter()
            .enumerate()
            .filter(|(i, event)| {
                let newer = len - (self.in_doubt + i + 1);
                !event.is_superseded(newest.as_ref(), newer, window)
            })
            .count();
        self.unsent.drain(self.in_doubt..self.in_doubt + excess);
        lost as u64
    }

    /// `dropped` changes of this key went before reaching the row: counted, and reported once.
    pub(super) fn count_dropped(&mut self, key: &BreakerKey, dropped: u64) {
        if dropped == 0 {
            return;
        }
        self.shared.counters.dropped_outcomes(dropped);
        if !self.warned_overflow {
            self.warned_overflow = true;
            report::store_warning(&format!(
                "PostgreSQL store: breaker {key}: more than {MAX_PENDING_OUTCOMES} outcomes wait for the database; the oldest are dropped (counted in dropped_outcomes)"
            ));
        }
    }

    /// The unsent changes (a wanted probe reservation, a manual change) applied to the row as
    /// last known, at the server's estimated time (`time` at `local_now`): the new row to write, or nothing to write (then the changes
    /// are done with, or wait for the row to be read). A probe slot taken in the row is leased
    /// for `lease_for`.
    pub(super) fn prepare(
        &mut self,
        key: &BreakerKey,
        (time, local_now): (&ServerTime, Instant),
        lease_for: Duration,
        wants_probe: bool,
        manual: Option<Control>,
        force: bool,
    ) -> Prepared {
        if self.unsent.is_empty() && !wants_probe && manual.is_none() {
            return Prepared::Nothing;
        }
        let Some((row, version)) = self.row.clone() else {
            self.stale = true;
            return Prepared::Nothing;
        };
        let config = self.config;
        let server_now = time.estimate(local_now);
        let (base, malformed) = row.decode_lossy(&config, server_now);
        let mut next = base;
        // Each change as of when it was made, on the server's clock: a cooldown starts when
        // its failure was recorded, however late it reaches the row.
        let changed_at = self.changed_at;
        for event in &self.unsent {
            event.apply(&mut next, &config, &|at| time.server_of(at).max(changed_at));
        }
        if let Some(manual) = manual {
            manual.apply(&mut next, &config, &server_now);
        }
        let mut reserved = 0;
        if wants_probe
            && next.status() != CircuitState::Closed
            && let Ok((admission, _)) = next.admit(&config, &server_now)
            && admission.is_probe()
        {
            reserved = 1;
        }
        let lease = if next.probes_in_flight() > base.probes_in_flight() {
            Some(timestamp_of(server_now.saturating_add(lease_for)))
        } else {
            row.probes_until
        };
        let new_row = StoredRow::encode(&next, lease);
        // Compared as this breaker reads the row, not byte for byte: a row another writer left
        // in another shape (a longer log, a lapsed probe count) is not a change.
        if malformed.is_none() && new_row == StoredRow::encode(&base, row.probes_until) {
            let successes_only = self.unsent.iter().all(Event::is_successes);
            if successes_only && !self.confirmed {
                // A no-op on the row as last known, which may be stale: the next read (a
                // notification's, the poll's, a flush's) confirms it or shows the change.
                if force || manual.is_some() {
                    self.stale = true;
                }
                return Prepared::Nothing;
            }
            // Late outcomes of an earlier period change no later row either; a slot given back
            // and reserved again in one batch leaves the row as it is, and the slot with this
            // process.
            self.unsent.clear();
            self.wants_probe = false;
            return if reserved > 0 {
                Prepared::Reserved(reserved)
            } else {
                Prepared::Nothing
            };
        }
        Prepared::Write(Box::new(Entry {
            key: key.clone(),
            version,
            events: self.unsent.len(),
            new_row,
            next,
            reserved,
            unguarded: manual.is_some(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use resilient_circuit::{classify::Verdict, state::Admission};

    use super::*;
    use crate::store::counters::KeyCounters;

    fn failure_in(epoch: u32) -> Event {
        Event::Outcome {
            admission: Admission::in_period(epoch, false),
            verdict: Verdict::Failure,
            at: Instant::ZERO,
        }
    }

    #[test]
    fn past_the_bound_the_oldest_go_first_and_a_batch_in_doubt_stays() {
        let key = BreakerKey::resource("a").unwrap();
        let config = BreakerConfig::new();
        let shared = Arc::new(SharedState::new(0, config, KeyCounters::new(&key)));
        let mut state = KeyState::new(shared, Instant::ZERO);
        // A batch in doubt holds the first 1024 (periods 0..1024 tell them apart).
        assert_eq!(state.push_unsent((0..1024).map(failure_in)), 0);
        state.in_doubt = 1024;
        // 3000 newer ones: the bound keeps the newest 1024 of them, after the batch in doubt.
        assert_eq!(state.push_unsent((1024..4024).map(failure_in)), 3000 - 1024);
        let kept: Vec<u32> = state.unsent.iter().map(Event::epoch).collect();
        let expected: Vec<u32> = (0..1024).chain(3000..4024).collect();
        assert_eq!(kept, expected);
        // Settled as not applied: its changes are the oldest now, and go first.
        state.in_doubt = 0;
        assert_eq!(state.push_unsent([failure_in(4024)]), 1025);
        let kept: Vec<u32> = state.unsent.iter().map(Event::epoch).collect();
        assert_eq!(kept, (3001..4025).collect::<Vec<u32>>());
    }
}
