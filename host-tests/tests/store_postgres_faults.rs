//! The PostgreSQL store when the database misbehaves (SEMANTICS §5): a reply lost after its
//! write committed, a black-holed network, a frozen (SIGSTOPped) server process, a terminated
//! one, a lock held on one key. Each case checks the exact row afterwards and that no caller
//! waited. Faults come from a TCP proxy in the test process (`host_tests::proxy`) or from the
//! server's own tools.

use std::time::{Duration, Instant};

use host_tests::{
    pg::{self, quick},
    proxy::FaultProxy,
};
use postgres::Client;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, Ratio, RejectReason,
    classify::{AllErrors, AllValues, Verdict},
    postgres::{DbSettings, MAX_PENDING_OUTCOMES, OnOutage, PostgresStore},
};

fn key(name: &str) -> BreakerKey {
    BreakerKey::resource(name).unwrap()
}

/// A failing call, which must run at once.
fn fail(breaker: &impl Breaker<Classifier = AllErrors, ValueClassifier = AllValues>) {
    quick(|| pg::fail(breaker));
}

/// A succeeding call, which must run at once.
fn succeed(breaker: &impl Breaker<Classifier = AllErrors, ValueClassifier = AllValues>) {
    quick(|| pg::succeed(breaker));
}

/// The key's `execution_log` and `failure_count`.
fn row(client: &mut Client, key: &str) -> (String, i32) {
    let (log, failures) = pg::log_and_failure_count(client, key);
    (log.expect("a log"), failures)
}

/// A window of 100 that never trips in these tests (they count outcomes).
fn counting() -> BreakerConfig {
    BreakerConfig::new().failure_limit(Ratio::new(100, 100).unwrap())
}

/// A store with a short round-trip deadline and quick reconnection, for outages.
fn store(settings: &DbSettings) -> PostgresStore {
    PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .round_trip_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect()
        .expect("connect")
}

fn flush(store: &PostgresStore) {
    store.flush(Duration::from_secs(10)).expect("flushed");
}

/// The server process of the store's connection (the only one of `application_name`
/// resilient-circuit in `db`).
fn backend_of_store(client: &mut Client, db: &str) -> i32 {
    pg::until("the store's server process", || {
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'resilient-circuit'",
                &[&db],
            )
            .unwrap();
        (rows.len() == 1).then(|| rows[0].get(0))
    })
}

/// A fresh database, a store of it (connected through a fault proxy, or directly), a breaker
/// of that store on key `a` with one failure in the row, and a client of the database beside
/// the proxy.
struct OneFailure {
    proxy: Option<FaultProxy>,
    db: String,
    client: Client,
    store: PostgresStore,
    breaker: resilient_circuit_std::SharedBreaker,
}

fn one_failure(test: &str, config: BreakerConfig, through_a_proxy: bool) -> OneFailure {
    let port = pg::port();
    let (db, _) = pg::fresh_database(port, test);
    let proxy = through_a_proxy.then(|| FaultProxy::start(port));
    let store_port = proxy.as_ref().map_or(port, FaultProxy::port);
    let store = store(&DbSettings::from_config(pg::config(store_port, &db)));
    let breaker = store.breaker(key("a"), config).unwrap();
    fail(&breaker);
    flush(&store);
    OneFailure {
        proxy,
        client: pg::connect(port, &db),
        db,
        store,
        breaker,
    }
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_write_whose_reply_was_lost_is_applied_once() {
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("lost_reply", counting(), true);
    let proxy = proxy.unwrap();
    assert_eq!(row(&mut client, "a"), ("[false]".to_owned(), 1));
    // The next reply from the server (the write of this failure) is lost and the link cut.
    proxy.drop_next_reply_and_cut();
    fail(&breaker);
    pg::until("the lost reply", || {
        (proxy.replies_dropped() == 1).then_some(())
    });
    succeed(&breaker);
    flush(&store);
    assert_eq!(
        row(&mut client, "a"),
        ("[false, false, true]".to_owned(), 0),
        "the failure whose reply was lost counted once"
    );
    assert!(proxy.connections() >= 2, "the store reconnected");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_probe_reservation_whose_reply_was_lost_gives_its_slot_back() {
    let config = BreakerConfig::new().cooldown(Duration::from_millis(200));
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("lost_reservation", config, true);
    let proxy = proxy.unwrap();
    std::thread::sleep(Duration::from_millis(250)); // the cooldown ends
    proxy.drop_next_reply_and_cut();
    // The first caller asks for a slot; the worker's reservation commits, its reply is lost.
    assert_eq!(
        quick(|| breaker.try_acquire()).unwrap_err().reason(),
        RejectReason::ProbesBusy
    );
    pg::until("the lost reply", || {
        (proxy.replies_dropped() == 1).then_some(())
    });
    // Once the store knows the batch was written (a flush waits for that), the slot it
    // reserved comes back (not at its lease's end, a minute on): a new reservation gets it,
    // and the row counts one probe.
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    let probe = pg::until("a probe", || breaker.try_acquire().ok());
    let probes: i32 = client
        .query_one("SELECT rc_probes FROM rc_circuit_breakers", &[])
        .unwrap()
        .get(0);
    assert_eq!(probes, 1);
    probe.record(Verdict::Success);
    flush(&store);
    let state: String = client
        .query_one("SELECT state FROM rc_circuit_breakers", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "CLOSED");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_black_hole_is_an_outage_within_the_deadline_and_loses_nothing() {
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("black_hole", counting(), true);
    let proxy = proxy.unwrap();
    proxy.black_hole();
    let start = Instant::now();
    fail(&breaker); // its write goes into the hole
    pg::until("the outage", || (!store.is_connected()).then_some(()));
    let noticed = start.elapsed();
    assert!(
        noticed < Duration::from_millis(1500),
        "noticed after {noticed:?}"
    );
    // Ten seconds of calls that never wait.
    let mut expected = vec![false, false];
    while start.elapsed() < Duration::from_secs(10) {
        succeed(&breaker);
        fail(&breaker);
        expected.extend([true, false]);
        std::thread::sleep(Duration::from_millis(250));
    }
    proxy.pass();
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    let log: Vec<String> = expected.iter().map(bool::to_string).collect();
    let (stored, failures) = row(&mut client, "a");
    let wanted: Vec<&str> = log.iter().map(String::as_str).collect();
    let tail = wanted[wanted.len().saturating_sub(100)..].join(", ");
    assert_eq!(stored, format!("[{tail}]"), "every outcome once, in order");
    assert_eq!(failures, 1);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_frozen_server_process_is_an_outage_and_nothing_is_counted_twice() {
    let OneFailure {
        db,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("sigstop", counting(), false);
    let backend = backend_of_store(&mut client, &db);
    // Frozen, as an operator's `kill -STOP` would: its TCP connection stays acknowledged.
    assert!(pg::signal(backend, "STOP"));
    fail(&breaker); // its write reaches the frozen process
    pg::until("the outage", || (!store.is_connected()).then_some(()));
    for _ in 0..5 {
        fail(&breaker);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(pg::signal(backend, "CONT"));
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    assert_eq!(
        row(&mut client, "a"),
        (
            "[false, false, false, false, false, false, false]".to_owned(),
            7
        )
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_terminated_server_process_is_replaced_and_nothing_is_lost() {
    let OneFailure {
        db,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("terminate", counting(), false);
    let backend = backend_of_store(&mut client, &db);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&backend])
        .unwrap();
    fail(&breaker);
    succeed(&breaker);
    flush(&store);
    assert_eq!(
        row(&mut client, "a"),
        ("[false, false, true]".to_owned(), 0)
    );
    assert_ne!(backend_of_store(&mut client, &db), backend);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_lock_held_on_one_key_delays_no_other_and_keeps_the_connection() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "row_lock");
    let mut client = pg::connect(port, &db);
    let store = store(&settings);
    let a = store.breaker(key("a"), counting()).unwrap();
    let b = store.breaker(key("b"), counting()).unwrap();
    succeed(&a);
    succeed(&b);
    flush(&store);
    // Another session holds key b's row.
    let mut holder = pg::connect(port, &db);
    let mut lock = holder.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM rc_circuit_breakers WHERE resource_key = 'b' FOR UPDATE",
        &[],
    )
    .unwrap();
    fail(&b);
    let start = Instant::now();
    fail(&a);
    pg::until("a's failure in its row", || {
        (row(&mut client, "a").1 == 1).then_some(())
    });
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "a waited {took:?} for b's lock"
    );
    assert!(store.is_connected(), "a statement error is not an outage");
    assert_eq!(
        row(&mut client, "b").1,
        0,
        "b's write is held back while its row is locked"
    );
    lock.commit().unwrap();
    flush(&store);
    assert_eq!(row(&mut client, "a"), ("[true, false]".to_owned(), 1));
    assert_eq!(row(&mut client, "b"), ("[true, false]".to_owned(), 1));
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn fail_closed_rejects_at_once_while_the_server_is_frozen() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "fail_closed_frozen");
    let mut client = pg::connect(port, &db);
    let store = PostgresStore::builder(settings.clone())
        .on_outage(OnOutage::FailClosed)
        .max_staleness(Duration::from_millis(50))
        .round_trip_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::MAX, Duration::MAX)
        .connect()
        .unwrap();
    let breaker = store.breaker(key("a"), counting()).unwrap();
    succeed(&breaker);
    flush(&store);
    let backend = backend_of_store(&mut client, &db);
    assert!(pg::signal(backend, "STOP"));
    let rejected = pg::until("fail closed", || {
        quick(|| breaker.try_acquire())
            .err()
            .filter(|r| r.reason() == RejectReason::StoreUnavailable)
    });
    assert!(rejected.retry_after() > Duration::ZERO);
    assert!(pg::signal(backend, "CONT"));
    // A reconnection backoff of Duration::MAX is a configured value: nothing overflows, the
    // store just waits.
    assert!(quick(|| breaker.try_acquire()).is_err());
}

/// A reply lost while the server process that wrote it lives on (the network lost, the
/// server's side still open for a second), then two lost in a row, with other keys written in
/// between: each batch in doubt is sent again, unchanged, before any other, and the answer
/// says whether it was applied. No server process is ended (as behind a connection pooler),
/// and every key's count is exact.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn replies_lost_while_their_server_process_lives_are_applied_once_each() {
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker: a,
        db,
    } = one_failure("lost_alive", counting(), true);
    let proxy = proxy.unwrap();
    let b = store.breaker(key("b"), counting()).unwrap();
    let c = store.breaker(key("c"), counting()).unwrap();
    let backends = |client: &mut Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'resilient-circuit'",
                &[&db],
            )
            .unwrap()
            .get(0)
    };

    // One lost reply: a's and b's failure in one batch; the server side stays open for 1 s.
    proxy.drop_next_reply_and_cut_client(Duration::from_secs(1));
    fail(&a);
    fail(&b);
    pg::until("the first lost reply", || {
        (proxy.replies_dropped() == 1).then_some(())
    });
    // Others go on meanwhile, and the old server process is still there.
    fail(&c);
    // The store's new connection beside the old server process, which lives on.
    pg::until("two server processes", || {
        (backends(&mut client) == 2).then_some(())
    });
    flush(&store);

    // Two in a row: the batch's reply, then its resend's.
    proxy.drop_next_reply_and_cut_client(Duration::from_secs(1));
    fail(&a);
    fail(&c);
    pg::until("the second lost reply", || {
        (proxy.replies_dropped() == 2).then_some(())
    });
    proxy.drop_next_reply_and_cut_client(Duration::from_secs(1));
    fail(&b);
    pg::until("the third lost reply", || {
        (proxy.replies_dropped() == 3).then_some(())
    });
    flush(&store);

    let counts: Vec<i32> = ["a", "b", "c"]
        .iter()
        .map(|name| row(&mut client, name).1)
        .collect();
    assert_eq!(counts, [3, 2, 2], "a: 1 + 1 + 1; b: 1 + 1; c: 1 + 1");
}

/// A batch in doubt whose key's row is locked elsewhere holds back no other key: the doubt is
/// settled by the writer's row alone (the batch fenced off), and its changes go again, the
/// locked key's once its row is free.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_batch_in_doubt_with_a_locked_row_holds_back_no_other_key() {
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker: a,
        db,
    } = one_failure("doubt_lock", counting(), true);
    let proxy = proxy.unwrap();
    let b = store.breaker(key("b"), counting()).unwrap();
    fail(&b);
    flush(&store);
    // Another session holds key b's row.
    let mut holder = pg::connect(pg::port(), &db);
    let mut lock = holder.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM rc_circuit_breakers WHERE resource_key = 'b' FOR UPDATE",
        &[],
    )
    .unwrap();
    // a's and b's failures in one batch (b's locked row skipped); its answer is lost.
    proxy.drop_next_reply_and_cut_client(Duration::from_secs(1));
    fail(&b);
    fail(&a);
    pg::until("the lost reply", || {
        (proxy.replies_dropped() == 1).then_some(())
    });
    fail(&a);
    pg::until("a's failures in its row, b's row still locked", || {
        (row(&mut client, "a").1 == 3).then_some(())
    });
    assert_eq!(
        row(&mut client, "b").1,
        1,
        "b's write is held back while its row is locked"
    );
    lock.commit().unwrap();
    flush(&store);
    assert_eq!(row(&mut client, "b").1, 2);
    assert_eq!(row(&mut client, "a").1, 3);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn an_outage_past_the_bound_keeps_the_newest_outcomes() {
    // A window as long as the bound, never tripped by one failure in two.
    let config = BreakerConfig::new().failure_limit(Ratio::new(1024, 1024).unwrap());
    let OneFailure {
        proxy,
        mut client,
        store,
        breaker,
        ..
    } = one_failure("past_the_bound", config, true);
    let proxy = proxy.unwrap();
    proxy.black_hole();
    fail(&breaker); // its write goes into the hole: a batch in doubt, kept whatever follows
    pg::until("the outage", || (!store.is_connected()).then_some(()));
    // 100 000 outcomes, each success logged with the failure after it.
    const PAIRS: u64 = 50_000;
    for _ in 0..PAIRS {
        pg::succeed(&breaker);
        pg::fail(&breaker);
    }
    proxy.pass();
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    // The bound keeps the newest 1024 of 100 001 outcomes of one period; the others, which the
    // window would push out anyway, are no loss (losses are counted: see the unit tests).
    assert_eq!(store.dropped_outcomes(), 0);
    // The newest reached the row, in order: the window is the last 1024 of them.
    let (log, failures) = row(&mut client, "a");
    let newest = ["true, false"; MAX_PENDING_OUTCOMES / 2].join(", ");
    assert_eq!(log, format!("[{newest}]"));
    assert_eq!(failures, 1);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_hundred_rows_locked_elsewhere_hold_back_no_other_key() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "hundred_locked");
    let mut client = pg::connect(port, &db);
    // The default round-trip timeout (2 s): a hundred locked rows waited for one at a time
    // (50 ms each) would take 5 s.
    let store = PostgresStore::builder(settings)
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let locked: Vec<_> = (0..100)
        .map(|i| {
            store
                .breaker(key(&format!("locked-{i}")), counting())
                .unwrap()
        })
        .collect();
    let free = store.breaker(key("free"), counting()).unwrap();
    flush(&store);
    // A row OPEN in the table for a key this process has not made yet.
    client
        .execute(
            "INSERT INTO rc_circuit_breakers (resource_key, namespace, state, failure_count, open_until, execution_log)
             VALUES ('new', 'default', 'OPEN', 1, now() + interval '1 hour', '[false]')",
            &[],
        )
        .unwrap();
    // Another session holds the hundred rows, and keeps them.
    let mut holder = pg::connect(port, &db);
    let mut lock = holder.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM rc_circuit_breakers WHERE resource_key LIKE 'locked-%' FOR UPDATE",
        &[],
    )
    .unwrap();
    for breaker in &locked {
        fail(breaker);
    }
    let before = store.round_trips();
    let start = Instant::now();
    // A new key loads from its row: OPEN, so its first call is rejected.
    let new = store.breaker(key("new"), counting()).unwrap();
    assert!(
        quick(|| new.call(|| Ok::<_, &str>(())))
            .unwrap_err()
            .is_rejected()
    );
    // Another key writes.
    fail(&free);
    pg::until("the free key's failure in its row", || {
        (row(&mut client, "free").1 == 1).then_some(())
    });
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(store.is_connected(), "a locked row is not an outage");
    // The locked keys are tried again later, within the statement budget.
    std::thread::sleep(Duration::from_secs(2));
    let statements = store.round_trips() - before;
    println!("hundred locked rows: {statements} statements in 2 s");
    assert!(statements <= 2 * 80 + 16, "{statements} statements in 2 s");
    assert_eq!(row(&mut client, "locked-0").1, 0);
    lock.commit().unwrap();
    flush(&store);
    for i in 0..100 {
        assert_eq!(
            row(&mut client, &format!("locked-{i}")),
            ("[false]".to_owned(), 1)
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn flushes_abandoned_in_a_loop_stay_within_the_statement_budget() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "flush_storm");
    let store = store(&settings);
    let breakers: Vec<_> = (0..20)
        .map(|i| store.breaker(key(&format!("k{i}")), counting()).unwrap())
        .collect();
    flush(&store);
    // Every row locked elsewhere, so no flush ever completes.
    let mut holder = pg::connect(port, &db);
    let mut lock = holder.transaction().unwrap();
    lock.execute("SELECT 1 FROM rc_circuit_breakers FOR UPDATE", &[])
        .unwrap();
    for breaker in &breakers {
        fail(breaker);
    }
    let before = store.round_trips();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let _ = store.flush(Duration::from_millis(10));
    }
    let statements = store.round_trips() - before;
    println!("flushes in a loop: {statements} statements in 2 s");
    assert!(statements <= 2 * 80 + 16, "{statements} statements in 2 s");
    lock.commit().unwrap();
    flush(&store);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn new_keys_made_in_a_loop_stay_within_the_statement_budget() {
    let port = pg::port();
    let (_db, settings) = pg::fresh_database(port, "new_key_storm");
    let store = store(&settings);
    // Each new key's row is read, made, and read again before its breaker is handed out: three
    // statements, every one within the budget.
    // The clock first: every statement counted went after it.
    let start = Instant::now();
    let before = store.round_trips();
    let mut made = 0;
    while start.elapsed() < Duration::from_secs(2) {
        drop(
            store
                .breaker(key(&format!("new-{made}")), counting())
                .unwrap(),
        );
        made += 1;
    }
    let statements = store.round_trips() - before;
    // The last key was asked for before 2 s were up and made after.
    let elapsed = start.elapsed().as_secs_f64();
    println!("{made} new keys in a loop: {statements} statements in {elapsed:.3} s");
    let budget = (80.0 * elapsed) as u64 + 16;
    assert!(
        statements <= budget,
        "{statements} statements, {budget} allowed"
    );
}

/// A store of `test`'s fresh database through a fault proxy, with the healthy row of key `a`
/// for `config`.
fn through_a_proxy(
    test: &str,
    config: BreakerConfig,
) -> (
    FaultProxy,
    Client,
    PostgresStore,
    resilient_circuit_std::SharedBreaker,
) {
    let port = pg::port();
    let (db, _) = pg::fresh_database(port, test);
    let proxy = FaultProxy::start(port);
    let store = store(&DbSettings::from_config(pg::config(proxy.port(), &db)));
    let breaker = store.breaker(key("a"), config).unwrap();
    succeed(&breaker);
    flush(&store);
    (proxy, pg::connect(port, &db), store, breaker)
}

/// The row's state and how long its OPEN deadline is ahead of the server's `now()`, in ms.
fn state_and_open_for(client: &mut Client, key: &str) -> (String, Option<f64>) {
    let row = client
        .query_one(
            "SELECT state, (extract(epoch from open_until - now()) * 1000)::float8
             FROM rc_circuit_breakers WHERE resource_key = $1",
            &[&key],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_recovery_seen_during_an_outage_is_not_overturned_when_the_database_is_back() {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_millis(300));
    let (proxy, mut client, store, breaker) = through_a_proxy("recovery_in_outage", config);
    let counts = host_tests::TransitionCounts::new();
    let breaker = breaker.on_status_change(host_tests::TransitionCounts::hook(&counts));
    proxy.black_hole();
    fail(&breaker); // trips this process's copy; its write goes into the hole
    pg::until("the outage", || (!store.is_connected()).then_some(()));
    // Failing open: after the cooldown a probe runs here, and succeeds; the breaker closes.
    let probe = pg::until("a probe", || breaker.try_acquire().ok());
    probe.record(Verdict::Success);
    succeed(&breaker);
    // The worker announces what this process's copy went through (at its own pace).
    pg::until("the recovery announced", || {
        (counts.all().last() == Some(&(CircuitState::HalfOpen, CircuitState::Closed))).then_some(())
    });
    let announced = counts.all().len();
    proxy.pass();
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    // The row went through the same: OPEN when the failure was recorded, closed by the probe.
    assert_eq!(
        state_and_open_for(&mut client, "a"),
        ("CLOSED".to_owned(), None)
    );
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(
        counts.all().len(),
        announced,
        "not reopened: {:?}",
        counts.all()
    );
    let (log, failures) = row(&mut client, "a");
    assert_eq!(
        (log.as_str(), failures),
        ("[true]", 0),
        "the probe's success, then one"
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_cooldown_starts_when_its_failure_was_recorded_not_when_it_reached_the_row() {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(2));
    let (proxy, mut client, store, breaker) = through_a_proxy("cooldown_in_outage", config);
    proxy.black_hole();
    let failed_at = Instant::now();
    fail(&breaker);
    pg::until("the outage", || (!store.is_connected()).then_some(()));
    std::thread::sleep(Duration::from_secs(1).saturating_sub(failed_at.elapsed()));
    proxy.pass();
    pg::until("the reconnection", || store.is_connected().then_some(()));
    flush(&store);
    let (state, open_for) = state_and_open_for(&mut client, "a");
    let open_for = open_for.expect("a deadline");
    let left = 2000.0 - failed_at.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(state, "OPEN");
    // The deadline is the failure's time plus the cooldown (within the clocks' offset
    // estimate), not the time of the write plus the cooldown.
    assert!(
        open_for <= left + 100.0,
        "OPEN for {open_for} ms more, {left} ms left"
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn an_idle_connection_the_server_ends_is_noticed_without_a_call() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "idle_ended");
    let mut client = pg::connect(port, &db);
    // No poll for an hour: only the end of the connection's notifications can tell.
    let store = PostgresStore::builder(settings)
        .max_staleness(Duration::from_secs(3600))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect()
        .unwrap();
    let breaker = store.breaker(key("a"), counting()).unwrap();
    flush(&store);
    let ended = backend_of_store(&mut client, &db);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&ended])
        .unwrap();
    // No call is made: the store connects again by itself.
    pg::until("a new connection", || {
        let pid = backend_of_store(&mut client, &db);
        (pid != ended && store.is_connected()).then_some(())
    });
    fail(&breaker);
    flush(&store);
    assert_eq!(row(&mut client, "a").1, 1);
}
