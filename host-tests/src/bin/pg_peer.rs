//! A second process for the PostgreSQL tests.
//!
//! - `pg_peer fail PORT DBNAME KEY COUNT WINDOW`: connects, makes a breaker on KEY with failure
//!   limit WINDOW/WINDOW, prints `ready`, waits for a line on stdin, then records COUNT failing
//!   calls and prints `done`.
//! - `pg_peer hammer PORT DBNAME KEY MILLIS`: connects, prints `ready`, waits for a line on
//!   stdin, then makes protected calls (all succeeding) for MILLIS ms and prints how many.
//! - `pg_peer select`: chooses a store from the environment (`AnyStore::from_env`) and prints
//!   `postgres` or `memory`; exits 1 with the error when it refuses to start. On stderr, whether
//!   `RC_DB_DSN` is in its environment afterwards.
//! - `pg_peer threads PORT DBNAME KEY THREADS COUNT WINDOW`: as `fail`, from THREADS threads at
//!   once (COUNT failures each); then flushes and prints `done F`, F being the failures in its
//!   own copy of the window.
//! - `pg_peer hold PORT DBNAME KEY LEASE_MS`: trips KEY (cooldown 100 ms), takes a probe slot
//!   with a lease of LEASE_MS, prints `holding` and waits to be killed.
//! - `pg_peer fleet PORT DBNAME MILLIS`: makes breakers on `hot`, `audit` and 1000 cold keys
//!   (`cold-0` ...), prints `ready`, waits for a line on stdin, then for MILLIS ms calls `hot`
//!   (all succeeding), every 100th call a cold key in turn, and every 1000th call records a
//!   failure on `audit` (at most 100); flushes and prints `CALLS FAILURES STATEMENTS` (the
//!   statements its store sent during the run, before the flush).
//! - `pg_peer tokio FLAVOR`: inside a tokio runtime (`multi-thread` or `current-thread`), as
//!   `#[tokio::main]` would run it: `AnyStore::from_env()`, then 8 spawned tasks x 100 calls
//!   on key `tokio` (every tenth failing), a flush, and `ok`.

use std::io::BufRead;

use host_tests::pg;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, Ratio, SharedBreaker,
    postgres::{AnyStore, DbSettings, PostgresStore},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fail") => fail(&args[1..]),
        Some("hammer") => hammer(&args[1..]),
        Some("select") => select(args.get(1).map(String::as_str) == Some("--no-subscriber")),
        Some("threads") => threads(&args[1..]),
        Some("hold") => hold(&args[1..]),
        Some("tokio") => in_tokio(&args[1..]),
        Some("fleet") => fleet(&args[1..]),
        _ => {
            eprintln!(
                "usage: pg_peer fail PORT DBNAME KEY COUNT WINDOW [pooled] | hammer PORT DBNAME KEY MILLIS | select [--no-subscriber] | threads PORT DBNAME KEY THREADS COUNT WINDOW | hold PORT DBNAME KEY LEASE_MS | tokio FLAVOR"
            );
            std::process::exit(2);
        }
    }
}

/// Connects and makes a breaker on `key`, then says `ready` and waits for the word to go (a
/// line on stdin), as `host_tests::pg::run_peers` expects.
fn breaker_at_the_start_line(
    port: u16,
    dbname: &str,
    key: &str,
    config: BreakerConfig,
) -> SharedBreaker {
    breaker_and_store_at_the_start_line(port, dbname, key, config, false).0
}

/// A store (through a pooler in transaction mode if `pooled`) and its breaker on `key`, made
/// before saying `ready` and waiting for the line that starts the run.
fn breaker_and_store_at_the_start_line(
    port: u16,
    dbname: &str,
    key: &str,
    config: BreakerConfig,
    pooled: bool,
) -> (SharedBreaker, PostgresStore) {
    let settings =
        DbSettings::from_config(pg::config(port, dbname)).behind_transaction_pooler(pooled);
    let store = PostgresStore::connect(settings).expect("connect");
    let breaker = store
        .breaker(BreakerKey::resource(key).expect("key"), config)
        .expect("breaker");
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    (breaker, store)
}

fn threads(args: &[String]) {
    let [port, dbname, key, threads, count, window] = args else {
        panic!("threads takes PORT DBNAME KEY THREADS COUNT WINDOW");
    };
    let port: u16 = port.parse().expect("PORT");
    let threads: usize = threads.parse().expect("THREADS");
    let count: u32 = count.parse().expect("COUNT");
    let window: u16 = window.parse().expect("WINDOW");
    let config = BreakerConfig::new().failure_limit(Ratio::new(window, window).expect("ratio"));
    let (breaker, store) = breaker_and_store_at_the_start_line(port, dbname, key, config, false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..count {
                    let result = breaker.call(|| Err::<(), _>("upstream failed"));
                    assert!(
                        result.unwrap_err().operation_error().is_some(),
                        "the call ran"
                    );
                }
            });
        }
    });
    store
        .flush(std::time::Duration::from_secs(30))
        .expect("flushed");
    println!("done {}", breaker.execution_log().failures());
}

fn hold(args: &[String]) {
    let [port, dbname, key, lease_ms] = args else {
        panic!("hold takes PORT DBNAME KEY LEASE_MS");
    };
    let port: u16 = port.parse().expect("PORT");
    let lease = std::time::Duration::from_millis(lease_ms.parse().expect("LEASE_MS"));
    let store = PostgresStore::builder(DbSettings::from_config(pg::config(port, dbname)))
        .probe_lease(lease)
        .connect()
        .expect("connect");
    let config = BreakerConfig::new().cooldown(std::time::Duration::from_millis(100));
    let breaker = store
        .breaker(BreakerKey::resource(key).expect("key"), config)
        .expect("breaker");
    let _ = breaker.call(|| Err::<(), _>("upstream failed"));
    store
        .flush(std::time::Duration::from_secs(10))
        .expect("flushed");
    let probe = pg::until("a probe slot", || breaker.try_acquire().ok());
    println!("holding");
    std::mem::forget(probe);
    loop {
        std::thread::park();
    }
}

fn fleet(args: &[String]) {
    let [port, dbname, millis] = args else {
        panic!("fleet takes PORT DBNAME MILLIS");
    };
    let port: u16 = port.parse().expect("PORT");
    let millis: u64 = millis.parse().expect("MILLIS");
    let store =
        PostgresStore::connect(DbSettings::from_config(pg::config(port, dbname))).expect("connect");
    let config = BreakerConfig::new().failure_limit(Ratio::new(1000, 1000).expect("ratio"));
    let breaker = |key: &str| {
        store
            .breaker(BreakerKey::resource(key).expect("key"), config)
            .expect("breaker")
    };
    let (hot, audit) = (breaker("hot"), breaker("audit"));
    let cold: Vec<_> = (0..1000).map(|i| breaker(&format!("cold-{i}"))).collect();
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    let end = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let statements_before = store.round_trips();
    let (mut calls, mut failures) = (0u64, 0u64);
    while std::time::Instant::now() < end {
        for _ in 0..100 {
            hot.call(|| Ok::<_, &str>(())).expect("admitted");
        }
        calls += 100;
        cold[(calls / 100 % 1000) as usize]
            .call(|| Ok::<_, &str>(()))
            .expect("admitted");
        calls += 1;
        if calls % 1000 < 101 && failures < 100 {
            let _ = audit.call(|| Err::<(), _>("upstream failed"));
            failures += 1;
            calls += 1;
        }
    }
    let statements = store.round_trips() - statements_before;
    store
        .flush(std::time::Duration::from_secs(30))
        .expect("flushed");
    println!("{calls} {failures} {statements}");
}

fn in_tokio(args: &[String]) {
    let runtime = match args.first().map(String::as_str) {
        Some("multi-thread") => tokio::runtime::Builder::new_multi_thread(),
        Some("current-thread") => tokio::runtime::Builder::new_current_thread(),
        _ => panic!("tokio takes multi-thread or current-thread"),
    }
    .enable_all()
    .build()
    .expect("a runtime");
    runtime.block_on(async {
        let store = AnyStore::from_env().expect("a store");
        assert!(
            store.postgres().is_some(),
            "RC_DB_DSN names the test database"
        );
        let config = BreakerConfig::new().failure_limit(Ratio::new(1000, 1000).expect("ratio"));
        let breaker = store.breaker("tokio", config).expect("breaker");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let breaker = breaker.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let outcome = breaker
                            .call_async(async || if i % 10 == 0 { Err("down") } else { Ok(()) })
                            .await;
                        assert_eq!(outcome.is_ok(), i % 10 != 0);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a task");
        }
        store
            .postgres()
            .expect("PostgreSQL")
            .flush(std::time::Duration::from_secs(10))
            .expect("flushed");
    });
    println!("ok");
}

fn fail(args: &[String]) {
    let (args, pooled) = match args {
        [rest @ .., last] if last == "pooled" => (rest, true),
        _ => (args, false),
    };
    let [port, dbname, key, count, window] = args else {
        panic!("fail takes PORT DBNAME KEY COUNT WINDOW [pooled]");
    };
    let port: u16 = port.parse().expect("PORT");
    let count: u32 = count.parse().expect("COUNT");
    let window: u16 = window.parse().expect("WINDOW");
    let config = BreakerConfig::new().failure_limit(Ratio::new(window, window).expect("ratio"));
    let (breaker, _store) = breaker_and_store_at_the_start_line(port, dbname, key, config, pooled);
    for _ in 0..count {
        let result = breaker.call(|| Err::<(), _>("upstream failed"));
        assert!(
            result.unwrap_err().operation_error().is_some(),
            "the call ran"
        );
    }
    println!("done");
}

fn hammer(args: &[String]) {
    let [port, dbname, key, millis] = args else {
        panic!("hammer takes PORT DBNAME KEY MILLIS");
    };
    let port: u16 = port.parse().expect("PORT");
    let millis: u64 = millis.parse().expect("MILLIS");
    let config = BreakerConfig::new().failure_limit(Ratio::new(50, 100).expect("ratio"));
    let breaker = breaker_at_the_start_line(port, dbname, key, config);
    let end = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let mut calls = 0u64;
    while std::time::Instant::now() < end {
        breaker.call(|| Ok::<_, &str>(())).expect("admitted");
        calls += 1;
    }
    println!("{calls}");
}

/// Chooses a store from the environment; with a `tracing` subscriber on stderr, unless
/// `bare` (as an application that installs none).
fn select(bare: bool) {
    if !bare {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let chosen = AnyStore::from_env();
    // Reading `.env` must leave the process environment as it was.
    eprintln!(
        "RC_DB_DSN in the environment: {}",
        std::env::var_os("RC_DB_DSN").is_some()
    );
    match chosen {
        Ok(store) if store.postgres().is_some() => println!("postgres {}", store.namespace()),
        Ok(store) => println!("memory {}", store.namespace()),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}
