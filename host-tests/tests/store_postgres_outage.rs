//! An outage of the PostgreSQL store (SEMANTICS §5): the test's own server is stopped in the
//! middle of a run and restarted. In a test binary of its own, so that the tracing events it
//! captures come from it alone.

use std::time::Duration;

use host_tests::{
    capture_tracing_of_every_thread, pg,
    pg::{fail, quick, succeed},
    pg_server::PgServer,
};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, Ratio, RejectReason,
    postgres::{OnOutage, PostgresStore},
};

const KEY: &str = "payments-api";

fn key() -> BreakerKey {
    BreakerKey::resource(KEY).unwrap()
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn an_outage_follows_the_chosen_policy_and_loses_nothing_acknowledged() {
    pg::port();
    let log = capture_tracing_of_every_thread(tracing::Level::INFO, outage_run);
    // One warning per store and outage, however many calls failed, and one notice when back.
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("is unreachable") && w.contains("(fail open)"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("is unreachable") && w.contains("(fail closed)"))
    );
    assert_eq!(log.matches("reconnected").count(), 2, "{log}");
}

fn outage_run() {
    let mut server = PgServer::start().expect("a server of its own");
    let port = server.port();
    let (db, settings) = pg::fresh_database(port, "outage");
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(20, 20).unwrap())
        .cooldown(Duration::from_secs(60));
    let store = |on_outage| {
        PostgresStore::builder(settings.clone())
            .on_outage(on_outage)
            .max_staleness(Duration::from_millis(50))
            .round_trip_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(100))
            .connect()
            .unwrap()
    };
    let (open_store, closed_store) = (store(OnOutage::FailOpen), store(OnOutage::FailClosed));
    let fail_open = open_store.breaker(key(), config).unwrap();
    let fail_closed = closed_store.breaker(key(), config).unwrap();
    for _ in 0..5 {
        fail(&fail_open);
    }
    open_store.flush(Duration::from_secs(5)).unwrap();
    succeed(&fail_closed);
    closed_store.flush(Duration::from_secs(5)).unwrap();

    server.stop();
    pg::until("the outage noticed", || {
        (!open_store.is_connected() && !closed_store.is_connected()).then_some(())
    });
    // Fail open: calls still run, at once, and their outcomes are kept.
    for _ in 0..4 {
        quick(|| fail(&fail_open));
    }
    // Fail closed: rejected at once with a reason of its own, the call never runs.
    let rejected =
        quick(|| fail_closed.call(|| -> Result<(), &str> { panic!("must not run") })).unwrap_err();
    assert!(rejected.is_rejected());
    assert_eq!(
        quick(|| fail_closed.try_acquire()).unwrap_err().reason(),
        RejectReason::StoreUnavailable
    );
    // Manual control says it could not act.
    assert!(fail_closed.force_open().is_err());

    server.restart().expect("restart");
    pg::until("reconnected", || {
        (open_store.is_connected() && closed_store.is_connected()).then_some(())
    });
    open_store.flush(Duration::from_secs(5)).unwrap();
    closed_store.flush(Duration::from_secs(5)).unwrap();
    succeed(&fail_closed);
    closed_store.flush(Duration::from_secs(5)).unwrap();
    let mut client = pg::connect(port, &db);
    let (log, failure_count) = pg::log_and_failure_count(&mut client, KEY);
    // 5 failures and a success before; the 4 failures kept during the outage, once each and
    // in order; then a success after it.
    assert_eq!(
        log.as_deref(),
        Some("[false, false, false, false, false, true, false, false, false, false, true]")
    );
    assert_eq!(failure_count, 0);
}
