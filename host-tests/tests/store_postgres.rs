//! The PostgreSQL store against a real server (SEMANTICS §5): the one `cargo xtask test` starts
//! (`RC_TEST_PG_PORT`), a database per test. Faults (outages, lost replies, frozen servers)
//! are in `store_postgres_faults.rs`.
//!
//! The store's worker writes and reads on its own thread: a test flushes the store before it
//! reads a row, and waits (`pg::until`) for what arrives from the database.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use host_tests::{
    TransitionCounts, pg,
    pg::{fail, succeed},
};
use postgres::Client;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio, RejectReason,
    SharedBreaker,
    classify::Verdict,
    postgres::{DbSettings, PostgresStore, PostgresStoreError},
    state::Outcome,
    time::{Clock, Instant},
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

/// A store that reads its rows every 10 ms: tests that change rows behind its back in ways no
/// notification announces (a deadline moved, a count changed) see the change soon.
fn eager_store(settings: &DbSettings) -> PostgresStore {
    PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_millis(10))
        .connect()
        .expect("connect")
}

/// Everything recorded so far, in the rows.
fn flush<C: Clock + Clone + Send + Sync + 'static>(store: &PostgresStore<C>) {
    store.flush(Duration::from_secs(5)).expect("flushed");
}

/// A probe permit, once the store's worker has reserved a slot for it (the first callers after
/// the cooldown are told the probes are busy meanwhile).
fn probe<B: Breaker>(breaker: &B) -> resilient_circuit_std::breaker::Permit<&B> {
    pg::until("a probe slot", || match breaker.try_acquire() {
        Ok(permit) => Some(permit),
        Err(rejected) => {
            assert_ne!(rejected.reason(), RejectReason::StoreUnavailable);
            None
        }
    })
}

/// Waits until `breaker` rejects with `reason`.
fn until_rejected<B: Breaker>(
    breaker: &B,
    reason: RejectReason,
) -> resilient_circuit_std::Rejected {
    pg::until("a rejection", || match breaker.try_acquire() {
        Err(rejected) if rejected.reason() == reason => Some(rejected),
        _ => None,
    })
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
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn rows_are_written_as_the_python_package_writes_them() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "encoding_out");
    let mut client = pg::connect(port, &db);
    // The Python reference's observed run (§5.7): failure limit 2/3, cooldown 1.5 s.
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(2, 3).unwrap())
        .success_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_millis(1500));
    let store = eager_store(&settings);
    let breaker = store.breaker(key(), config).unwrap();
    succeed(&breaker);
    flush(&store);
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
    flush(&store);
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
    probe(&breaker).record(Verdict::Success);
    flush(&store);
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

/// One keyed store type: the `MemoryStore` a handle gives replicates on its own, and keeps the
/// worker running after every handle is gone; its breakers name keys in the store's namespace.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn the_store_of_a_handle_replicates_after_the_handle_is_gone() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "one_store");
    let mut client = pg::connect(port, &db);
    let store: MemoryStore = store(&settings).store().clone();
    assert_eq!(store.namespace(), "default");
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(60));
    let breaker = store.breaker(KEY, config).unwrap();
    fail(&breaker);
    let postgres = store.postgres().expect("a replicated store has its handle");
    assert!(postgres.is_connected());
    flush(&postgres);
    assert_eq!(row(&mut client, KEY).state, "OPEN");
    // The handle and the store are one store: the same keys.
    assert!(postgres.contains(&key()));
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn rows_written_by_the_python_package_are_read() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "encoding_in");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(3, 3).unwrap())
        .cooldown(Duration::from_secs(30));
    let store = eager_store(&settings);
    let breaker = store.breaker(key(), config).unwrap();

    // CLOSED with two failures: one more trips it.
    python_writes(&mut client, "CLOSED", 2, None, "[false,false]");
    let state = pg::until("the Python row", || {
        Some(breaker.state()).filter(|s| s.failure_count() == 2)
    });
    assert_eq!(state.status(), CircuitState::Closed);
    assert!(state.window().iter().eq(outcomes(&[false, false])));
    fail(&breaker);
    flush(&store);
    assert_eq!(row(&mut client, KEY).state, "OPEN");

    // OPEN for 20 s more, written by Python: rejected, with about 20 s to wait.
    breaker.reset().unwrap();
    python_writes(&mut client, "OPEN", 3, Some(20.0), "[false,false,false]");
    let rejected = until_rejected(&breaker, RejectReason::Open);
    assert!(
        rejected.retry_after() > Duration::from_secs(19)
            && rejected.retry_after() <= Duration::from_secs(20),
        "{rejected:?}"
    );

    // HALF_OPEN with a success and a failure (a window of 3 probes): the log is read as is.
    breaker.reset().unwrap();
    python_writes(&mut client, "HALF_OPEN", 1, None, "[true,false]");
    let state = pg::until("the HALF_OPEN row", || {
        Some(breaker.state()).filter(|s| s.status() == CircuitState::HalfOpen)
    });
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
    pg::until("the longer log", || {
        breaker
            .state()
            .window()
            .iter()
            .eq(outcomes(&[true, true, false]))
            .then_some(())
    });

    // An OPEN without a deadline (the Python package's vector B30, where the deadline slides
    // forever): its cooldown is over, so the next call is a probe.
    breaker.reset().unwrap();
    python_writes(&mut client, "OPEN", 3, None, "[false,false,false]");
    pg::until("the OPEN row", || {
        (breaker.status() == CircuitState::Open).then_some(())
    });
    let probe = probe(&breaker);
    assert!(probe.is_probe());
    probe.record(Verdict::Success);
    flush(&store);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");

    // A state no reader knows is read as a fresh CLOSED, then replaced by the next write.
    python_writes(&mut client, "closed", 0, None, "[]");
    flush(&store);
    assert_eq!(breaker.status(), CircuitState::Closed);
    succeed(&breaker);
    flush(&store);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
    assert_eq!(row(&mut client, KEY).log.as_deref(), Some("[true]"));
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_live_open_row_whose_log_cannot_be_read_still_rejects() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "unreadable_log");
    let mut client = pg::connect(port, &db);
    let store = eager_store(&settings);
    let breaker = store
        .breaker(
            key(),
            BreakerConfig::new().cooldown(Duration::from_secs(30)),
        )
        .unwrap();
    // The last: a valid log of 50 000 outcomes (350 KB), longer than any window, not fetched.
    let oversized = format!("[{}true]", "false, ".repeat(50_000));
    for log in ["null", "{\"not\": \"a list\"}", oversized.as_str()] {
        breaker.reset().unwrap();
        python_writes(&mut client, "OPEN", 3, Some(20.0), log);
        let rejected = until_rejected(&breaker, RejectReason::Open);
        assert!(rejected.retry_after() > Duration::from_secs(19), "{log}");
    }
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn four_processes_lose_none_of_their_failures() {
    let port = pg::port();
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
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn the_probe_cap_holds_across_processes() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "probe_cap");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .success_limit(Ratio::new(2, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    // Three processes: three stores, three connections.
    let stores: Vec<PostgresStore> = (0..3).map(|_| eager_store(&settings)).collect();
    let breakers: Vec<SharedBreaker> = stores
        .iter()
        .map(|store| store.breaker(key(), config).unwrap())
        .collect();
    fail(&breakers[0]);
    flush(&stores[0]);
    expire_cooldown(&mut client, KEY);
    let first = probe(&breakers[0]);
    let second = probe(&breakers[1]);
    // Both slots are taken in the row: the third process gets none, however often it asks.
    for _ in 0..50 {
        assert_eq!(
            breakers[2].try_acquire().unwrap_err().reason(),
            RejectReason::ProbesBusy
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        breakers[0].try_acquire().unwrap_err().reason(),
        RejectReason::ProbesBusy
    );
    // A probe dropped without an outcome gives its slot back, in every process.
    drop(first);
    let third = probe(&breakers[2]);
    second.record(Verdict::Success);
    third.record(Verdict::Success);
    for store in &stores {
        flush(store);
    }
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_probe_whose_process_died_frees_its_slot_when_its_lease_ends() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "probe_lease");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let dying_store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_millis(10))
        .probe_lease(Duration::from_secs(600))
        .connect()
        .unwrap();
    let dying = dying_store.breaker(key(), config).unwrap();
    let other_store = eager_store(&settings);
    let other = other_store.breaker(key(), config).unwrap();
    fail(&dying);
    flush(&dying_store);
    expire_cooldown(&mut client, KEY);
    // The probe's process dies: no outcome, no release.
    std::mem::forget(probe(&dying));
    // The other process refuses as OPEN until it has read the row, then as busy: never admits.
    pg::until("the other process to see the slot taken", || {
        match other.try_acquire() {
            Ok(_) => panic!("admitted while the dead probe holds the only slot"),
            Err(rejected) => (rejected.reason() == RejectReason::ProbesBusy).then_some(()),
        }
    });
    for _ in 0..20 {
        assert_eq!(
            other.try_acquire().unwrap_err().reason(),
            RejectReason::ProbesBusy
        );
        std::thread::sleep(Duration::from_millis(2));
    }
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
    probe(&other).record(Verdict::Success);
    flush(&other_store);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

/// A local clock far ahead: it believes every cooldown is over.
#[derive(Clone, Copy)]
struct FarAhead;

impl Clock for FarAhead {
    fn now(&self) -> Instant {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Instant::from_nanos(since.as_nanos() as u64).saturating_add(Duration::from_secs(3600))
    }
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_stale_writer_never_overwrites_a_live_open() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "stale_writer");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    let stale_store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let stale = stale_store.breaker(key(), config).unwrap();
    let peer_store = store(&settings);
    let peer = peer_store.breaker(key(), config).unwrap();
    succeed(&stale); // the stale process knows a CLOSED row
    flush(&stale_store);
    // It admits two calls from what it knows; meanwhile the peer trips the row.
    let (first, second) = (stale.try_acquire().unwrap(), stale.try_acquire().unwrap());
    fail(&peer);
    flush(&peer_store);
    let tripped = row(&mut client, KEY);
    assert_eq!(tripped.state, "OPEN");
    // Their late outcomes belong to the old period: they cannot undo the OPEN.
    first.record(Verdict::Success);
    second.record(Verdict::Failure);
    flush(&stale_store);
    let after = row(&mut client, KEY);
    assert_eq!(after.state, "OPEN");
    assert_eq!(after.log, tripped.log);
    let (before_ms, after_ms) = (tripped.open_for_ms.unwrap(), after.open_for_ms.unwrap());
    assert!(before_ms - after_ms < 1000.0, "the deadline did not move");
    // And it learns of the trip (by notification: its own polling is an hour apart).
    until_rejected(&stale, RejectReason::Open);

    // A process whose local clock runs an hour ahead still cannot end the cooldown early: the
    // server's clock decides.
    let hasty_store = PostgresStore::builder(settings.clone())
        .local_clock(FarAhead)
        .connect()
        .unwrap();
    let hasty = hasty_store.breaker(key(), config).unwrap();
    let rejected = hasty.try_acquire().unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert!(
        rejected.retry_after() > Duration::from_secs(50),
        "{rejected:?}"
    );
    flush(&hasty_store);
    assert_eq!(row(&mut client, KEY).state, "OPEN");
}

/// A wall clock `offset` away from the truth, in either direction.
#[derive(Clone, Copy)]
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
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn cooldowns_follow_the_server_clock_whatever_the_hosts_clocks_say() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "clock_skew");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(30));
    let skewed = |ahead| {
        let clock = SkewedWallClock {
            ahead,
            offset: Duration::from_secs(600),
        };
        let store = PostgresStore::builder(settings.clone())
            .local_clock(clock)
            .connect()
            .unwrap();
        let breaker = store.breaker(key(), config).unwrap();
        (store, breaker)
    };
    let ((fast_store, fast), (_slow_store, slow)) = (skewed(true), skewed(false));
    fail(&fast);
    flush(&fast_store);
    let open_for = row(&mut client, KEY).open_for_ms.unwrap();
    assert!((29_000.0..=30_000.0).contains(&open_for), "{open_for} ms");
    for breaker in [&fast, &slow] {
        let rejected = until_rejected(breaker, RejectReason::Open);
        assert!(
            rejected.retry_after() > Duration::from_secs(28)
                && rejected.retry_after() <= Duration::from_secs(30),
            "{rejected:?}"
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_change_no_notification_announces_is_read_within_the_staleness_bound() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "staleness");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().failure_limit(Ratio::new(3, 3).unwrap());
    let store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_millis(300))
        .connect()
        .unwrap();
    let breaker = store.breaker(key(), config).unwrap();
    // A failure count written by a peer changes neither the state nor the period: no
    // notification, so only the poll brings it.
    python_writes(&mut client, "CLOSED", 2, None, "[false,false]");
    let written = std::time::Instant::now();
    pg::until("the poll", || (breaker.failure_count() == 2).then_some(()));
    let seen_after = written.elapsed();
    assert!(seen_after < Duration::from_millis(900), "{seen_after:?}");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn calls_cost_no_statement_of_their_own() {
    let port = pg::port();
    let (_db, settings) = pg::fresh_database(port, "round_trips");
    let store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let breaker = store
        .breaker(
            key(),
            BreakerConfig::new().failure_limit(Ratio::new(30, 50).unwrap()),
        )
        .unwrap();
    for _ in 0..50 {
        succeed(&breaker);
    }
    flush(&store);
    // A healthy window: 100 000 calls and a flush, and the row is only read to confirm.
    let before = store.round_trips();
    for _ in 0..100_000 {
        succeed(&breaker);
    }
    flush(&store);
    let healthy = store.round_trips() - before;
    assert!(healthy <= 2, "{healthy} statements");
    // One call in ten failing: the failures go at once (at most one write each), the
    // successes with them.
    let before = store.round_trips();
    for i in 0..100 {
        if i % 10 == 0 {
            fail(&breaker);
        } else {
            succeed(&breaker);
        }
    }
    flush(&store);
    let mixed = store.round_trips() - before;
    assert!(mixed <= 10 + 3, "{mixed} statements");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn transitions_fire_their_hook_once_for_each_change_of_the_row() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "hooks");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let counts = TransitionCounts::new();
    let watcher_counts = TransitionCounts::new();
    let store = eager_store(&settings);
    let breaker = store
        .breaker(key(), config)
        .unwrap()
        .on_status_change(TransitionCounts::hook(&counts));
    // Another process's hook sees the same changes, through the row.
    let watcher_store = eager_store(&settings);
    let _watcher = watcher_store
        .breaker(key(), config)
        .unwrap()
        .on_status_change(TransitionCounts::hook(&watcher_counts));
    fail(&breaker);
    pg::until("OPEN", || (counts.all().len() == 1).then_some(()));
    expire_cooldown(&mut client, KEY);
    probe(&breaker).record(Verdict::Success);
    let cycle = [
        (CircuitState::Closed, CircuitState::Open),
        (CircuitState::Open, CircuitState::HalfOpen),
        (CircuitState::HalfOpen, CircuitState::Closed),
    ];
    pg::until("the whole cycle", || {
        (counts.all().len() == 3).then_some(())
    });
    assert_eq!(counts.all(), cycle);
    pg::until("the watcher's cycle", || {
        (watcher_counts.all().last().map(|t| t.1) == Some(CircuitState::Closed)).then_some(())
    });
    // The watcher may miss HALF_OPEN if it came and went between two of its reads; it never
    // sees a change twice.
    let seen = watcher_counts.all();
    assert!(
        seen == cycle || seen == [cycle[0], (CircuitState::Open, CircuitState::Closed)],
        "{seen:?}"
    );
    flush(&store);
    assert_eq!(counts.all(), cycle, "nothing fired twice");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn manual_control_acts_on_the_row_and_says_so() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "manual");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let operator_store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let operator = operator_store.breaker(key(), config).unwrap();
    let peer_store = store(&settings);
    let peer = peer_store.breaker(key(), config).unwrap();
    fail(&peer); // a peer trips it
    flush(&peer_store);
    // Done when it returns: the row is changed, whatever this process knew.
    operator.force_closed().unwrap();
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
    operator.force_open().unwrap();
    assert_eq!(row(&mut client, KEY).state, "OPEN");
    until_rejected(&peer, RejectReason::Open);
    operator.reset().unwrap();
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_late_probe_outcome_leaves_a_row_the_python_package_reopened() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "foreign_shape");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let store = eager_store(&settings);
    let breaker = store.breaker(key(), config).unwrap();
    fail(&breaker);
    flush(&store);
    expire_cooldown(&mut client, KEY);
    let probe = probe(&breaker); // the row counts it: rc_probes = 1
    // The Python package reopens the circuit and leaves this crate's columns alone; the
    // trigger starts a new period.
    python_writes(
        &mut client,
        "OPEN",
        1,
        Some(20.0),
        "[false,false,false,false]",
    );
    until_rejected(&breaker, RejectReason::Open);
    probe.record(Verdict::Success); // a late outcome of the old period
    flush(&store);
    let stored = row(&mut client, KEY);
    assert_eq!(stored.state, "OPEN");
    assert_eq!(stored.log.as_deref(), Some("[false, false, false, false]"));
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_hook_may_call_back_into_its_breaker() {
    let port = pg::port();
    let (_db, settings) = pg::fresh_database(port, "hook_reentry");
    type Status = Box<dyn Fn() -> CircuitState + Send + Sync>;
    let status: Arc<OnceLock<Status>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = eager_store(&settings);
    let breaker = store
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
    flush(&store);
    assert_eq!(*seen.lock().unwrap(), [Some(CircuitState::Open)]);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_table_made_by_the_python_package_needs_our_setup_first() {
    let port = pg::port();
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
    resilient_circuit_std::postgres::schema::setup(&mut client, None).unwrap();
    let store = store(&settings);
    let breaker = store
        .breaker(
            key(),
            BreakerConfig::new().failure_limit(Ratio::new(2, 2).unwrap()),
        )
        .unwrap();
    fail(&breaker);
    flush(&store);
    assert_eq!(
        row(&mut client, KEY).state,
        "OPEN",
        "the Python row's failure counted"
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn eight_processes_of_four_threads_count_every_failure_once_despite_lost_replies() {
    let port = pg::port();
    let (db, _) = pg::fresh_database(port, "eight_processes");
    let proxy = host_tests::proxy::FaultProxy::start(port);
    let args = [
        "threads",
        &proxy.port().to_string(),
        &db,
        KEY,
        "4",
        "25",
        "1000",
    ];
    // Replies lost while the peers write (once all are connected): each one a batch in
    // doubt, settled by the writers table once its store has reconnected.
    let lines = pg::run_peers_with(
        env!("CARGO_BIN_EXE_pg_peer"),
        &args,
        8,
        || {},
        || {
            for _ in 0..5 {
                proxy.lose_next_reply(
                    host_tests::proxy::FaultProxy::drop_next_reply_and_cut,
                    Duration::from_secs(1),
                );
            }
        },
    );
    let lost = proxy.replies_dropped();
    assert!(lost >= 1, "no reply was lost");
    let total = 8 * 4 * 25;
    let mut client = pg::connect(port, &db);
    let stored = row(&mut client, KEY);
    assert_eq!(stored.failure_count, total);
    assert_eq!(stored.log.unwrap().matches("false").count(), total as usize);
    // Each process reports its own copy after its flush; the one that wrote last holds the
    // row as it is.
    let seen: Vec<i32> = lines
        .iter()
        .map(|line| line.strip_prefix("done ").expect("done F").parse().unwrap())
        .collect();
    assert!(seen.iter().all(|&f| f <= total), "{seen:?}");
    assert!(seen.contains(&total), "{seen:?}");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_killed_writers_probe_slot_comes_back_when_its_lease_ends() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "killed_writer");
    let mut writer = std::process::Command::new(env!("CARGO_BIN_EXE_pg_peer"))
        .args(["hold", &port.to_string(), &db, KEY, "1500"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start pg_peer");
    let mut out = std::io::BufReader::new(writer.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "holding");
    let killed = std::time::Instant::now();
    writer.kill().expect("SIGKILL");
    writer.wait().unwrap();
    // The others continue: their calls are answered at once, probes busy while the slot's
    // lease runs...
    let store = eager_store(&settings);
    let other = store.breaker(key(), BreakerConfig::new()).unwrap();
    pg::until("the HALF_OPEN row", || {
        (other.status() == CircuitState::HalfOpen).then_some(())
    });
    while killed.elapsed() < Duration::from_millis(1000) {
        assert_eq!(
            other.try_acquire().unwrap_err().reason(),
            RejectReason::ProbesBusy
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...and the slot comes back when it ends.
    probe(&other).record(Verdict::Success);
    assert!(killed.elapsed() >= Duration::from_millis(1400));
    flush(&store);
    let mut client = pg::connect(port, &db);
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_rust_call_admitted_before_a_python_transition_does_not_count_after_it() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "mixed_fleet");
    let mut client = pg::connect(port, &db);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .success_limit(Ratio::new(1, 1).unwrap());
    let store = eager_store(&settings);
    let breaker = store.breaker(key(), config).unwrap();
    succeed(&breaker);
    flush(&store);
    let held = breaker.try_acquire().expect("admitted while CLOSED");
    // The Python package trips the row, then lets probes in; its writes do not know rc_epoch,
    // the trigger starts a new period for each.
    python_writes(&mut client, "OPEN", 1, Some(0.05), "[false]");
    std::thread::sleep(Duration::from_millis(60));
    python_writes(&mut client, "HALF_OPEN", 0, None, "[]");
    pg::until("the HALF_OPEN row", || {
        (breaker.status() == CircuitState::HalfOpen).then_some(())
    });
    // The late success of the call admitted before would close the new HALF_OPEN if it
    // counted there.
    held.record(Verdict::Success);
    flush(&store);
    let stored = row(&mut client, KEY);
    assert_eq!(stored.state, "HALF_OPEN");
    assert_eq!(stored.log.as_deref(), Some("[]"));
    let epoch: i64 = client
        .query_one("SELECT rc_epoch FROM rc_circuit_breakers", &[])
        .unwrap()
        .get(0);
    assert_eq!(epoch, 2, "one new period per Python transition");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_python_trip_is_seen_through_notify_within_50_ms() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "notify_latency");
    let mut client = pg::connect(port, &db);
    // Polling an hour apart: only the notification can bring the trip.
    let store = PostgresStore::builder(settings.clone())
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let breaker = store.breaker(key(), BreakerConfig::new()).unwrap();
    let mut seen_after = Vec::new();
    for _ in 0..5 {
        breaker.reset().unwrap();
        pg::until("CLOSED", || breaker.try_acquire().ok().map(drop));
        let tripped = std::time::Instant::now();
        python_writes(&mut client, "OPEN", 1, Some(30.0), "[false]");
        until_rejected(&breaker, RejectReason::Open);
        seen_after.push(tripped.elapsed());
    }
    seen_after.sort();
    let median = seen_after[2];
    assert!(median <= Duration::from_millis(50), "{seen_after:?}");
}

/// Runs `pg_peer tokio FLAVOR` with only `RC_DB_DSN` naming the database, from a directory
/// without a `.env`.
fn run_in_tokio(port: u16, db: &str, flavor: &str) {
    let dir = std::env::temp_dir().join(format!("rc-tokio-{}-{flavor}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pg_peer"))
        .args(["tokio", flavor])
        .current_dir(&dir)
        .env_remove("RC_DB_HOST")
        .env_remove("RC_DB_PASSWORD")
        .env_remove("RC_NAMESPACE")
        .env(
            "RC_DB_DSN",
            format!("postgresql://postgres@127.0.0.1:{port}/{db}"),
        )
        .env("RC_DB_STRICT", "1")
        .output()
        .expect("run pg_peer");
    assert!(
        output.status.success(),
        "{flavor}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn any_store_runs_inside_tokio_on_both_runtimes_without_spawn_blocking() {
    let port = pg::port();
    for flavor in ["multi-thread", "current-thread"] {
        let db = pg::fresh_database(port, &format!("tokio_{}", flavor.replace('-', "_"))).0;
        run_in_tokio(port, &db, flavor);
        let mut client = pg::connect(port, &db);
        let stored = row(&mut client, "tokio");
        let log = stored.log.unwrap();
        assert_eq!(log.matches("false").count(), 80, "{flavor}");
        assert_eq!(log.matches("true").count(), 720, "{flavor}");
    }
}

/// A role given pg-setup's grants but one is refused at start, with what it lacks, on which
/// object, and the command that grants it (not left to fail every write for ever).
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_role_lacking_a_privilege_is_refused_at_start_naming_it() {
    let port = pg::port();
    let (db, _) = pg::fresh_database(port, "privileges");
    let role = format!("rc_app_{}", std::process::id());
    let mut admin = pg::connect(port, &db);
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .unwrap();
    for grant in resilient_circuit_std::postgres::schema::setup_sql(Some(&role))
        .into_iter()
        .filter(|sql| sql.starts_with("GRANT"))
    {
        admin.batch_execute(&grant).unwrap();
    }
    let as_role = || {
        let mut config = pg::config(port, &db);
        config.user(&role);
        DbSettings::from_config(config)
    };
    PostgresStore::connect(as_role()).expect("every privilege granted");

    admin
        .batch_execute(&format!(
            "REVOKE UPDATE ON public.rc_circuit_breaker_writers FROM {role}"
        ))
        .unwrap();
    match PostgresStore::connect(as_role()) {
        Err(error @ PostgresStoreError::MissingPrivileges { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!(
                    "role {role} lacks UPDATE on public.rc_circuit_breaker_writers;"
                )),
                "{message}"
            );
            assert!(
                message.contains(&format!("cargo xtask pg-setup --grant-to {role}")),
                "{message}"
            );
        }
        other => panic!("expected MissingPrivileges, got {other:?}"),
    }
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON public.rc_circuit_breaker_writers FROM {role}; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .unwrap();
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_key_nothing_holds_is_remade_with_another_configuration_from_its_row() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "remade");
    let mut client = pg::connect(port, &db);
    let store = store(&settings);
    let two_of_two = BreakerConfig::new().failure_limit(Ratio::new(2, 2).unwrap());
    let breaker = store.breaker(key(), two_of_two).unwrap();
    fail(&breaker);
    store.flush(Duration::from_secs(5)).unwrap();
    // Held: another configuration is refused.
    let three_of_three = BreakerConfig::new().failure_limit(Ratio::new(3, 3).unwrap());
    assert!(matches!(
        store.breaker(key(), three_of_three),
        Err(resilient_circuit_std::StoreError::ConfigMismatch { .. })
    ));
    drop(breaker);
    // Nothing holds it and nothing waits for its row: made again with the new configuration,
    // from the row (one failure in it), so two more failures trip it, not one.
    let breaker = store.breaker(key(), three_of_three).unwrap();
    fail(&breaker);
    store.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
    fail(&breaker);
    store.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(row(&mut client, KEY).state, "OPEN");
    assert_eq!(breaker.status(), CircuitState::Open);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn keys_nothing_holds_are_forgotten_and_made_again_from_their_rows() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "forgotten");
    let mut client = pg::connect(port, &db);
    let poll = Duration::from_millis(50);
    let store = PostgresStore::builder(settings)
        .max_staleness(poll)
        .connect()
        .unwrap();
    let config = BreakerConfig::new().failure_limit(Ratio::new(1, 1).unwrap());
    let kept = store.breaker(key(), config).unwrap();
    for name in ["a", "b", "c"] {
        let breaker = store
            .breaker(BreakerKey::resource(name).unwrap(), config)
            .unwrap();
        succeed(&breaker);
    }
    let tripped = store
        .breaker(
            BreakerKey::resource("d").unwrap(),
            config.cooldown(Duration::from_millis(100)),
        )
        .unwrap();
    fail(&tripped);
    drop(tripped);
    assert_eq!(store.len(), 5);
    // Ten polls after their handles went (and, for d, after its cooldown), only the held key
    // is left; every row stays.
    pg::until("the unheld keys forgotten", || {
        (store.len() == 1).then_some(())
    });
    assert_eq!(kept.status(), CircuitState::Closed);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM rc_circuit_breakers", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 5);
    // A forgotten key made again starts from its row.
    client
        .execute(
            "UPDATE rc_circuit_breakers SET state = 'OPEN', open_until = now() + interval '1 hour' WHERE resource_key = 'a'",
            &[],
        )
        .unwrap();
    let again = store
        .breaker(BreakerKey::resource("a").unwrap(), config)
        .unwrap();
    assert_eq!(again.status(), CircuitState::Open);
    assert!(again.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_manual_change_its_caller_was_told_failed_is_never_applied() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "manual_given_up");
    let mut client = pg::connect(port, &db);
    let store = PostgresStore::builder(settings)
        .round_trip_timeout(Duration::from_millis(200))
        .max_staleness(Duration::from_secs(3600))
        .connect()
        .unwrap();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(60));
    // A hook that keeps the worker busy for a second: hooks of the transitions it adopts run
    // on it.
    let hook_runs = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = Arc::clone(&hook_runs);
    let slow = store
        .breaker(BreakerKey::resource("slow").unwrap(), config)
        .unwrap()
        .on_status_change(move |_, _| {
            running.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(1));
        });
    let operator = store.breaker(key(), config).unwrap();
    fail(&slow);
    pg::until("the hook running", || {
        hook_runs
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    });
    // Its caller waits twice the round-trip timeout, then is told it failed.
    assert!(operator.force_open().is_err());
    // Once the worker is free it does not apply it, then or later.
    store.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(row(&mut client, KEY).state, "CLOSED");
    assert_eq!(operator.status(), CircuitState::Closed);
    // The next one, waited for, is applied.
    operator.force_open().unwrap();
    assert_eq!(row(&mut client, KEY).state, "OPEN");
}

/// The writers' rows and their ages, oldest first.
fn writers(client: &mut Client) -> Vec<(String, f64)> {
    client
        .query(
            "SELECT writer, extract(epoch from now() - written_at)::float8
             FROM rc_circuit_breaker_writers ORDER BY written_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_new_store_takes_over_the_row_of_a_writer_gone_for_a_day() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "writers_taken_over");
    let mut client = pg::connect(port, &db);
    client
        .batch_execute(
            "INSERT INTO rc_circuit_breaker_writers (writer, batch, written_at) VALUES
               ('gone', 7, now() - interval '2 days'),
               ('quiet', 3, now() - interval '23 hours')",
        )
        .unwrap();
    let store = store(&settings);
    // The row of the writer gone for a day is the new store's; the quiet one's stays.
    let rows = writers(&mut client);
    let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), 2, "{rows:?}");
    assert_eq!(names[0], "quiet");
    assert!(names[1].starts_with("pid"), "{rows:?}");
    // It counts from its own batches, exactly once as ever.
    let counting = BreakerConfig::new().failure_limit(Ratio::new(10, 10).unwrap());
    let breaker = store.breaker(key(), counting).unwrap();
    fail(&breaker);
    flush(&store);
    fail(&breaker);
    flush(&store);
    assert_eq!(row(&mut client, KEY).failure_count, 2);
    // With no row to take over, the next store adds one.
    let _second = self::store(&settings);
    assert_eq!(writers(&mut client).len(), 3);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn an_idle_store_refreshes_its_writers_row_every_hour() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "writers_refreshed");
    let mut client = pg::connect(port, &db);
    let clock = host_tests::SharedFakeClock::new();
    let _store = PostgresStore::builder(settings)
        .local_clock(clock.clone())
        .max_staleness(Duration::from_millis(50))
        .connect()
        .unwrap();
    client
        .execute(
            "UPDATE rc_circuit_breaker_writers SET written_at = now() - interval '23 hours'",
            &[],
        )
        .unwrap();
    // Within the hour: left as it is.
    clock.advance(Duration::from_secs(3500));
    std::thread::sleep(Duration::from_millis(300));
    assert!(writers(&mut client)[0].1 > 82_000.0);
    // An hour without a write: refreshed at the next poll.
    clock.advance(Duration::from_secs(200));
    pg::until("the row refreshed", || {
        (writers(&mut client)[0].1 < 60.0).then_some(())
    });
}
