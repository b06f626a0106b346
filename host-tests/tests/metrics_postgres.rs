//! Feature `metrics` on the PostgreSQL store (SEMANTICS §5): a replicated key counts the
//! transitions its process adopts from a peer, its state gauge starts at the state loaded from
//! the row, and a fail-closed store that cannot reach its server counts its refusals by reason.
#![cfg(feature = "metrics")]

use std::time::Duration;

use host_tests::{pg, pg::fail, pg_server::PgServer, recorded::Recorded};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, Ratio, RejectReason,
    postgres::{OnOutage, PostgresStore},
};

fn key() -> BreakerKey {
    BreakerKey::new("metrics-tests", "payments-api").unwrap()
}

fn config() -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(2, 2).unwrap())
        .cooldown(Duration::from_secs(60))
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_peers_transition_is_counted_where_it_is_adopted_and_a_load_sets_the_gauge() {
    let (_db, settings) = pg::fresh_database(pg::port(), "metrics_adopted");
    let connect = || PostgresStore::connect(settings.clone()).expect("connect");
    let (here, peer_store) = (connect(), connect());
    let watched = Recorded::new();
    let watcher = watched.run(|| here.breaker(key(), config())).unwrap();
    let peer = peer_store.breaker(key(), config()).unwrap();
    assert_eq!(watched.state(&key()), [1.0, 0.0, 0.0]);

    fail(&peer);
    fail(&peer);
    peer_store.flush(Duration::from_secs(5)).unwrap();
    pg::until("the peer's OPEN adopted", || {
        (watcher.status() == CircuitState::Open).then_some(())
    });
    assert_eq!(watched.state(&key()), [0.0, 1.0, 0.0]);
    assert_eq!(
        watched.transitions(&key(), CircuitState::Closed, CircuitState::Open),
        1
    );
    assert_eq!(
        watched.calls(&key(), "failure"),
        0,
        "the failures were the peer's"
    );

    // A process that loads the key OPEN: its gauge says so, and it made no transition.
    let late = Recorded::new();
    let late_store = connect();
    let loaded = late.run(|| late_store.breaker(key(), config())).unwrap();
    assert_eq!(loaded.status(), CircuitState::Open);
    assert_eq!(late.state(&key()), [0.0, 1.0, 0.0]);
    assert_eq!(
        late.transitions(&key(), CircuitState::Closed, CircuitState::Open),
        0
    );
    assert!(loaded.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
    assert_eq!(late.rejected(&key(), "open"), 1);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_fail_closed_store_without_its_server_counts_its_refusals() {
    let mut server = PgServer::start().expect("a server of its own");
    let (_db, settings) = pg::fresh_database(server.port(), "metrics_unavailable");
    let store = PostgresStore::builder(settings)
        .on_outage(OnOutage::FailClosed)
        .max_staleness(Duration::from_millis(50))
        .round_trip_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .connect()
        .unwrap();
    server.stop();

    // A key made while the server is down is unknown, so refused, until it can be loaded.
    let recorded = Recorded::new();
    let breaker = recorded.run(|| store.breaker(key(), config())).unwrap();
    let mut refused = 0;
    pg::until("a refusal", || match breaker.try_acquire() {
        Err(rejected) => {
            assert_eq!(rejected.reason(), RejectReason::StoreUnavailable);
            refused += 1;
            Some(())
        }
        Ok(_) => None,
    });
    for _ in 0..3 {
        assert!(
            breaker
                .call(|| Ok::<_, &str>(()))
                .unwrap_err()
                .is_rejected()
        );
    }
    assert_eq!(recorded.rejected(&key(), "store_unavailable"), refused + 3);
    assert_eq!(recorded.rejected(&key(), "open"), 0);
    assert_eq!(recorded.calls(&key(), "success"), 0, "no call ran");
}

/// A write that fails (the key's row locked elsewhere) is counted, every time, and tried
/// again: never silent.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn failed_writes_of_a_row_are_counted() {
    let (db, settings) = pg::fresh_database(pg::port(), "metrics_write_errors");
    let recorded = Recorded::new();
    let store = PostgresStore::connect(settings).expect("connect");
    let breaker = recorded.run(|| store.breaker(key(), config())).unwrap();
    let errors = || {
        recorded
            .counter(resilient_circuit_std::metrics::WRITE_ERRORS, &key(), &[])
            .unwrap_or(0)
    };
    assert_eq!(errors(), 0);
    // A trigger of the operator's refuses every write of the key's row.
    let mut admin = pg::connect(pg::port(), &db);
    admin
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'refused by the operator'; END $$;
             CREATE TRIGGER refuse BEFORE UPDATE ON rc_circuit_breakers
               FOR EACH ROW WHEN (NEW.resource_key = 'payments-api') EXECUTE FUNCTION refuse();",
        )
        .unwrap();
    fail(&breaker);
    pg::until("two failed writes counted", || {
        (errors() >= 2).then_some(())
    });
    admin
        .batch_execute("DROP TRIGGER refuse ON rc_circuit_breakers")
        .unwrap();
    store.flush(Duration::from_secs(5)).unwrap();
    let counted = errors();
    store.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(errors(), counted, "none once the write went in");
}
