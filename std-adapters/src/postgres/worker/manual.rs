//! Manual control (`force_open`, `force_closed`, `reset`) on the row: what is pending first,
//! then the change, retried after a conflict, settled at once when its reply is lost.

use resilient_circuit::store::Control;

use super::{Worker, mailbox::Ticket};
use crate::{BreakerKey, StoreUnavailable};

/// Attempts of a manual change (each failed attempt means another writer's change went in
/// first).
const MAX_ATTEMPTS: u32 = 16;

impl Worker {
    /// Manual control: what is pending first, then the change, on the row (unguarded), read
    /// again and retried after a conflict. No statement starts once `ticket`'s caller has
    /// stopped waiting. A write whose reply was lost is settled at once, on a new connection:
    /// the answer says whether it went in; unsettled, it is a failure that may have been
    /// applied (the row, and the hooks when it is read, tell).
    pub(super) fn manual(
        &mut self,
        key: &BreakerKey,
        manual: Control,
        ticket: &Ticket,
    ) -> Result<(), StoreUnavailable> {
        // One reconnection at most per change (its caller waits for it: see `Ticket`).
        let mut settled_once = false;
        for _ in 0..MAX_ATTEMPTS {
            // Nothing is written while a batch is in doubt (its settling comes first).
            let blocked = !self.connection.is_up() || self.batches.in_doubt.is_some();
            if blocked || !self.keys.contains_key(key) || ticket.expired() {
                return Err(self.unavailable());
            }
            // Within the store's statement budget, like every request.
            self.spend(true);
            if self
                .keys
                .get(key)
                .is_some_and(|state| state.stale || state.row.is_none())
            {
                self.read_keys(std::slice::from_ref(key), std::iter::empty(), true);
                continue;
            }
            self.take(key, true);
            let wants_probe = self.keys.get(key).is_some_and(|state| state.wants_probe);
            match self.prepare(key, wants_probe, Some(manual), true) {
                Some(entry) => match self.write_batch(vec![entry]) {
                    Ok(true) => return Ok(()),
                    // The row is locked elsewhere: not waited for.
                    Ok(false) if self.keys.get(key).is_some_and(|s| s.held_back.is_some()) => {
                        return Err(StoreUnavailable {
                            retry_after: self.options.sync_interval,
                        });
                    }
                    Ok(false) => {}
                    Err(unavailable) if self.batches.in_doubt.is_none() => {
                        return Err(unavailable);
                    }
                    // The reply was lost: whether the change went in is learnt now, on a new
                    // connection (once; the caller waits for it).
                    Err(unavailable) => {
                        if std::mem::replace(&mut settled_once, true) {
                            return Err(unavailable);
                        }
                        self.reconnect();
                        if !self.connection.is_up() {
                            return Err(self.unavailable());
                        }
                        match self.resolve_doubt() {
                            Some(applied) if applied.contains(key) => return Ok(()),
                            // Not applied, and now never will be: tried again.
                            Some(_) => {}
                            None => return Err(self.unavailable()),
                        }
                    }
                },
                None => {
                    let state = self.keys.get(key);
                    if state.is_some_and(|state| state.unsent.is_empty() && !state.stale) {
                        return Ok(()); // already so on the current row
                    }
                }
            }
        }
        Err(self.unavailable())
    }
}
