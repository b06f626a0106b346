//! The row encoding shared with the Python package (its reference §5.4), both ways.
//!
//! A row is kept exactly as the database holds it ([`StoredRow`]), so a compare-and-swap can
//! name the old values; [`StoredRow::decode`] turns it into the core's state and
//! [`StoredRow::encode`] turns a state back into a row.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use resilient_circuit::{
    BreakerConfig, CircuitState,
    state::{BreakerState, Outcome, Window},
    time::Instant,
};

use crate::store::SharedWindow;

/// One row's breaker columns, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredRow {
    pub(crate) state: String,
    pub(crate) failure_count: i32,
    pub(crate) open_until: Option<SystemTime>,
    /// `execution_log` as PostgreSQL prints a `jsonb` (`[true, false]`), or `None` for NULL.
    pub(crate) execution_log: Option<String>,
    pub(crate) epoch: i64,
    pub(crate) probes: i32,
    pub(crate) probes_until: Option<SystemTime>,
}

/// Why a row could not be read as a breaker state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    State(String),
    Log(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::State(state) => write!(
                f,
                "state {state:?} is none of CLOSED, OPEN, HALF_OPEN (case-sensitive)"
            ),
            Malformed::Log(log) => {
                // Shown in part: the row is anyone's input.
                let shown: String = log.chars().take(80).collect();
                let more = if shown.len() < log.len() { "..." } else { "" };
                write!(
                    f,
                    "execution_log {shown}{more} is not a JSON array of booleans"
                )
            }
        }
    }
}

/// The server's timeline as the core sees it: nanoseconds since the Unix epoch.
pub(crate) fn instant_of(time: SystemTime) -> Instant {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Instant::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// `instant` as a timestamp, truncated to the microseconds PostgreSQL keeps.
pub(crate) fn timestamp_of(instant: Instant) -> SystemTime {
    // Every u64 of nanoseconds fits a SystemTime (year 2554); the fallback is never needed.
    UNIX_EPOCH
        .checked_add(Duration::from_micros(instant.as_nanos() / 1_000))
        .unwrap_or(UNIX_EPOCH)
}

impl StoredRow {
    /// The row of a key nobody has written yet (as the store's INSERT makes it).
    #[cfg(test)]
    pub(crate) fn fresh() -> StoredRow {
        StoredRow::encode(&BreakerState::new(), None)
    }

    /// The state this row holds, as a breaker with `config` reads it: the log truncated to the
    /// window the state uses, probes whose lease ended by `now` forgotten. A row that cannot be
    /// fully read is never read as more permissive than it is: with an unreadable log, its state
    /// with an empty window (a live OPEN still rejects until its deadline); with an unknown
    /// state, an OPEN until `open_until` while that is ahead of `now`, else a fresh CLOSED in a
    /// new period (the next write replaces it). What could not be read comes with it.
    pub(crate) fn decode_lossy(
        &self,
        config: &BreakerConfig,
        now: Instant,
    ) -> (BreakerState<SharedWindow>, Option<Malformed>) {
        match self.decode(config, now) {
            Ok(state) => (state, None),
            Err(malformed) => {
                let open_until = self.open_until.map(instant_of).filter(|until| now < *until);
                let epoch = self.epoch as u32;
                let (status, until, epoch) = match (&malformed, self.status()) {
                    (Malformed::Log(_), Some(status)) => (
                        status,
                        self.open_until.map_or(Instant::ZERO, instant_of),
                        epoch,
                    ),
                    _ => match open_until {
                        Some(until) => (CircuitState::Open, until, epoch),
                        None => (CircuitState::Closed, Instant::ZERO, epoch.wrapping_add(1)),
                    },
                };
                let failures = u32::try_from(self.failure_count).unwrap_or(0);
                let state =
                    BreakerState::restore(status, SharedWindow::EMPTY, failures, until, 0, epoch);
                (state, Some(malformed))
            }
        }
    }

    fn status(&self) -> Option<CircuitState> {
        match self.state.as_str() {
            "CLOSED" => Some(CircuitState::Closed),
            "OPEN" => Some(CircuitState::Open),
            "HALF_OPEN" => Some(CircuitState::HalfOpen),
            _ => None,
        }
    }

    /// The state this row holds (see [`decode_lossy`](Self::decode_lossy)), or why it cannot
    /// be read.
    pub(crate) fn decode(
        &self,
        config: &BreakerConfig,
        now: Instant,
    ) -> Result<BreakerState<SharedWindow>, Malformed> {
        let status = self
            .status()
            .ok_or_else(|| Malformed::State(self.state.clone()))?;
        let size = match status {
            CircuitState::Closed => config.closed_window(),
            CircuitState::HalfOpen => config.probe_window(),
            CircuitState::Open => config.closed_window().max(config.probe_window()),
        };
        let mut window = SharedWindow::EMPTY;
        if let Some(log) = &self.execution_log {
            for outcome in parse_log(log).ok_or_else(|| Malformed::Log(log.clone()))? {
                window.push(outcome, size);
            }
        }
        // An OPEN without a deadline (a writer's bug) ends at once rather than never.
        let open_until = self.open_until.map_or(Instant::ZERO, instant_of);
        let probes_live = self
            .probes_until
            .is_some_and(|until| now < instant_of(until));
        let probes = if probes_live {
            u16::try_from(self.probes.max(0)).unwrap_or(u16::MAX)
        } else {
            0
        };
        Ok(BreakerState::restore(
            status,
            window,
            u32::try_from(self.failure_count).unwrap_or(0),
            open_until,
            probes,
            self.epoch as u32,
        ))
    }

    /// The row holding `state`. `probes_until` is the probe lease, kept only while probes are
    /// in flight.
    pub(crate) fn encode(
        state: &BreakerState<SharedWindow>,
        probes_until: Option<SystemTime>,
    ) -> StoredRow {
        let probes = state.probes_in_flight();
        StoredRow {
            state: state.status().as_str().to_owned(),
            failure_count: i32::try_from(state.failure_count()).unwrap_or(i32::MAX),
            open_until: state.open_until().map(timestamp_of),
            execution_log: Some(format_log(state.window())),
            epoch: i64::from(state.epoch()),
            probes: i32::from(probes),
            probes_until: probes_until.filter(|_| probes > 0),
        }
    }
}

/// A window as PostgreSQL prints a `jsonb` array of booleans: `[true, false]`.
pub(crate) fn format_log(window: &impl Window) -> String {
    let mut log = String::with_capacity(2 + usize::from(window.len()) * 7);
    log.push('[');
    for (i, outcome) in window.iter().enumerate() {
        if i > 0 {
            log.push_str(", ");
        }
        log.push_str(match outcome {
            Outcome::Success => "true",
            Outcome::Failure => "false",
        });
    }
    log.push(']');
    log
}

/// The outcomes of a JSON array of booleans, oldest first (JSON `null`: none); `None` if it
/// is anything else.
pub(crate) fn parse_log(log: &str) -> Option<Vec<Outcome>> {
    if log.trim() == "null" {
        return Some(Vec::new());
    }
    let inner = log.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|item| match item.trim() {
            "true" => Some(Outcome::Success),
            "false" => Some(Outcome::Failure),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilient_circuit::{Ratio, classify::Verdict};

    #[test]
    fn logs_round_trip_in_the_jsonb_spelling() {
        let mut window = SharedWindow::EMPTY;
        window.push(Outcome::Success, 4);
        window.push(Outcome::Failure, 4);
        assert_eq!(format_log(&window), "[true, false]");
        assert_eq!(format_log(&SharedWindow::EMPTY), "[]");
        assert_eq!(
            parse_log("[true,false , true]"),
            Some(vec![Outcome::Success, Outcome::Failure, Outcome::Success])
        );
        assert_eq!(parse_log("[]"), Some(vec![]));
        assert_eq!(parse_log("null"), Some(vec![]));
        assert_eq!(parse_log("[1, 0]"), None);
        assert_eq!(parse_log("{}"), None);
    }

    #[test]
    fn a_state_survives_encoding_and_decoding() {
        let config = BreakerConfig::new()
            .failure_limit(Ratio::new(2, 3).unwrap())
            .cooldown(Duration::from_millis(1500));
        let now = Instant::from_secs(1_700_000_000);
        let mut state = BreakerState::<SharedWindow>::new();
        for verdict in [Verdict::Success, Verdict::Failure, Verdict::Failure] {
            let (admission, _) = state.admit(&config, &now).unwrap();
            state.record(&config, admission, verdict, &now);
        }
        assert_eq!(state.status(), CircuitState::Open);
        let row = StoredRow::encode(&state, None);
        assert_eq!(row.state, "OPEN");
        assert_eq!(row.failure_count, 2);
        assert_eq!(row.execution_log.as_deref(), Some("[true, false, false]"));
        assert_eq!(
            row.open_until,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_001_500))
        );
        assert_eq!(row.decode(&config, now), Ok(state));
    }

    #[test]
    fn a_reader_truncates_the_log_to_its_window_and_rejects_unknown_states() {
        let config = BreakerConfig::new().failure_limit(Ratio::new(1, 2).unwrap());
        let mut row = StoredRow::fresh();
        row.execution_log = Some("[false, false, true]".to_owned());
        let state = row.decode(&config, Instant::ZERO).unwrap();
        assert!(
            state
                .window()
                .iter()
                .eq([Outcome::Failure, Outcome::Success])
        );
        row.state = "closed".to_owned();
        assert_eq!(
            row.decode(&config, Instant::ZERO),
            Err(Malformed::State("closed".to_owned()))
        );
    }

    #[test]
    fn a_row_that_cannot_be_read_is_never_more_permissive_than_it_is() {
        let config = BreakerConfig::new();
        let now = Instant::from_secs(1_700_000_000);
        let ahead = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_030));
        let mut row = StoredRow::fresh();
        row.state = "OPEN".to_owned();
        row.open_until = ahead;
        row.execution_log = Some("{\"broken\": 1}".to_owned());
        let (state, malformed) = row.decode_lossy(&config, now);
        assert!(matches!(malformed, Some(Malformed::Log(_))));
        assert_eq!(state.status(), CircuitState::Open);
        assert_eq!(state.open_until(), Some(Instant::from_secs(1_700_000_030)));
        // An unknown state with a deadline ahead: OPEN until then; without, a fresh CLOSED.
        row.state = "TRIPPED".to_owned();
        assert_eq!(
            row.decode_lossy(&config, now).0.status(),
            CircuitState::Open
        );
        row.open_until = None;
        let (state, _) = row.decode_lossy(&config, now);
        assert_eq!((state.status(), state.epoch()), (CircuitState::Closed, 1));
    }

    #[test]
    fn an_unreadable_log_is_shown_in_part() {
        let log = format!("[{}]", "x".repeat(100_000));
        let shown = Malformed::Log(log).to_string();
        assert!(shown.len() < 160, "{shown}");
        assert!(
            shown.ends_with("... is not a JSON array of booleans"),
            "{shown}"
        );
    }
}
