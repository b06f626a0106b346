//! The store behind PgBouncer in transaction pooling mode (as behind RDS Proxy): a session
//! lasts one transaction, so nothing may outlive one (no session settings, no LISTEN, no
//! prepared statements), and no server process may be ended (the pooler may have given it to
//! another client). `cargo xtask test` skips these (their names start with `pgbouncer_`) only
//! when PgBouncer is not installed, and says how to install it.

use std::{
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use host_tests::{
    pg::{self, fail},
    pg_server::PgBouncer,
    proxy::FaultProxy,
};
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, CircuitState, Ratio,
    postgres::{DbSettings, PostgresStore},
};

/// The file's PgBouncer, in front of the test server, with few server connections (so that
/// clients share them).
fn bouncer() -> &'static PgBouncer {
    static BOUNCER: OnceLock<PgBouncer> = OnceLock::new();
    BOUNCER.get_or_init(|| PgBouncer::start(pg::port(), 3).expect("PgBouncer"))
}

fn settings(port: u16, db: &str) -> DbSettings {
    DbSettings::from_config(pg::config(port, db)).behind_transaction_pooler(true)
}

fn store(port: u16, db: &str, max_staleness: Duration) -> PostgresStore {
    PostgresStore::builder(settings(port, db))
        .sync_interval(Duration::from_millis(20))
        .max_staleness(max_staleness)
        .round_trip_timeout(Duration::from_millis(1_000))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect()
        .expect("connected through PgBouncer")
}

/// A window of 200 that never trips here: every failure stays in the row's log.
fn counting() -> BreakerConfig {
    BreakerConfig::new().failure_limit(Ratio::new(200, 200).unwrap())
}

fn failures_in_row(db: &str, key: &str) -> usize {
    let mut client = pg::connect(pg::port(), db);
    let (log, _) = pg::log_and_failure_count(&mut client, key);
    log.map_or(0, |log| log.matches("false").count())
}

/// Four processes, each a store behind PgBouncer, fail on one key at once: every failure is in
/// the row, once.
#[test]
#[ignore = "needs PostgreSQL and PgBouncer: cargo xtask test"]
fn pgbouncer_four_processes_count_every_failure_once() {
    let (db, _) = pg::fresh_database(pg::port(), "pooler_count");
    let port = bouncer().port().to_string();
    let args = ["fail", &port, &db, "pooled-api", "25", "200", "pooled"];
    let last_lines = pg::run_peers(env!("CARGO_BIN_EXE_pg_peer"), &args, 4);
    assert_eq!(last_lines, ["done"; 4]);
    assert_eq!(failures_in_row(&db, "pooled-api"), 100);
}

#[test]
#[ignore = "needs PostgreSQL and PgBouncer: cargo xtask test"]
fn pgbouncer_a_peers_trip_is_seen_within_max_staleness() {
    let (db, _) = pg::fresh_database(pg::port(), "pooler_trip");
    let port = bouncer().port();
    let staleness = Duration::from_millis(300);
    let (tripping, watching) = (store(port, &db, staleness), store(port, &db, staleness));
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(2, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    let key = BreakerKey::resource("pooled-trip").unwrap();
    let trips = tripping.breaker(key.clone(), config).unwrap();
    let watches = watching.breaker(key, config).unwrap();
    fail(&trips);
    fail(&trips);
    tripping.flush(Duration::from_secs(5)).unwrap();
    let written = Instant::now();
    while watches.status() != CircuitState::Open && written.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(5));
    }
    let seen_after = written.elapsed();
    assert_eq!(watches.status(), CircuitState::Open);
    // The poll's period, a round of work and a round trip.
    assert!(
        seen_after < staleness + Duration::from_millis(400),
        "seen after {seen_after:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL and PgBouncer: cargo xtask test"]
fn pgbouncer_a_lost_reply_is_applied_once_and_no_other_clients_session_is_ended() {
    let (db, _) = pg::fresh_database(pg::port(), "pooler_lost");
    let proxy = FaultProxy::start(bouncer().port());
    // No poll in the meantime: the reply lost is the write's.
    let store = store(proxy.port(), &db, Duration::from_secs(3600));
    let breaker = store
        .breaker(BreakerKey::resource("pooled-lost").unwrap(), counting())
        .unwrap();
    fail(&breaker);
    store.flush(Duration::from_secs(5)).unwrap();

    // Another client of the same PgBouncer, in the middle of a transaction.
    let mut other = postgres::Config::from(pg::config(bouncer().port(), &db))
        .connect(postgres::NoTls)
        .expect("another client through PgBouncer");
    let mut transaction = other.transaction().unwrap();
    transaction.execute("SELECT 1", &[]).unwrap();

    proxy.drop_next_reply_and_cut_client(Duration::from_secs(1));
    fail(&breaker);
    pg::until("the lost reply", || {
        (proxy.replies_dropped() == 1).then_some(())
    });
    store.flush(Duration::from_secs(10)).expect("flushed");
    assert_eq!(failures_in_row(&db, "pooled-lost"), 2, "each failure once");

    transaction
        .execute("SELECT 1", &[])
        .expect("the other client's session goes on");
    transaction.commit().unwrap();
}
