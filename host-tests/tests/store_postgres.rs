//! The PostgreSQL store against a real server (SEMANTICS §5): the one `cargo xtask test` starts
//! (`RC_TEST_PG_PORT`), a database per test. The outage test is in `store_postgres_outage.rs`.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use host_tests::{SharedFakeClock, TransitionCounts, pg};
use postgres::Client;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, Clock, Instant, Outcome, Ratio, RejectReason,
    Verdict,
    postgres::{DbSettings, PostgresBreaker, PostgresStore, PostgresStoreError},
};

const KEY: &str = "payments-api";

fn key() -> BreakerKey {
    BreakerKey::resource(KEY).unwrap()
}

/// The row's breaker columns as text, the way an operator would read them.
#[derive(Debug, PartialEq)]
struct Row {
    state: String,
    failure_count: i32,
    log: Option<String>,
    /// `open_until - now()` on the server, in milliseconds.
    open_for_ms: Option<f64>,
}

fn row(client: &mut Client, key: &str) -> Row {
    let r = client
        .query_one(
            "SELECT state, failure_count, execution_log::text,
                    (extract(epoch from open_until - now()) * 1000)::float8
             FROM rc_circuit_breakers WHERE resource_key = $1 AND namespace = 'default'",
            &[&key],
        )
        .expect("the key has a row");
    Row {
        state: r.get(0),
        failure_count: r.get(1),
        log: r.get(2),
        open_for_ms: r.get(3),
    }
}

fn store(settings: &DbSettings) -> PostgresStore {
    PostgresStore::connect(settings.clone()).expect("connect")
}

/// A store that reads the row on every admission: tests that change rows behind its back (as
/// a peer or the passing of a cooldown would) see the change at once.
fn eager_store(settings: &DbSettings) -> PostgresStore {
    PostgresStore::builder(settings.clone())
        .max_staleness(Duration::ZERO)
        .connect()
        .expect("connect")
}

fn fail(breaker: &impl Breaker<Classifier = resilient_circuit_std::AllErrors>) {
    let result = breaker.call(|| Err::<(), _>("upstream failed"));
    assert!(
        result.unwrap_err().operation_error().is_some(),
        "the call ran"
    );
}

fn succeed(breaker: &impl Breaker<Classifier = resilient_circuit_std::AllErrors>) {
    breaker.call(|| Ok::<_, &str>(())).expect("the call ran");
}

fn outcomes(log: &[bool]) -> Vec<Outcome> {
    log.iter()
        .map(|&s| {
            if s {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .collect()
}

/// Ends the cooldown of an OPEN row now, as waiting it out would.
fn expire_cooldown(client: &mut Client, key: &str) {
    client
        .execute(
            "UPDATE rc_circuit_breakers SET open_until = now() - interval '1 millisecond'
             WHERE resource_key = $1 AND state = 'OPEN'",
            &[&key],
        )
        .unwrap();
}

#[test]
fn rows_are_written_as_the_python_package_writes_them() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "encoding_out");
    let mut client = pg::connect(port, &db);
    // The Python reference's observed run (§5.7): failure limit 2/3, cooldown 1.5 s.
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(2, 3).unwrap())
        .success_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_millis(1500));
    let breaker = eager_store(&settings).breaker(key(), config).unwrap();
    succeed(&breaker);
    assert_eq!(
        row(&mut client, KEY),
        Row {
            state: "CLOSED".into(),
            failure_count: 0,
            log: Some("[true]".into()),
            open_for_ms: None
        }
    );
    fail(&breaker);
    fail(&breaker);
    let tripped = row(&mut client, KEY);
    assert_eq!(tripped.state, "OPEN");
    assert_eq!(tripped.failure_count, 2);
    assert_eq!(tripped.log.as_deref(), Some("[true, false, false]"));
    let open_for = tripped.open_for_ms.expect("an OPEN row has its deadline");
    assert!(
        (1000.0..=1500.0).contains(&open_for),
        "deadline {open_for} ms ahead"
    );
    // The deadline is stored as an absolute UTC instant with microseconds.
    let text: String = client
        .query_one(
            "SELECT to_char(open_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM rc_circuit_breakers",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(text.len(), 26, "{text}");
    expire_cooldown(&mut client, KEY);
    succeed(&breaker);
    assert_eq!(
        row(&mut client, KEY),
        Row {
            state: "CLOSED".into(),
            failure_count: 0,
            log: Some("[]".into()),
            open_for_ms: None
        }
    );
}

/// The Python package's guarded upsert (reference §5.5), with its own clock as the guard time.
fn python_writes(
    client: &mut Client,
    state: &str,
    failure_count: i32,
    open_in: Option<f64>,
    log: &str,
) {
    let open_until = open_in.map(|secs| {
        let at = SystemTime::now() + Duration::from_secs_f64(secs);
        at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    });
    client
        .execute(
            "INSERT INTO rc_circuit_breakers (resource_key, namespace, state, failure_count, open_until, execution_log)
             VALUES ($1, 'default', $2, $3, to_timestamp($4), $5::text::jsonb)
             ON CONFLICT (resource_key, namespace) DO UPDATE SET state = EXCLUDED.state,
               failure_count = EXCLUDED.failure_count, open_until = EXCLUDED.open_until,
               execution_log = EXCLUDED.execution_log, updated_at = CURRENT_TIMESTAMP
             WHERE NOT (rc_circuit_breakers.state = 'OPEN'
                        AND COALESCE(rc_circuit_breakers.open_until > now(), FALSE))",
            &[&KEY, &state, &failure_count, &open_until, &log],
        )
        .unwrap();
}

#[test]
fn rows_written_by_the_python_package_are_read() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "encoding_in");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(3, 3).unwrap())
        .cooldown(Duration::from_secs(30));
    let breaker = eager_store(&settings).breaker(key(), config).unwrap();

    // CLOSED with two failures: one more trips it.
    python_writes(&mut client, "CLOSED", 2, None, "[false,false]");
    let state = breaker.state();
    assert_eq!(state.status(), CircuitState::Closed);
    assert_eq!(state.failure_count(), 2);
    assert!(state.window().iter().eq(outcomes(&[false, false])));
    fail(&breaker);
    assert_eq!(row(&mut client, KEY).state, "OPEN");

    // OPEN for 20 s more, written by Python: rejected, with about 20 s to wait.
    breaker.reset().unwrap();
    python_writes(&mut client, "OPEN", 3, Some(20.0), "[false,false,false]");
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert!(
        rejected.retry_after() > Duration::from_secs(19)
            && rejected.retry_after() <= Duration::from_secs(20),
        "{rejected:?}"
    );

    // HALF_OPEN with a success and a failure (a window of 3 probes): the log is read as is.
    breaker.reset().unwrap();
    python_writes(&mut client, "HALF_OPEN", 1, None, "[true,false]");
    let state = breaker.state();
    assert_eq!(state.status(), CircuitState::HalfOpen);
    assert!(state.window().iter().eq(outcomes(&[true, false])));

    // A longer log than this breaker's window keeps its newest outcomes.
    breaker.reset().unwrap();
    python_writes(
        &mut client,
        "CLOSED",
        0,
        None,
        "[false,false,true,true,false]",
    );
    assert!(
        breaker
            .state()
            .window()
            .iter()
            .eq(outcomes(&[true, true, false]))
    );

    // An OPEN without a deadline (the Python package's vector B30, where the deadline slides
    // forever): its cooldown is over, so the next call is a probe.
    breaker.reset().unwrap();
    python_writes(&mut client, "OPEN", 3, None, "[false,false,false]");
    let probe = breaker.try_acquire().expect("a probe");
    assert!(probe.is_probe());
    probe.record(Verdict::Success);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");

    // A state no reader knows is ignored, then replaced by the next write.
    python_writes(&mut client, "closed", 0, None, "[]");
    assert_eq!(breaker.status(), CircuitState::Closed);
    succeed(&breaker);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
    assert_eq!(row(&mut client, KEY).log.as_deref(), Some("[true]"));
}

#[test]
fn four_processes_lose_none_of_their_failures() {
    let Some(port) = pg::port() else { return };
    let (db, _) = pg::fresh_database(port, "four_processes");
    let args = ["fail", &port.to_string(), &db, KEY, "50", "1000"];
    // All four start writing at once.
    let last_lines = pg::run_peers(env!("CARGO_BIN_EXE_pg_peer"), &args, 4);
    assert_eq!(last_lines, ["done"; 4]);
    let mut client = pg::connect(port, &db);
    let stored = row(&mut client, KEY);
    assert_eq!(stored.state, "CLOSED");
    assert_eq!(stored.failure_count, 200);
    let log = stored.log.unwrap();
    assert_eq!(
        log.matches("false").count(),
        200,
        "every failure is in the log"
    );
    assert!(!log.contains("true"));
}

#[test]
fn the_probe_cap_holds_across_processes() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "probe_cap");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .success_limit(Ratio::new(2, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    // Three processes: three stores, three connections.
    let breakers: Vec<PostgresBreaker> = (0..3)
        .map(|_| eager_store(&settings).breaker(key(), config).unwrap())
        .collect();
    fail(&breakers[0]);
    expire_cooldown(&mut client, KEY);
    let first = breakers[0].try_acquire().expect("the first probe");
    let second = breakers[1].try_acquire().expect("the second probe");
    let third = breakers[2].try_acquire().unwrap_err();
    assert_eq!(third.reason(), RejectReason::ProbesBusy);
    assert_eq!(
        breakers[0].try_acquire().unwrap_err().reason(),
        RejectReason::ProbesBusy
    );
    // A probe dropped without an outcome gives its slot back, in every process.
    drop(first);
    let third = breakers[2].try_acquire().expect("the freed slot");
    second.record(Verdict::Success);
    third.record(Verdict::Success);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

#[test]
fn a_probe_whose_process_died_frees_its_slot_when_its_lease_ends() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "probe_lease");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let dying = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::ZERO)
        .probe_lease(Duration::from_secs(600))
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    let other = eager_store(&settings).breaker(key(), config).unwrap();
    fail(&dying);
    expire_cooldown(&mut client, KEY);
    // The probe's process dies: no outcome, no release.
    std::mem::forget(dying.try_acquire().expect("a probe"));
    assert_eq!(
        other.try_acquire().unwrap_err().reason(),
        RejectReason::ProbesBusy
    );
    let lease: f64 = client
        .query_one(
            "SELECT extract(epoch from rc_probes_until - now())::float8 FROM rc_circuit_breakers",
            &[],
        )
        .unwrap()
        .get(0);
    assert!((590.0..=600.0).contains(&lease), "lease {lease} s");
    // The lease ends.
    client
        .execute(
            "UPDATE rc_circuit_breakers SET rc_probes_until = now() - interval '1 millisecond'",
            &[],
        )
        .unwrap();
    let probe = other.try_acquire().expect("the slot is free again");
    probe.record(Verdict::Success);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

/// A local clock far ahead: it believes every cooldown is over.
struct FarAhead;

impl Clock for FarAhead {
    fn now(&self) -> Instant {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Instant::from_nanos(since.as_nanos() as u64).saturating_add(Duration::from_secs(3600))
    }
}

#[test]
fn a_stale_writer_never_overwrites_a_live_open() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "stale_writer");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    let clock = SharedFakeClock::new();
    let stale = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .local_clock(clock.clone())
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    let peer = store(&settings).breaker(key(), config).unwrap();
    succeed(&stale); // the stale process knows a CLOSED row
    fail(&peer); // the peer trips it
    let tripped = row(&mut client, KEY);
    assert_eq!(tripped.state, "OPEN");
    // The stale process still admits from what it knows, but its outcomes cannot undo the OPEN.
    let (first, second) = (stale.try_acquire().unwrap(), stale.try_acquire().unwrap());
    first.record(Verdict::Success);
    second.record(Verdict::Failure);
    let after = row(&mut client, KEY);
    assert_eq!(after.state, "OPEN");
    assert_eq!(after.log, tripped.log);
    let (before_ms, after_ms) = (tripped.open_for_ms.unwrap(), after.open_for_ms.unwrap());
    assert!(before_ms - after_ms < 1000.0, "the deadline did not move");
    // And once it knows the row is OPEN, it rejects.
    assert_eq!(
        stale.try_acquire().unwrap_err().reason(),
        RejectReason::Open
    );

    // A process whose local clock runs an hour ahead still cannot end the cooldown early: the
    // server's clock decides.
    let hasty = PostgresStore::builder(settings.clone())
        .local_clock(FarAhead)
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    let rejected = hasty.try_acquire().unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(row(&mut client, KEY).state, "OPEN");
}

/// A wall clock `offset` away from the truth, in either direction.
struct SkewedWallClock {
    ahead: bool,
    offset: Duration,
}

impl Clock for SkewedWallClock {
    fn now(&self) -> Instant {
        let now = SystemTime::now();
        let skewed = if self.ahead {
            now + self.offset
        } else {
            now - self.offset
        };
        Instant::from_nanos(skewed.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64)
    }
}

#[test]
fn cooldowns_follow_the_server_clock_whatever_the_hosts_clocks_say() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "clock_skew");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(30));
    let skewed = |ahead| {
        PostgresStore::builder(settings.clone())
            .local_clock(SkewedWallClock {
                ahead,
                offset: Duration::from_secs(600),
            })
            .connect()
            .unwrap()
            .breaker(key(), config)
            .unwrap()
    };
    let (fast, slow) = (skewed(true), skewed(false));
    fail(&fast);
    let open_for = row(&mut client, KEY).open_for_ms.unwrap();
    assert!((29_000.0..=30_000.0).contains(&open_for), "{open_for} ms");
    for breaker in [&fast, &slow] {
        let rejected = breaker.try_acquire().unwrap_err();
        assert!(
            rejected.retry_after() > Duration::from_secs(28)
                && rejected.retry_after() <= Duration::from_secs(30),
            "{rejected:?}"
        );
    }
}

#[test]
fn a_peers_trip_is_seen_within_the_staleness_bound() {
    let Some(port) = pg::port() else { return };
    let (_db, settings) = pg::fresh_database(port, "staleness");
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let clock = SharedFakeClock::new();
    let lagging = PostgresStore::builder(settings.clone())
        .local_clock(clock.clone())
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    let eager = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::ZERO)
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    let peer = store(&settings).breaker(key(), config).unwrap();
    succeed(&lagging);
    succeed(&eager);
    fail(&peer);
    // Reading every call: the very next call is rejected.
    assert_eq!(
        eager.try_acquire().unwrap_err().reason(),
        RejectReason::Open
    );
    // The default bound (1 s): admitted from what it knew just before...
    let late = lagging.try_acquire().expect("within the bound");
    drop(late);
    clock.advance(Duration::from_millis(999));
    assert!(lagging.try_acquire().is_ok());
    // ...and rejected once what it knew is 1 s old.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        lagging.try_acquire().unwrap_err().reason(),
        RejectReason::Open
    );
}

#[test]
fn a_closed_call_is_one_round_trip() {
    let Some(port) = pg::port() else { return };
    let (_db, settings) = pg::fresh_database(port, "round_trips");
    let store = store(&settings);
    let breaker = store
        .breaker(
            key(),
            BreakerConfig::new().failure_limit(Ratio::new(3, 5).unwrap()),
        )
        .unwrap();
    succeed(&breaker); // the first call reads (and makes) the row
    let before = store.round_trips();
    for i in 0..100 {
        if i % 10 == 0 {
            fail(&breaker);
        } else {
            succeed(&breaker);
        }
    }
    assert_eq!(store.round_trips() - before, 100);
}

#[test]
fn transitions_fire_their_hook_once_in_the_process_that_made_them() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "hooks");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let counts = TransitionCounts::new();
    let breaker = eager_store(&settings)
        .breaker(key(), config)
        .unwrap()
        .on_status_change(TransitionCounts::hook(&counts));
    fail(&breaker);
    expire_cooldown(&mut client, KEY);
    succeed(&breaker);
    assert_eq!(
        counts.all(),
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

#[test]
fn manual_control_acts_on_the_current_row_however_old_the_last_known_one() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "manual_stale");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let operator = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap()
        .breaker(key(), config)
        .unwrap();
    succeed(&operator); // it knows a CLOSED row
    fail(&store(&settings).breaker(key(), config).unwrap()); // a peer trips it
    operator.force_closed().unwrap();
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

#[test]
fn a_row_left_in_another_shape_by_the_python_package_costs_no_extra_round_trips() {
    let Some(port) = pg::port() else { return };
    let (db, settings) = pg::fresh_database(port, "foreign_shape");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let store = eager_store(&settings);
    let breaker = store.breaker(key(), config).unwrap();
    fail(&breaker);
    expire_cooldown(&mut client, KEY);
    let probe = breaker.try_acquire().expect("a probe"); // the row counts it: rc_probes = 1
    // The Python package reopens the circuit and leaves this crate's columns alone.
    python_writes(
        &mut client,
        "OPEN",
        1,
        Some(20.0),
        "[false,false,false,false]",
    );
    let before = store.round_trips();
    assert_eq!(
        breaker.try_acquire().unwrap_err().reason(),
        RejectReason::Open
    );
    probe.record(Verdict::Success); // a late outcome: nothing to write
    assert!(
        store.round_trips() - before <= 3,
        "{}",
        store.round_trips() - before
    );
    assert_eq!(row(&mut client, KEY).state, "OPEN");
}

#[test]
fn a_hook_may_call_back_into_its_breaker() {
    let Some(port) = pg::port() else { return };
    let (_db, settings) = pg::fresh_database(port, "hook_reentry");
    type Status = Box<dyn Fn() -> CircuitState + Send + Sync>;
    let status: Arc<OnceLock<Status>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let breaker = eager_store(&settings)
        .breaker(
            key(),
            BreakerConfig::new().cooldown(Duration::from_secs(60)),
        )
        .unwrap()
        .on_status_change({
            let (status, seen) = (Arc::clone(&status), Arc::clone(&seen));
            move |_, _| seen.lock().unwrap().push(status.get().map(|read| read()))
        });
    let handle = breaker.clone();
    assert!(status.set(Box::new(move || handle.status())).is_ok());
    fail(&breaker);
    assert_eq!(*seen.lock().unwrap(), [Some(CircuitState::Open)]);
}

#[test]
fn a_table_made_by_the_python_package_needs_our_setup_first() {
    let Some(port) = pg::port() else { return };
    let db = pg::empty_database(port, "python_table");
    let mut client = pg::connect(port, &db);
    // The Python package's table (reference §5.3), without this crate's columns.
    client
        .batch_execute(
            "CREATE TABLE public.rc_circuit_breakers (
                resource_key character varying(255) NOT NULL, state character varying(50) NOT NULL,
                failure_count integer DEFAULT 0 NOT NULL, open_until timestamp with time zone,
                execution_log jsonb, created_at timestamp with time zone DEFAULT now(),
                updated_at timestamp with time zone DEFAULT now(),
                namespace character varying(255) DEFAULT 'default'::character varying NOT NULL,
                CONSTRAINT rc_circuit_breakers_pkey PRIMARY KEY (resource_key, namespace));
             INSERT INTO rc_circuit_breakers (resource_key, state, failure_count, execution_log)
                VALUES ('payments-api', 'CLOSED', 1, '[false]')",
        )
        .unwrap();
    let settings = DbSettings::from_config(pg::config(port, &db));
    match PostgresStore::connect(settings.clone()) {
        Err(PostgresStoreError::SchemaNotReady(problems)) => {
            assert!(
                problems.contains(&"column rc_epoch is missing".to_owned()),
                "{problems:?}"
            );
            let message = PostgresStoreError::SchemaNotReady(problems).to_string();
            assert!(message.contains("cargo xtask pg-setup"), "{message}");
        }
        other => panic!("expected SchemaNotReady, got {other:?}"),
    }
    resilient_circuit_std::postgres::setup(&mut client, None).unwrap();
    let breaker = store(&settings)
        .breaker(
            key(),
            BreakerConfig::new().failure_limit(Ratio::new(2, 2).unwrap()),
        )
        .unwrap();
    fail(&breaker);
    assert_eq!(
        row(&mut client, KEY).state,
        "OPEN",
        "the Python row's failure counted"
    );
}
