//! Failover: a DSN that lists two servers with `target_session_attrs=read-write`. The first
//! turns read-only while outcomes are being recorded; the store leaves it for the second, and
//! every outcome lands once. Servers of the test's own.

use std::time::Duration;

use host_tests::{
    pg::{self, fail},
    pg_server::PgServer,
};
use postgres::{Client, NoTls};
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, Ratio, SharedBreaker,
    postgres::{DbSettings, PostgresStore, schema::setup},
};

const KEY: &str = "failover-api";

fn client(port: u16, dbname: &str) -> Client {
    let mut config = postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(dbname);
    config.connect(NoTls).expect("a client")
}

/// A server with the table in database `rc_failover`.
fn server() -> PgServer {
    let server = PgServer::start().expect("a server of its own");
    client(server.port(), "postgres")
        .batch_execute("CREATE DATABASE rc_failover")
        .expect("a database");
    setup(&mut client(server.port(), "rc_failover"), None).expect("the table");
    server
}

/// The failures in the key's row on the server at `port`.
fn failures_in_row(port: u16) -> usize {
    let mut client = client(port, "rc_failover");
    let (log, _) = pg::log_and_failure_count(&mut client, KEY);
    log.map_or(0, |log| log.matches("false").count())
}

/// A store whose DSN lists the servers on `first` and `second` (`target_session_attrs=
/// read-write`, and `extra`), and its breaker on the key, with ten failures in the row.
fn store_with_ten_failures(first: u16, second: u16, extra: &str) -> (PostgresStore, SharedBreaker) {
    let dsn = format!(
        "host=127.0.0.1,127.0.0.1 port={first},{second} user=postgres dbname=rc_failover target_session_attrs=read-write {extra}"
    );
    let store = PostgresStore::builder(DbSettings::from_dsn(&dsn).unwrap())
        .round_trip_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .connect()
        .expect("connected to the first");
    // A window of 100 that never trips: every failure stays in the row's log.
    let config = BreakerConfig::new().failure_limit(Ratio::new(100, 100).unwrap());
    let breaker = store
        .breaker(BreakerKey::resource(KEY).unwrap(), config)
        .unwrap();
    for _ in 0..10 {
        fail(&breaker);
    }
    store.flush(Duration::from_secs(5)).unwrap();
    (store, breaker)
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_server_turned_read_only_is_left_for_the_writable_one_and_nothing_is_lost_or_doubled() {
    pg::port();
    let (first, second) = (server(), server());
    let (store, breaker) = store_with_ten_failures(first.port(), second.port(), "");
    assert_eq!(failures_in_row(first.port()), 10);

    let mut admin = client(first.port(), "postgres");
    for sql in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).unwrap();
    }
    // Every session of the first server reads only once it has reloaded.
    pg::until("the first server read-only", || {
        let read_only: String = client(first.port(), "postgres")
            .query_one("SHOW default_transaction_read_only", &[])
            .unwrap()
            .get(0);
        (read_only == "on").then_some(())
    });
    for _ in 0..7 {
        fail(&breaker);
    }
    store
        .flush(Duration::from_secs(10))
        .expect("written on the second server");
    assert_eq!(
        (
            failures_in_row(first.port()),
            failures_in_row(second.port())
        ),
        (10, 7),
        "the first ten stayed where they were written; the next seven went to the second, once"
    );
    assert!(store.is_connected());
}

/// A real failover: a streaming standby with synchronous replication (so what the primary
/// acknowledged is on the standby too), the primary stopped, the standby promoted. The store
/// follows it, and every outcome is in the new primary's row once; the time to recover (from
/// the promotion to a new outcome in the row) is printed.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_promoted_standby_is_followed_and_nothing_acknowledged_is_lost_or_doubled() {
    pg::port();
    let mut primary = server();
    let standby = primary.start_standby().expect("a standby");
    let mut admin = client(primary.port(), "postgres");
    // The test servers run with synchronous_commit off; this database's commits wait for the
    // standby.
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
        "ALTER DATABASE rc_failover SET synchronous_commit = on",
    ] {
        admin.batch_execute(sql).unwrap();
    }
    pg::until("the standby in sync", || {
        let rows = admin
            .query(
                "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .unwrap();
        (!rows.is_empty()).then_some(())
    });
    let (store, breaker) =
        store_with_ten_failures(primary.port(), standby.port(), "connect_timeout=2");
    drop(admin);

    // A crash (immediate shutdown): only what the standby acknowledged is on it.
    primary.crash();
    let promoting = std::time::Instant::now();
    standby.promote().expect("promoted");
    for _ in 0..5 {
        fail(&breaker);
    }
    store
        .flush(Duration::from_secs(20))
        .expect("written on the promoted standby");
    println!(
        "failover: the store wrote to the promoted standby {:?} after the promotion began",
        promoting.elapsed()
    );
    assert_eq!(
        failures_in_row(standby.port()),
        15,
        "the ten acknowledged by the old primary (replicated synchronously) and the five after, once each"
    );
}
