//! How many statements the worker may send: a token bucket, so a store's load on the server is
//! bounded whatever its call rate and number of keys.

use std::time::Duration;

use resilient_circuit::time::Instant;

/// Statements a second a store sends, at most, sustained (a round of work is at most one read
/// and one write), and how many may go at once after a quiet time (so a sporadic trip goes out
/// at once). Loads, flushes and manual control, which a caller waits for, are not held back.
const STATEMENTS_PER_SECOND: u32 = 80;
const STATEMENT_BURST: f64 = 8.0;

/// The statements the worker may send now.
pub(super) struct StatementBudget {
    /// Statements that may go now, refilled at [`STATEMENTS_PER_SECOND`] up to the burst.
    tokens: f64,
    refilled_at: Instant,
    /// Work was held back by an empty bucket: a round is owed when it refills.
    round_due: bool,
}

impl StatementBudget {
    /// A full bucket at `now`.
    pub(super) fn new(now: Instant) -> Self {
        StatementBudget {
            tokens: STATEMENT_BURST,
            refilled_at: now,
            round_due: false,
        }
    }

    /// Takes a statement from the bucket (or goes past it, for an answer a caller waits for);
    /// when it is empty, the work waits for the round owed.
    pub(super) fn spend(&mut self, now: Instant, waited_for: bool) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(STATEMENTS_PER_SECOND)).min(STATEMENT_BURST);
        self.refilled_at = now;
        if self.tokens >= 1.0 || waited_for {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            self.round_due = true;
            false
        }
    }

    /// A round starts: what was owed is being done.
    pub(super) fn round_started(&mut self) {
        self.round_due = false;
    }

    /// How long until the round owed may run: until the bucket holds a statement again. `None`
    /// when none is owed.
    pub(super) fn owed_in(&self) -> Option<Duration> {
        self.round_due.then(|| {
            let missing = (1.0 - self.tokens).max(0.0);
            Duration::from_secs_f64(missing / f64::from(STATEMENTS_PER_SECOND))
        })
    }
}
