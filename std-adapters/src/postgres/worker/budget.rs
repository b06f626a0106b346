//! How many statements the worker may send: a token bucket, so a store's load on the server is
//! bounded whatever its call rate and number of keys.

use std::time::Duration;

use resilient_circuit::time::Instant;

/// Statements a second a store sends, at most, sustained (a round of work is at most one read
/// and one write), and how many may go at once after a quiet time (so a sporadic trip goes out
/// at once). Loads, flushes and manual control, which a caller waits for, go first: they may
/// also spend a reserve of as many again, paid back before anything else goes. So in any
/// time `t` a store sends at most `80 t + 16` of these statements, whatever its callers ask
/// (reconnecting, and what a new connection sends first, follows the reconnect backoff).
const STATEMENTS_PER_SECOND: u32 = 80;
const STATEMENT_BURST: f64 = 8.0;
/// What a caller's request may spend beyond an empty bucket.
const RESERVE: f64 = STATEMENT_BURST;

/// The statements the worker may send now.
pub(super) struct StatementBudget {
    /// Statements that may go now, refilled at [`STATEMENTS_PER_SECOND`] up to the burst; below
    /// zero while a caller's request spent the reserve.
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

    /// Takes a statement from the bucket (or from the reserve, for an answer a caller waits
    /// for); when it is empty, the work waits for the round owed.
    pub(super) fn spend(&mut self, now: Instant, waited_for: bool) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(STATEMENTS_PER_SECOND)).min(STATEMENT_BURST);
        self.refilled_at = now;
        let floor = if waited_for { 1.0 - RESERVE } else { 1.0 };
        if self.tokens >= floor {
            self.tokens -= 1.0;
            true
        } else {
            self.round_due = true;
            false
        }
    }

    /// How long until a caller's request may spend from the reserve again.
    pub(super) fn reserve_refilled_in(&self) -> Duration {
        let missing = (1.0 - RESERVE - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / f64::from(STATEMENTS_PER_SECOND))
            .max(Duration::from_millis(1))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements granted from `start` to `start + span`, asked for every millisecond, every
    /// one of them by a caller that waits.
    fn granted_to_waiting_callers(span_ms: u64) -> u64 {
        let mut budget = StatementBudget::new(Instant::ZERO);
        let mut granted = 0;
        for ms in 0..=span_ms {
            let now = Instant::from_nanos(ms * 1_000_000);
            // A hundred asks a millisecond: callers flushing in a loop.
            for _ in 0..100 {
                granted += u64::from(budget.spend(now, true));
            }
        }
        granted
    }

    #[test]
    fn callers_asking_in_a_loop_get_the_rate_plus_the_burst_and_the_reserve() {
        assert_eq!(granted_to_waiting_callers(0), 16);
        assert_eq!(granted_to_waiting_callers(1000), 80 + 16);
        assert_eq!(granted_to_waiting_callers(10_000), 800 + 16);
    }

    #[test]
    fn background_work_leaves_the_reserve_to_callers() {
        let mut budget = StatementBudget::new(Instant::ZERO);
        let background = (0..100)
            .filter(|_| budget.spend(Instant::ZERO, false))
            .count();
        assert_eq!(background, 8);
        let callers = (0..100)
            .filter(|_| budget.spend(Instant::ZERO, true))
            .count();
        assert_eq!(callers, 8);
        assert_eq!(budget.owed_in(), Some(Duration::from_secs_f64(9.0 / 80.0)));
    }
}
