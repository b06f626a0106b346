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

const COLUMNS: &str = "r.xmin::text::bigint, r.state, r.failure_count, r.open_until, r.execution_log::text, r.rc_epoch, r.rc_probes, r.rc_probes_until";

/// The row of a key, with the server's `now()`; always one result row (the breaker columns are
/// NULL when the key has no row). `xmin`, the transaction that wrote this version of the row,
/// identifies the version: every write, by any writer, makes a new one.
fn read_sql() -> String {
    format!(
        "SELECT now(), {COLUMNS} FROM (SELECT 1) AS one
         LEFT JOIN public.rc_circuit_breakers r ON r.resource_key = $1 AND r.namespace = $2"
    )
}

/// The row of a key only if it is no longer at version $3 (else just the version): confirming
/// that nothing changed costs a few bytes instead of the whole row.
fn check_sql() -> String {
    let changed = "r.xmin::text::bigint IS DISTINCT FROM $3";
    let columns: Vec<String> = COLUMNS
        .split(", ")
        .skip(1)
        .map(|column| format!("CASE WHEN {changed} THEN {column} END"))
        .collect();
    format!(
        "SELECT now(), r.xmin::text::bigint, {} FROM (SELECT 1) AS one
         LEFT JOIN public.rc_circuit_breakers r ON r.resource_key = $1 AND r.namespace = $2",
        columns.join(", ")
    )
}

/// The compare-and-swap: writes the new values only if the row is still the version read
/// ($3), and, when guarded ($11 false), only if it is not a live OPEN by the server's clock.
/// Returns the server's `now()` and the new version, or no row when nothing was written.
const SWAP_SQL: &str = "UPDATE public.rc_circuit_breakers SET state = $4, failure_count = $5,
       open_until = $6, execution_log = $7::text::jsonb, rc_epoch = $8, rc_probes = $9,
       rc_probes_until = $10, updated_at = now()
     WHERE resource_key = $1 AND namespace = $2 AND xmin = $3::text::xid
       AND ($11::bool OR NOT (state = 'OPEN' AND COALESCE(open_until > now(), false)))
     RETURNING now(), xmin::text::bigint";

const INSERT_SQL: &str = "INSERT INTO public.rc_circuit_breakers
      (resource_key, namespace, state, failure_count, open_until, execution_log, rc_epoch, rc_probes, rc_probes_until)
    VALUES ($1, $2, 'CLOSED', 0, NULL, '[]'::jsonb, 0, 0, NULL)
    ON CONFLICT (resource_key, namespace) DO NOTHING";

/// A version of a key's row: which write made it.
pub(crate) type Version = i64;

/// What a read returns: the server's time and the key's row with its version, if it has one.
pub(crate) struct Read {
    pub(crate) server_now: Instant,
    pub(crate) row: Option<(StoredRow, Version)>,
}

/// The row in the result columns from `first` on, or `None` when the key has none. A column of
/// an unexpected type (the table changed under a running store) is an error, not a panic.
fn row_at(
    row: &postgres::Row,
    first: usize,
) -> Result<Option<(StoredRow, Version)>, postgres::Error> {
    let version: Option<Version> = row.try_get(first)?;
    let state: Option<String> = row.try_get(first + 1)?;
    let (Some(version), Some(state)) = (version, state) else {
        return Ok(None);
    };
    Ok(Some((
        StoredRow {
            state,
            failure_count: row.try_get(first + 2)?,
            open_until: row.try_get(first + 3)?,
            execution_log: row.try_get(first + 4)?,
            epoch: row.try_get(first + 5)?,
            probes: row.try_get(first + 6)?,
            probes_until: row.try_get(first + 7)?,
        },
        version,
    )))
}

struct Statements {
    read: Statement,
    check: Statement,
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

    /// Connects (within 5 s unless the settings say otherwise). A link that drops packets
    /// silently is noticed within seconds, not at the kernel's retransmission timeout: the
    /// breakers wait for it.
    pub(crate) fn connect(settings: &DbSettings) -> Result<Client, postgres::Error> {
        let mut config = settings.config().clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(5));
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5));
        config.connect(postgres::NoTls)
    }

    /// Prepares the statements on `client` (the table must be usable).
    pub(crate) fn prepare(mut client: Client) -> Result<Session, postgres::Error> {
        // No statement of the store may hang its callers.
        client.batch_execute("SET statement_timeout = '5s'")?;
        // One plan per statement, made once: re-planning for each call's values costs more than
        // running it. (PostgreSQL 12 and later; older servers plan as they like.)
        let _ = client.batch_execute("SET plan_cache_mode = force_generic_plan");
        let statements = Statements {
            read: client.prepare(&read_sql())?,
            check: client.prepare(&check_sql())?,
            swap: client.prepare(SWAP_SQL)?,
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
            server_now: instant_of(row.try_get::<_, SystemTime>(0)?),
            row: row_at(&row, 1)?,
        })
    }

    /// Whether the row is still at `version`: `None` if so, else the row as it is now.
    pub(crate) fn check(
        &mut self,
        key: &BreakerKey,
        version: Version,
    ) -> Result<(Instant, Option<Read>), postgres::Error> {
        let row = self.client.query_one(
            &self.statements.check,
            &[&key.resource_key(), &key.namespace(), &version],
        )?;
        let server_now = instant_of(row.try_get::<_, SystemTime>(0)?);
        let current: Option<Version> = row.try_get(1)?;
        if current == Some(version) {
            return Ok((server_now, None));
        }
        Ok((
            server_now,
            Some(Read {
                server_now,
                row: row_at(&row, 1)?,
            }),
        ))
    }

    pub(crate) fn insert_fresh(&mut self, key: &BreakerKey) -> Result<(), postgres::Error> {
        self.client.execute(
            &self.statements.insert,
            &[&key.resource_key(), &key.namespace()],
        )?;
        Ok(())
    }

    /// Writes `new` if the row is still at `version`: the server's time and the new version,
    /// or `None` if the row changed (or is a live OPEN and the write is guarded).
    pub(crate) fn swap(
        &mut self,
        key: &BreakerKey,
        version: Version,
        new: &StoredRow,
        unguarded: bool,
    ) -> Result<Option<(Instant, Version)>, postgres::Error> {
        let version = version.to_string();
        let written = self.client.query_opt(
            &self.statements.swap,
            &[
                &key.resource_key(),
                &key.namespace(),
                &version,
                &new.state,
                &new.failure_count,
                &new.open_until,
                &new.execution_log,
                &new.epoch,
                &new.probes,
                &new.probes_until,
                &unguarded,
            ],
        )?;
        written
            .map(|row| {
                Ok((
                    instant_of(row.try_get::<_, SystemTime>(0)?),
                    row.try_get(1)?,
                ))
            })
            .transpose()
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
