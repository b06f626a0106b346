//! An outage of the PostgreSQL store (SEMANTICS §5): the test's own server is stopped in the
//! middle of a run and restarted. In a test binary of its own, so that the tracing events it
//! captures come from it alone.

use std::time::Duration;

use host_tests::{SharedFakeClock, capture_tracing, pg, pg_server::PgServer};
use postgres::Client;
use resilient_circuit_std::{
    AllErrors, Breaker, BreakerConfig, BreakerKey, Ratio, RejectReason,
    postgres::{OnOutage, PostgresStore},
};

const KEY: &str = "payments-api";

fn key() -> BreakerKey {
    BreakerKey::resource(KEY).unwrap()
}

fn fail(breaker: &impl Breaker<Classifier = AllErrors>) {
    let result = breaker.call(|| Err::<(), _>("upstream failed"));
    assert!(
        result.unwrap_err().operation_error().is_some(),
        "the call ran"
    );
}

fn succeed(breaker: &impl Breaker<Classifier = AllErrors>) {
    breaker.call(|| Ok::<_, &str>(())).expect("the call ran");
}

fn log_and_failure_count(client: &mut Client) -> (Option<String>, i32) {
    let r = client
        .query_one(
            "SELECT execution_log::text, failure_count FROM rc_circuit_breakers WHERE resource_key = $1",
            &[&KEY],
        )
        .expect("the key has a row");
    (r.get(0), r.get(1))
}

#[test]
fn an_outage_follows_the_chosen_policy_and_loses_nothing_acknowledged() {
    if pg::port().is_none() {
        return;
    }
    let log = capture_tracing(tracing::Level::INFO, outage_run);
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
    let clock = SharedFakeClock::new();
    let open_store = PostgresStore::builder(settings.clone())
        .on_outage(OnOutage::FailOpen)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .local_clock(clock.clone())
        .connect()
        .unwrap();
    let closed_store = PostgresStore::builder(settings.clone())
        .on_outage(OnOutage::FailClosed)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .local_clock(clock.clone())
        .connect()
        .unwrap();
    let fail_open = open_store.breaker(key(), config).unwrap();
    let fail_closed = closed_store.breaker(key(), config).unwrap();
    for _ in 0..5 {
        fail(&fail_open);
    }
    succeed(&fail_closed);

    server.stop();
    clock.advance(Duration::from_secs(2)); // what the breakers knew is now stale
    // Fail open: calls still run, and their outcomes are kept.
    for _ in 0..4 {
        fail(&fail_open);
    }
    assert!(!open_store.is_connected());
    // Fail closed: rejected with a reason of its own, the call never runs.
    let rejected = fail_closed
        .call(|| -> Result<(), &str> { panic!("must not run") })
        .unwrap_err();
    assert!(rejected.is_rejected());
    assert_eq!(
        fail_closed.try_acquire().unwrap_err().reason(),
        RejectReason::StoreUnavailable
    );

    server.restart().expect("restart");
    clock.advance(Duration::from_millis(100)); // the reconnection backoff
    succeed(&fail_closed);
    assert!(closed_store.is_connected());
    fail(&fail_open);
    assert!(open_store.is_connected());
    let mut client = pg::connect(port, &db);
    let (log, failure_count) = log_and_failure_count(&mut client);
    // 5 failures and a success before; after, a success, then the 4 failures kept during the
    // outage (written at the next call) and that call's failure.
    assert_eq!(
        log.as_deref(),
        Some("[false, false, false, false, false, true, true, false, false, false, false, false]")
    );
    assert_eq!(failure_count, 5);
}
