//! The store's one connection: its prepared statements, its reconnection with backoff, and the
//! server's clock as last seen through it.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use postgres::{Client, Statement};
use resilient_circuit::{Clock, Instant};

use super::{
    DbSettings,
    row::{StoredRow, instant_of},
};
use crate::BreakerKey;

/// Locks `mutex`; a panic elsewhere never leaves these values half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A database error with its message (the driver's own text says only "db error").
pub(crate) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

const COLUMNS: &str = "r.state, r.failure_count, r.open_until, r.execution_log::text, r.rc_epoch, r.rc_probes, r.rc_probes_until";

/// The row of a key, with the server's `now()`; always one result row (the breaker columns are
/// NULL when the key has no row).
fn read_sql() -> String {
    format!(
        "SELECT now(), {COLUMNS} FROM (SELECT 1) AS one
         LEFT JOIN public.rc_circuit_breakers r ON r.resource_key = $1 AND r.namespace = $2"
    )
}

/// The compare-and-swap: writes the new values ($9..$15) only if the row still holds the old
/// ones ($3..$8, $16), and, when guarded ($17 false), only if it is not a live OPEN by the
/// server's clock. Returns whether it wrote, the server's `now()`, and the row as it was before
/// the statement (the current row when nothing was written).
fn swap_sql() -> String {
    format!(
        "WITH written AS (
           UPDATE public.rc_circuit_breakers SET state = $9, failure_count = $10, open_until = $11,
             execution_log = $12::text::jsonb, rc_epoch = $13, rc_probes = $14, rc_probes_until = $15,
             updated_at = now()
           WHERE resource_key = $1 AND namespace = $2 AND state = $3 AND failure_count = $4
             AND open_until IS NOT DISTINCT FROM $5
             AND execution_log IS NOT DISTINCT FROM $6::text::jsonb
             AND rc_epoch = $7 AND rc_probes = $8 AND rc_probes_until IS NOT DISTINCT FROM $16
             AND ($17::bool OR NOT (state = 'OPEN' AND COALESCE(open_until > now(), false)))
           RETURNING 1)
         SELECT (SELECT count(*) FROM written) = 1, now(), {COLUMNS} FROM (SELECT 1) AS one
         LEFT JOIN public.rc_circuit_breakers r ON r.resource_key = $1 AND r.namespace = $2"
    )
}

const INSERT_SQL: &str = "INSERT INTO public.rc_circuit_breakers
      (resource_key, namespace, state, failure_count, open_until, execution_log, rc_epoch, rc_probes, rc_probes_until)
    VALUES ($1, $2, 'CLOSED', 0, NULL, '[]'::jsonb, 0, 0, NULL)
    ON CONFLICT (resource_key, namespace) DO NOTHING";

/// What a read returns: the server's time and the key's row, if it has one.
pub(crate) struct Read {
    pub(crate) server_now: Instant,
    pub(crate) row: Option<StoredRow>,
}

fn row_at(row: &postgres::Row, first: usize) -> Option<StoredRow> {
    let state: Option<String> = row.get(first);
    Some(StoredRow {
        state: state?,
        failure_count: row.get(first + 1),
        open_until: row.get(first + 2),
        execution_log: row.get(first + 3),
        epoch: row.get(first + 4),
        probes: row.get(first + 5),
        probes_until: row.get(first + 6),
    })
}

struct Statements {
    read: Statement,
    swap: Statement,
    insert: Statement,
}

/// A live connection with its statements prepared.
pub(crate) struct Session {
    client: Client,
    statements: Statements,
}

impl Session {
    /// Connects and prepares the statements.
    pub(crate) fn open(settings: &DbSettings) -> Result<Session, postgres::Error> {
        Session::prepare(Session::connect(settings)?)
    }

    /// Connects (within 5 s unless the settings say otherwise).
    pub(crate) fn connect(settings: &DbSettings) -> Result<Client, postgres::Error> {
        let mut config = settings.config().clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.connect(postgres::NoTls)
    }

    /// Prepares the statements on `client` (the table must be usable).
    pub(crate) fn prepare(mut client: Client) -> Result<Session, postgres::Error> {
        let statements = Statements {
            read: client.prepare(&read_sql())?,
            swap: client.prepare(&swap_sql())?,
            insert: client.prepare(INSERT_SQL)?,
        };
        Ok(Session { client, statements })
    }

    pub(crate) fn read(&mut self, key: &BreakerKey) -> Result<Read, postgres::Error> {
        let row = self.client.query_one(
            &self.statements.read,
            &[&key.resource_key(), &key.namespace()],
        )?;
        Ok(Read {
            server_now: instant_of(row.get::<_, SystemTime>(0)),
            row: row_at(&row, 1),
        })
    }

    pub(crate) fn insert_fresh(&mut self, key: &BreakerKey) -> Result<(), postgres::Error> {
        self.client.execute(
            &self.statements.insert,
            &[&key.resource_key(), &key.namespace()],
        )?;
        Ok(())
    }

    /// Writes `new` if the row still holds `old`; whether it did, and the server's time and
    /// row (the row before the write when it wrote).
    pub(crate) fn swap(
        &mut self,
        key: &BreakerKey,
        old: &StoredRow,
        new: &StoredRow,
        unguarded: bool,
    ) -> Result<(bool, Read), postgres::Error> {
        let row = self.client.query_one(
            &self.statements.swap,
            &[
                &key.resource_key(),
                &key.namespace(),
                &old.state,
                &old.failure_count,
                &old.open_until,
                &old.execution_log,
                &old.epoch,
                &old.probes,
                &new.state,
                &new.failure_count,
                &new.open_until,
                &new.execution_log,
                &new.epoch,
                &new.probes,
                &new.probes_until,
                &old.probes_until,
                &unguarded,
            ],
        )?;
        Ok((
            row.get(0),
            Read {
                server_now: instant_of(row.get::<_, SystemTime>(1)),
                row: row_at(&row, 2),
            },
        ))
    }
}

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
}

/// A local monotonic clock behind a trait object (tests give a fake one).
pub(crate) type LocalClock = Box<dyn Clock + Send + Sync>;
