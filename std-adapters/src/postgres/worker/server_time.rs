//! The server's clock as the worker knows it: each round trip returns the server's `now()`,
//! and the local monotonic clock carries it forward until the next.

use resilient_circuit::time::Instant;

/// The server's clock, carried forward by the local monotonic clock between round trips.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerTime {
    server: Instant,
    local: Instant,
}

impl ServerTime {
    pub(crate) fn new(server: Instant, local: Instant) -> Self {
        ServerTime { server, local }
    }

    /// The server's time now, as best known: the last reading plus the local time since.
    pub(crate) fn estimate(&self, local_now: Instant) -> Instant {
        self.server
            .saturating_add(local_now.saturating_duration_since(self.local))
    }

    /// `local`, a time on the local timeline (earlier or later than the last reading), on the
    /// server's.
    pub(crate) fn server_of(&self, local: Instant) -> Instant {
        if local >= self.local {
            self.estimate(local)
        } else {
            let before = self.local.saturating_duration_since(local).as_nanos();
            Instant::from_nanos(
                self.server
                    .as_nanos()
                    .saturating_sub(u64::try_from(before).unwrap_or(u64::MAX)),
            )
        }
    }

    /// `server`, a time on the server's timeline, on the local timeline.
    pub(crate) fn local_of(&self, server: Instant) -> Instant {
        if server >= self.server {
            self.local
                .saturating_add(server.saturating_duration_since(self.server))
        } else {
            Instant::from_nanos(
                self.local
                    .as_nanos()
                    .saturating_sub(self.server.saturating_duration_since(server).as_nanos() as u64),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_maps_both_ways_without_overflow() {
        let time = ServerTime::new(Instant::from_secs(1_000), Instant::from_secs(10));
        assert_eq!(
            time.estimate(Instant::from_secs(12)),
            Instant::from_secs(1_002)
        );
        assert_eq!(
            time.local_of(Instant::from_secs(1_030)),
            Instant::from_secs(40)
        );
        assert_eq!(
            time.local_of(Instant::from_secs(995)),
            Instant::from_secs(5)
        );
        assert_eq!(time.local_of(Instant::ZERO), Instant::ZERO);
        let far = Instant::from_nanos(u64::MAX - 990_000_000_000);
        assert_eq!(time.local_of(Instant::MAX), far);
        let late = ServerTime::new(Instant::ZERO, Instant::MAX);
        assert_eq!(late.local_of(Instant::MAX), Instant::MAX);
    }
}
