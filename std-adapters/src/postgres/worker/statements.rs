//! A live connection and what it says: `tokio-postgres` on the worker's own runtime (so every
//! round trip can have a deadline), the statements prepared once, and the notifications
//! forwarded.

use std::{
    future::poll_fn,
    time::{Duration, SystemTime},
};

use resilient_circuit::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_postgres::{
    AsyncMessage, Client, Row, Statement,
    error::SqlState,
    types::{ToSql, Type},
};

use super::sql::Which;
use crate::BreakerKey;
use crate::postgres::{
    DbSettings,
    error::describe,
    row::{StoredRow, instant_of},
    schema::NOTIFY_CHANNEL,
};

/// A writer's record: its last batch, and the keys that batch wrote. `None`: not registered.
pub(crate) type Record = Option<(i64, Vec<BreakerKey>)>;

/// What a batch's compare-and-swap did.
pub(crate) struct Swapped {
    /// The server's `now()`.
    pub(crate) server_now: Instant,
    /// The writer's record as it was, before the batch.
    pub(crate) record: Record,
    /// Each key written, with its row's new version.
    pub(crate) written: Vec<(BreakerKey, Version)>,
    /// Each key whose row was locked elsewhere (or missing): not waited for.
    pub(crate) skipped: Vec<BreakerKey>,
}

/// The record of a row whose columns `first` to `first + 2` are a writer's batch, namespaces
/// and resource keys.
fn record_of(row: &Row, first: usize) -> Result<Record, tokio_postgres::Error> {
    let Some(last) = row.try_get::<_, Option<i64>>(first)? else {
        return Ok(None);
    };
    let namespaces: Vec<String> = row.try_get(first + 1)?;
    let resources: Vec<String> = row.try_get(first + 2)?;
    let keys = namespaces
        .iter()
        .zip(&resources)
        .filter_map(|(namespace, resource)| BreakerKey::new(namespace, resource).ok())
        .collect();
    Ok(Some((last, keys)))
}

/// One key's part of a batch: its new row, written if the row is still at `version`.
pub(crate) struct Swap<'a> {
    pub(crate) key: &'a BreakerKey,
    pub(crate) version: Version,
    pub(crate) row: &'a StoredRow,
    /// Manual control: may overwrite a live OPEN.
    pub(crate) unguarded: bool,
}

/// A version of a key's row: which write made it.
pub(crate) type Version = i64;

/// What a read found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The key has no row.
    Missing,
    /// The row is still at the version known.
    Unchanged,
    /// The row, at this version.
    Row(StoredRow, Version),
}

/// How a round trip failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The connection is gone or cannot be trusted (closed, timed out, the server shutting
    /// down): every key waits for a new one.
    Connection(String),
    /// The session cannot write (a server turned read-only, a standby, a read-only default):
    /// the statement was not applied, and a new connection is needed (to the writable host,
    /// with `target_session_attrs=read-write`).
    ReadOnly(String),
    /// The statement failed and the connection is fine (a constraint, an operator's trigger): the key's
    /// problem only.
    Statement(String),
}

impl Fault {
    pub(crate) fn of(error: &tokio_postgres::Error, client: &Client) -> Fault {
        let connection_level = match error.code() {
            None => true,
            Some(code) => {
                let class = &code.code()[..2];
                class == "08"
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
            }
        };
        if connection_level || client.is_closed() {
            Fault::Connection(describe(error))
        } else if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
            Fault::ReadOnly(describe(error))
        } else {
            Fault::Statement(describe(error))
        }
    }
}

/// A notification: a change of state or period of a key, written by transaction `xid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Changed {
    pub(crate) xid: Version,
    pub(crate) namespace: String,
    pub(crate) resource_key: String,
}

/// The longest payload the trigger sends: a transaction id, a length, and a namespace and a
/// resource key of at most 255 characters each (4 bytes a character at most). Any role may
/// `NOTIFY` the channel: a longer payload is not the trigger's, and is dropped unread.
pub(crate) const MAX_PAYLOAD: usize = 20 + 1 + 3 + 1 + 2 * 255 * 4;

/// Reads the trigger's payload `<xid>:<namespace length>:<namespace><resource_key>`. What it
/// names is only ever read again, never trusted.
pub(crate) fn parse_payload(payload: &str) -> Option<Changed> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let (xid, rest) = payload.split_once(':')?;
    let (length, keys) = rest.split_once(':')?;
    let length: usize = length.parse().ok()?;
    let split = keys
        .char_indices()
        .nth(length)
        .map_or(keys.len(), |(i, _)| i);
    let (namespace, resource_key) = keys.split_at(split);
    Some(Changed {
        xid: xid.parse().ok()?,
        namespace: namespace.to_owned(),
        resource_key: resource_key.to_owned(),
    })
}

/// How statements reach the server.
enum Session {
    /// A connection of the worker's own: the session is set up once, every statement prepared
    /// once (in the order of [`Which::ALL`]).
    Direct(Vec<Statement>),
    /// Through a pooler in transaction mode (PgBouncer, RDS Proxy), where a session lasts one
    /// transaction: each statement goes unprepared, in a transaction of its own that sets its
    /// timeouts, the three pipelined in one round trip.
    Pooled,
}

/// A statement's settings, for a session that lasts one transaction (as the direct session's).
const POOLED_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '50ms'";

/// A live connection with its statements prepared and `LISTEN` issued.
pub(crate) struct Conn {
    client: Client,
    session: Session,
    /// Notifications, forwarded by the task that drives the connection.
    pub(crate) notifications: UnboundedReceiver<String>,
    /// The notifications ended (the task that drives the connection stopped): not listened to
    /// any more, so the worker does not wake for a stream that is over.
    pub(crate) notifications_ended: bool,
    /// Ends the connection's task when the connection is dropped.
    #[allow(dead_code)]
    driver: Driver,
}

/// The connection configuration of `settings`, every setting kept (hosts and their order,
/// `target_session_attrs`, `load_balance_hosts`, keepalives, `channel_binding`), with the store's
/// defaults where the DSN sets none: a link that drops packets silently fails its connection
/// within seconds.
fn config_of(settings: &DbSettings, connect_timeout: Duration) -> tokio_postgres::Config {
    let from = settings.config();
    let mut config = from.clone();
    if from.get_application_name().is_none() {
        config.application_name("resilient-circuit");
    }
    if from.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if from.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(5));
    }
    if from.get_keepalives() && from.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        // The driver's default idle time (two hours) would never notice a dead link.
        config.keepalives_idle(Duration::from_secs(5));
    }
    config
}

/// The task that drives a connection (and forwards its notifications), ended with it.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection just made, driven by a task of its own, its session not yet set up.
pub(crate) struct Connected {
    client: Client,
    notifications: UnboundedReceiver<String>,
    driver: Driver,
}

impl Connected {
    /// Connects, with TLS as the settings say, and starts the task that drives the connection.
    /// Runs on the worker's runtime; the caller bounds it with a deadline.
    pub(crate) async fn connect(
        settings: &DbSettings,
        connect_timeout: Duration,
    ) -> Result<Connected, String> {
        let tls = settings.tls().map_err(|why| format!("TLS: {why}"))?;
        let mut config = config_of(settings, connect_timeout);
        tls.configure(&mut config);
        let (client, mut connection) = config
            .connect(tls.connector)
            .await
            .map_err(|e| describe(&e))?;
        let (sender, notifications) = unbounded_channel();
        let driver = Driver(tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    // Only what could be the trigger's is kept (any role may NOTIFY).
                    Ok(AsyncMessage::Notification(n)) if n.payload().len() <= MAX_PAYLOAD => {
                        let _ = sender.send(n.payload().to_owned());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
        Ok(Connected {
            client,
            notifications,
            driver,
        })
    }

    /// The client, for the checks made before the session is set up.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sets the session up, prepares the statements and listens; through a pooler in
    /// transaction mode (`pooled`), none of that: each statement goes on its own.
    pub(crate) async fn set_up(self, pooled: bool) -> Result<Conn, String> {
        self.prepare(pooled).await.map_err(|e| describe(&e))
    }

    async fn prepare(self, pooled: bool) -> Result<Conn, tokio_postgres::Error> {
        let Connected {
            client,
            notifications,
            driver,
        } = self;
        let session = if pooled {
            // Nothing that outlives a transaction: no session settings, no LISTEN (the poll
            // carries peers' changes), no prepared statements.
            Session::Pooled
        } else {
            // The server ends a statement that runs long; a lock held on one key fails that
            // key's statement quickly instead of delaying every other key. The statements are
            // written for READ COMMITTED (a copy of a batch that waited for the writer's row
            // sees it as the other left it), whatever the role's default.
            client
                .batch_execute(&format!(
                    "SET statement_timeout = '5s'; SET lock_timeout = '50ms'; SET default_transaction_isolation = 'read committed'; LISTEN {NOTIFY_CHANNEL}"
                ))
                .await?;
            // One plan per statement, made once. (PostgreSQL 12 and later; older servers plan
            // as they like.)
            let _ = client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await;
            let mut prepared = Vec::with_capacity(Which::ALL.len());
            for which in Which::ALL {
                prepared.push(client.prepare(which.sql()).await?);
            }
            Session::Direct(prepared)
        };
        Ok(Conn {
            client,
            session,
            notifications,
            notifications_ended: false,
            driver,
        })
    }
}

impl Conn {
    /// Connects, sets the session up, prepares the statements and listens. Runs on the
    /// worker's runtime; the caller bounds it with a deadline.
    pub(crate) async fn open(
        settings: &DbSettings,
        connect_timeout: Duration,
    ) -> Result<Conn, String> {
        Connected::connect(settings, connect_timeout)
            .await?
            .set_up(settings.is_behind_transaction_pooler())
            .await
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `which` with `params`, as the session allows.
    async fn run(
        &self,
        which: Which,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match &self.session {
            Session::Direct(prepared) => self.client.query(&prepared[which as usize], params).await,
            Session::Pooled => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
                    .iter()
                    .zip(which.types())
                    .map(|(param, ty)| (*param, ty.clone()))
                    .collect();
                let (began, rows, committed) = tokio::join!(
                    self.client.batch_execute(POOLED_BEGIN),
                    self.client.query_typed(which.sql(), &typed),
                    self.client.batch_execute("COMMIT"),
                );
                began?;
                let rows = rows?;
                committed?;
                Ok(rows)
            }
        }
    }

    /// The rows of `keys` (with the version already known of each), and the server's time.
    pub(crate) async fn read(
        &self,
        keys: &[(&BreakerKey, Option<Version>)],
    ) -> Result<(Instant, Vec<Found>), tokio_postgres::Error> {
        let namespaces: Vec<&str> = keys.iter().map(|(key, _)| key.namespace()).collect();
        let resources: Vec<&str> = keys.iter().map(|(key, _)| key.resource_key()).collect();
        let known: Vec<Option<Version>> = keys.iter().map(|(_, version)| *version).collect();
        let rows = self
            .run(Which::Read, &[&namespaces, &resources, &known])
            .await?;
        let mut found = vec![Found::Missing; keys.len()];
        let mut server_now = None;
        for row in &rows {
            server_now = Some(instant_of(row.try_get::<_, SystemTime>(0)?));
            let index = usize::try_from(row.try_get::<_, i64>(1)? - 1).unwrap_or(usize::MAX);
            let Some((slot, (_, known))) = found.get_mut(index).zip(keys.get(index)) else {
                continue;
            };
            let version: Option<Version> = row.try_get(2)?;
            let state: Option<String> = row.try_get(3)?;
            *slot = match (version, state) {
                (None, _) => Found::Missing,
                (Some(v), None) if Some(v) == *known => Found::Unchanged,
                (Some(_), None) => Found::Missing,
                (Some(version), Some(state)) => Found::Row(
                    StoredRow {
                        state,
                        failure_count: row.try_get(4)?,
                        open_until: row.try_get(5)?,
                        execution_log: row.try_get(6)?,
                        epoch: row.try_get(7)?,
                        probes: row.try_get(8)?,
                        probes_until: row.try_get(9)?,
                    },
                    version,
                ),
            };
        }
        let server_now = match server_now {
            Some(now) => now,
            None => self.server_now().await?,
        };
        Ok((server_now, found))
    }

    /// The server's `now()`: a round trip that says whether the connection still works.
    pub(crate) async fn server_now(&self) -> Result<Instant, tokio_postgres::Error> {
        let rows = self.run(Which::Now, &[]).await?;
        let now = rows
            .first()
            .map(|row| row.try_get::<_, SystemTime>(0))
            .transpose()?;
        Ok(now.map_or(Instant::ZERO, instant_of))
    }

    /// Makes a fresh row for each of `keys` that has none.
    pub(crate) async fn insert(&self, keys: &[&BreakerKey]) -> Result<(), tokio_postgres::Error> {
        let namespaces: Vec<&str> = keys.iter().map(|key| key.namespace()).collect();
        let resources: Vec<&str> = keys.iter().map(|key| key.resource_key()).collect();
        self.run(Which::Insert, &[&namespaces, &resources]).await?;
        Ok(())
    }

    /// Writes each of `batch`'s new rows whose row is still at the version read, as batch
    /// `number` of `writer` (see `SWAP_SQL`): the server's time, the writer's record as it was,
    /// and each key written, with its new version.
    pub(crate) async fn swap(
        &self,
        batch: &[Swap<'_>],
        writer: &str,
        number: i64,
    ) -> Result<Swapped, tokio_postgres::Error> {
        let namespaces: Vec<&str> = batch.iter().map(|s| s.key.namespace()).collect();
        let resources: Vec<&str> = batch.iter().map(|s| s.key.resource_key()).collect();
        let versions: Vec<String> = batch.iter().map(|s| s.version.to_string()).collect();
        let states: Vec<&str> = batch.iter().map(|s| s.row.state.as_str()).collect();
        let failures: Vec<i32> = batch.iter().map(|s| s.row.failure_count).collect();
        let open_until: Vec<Option<SystemTime>> = batch.iter().map(|s| s.row.open_until).collect();
        let logs: Vec<Option<&str>> = batch
            .iter()
            .map(|s| s.row.execution_log.as_deref())
            .collect();
        let epochs: Vec<i64> = batch.iter().map(|s| s.row.epoch).collect();
        let probes: Vec<i32> = batch.iter().map(|s| s.row.probes).collect();
        let leases: Vec<Option<SystemTime>> = batch.iter().map(|s| s.row.probes_until).collect();
        let unguarded: Vec<bool> = batch.iter().map(|s| s.unguarded).collect();
        let rows = self
            .run(
                Which::Swap,
                &[
                    &namespaces,
                    &resources,
                    &versions,
                    &states,
                    &failures,
                    &open_until,
                    &logs,
                    &epochs,
                    &probes,
                    &leases,
                    &unguarded,
                    &writer,
                    &number,
                ],
            )
            .await?;
        let mut swapped = Swapped {
            server_now: Instant::ZERO,
            record: None,
            written: Vec::new(),
            skipped: Vec::new(),
        };
        for row in &rows {
            swapped.server_now = instant_of(row.try_get::<_, SystemTime>(0)?);
            let (Some(namespace), Some(resource)) = (
                row.try_get::<_, Option<String>>(1)?,
                row.try_get::<_, Option<String>>(2)?,
            ) else {
                // The first row: the writer's record.
                swapped.record = record_of(row, 4)?;
                continue;
            };
            let Ok(key) = BreakerKey::new(&namespace, &resource) else {
                continue;
            };
            match row.try_get::<_, Option<Version>>(3)? {
                Some(version) => swapped.written.push((key, version)),
                None => swapped.skipped.push(key),
            }
        }
        Ok(swapped)
    }

    /// Settles batch `number` of `writer`, in doubt (see `FENCE_SQL`): the server's time and
    /// the writer's record as it was.
    pub(crate) async fn fence(
        &self,
        writer: &str,
        number: i64,
    ) -> Result<(Instant, Record), tokio_postgres::Error> {
        let rows = self.run(Which::Fence, &[&writer, &number]).await?;
        let Some(row) = rows.first() else {
            return Ok((Instant::ZERO, None));
        };
        Ok((
            instant_of(row.try_get::<_, SystemTime>(0)?),
            record_of(row, 1)?,
        ))
    }

    /// Refreshes the writer's row (see the writers' statements in `sql.rs`).
    pub(crate) async fn touch(&self, writer: &str) -> Result<(), tokio_postgres::Error> {
        self.run(Which::Touch, &[&writer]).await.map(drop)
    }

    /// Registers `writer` (refreshing its row if it is registered), its batches numbered up to
    /// `last`; whether it was not registered.
    pub(crate) async fn register(
        &self,
        writer: &str,
        last: i64,
    ) -> Result<bool, tokio_postgres::Error> {
        Ok(!self
            .run(Which::Register, &[&writer, &last])
            .await?
            .is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_key_whatever_it_contains() {
        assert_eq!(
            parse_payload("812:7:billingpay:ments-api"),
            Some(Changed {
                xid: 812,
                namespace: "billing".to_owned(),
                resource_key: "pay:ments-api".to_owned(),
            })
        );
        assert_eq!(
            parse_payload("5:2:ñxkey").map(|c| (c.namespace, c.resource_key)),
            Some(("ñx".to_owned(), "key".to_owned()))
        );
        assert_eq!(parse_payload("garbage"), None);
    }

    #[test]
    fn a_payload_longer_than_the_triggers_is_dropped_unread() {
        let longest = format!("9:255:{}", "ñ".repeat(510));
        assert!(longest.len() <= MAX_PAYLOAD);
        assert!(parse_payload(&longest).is_some());
        let hostile = format!("9:3:abc{}", "x".repeat(MAX_PAYLOAD));
        assert_eq!(parse_payload(&hostile), None);
    }
}
