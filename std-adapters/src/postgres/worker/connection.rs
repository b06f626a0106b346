//! The worker's one connection: opened at start, every round trip under a deadline, lost to
//! any fault of the connection, and opened again with a backoff.

use std::{sync::atomic::Ordering, time::Duration};

use resilient_circuit::time::Instant;

use super::{
    Worker,
    statements::{Conn, Connected, Fault},
};
use crate::{
    StoreUnavailable,
    postgres::{
        OnOutage, PostgresStoreError,
        catalog::{Catalog, text_params},
        schema::{inspect_with, privileges_with},
    },
    store::report,
};

/// The connection, or the outage and when to try again.
pub(super) struct Connection {
    pub(super) conn: Option<Conn>,
    /// When (local clock) the outage began, while in one (and until a new connection has
    /// lasted).
    outage_since: Option<Instant>,
    /// When a new connection will have lasted long enough to end the outage: one that fails
    /// before (a server still shutting down accepts a connection, then ends it) is part of it.
    lasts_at: Option<Instant>,
    /// This outage's end was said (once, however often its connections fail early).
    said_back: bool,
    /// When to try to reconnect.
    next_attempt: Instant,
    /// The wait before the attempt after next.
    backoff: Duration,
}

impl Connection {
    /// Not connected yet; the first attempt may go at `now`.
    pub(super) fn new(now: Instant, first_backoff: Duration) -> Self {
        Connection {
            conn: None,
            outage_since: None,
            lasts_at: None,
            said_back: false,
            next_attempt: now,
            backoff: first_backoff,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// Down, and its time to try again has come.
    pub(super) fn attempt_due(&self, now: Instant) -> bool {
        self.conn.is_none() && now >= self.next_attempt
    }

    /// How long until a new connection has lasted long enough to end the outage, if one is to.
    pub(super) fn lasts_in(&self, now: Instant) -> Option<Duration> {
        self.lasts_at.map(|at| at.saturating_duration_since(now))
    }

    /// How long until the next attempt to reconnect (`None` while connected).
    pub(super) fn attempt_in(&self, now: Instant) -> Option<Duration> {
        self.conn
            .is_none()
            .then(|| self.next_attempt.saturating_duration_since(now))
    }
}

impl Worker {
    /// Connects (within the DSN's `connect_timeout`, else the round-trip timeout), checks the
    /// table and the role's privileges and sets the session up (within the round-trip
    /// timeout): every step under a deadline, so a server that accepts and never answers fails
    /// the start in time, and nothing of it is left behind.
    pub(super) fn start(&mut self) -> Result<(), PostgresStoreError> {
        let settings = &self.settings;
        let fail =
            |why: String| PostgresStoreError::Connect(format!("{}: {why}", settings.describe()));
        let connect_for = settings
            .config()
            .get_connect_timeout()
            .copied()
            .unwrap_or(self.options.round_trip_timeout);
        let connected = self.rt.block_on(async {
            tokio::time::timeout(connect_for, Connected::connect(settings, connect_for)).await
        });
        let connected = match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(why)) => return Err(fail(why)),
            Err(_) => return Err(fail(format!("connect timed out after {connect_for:?}"))),
        };
        let checks_for = self.options.round_trip_timeout;
        let mut catalog = Deadlined {
            rt: &self.rt,
            client: connected.client(),
            until: tokio::time::Instant::now() + checks_for,
            limit: checks_for,
        };
        let report = inspect_with(&mut catalog).map_err(fail)?;
        if !report.usable() {
            return Err(PostgresStoreError::SchemaNotReady(report.problems()));
        }
        // Checked now: a role that cannot write would otherwise fail every write, for ever.
        let lacking = privileges_with(&mut catalog, None).map_err(fail)?;
        if !lacking.missing.is_empty() {
            let role = catalog
                .rows("SELECT current_user::text", &[])
                .map_err(fail)?
                .first()
                .map(|row| row.get(0))
                .unwrap_or_default();
            return Err(PostgresStoreError::MissingPrivileges {
                role,
                missing: lacking.missing,
            });
        }
        let until = catalog.until;
        let writer = self.batches.writer.clone();
        let pooled = settings.is_behind_transaction_pooler();
        let opened = self.rt.block_on(async {
            tokio::time::timeout_at(until, async {
                let conn = connected.set_up(pooled).await?;
                conn.register(&writer, 0)
                    .await
                    .map_err(|e| crate::postgres::error::describe(&e))?;
                Ok::<_, String>(conn)
            })
            .await
        });
        match opened {
            Ok(Ok(conn)) => {
                self.connection.conn = Some(conn);
                self.mailbox.connected.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(why)) => Err(fail(why)),
            Err(_) => Err(fail(format!(
                "no answer within {checks_for:?} (setting the session up)"
            ))),
        }
    }

    /// Runs one statement on the connection, within the round-trip deadline. A connection
    /// fault, or a session that cannot write, closes the connection and starts (or continues)
    /// an outage.
    pub(super) fn round_trip<T>(
        &mut self,
        exchange: impl AsyncFnOnce(&Conn) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Fault> {
        let Some(conn) = &self.connection.conn else {
            return Err(Fault::Connection("not connected".to_owned()));
        };
        self.mailbox.round_trips.fetch_add(1, Ordering::Relaxed);
        let deadline = self.options.round_trip_timeout;
        let result = match self
            .rt
            .block_on(async { tokio::time::timeout(deadline, exchange(conn)).await })
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Fault::of(&e, conn.client())),
            Err(_) => Err(Fault::Connection(format!(
                "no answer within {deadline:?} (the round-trip timeout)"
            ))),
        };
        if let Err(Fault::Connection(why) | Fault::ReadOnly(why)) = &result {
            let why = why.clone();
            self.connection_lost(&why);
        }
        result
    }

    /// The store cannot reach the database now: when it tries again.
    pub(super) fn unavailable(&self) -> StoreUnavailable {
        StoreUnavailable {
            retry_after: self
                .connection
                .next_attempt
                .saturating_duration_since(self.local_now())
                .max(Duration::from_millis(1)),
        }
    }

    pub(super) fn connection_lost(&mut self, why: &str) {
        self.connection.conn = None;
        self.connection.lasts_at = None;
        let now = self.local_now();
        if self.connection.outage_since.is_none() {
            self.connection.outage_since = Some(now);
            let policy = match self.options.on_outage {
                OnOutage::FailOpen => "serving from this process's copy of the state (fail open)",
                OnOutage::FailClosed => "rejecting calls (fail closed)",
            };
            report::store_warning(&format!(
                "PostgreSQL store: {} is unreachable: {why}; {policy} until it is back",
                self.settings.describe()
            ));
        }
        let wait = self.connection.backoff;
        self.connection.next_attempt = now.saturating_add(wait);
        self.connection.backoff = wait.saturating_mul(2).min(self.options.reconnect.1);
        if self.options.on_outage == OnOutage::FailClosed {
            let retry_after = wait.max(Duration::from_millis(1));
            for state in self.keys.values() {
                state
                    .shared
                    .replicate(|_, replica| replica.fail_closed(retry_after));
            }
        }
        // Last: whoever sees the store disconnected sees its policy in force.
        self.mailbox.connected.store(false, Ordering::Relaxed);
    }

    /// The outage ends once a new connection has lasted: the next failure is a new outage, and
    /// the backoff starts over.
    pub(super) fn outage_over(&mut self) {
        let now = self.local_now();
        let lasted = self.connection.lasts_at.is_some_and(|at| now >= at);
        if lasted && self.connection.is_up() {
            self.connection.lasts_at = None;
            self.connection.outage_since = None;
            self.connection.said_back = false;
            self.connection.backoff = self.options.reconnect.0;
        }
    }

    pub(super) fn reconnect(&mut self) {
        let timeout = self.options.round_trip_timeout;
        let opened = self.rt.block_on(async {
            tokio::time::timeout(timeout, Conn::open(&self.settings, timeout)).await
        });
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(why)) => return self.connection_lost(&why),
            Err(_) => {
                return self.connection_lost(&format!("no answer within {timeout:?} (connecting)"));
            }
        };
        self.connection.conn = Some(conn);
        self.mailbox.connected.store(true, Ordering::Relaxed);
        // Registered again: the row may have been lost with a server that was failed over.
        self.register();
        if !self.connection.is_up() {
            return;
        }
        let now = self.local_now();
        let lasts_for = self.options.reconnect.0.max(Duration::from_millis(100));
        self.connection.lasts_at = Some(now.saturating_add(lasts_for));
        if let Some(since) = self.connection.outage_since
            && !self.connection.said_back
        {
            self.connection.said_back = true;
            report::store_info(&format!(
                "PostgreSQL store: reconnected to {} after {:?}",
                self.settings.describe(),
                now.saturating_duration_since(since)
            ));
        }
        // Every key again: the rows may have changed meanwhile, and with a new period the
        // changes kept for an old one are no-ops.
        for state in self.keys.values_mut() {
            state.row = None;
            state.stale = true;
        }
    }
}

/// The start's checks, each statement run on the worker's runtime before a deadline.
struct Deadlined<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a tokio_postgres::Client,
    until: tokio::time::Instant,
    /// The time the checks were given, for the message.
    limit: Duration,
}

impl Catalog for Deadlined<'_> {
    type Error = String;

    fn rows(&mut self, sql: &str, params: &[&str]) -> Result<Vec<postgres::Row>, String> {
        let typed = text_params(params);
        let rows = self.rt.block_on(async {
            tokio::time::timeout_at(self.until, self.client.query_typed(sql, &typed)).await
        });
        match rows {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(crate::postgres::error::describe(&e)),
            Err(_) => Err(format!(
                "no answer within {:?} (checking the table)",
                self.limit
            )),
        }
    }
}
