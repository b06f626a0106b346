//! The PostgreSQL-backed breaker side by side with the in-process one, in one run.
//!
//! `cargo xtask bench` (or `cargo bench -p host-tests --bench postgres` with `RC_TEST_PG_PORT`
//! naming a server; without it, this starts a throwaway server of its own).
//!
//! - Per call (criterion): CLOSED success into a healthy window, 1 call in 50 failing, and a
//!   rejection while OPEN, on the in-process store and on the PostgreSQL store, with a bare
//!   closure as the baseline.
//! - Threads: calls/s with 1, 4 and 16 threads on one key of each store, and the statements/s
//!   the server saw meanwhile (`pg_stat_database.xact_commit`).
//! - Trip propagation: from the failure that trips a key in one store to the first rejection in
//!   another (its own connection), p50 and p99.
//! - A fleet: 8 processes, one hot key and 1000 cold keys each; calls/s, statements/s, and the
//!   failures recorded on an audit key against those the row holds.
//! - Paths: the same store reached directly, through TLS (a server of its own that accepts only
//!   TLS, `verify-full`) and through PgBouncer in transaction mode (when installed): 4 threads'
//!   calls/s with 1 call in 50 failing, the statements/s the store sent, and a peer's trip
//!   (p50 of 20) seen by a second store of the same path.

use std::{
    hint::black_box,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant as StdInstant},
};

use criterion::Criterion;
use host_tests::{
    certs::TestPki,
    pg,
    pg_server::{PgBouncer, PgServer, TlsFiles},
};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, MemoryStore, Ratio, RejectReason, SharedBreaker,
    postgres::{DbSettings, PostgresStore},
};

fn key(name: &str) -> BreakerKey {
    BreakerKey::resource(name).unwrap()
}

/// A window of 100 that trips at 50 failures, a long cooldown.
fn config() -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(50, 100).unwrap())
        .cooldown(Duration::from_secs(3600))
}

/// Statements the server committed in `db` so far (each autocommit statement is one).
fn commits(client: &mut postgres::Client, db: &str) -> i64 {
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .unwrap()
        .get(0)
}

/// Waits until the statistics collector has caught up (it reports with a delay).
fn settled_commits(client: &mut postgres::Client, db: &str) -> i64 {
    std::thread::sleep(Duration::from_millis(700));
    let _ = client.batch_execute("SELECT pg_stat_clear_snapshot()");
    commits(client, db)
}

fn per_call(c: &mut Criterion, store: &PostgresStore) {
    let memory = MemoryStore::new();
    let subjects = |name: &str| -> [(&str, SharedBreaker); 2] {
        [
            ("in process", memory.breaker(key(name), config()).unwrap()),
            ("PostgreSQL", store.breaker(key(name), config()).unwrap()),
        ]
    };
    let mut group = c.benchmark_group("per call");
    group.bench_function("bare closure", |b| b.iter(|| Ok::<_, ()>(black_box(1))));
    for (place, breaker) in subjects("healthy") {
        for _ in 0..200 {
            let _ = breaker.call(|| Ok::<_, ()>(()));
        }
        group.bench_function(format!("CLOSED success, {place}"), |b| {
            b.iter(|| breaker.call(|| Ok::<_, ()>(black_box(1))))
        });
    }
    for (place, breaker) in subjects("mixed") {
        let mut n = 0u64;
        group.bench_function(format!("1 call in 50 failing, {place}"), |b| {
            b.iter(|| {
                n += 1;
                let fails = n.is_multiple_of(50);
                breaker.call(|| if fails { Err(()) } else { Ok(1) })
            })
        });
    }
    for (place, breaker) in subjects("open") {
        breaker.force_open().unwrap();
        group.bench_function(format!("rejected while OPEN, {place}"), |b| {
            b.iter(|| breaker.call(|| Ok::<_, ()>(1)))
        });
    }
    group.finish();
}

/// Calls/s of `threads` threads calling `breaker` for `run` (1 call in 50 failing).
fn calls_per_second(breaker: &SharedBreaker, threads: usize, run: Duration) -> f64 {
    let calls = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        n += 1;
                        let fails = n.is_multiple_of(50);
                        let _ = black_box(breaker.call(|| if fails { Err(()) } else { Ok(1) }));
                    }
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
    });
    calls.load(Ordering::Relaxed) as f64 / run.as_secs_f64()
}

fn threads(store: &PostgresStore, client: &mut postgres::Client, db: &str) {
    let run = Duration::from_secs(2);
    let memory = MemoryStore::new();
    println!("\n1 call in 50 failing, window 100, threads on one key ({run:?} each)");
    println!(
        "{:<8} {:>18} {:>18} {:>8} {:>10} {:>11}",
        "threads", "in process calls/s", "PostgreSQL calls/s", "ratio", "sent/s", "server/s"
    );
    for threads in [1, 4, 16] {
        let name = format!("threads-{threads}");
        let local = memory.breaker(key(&name), config()).unwrap();
        let shared = store.breaker(key(&name), config()).unwrap();
        let local_rate = calls_per_second(&local, threads, run);
        let before = settled_commits(client, db);
        let sent_before = store.round_trips();
        let shared_rate = calls_per_second(&shared, threads, run);
        let sent = (store.round_trips() - sent_before) as f64 / run.as_secs_f64();
        store.flush(Duration::from_secs(10)).unwrap();
        // The two statements of the count itself are not the store's.
        let statements = (settled_commits(client, db) - before - 2) as f64 / run.as_secs_f64();
        println!(
            "{threads:<8} {local_rate:>18.0} {shared_rate:>18.0} {:>7.2}x {sent:>10.1} {statements:>11.1}",
            shared_rate / local_rate
        );
    }
    // All successes: nothing to write while the window and the row are full of successes.
    let healthy = store.breaker(key("threads-healthy"), config()).unwrap();
    for _ in 0..200 {
        let _ = healthy.call(|| Ok::<_, ()>(()));
    }
    store.flush(Duration::from_secs(10)).unwrap();
    let before = settled_commits(client, db);
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        let _ = black_box(healthy.call(|| Ok::<_, ()>(1)));
                    }
                    n += 1000;
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
    });
    let statements = (settled_commits(client, db) - before - 2) as f64 / run.as_secs_f64();
    println!(
        "all successes, 4 threads: {:.0} calls/s, {statements:.1} statements/s (the poll of every key, once a second)",
        calls.load(Ordering::Relaxed) as f64 / run.as_secs_f64()
    );
}

/// `count` times: `a` reset and seen admitting by `b`, then tripped by one failure; how long
/// `b` took to reject.
fn trips_seen(a: &SharedBreaker, b: &SharedBreaker, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            a.reset().unwrap();
            pg::until("B admits again", || b.try_acquire().ok().map(drop));
            let start = StdInstant::now();
            let _ = a.call(|| Err::<(), _>("down"));
            pg::until("B rejects", || match b.try_acquire() {
                Err(r) if r.reason() == RejectReason::Open => Some(()),
                _ => None,
            });
            start.elapsed()
        })
        .collect()
}

fn propagation(port: u16, db: &str) {
    let settings = DbSettings::from_config(pg::config(port, db));
    let connect = || {
        PostgresStore::builder(settings.clone())
            .max_staleness(Duration::from_secs(3600))
            .connect()
            .unwrap()
    };
    let (a_store, b_store) = (connect(), connect());
    let trips = BreakerConfig::new().cooldown(Duration::from_secs(3600));
    let a = a_store.breaker(key("propagation"), trips).unwrap();
    let b = b_store.breaker(key("propagation"), trips).unwrap();
    let mut seen = trips_seen(&a, &b, 100);
    seen.sort();
    println!(
        "\ntrip propagation, failure in store A to first rejection in store B (own connections), {} trips: p50 {:?}, p99 {:?}, max {:?}",
        seen.len(),
        seen[seen.len() / 2],
        seen[seen.len() * 99 / 100],
        seen[seen.len() - 1]
    );
}

fn fleet(port: u16, client: &mut postgres::Client, db: &str) {
    let processes = 8;
    let millis = 3000u64;
    let args = ["fleet", &port.to_string(), db, &millis.to_string()];
    // The server's count from the start line (after the peers' start-up statements have
    // reached the statistics) to the end, the peers' final flushes included.
    let mut before = 0;
    let lines = pg::run_peers_with(
        env!("CARGO_BIN_EXE_pg_peer"),
        &args,
        processes,
        || before = settled_commits(client, db),
        || {},
    );
    let after = settled_commits(client, db);
    let (mut calls, mut failures, mut sent) = (0u64, 0u64, 0u64);
    for line in &lines {
        let counts: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        let [c, f, s] = counts[..] else {
            panic!("CALLS FAILURES STATEMENTS: {line}")
        };
        calls += c;
        failures += f;
        sent += s;
    }
    let in_row: String = client
        .query_one(
            "SELECT execution_log::text FROM rc_circuit_breakers WHERE resource_key = 'audit'",
            &[],
        )
        .unwrap()
        .get(0);
    let stored = in_row.matches("false").count() as u64;
    let seconds = millis as f64 / 1000.0;
    println!(
        "\nfleet: {processes} processes x (1 hot key + 1000 cold keys), {seconds} s: {:.0} calls/s in all; statements/s: {:.1} sent by each store during the run, {:.1} seen by the server in all (the run and the final flushes); audit failures recorded {failures}, in the row {stored} (lost or doubled: {})",
        calls as f64 / seconds,
        sent as f64 / seconds / processes as f64,
        (after - before - 2) as f64 / seconds,
        failures.abs_diff(stored)
    );
}

/// One way to reach the database: its name, and settings for a database of it.
struct Path {
    name: &'static str,
    settings: DbSettings,
    /// How long a peer's change may take to arrive (the poll, behind a pooler).
    max_staleness: Duration,
}

fn paths_compared(paths: &[Path]) {
    println!(
        "\npaths: 4 threads on one key, 1 call in 50 failing (2 s each); a peer's trip seen by a second store (p50 of 20)"
    );
    println!(
        "{:<10} {:>12} {:>9} {:>14}",
        "path", "calls/s", "sent/s", "trip seen p50"
    );
    for path in paths {
        let connect = || {
            PostgresStore::builder(path.settings.clone())
                .max_staleness(path.max_staleness)
                .connect()
                .unwrap_or_else(|e| panic!("{}: {e}", path.name))
        };
        let store = connect();
        let breaker = store.breaker(key("paths"), config()).unwrap();
        let sent_before = store.round_trips();
        let run = Duration::from_secs(2);
        let rate = calls_per_second(&breaker, 4, run);
        let sent = (store.round_trips() - sent_before) as f64 / run.as_secs_f64();
        store.flush(Duration::from_secs(10)).unwrap();
        let peer = connect();
        let trips = BreakerConfig::new().cooldown(Duration::from_secs(3600));
        let a = store.breaker(key("paths-trip"), trips).unwrap();
        let b = peer.breaker(key("paths-trip"), trips).unwrap();
        let mut seen = trips_seen(&a, &b, 20);
        seen.sort();
        println!(
            "{:<10} {rate:>12.0} {sent:>9.1} {:>14.1?}",
            path.name,
            seen[seen.len() / 2]
        );
    }
}

/// The paths to compare: direct; TLS to a server of its own that accepts nothing else; and
/// PgBouncer in transaction mode in front of the test server, when it is installed.
fn paths(port: u16, db: &str, servers: &mut PathServers) -> Vec<Path> {
    let mut paths = vec![Path {
        name: "direct",
        settings: DbSettings::from_config(pg::config(port, db)),
        max_staleness: Duration::from_secs(1),
    }];
    let pki = TestPki::new("bench", "postgres");
    let mut server = PgServer::start().expect("a TLS server");
    let files = TlsFiles {
        server_cert: &pki.server_cert_pem,
        server_key: &pki.server_key_pem,
        client_ca: &pki.ca_pem,
    };
    server
        .enable_tls(
            &files,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .expect("TLS on");
    let (tls_db, _) = pg::fresh_database_over_socket(&server, "bench_tls");
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres dbname={tls_db} sslmode=verify-full sslrootcert={}",
        server.port(),
        pki.path("ca.pem")
    );
    paths.push(Path {
        name: "TLS",
        settings: DbSettings::from_dsn(&dsn).expect("TLS settings"),
        max_staleness: Duration::from_secs(1),
    });
    servers.tls = Some((server, pki));
    match PgBouncer::start(port, 4) {
        Ok(bouncer) => {
            paths.push(Path {
                name: "PgBouncer",
                settings: DbSettings::from_config(pg::config(bouncer.port(), db))
                    .behind_transaction_pooler(true),
                max_staleness: Duration::from_secs(1),
            });
            servers.bouncer = Some(bouncer);
        }
        Err(e) => println!("(PgBouncer path skipped: {e})"),
    }
    paths
}

/// The servers of the paths, kept for the run and removed after it.
#[derive(Default)]
struct PathServers {
    tls: Option<(PgServer, TestPki)>,
    bouncer: Option<PgBouncer>,
}

fn main() {
    let (port, _own_server) = pg::bench_server();
    let (db, settings) = pg::fresh_database(port, "bench");
    let mut client = pg::connect(port, &db);
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let store = PostgresStore::connect(settings).expect("connect");
    per_call(&mut criterion, &store);
    threads(&store, &mut client, &db);
    drop(store);
    propagation(port, &db);
    let (fleet_db, _) = pg::fresh_database(port, "bench_fleet");
    let mut fleet_client = pg::connect(port, &fleet_db);
    fleet(port, &mut fleet_client, &fleet_db);
    let (paths_db, _) = pg::fresh_database(port, "bench_paths");
    let mut servers = PathServers::default();
    paths_compared(&paths(port, &paths_db, &mut servers));
    criterion.final_summary();
}
