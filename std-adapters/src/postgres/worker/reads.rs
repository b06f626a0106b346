//! Reading rows: the keys that need it read in one statement (rows made for keys without
//! one), and each row's state handed to its in-process copy, whose hooks fire for what changed.

use std::sync::Arc;

use resilient_circuit::state::BreakerState;

use super::{
    Worker,
    statements::{Conn, Found, Version},
};
use crate::{
    BreakerKey,
    store::{
        SharedWindow,
        replica::on_local_timeline,
        report::{self, announce},
    },
};

impl Worker {
    /// Reads the rows of `keys` (making rows for keys without one) and adopts those that
    /// changed; `loading` are keys read for the first time (no hook for what they start as).
    /// The first read is paid for by the caller; making rows, and reading them again, spend
    /// from the statement budget here (from the reserve too when a caller waits for them,
    /// `waited_for`); a key left without its row when the budget is empty is read again next
    /// round.
    pub(super) fn read_keys<'a>(
        &mut self,
        keys: &[BreakerKey],
        loading: impl Iterator<Item = &'a BreakerKey> + Clone,
        waited_for: bool,
    ) {
        for attempt in 0..2 {
            if attempt == 1 && !self.spend(waited_for) {
                return;
            }
            let known: Vec<(BreakerKey, Option<Version>)> = keys
                .iter()
                .map(|key| {
                    let version = self.keys.get(key).and_then(|k| k.row.as_ref()).map(|r| r.1);
                    (key.clone(), version)
                })
                .collect();
            let read = self.round_trip(async |conn: &Conn| {
                let refs: Vec<(&BreakerKey, Option<Version>)> =
                    known.iter().map(|(key, version)| (key, *version)).collect();
                conn.read(&refs).await
            });
            let Ok((server_now, found)) = read else {
                return;
            };
            self.synced(server_now);
            let mut missing = Vec::new();
            for ((key, _), found) in known.iter().zip(found) {
                let Some(state) = self.keys.get_mut(key) else {
                    continue;
                };
                match found {
                    Found::Missing => missing.push(key.clone()),
                    Found::Unchanged => {
                        state.confirmed = true;
                        state.stale = false;
                    }
                    Found::Row(row, version) => {
                        state.confirmed = true;
                        state.stale = false;
                        if state.seen.is_some_and(|seen| seen != version) {
                            state.changed_at = server_now;
                        }
                        state.seen = Some(version);
                        state.row = Some((row, version));
                        let load = loading.clone().any(|k| k == key);
                        self.adopt_row(key, 0, load);
                    }
                }
            }
            if missing.is_empty() || attempt == 1 || !self.spend(waited_for) {
                return;
            }
            let inserted = self.round_trip(async |conn: &Conn| {
                let refs: Vec<&BreakerKey> = missing.iter().collect();
                conn.insert(&refs).await
            });
            if inserted.is_err() {
                return;
            }
        }
    }

    /// Hands `key`'s row, as last read, to its in-process copy (see [`adopt`](Self::adopt)).
    pub(super) fn adopt_row(&mut self, key: &BreakerKey, reserved: u16, load: bool) {
        let server_now = self.server_now();
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let Some((row, _)) = &state.row else {
            return;
        };
        let (shared, malformed) = row.decode_lossy(&state.config, server_now);
        if let Some(malformed) = malformed
            && !state.warned_malformed
        {
            state.warned_malformed = true;
            report::store_warning(&format!(
                "PostgreSQL store: breaker {key}: the row cannot be fully read ({malformed}); it is read as no more permissive than it is, and the next write replaces it"
            ));
        }
        self.adopt(key, shared, reserved, load);
    }

    /// Hands `shared`, `key`'s state in its row (on the server's timeline), to its in-process
    /// copy, with `reserved` probe slots more for this process, and fires the hooks if its
    /// status changed (not when `load`ing it).
    pub(super) fn adopt(
        &mut self,
        key: &BreakerKey,
        shared: BreakerState<SharedWindow>,
        reserved: u16,
        load: bool,
    ) {
        let time = self.time;
        let clock = Arc::clone(&self.local_clock);
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let local = on_local_timeline(shared, |until| time.local_of(until));
        let unsent = state.unsent.clone();
        if load {
            state.shared.counters.state(local.status());
        }
        let announced = state.shared.replicate(|copy, replica| {
            if load {
                replica.loaded(local.status());
            }
            let transition = replica.adopt(copy, local, &unsent, reserved, &clock.now());
            (transition, replica.hooks())
        });
        if let Some((transition, hooks)) = announced {
            announce(key, &state.shared.counters, transition, &hooks);
        }
    }
}
