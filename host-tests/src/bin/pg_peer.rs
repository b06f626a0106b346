//! A second process for the PostgreSQL tests.
//!
//! - `pg_peer fail PORT DBNAME KEY COUNT WINDOW`: connects, makes a breaker on KEY with failure
//!   limit WINDOW/WINDOW, prints `ready`, waits for a line on stdin, then records COUNT failing
//!   calls and prints `done`.
//! - `pg_peer hammer PORT DBNAME KEY MILLIS`: connects, prints `ready`, waits for a line on
//!   stdin, then makes protected calls (all succeeding) for MILLIS ms and prints how many.
//! - `pg_peer select`: chooses a store from the environment (`AnyStore::from_env`) and prints
//!   `postgres` or `memory`; exits 1 with the error when it refuses to start.

use std::io::BufRead;

use host_tests::pg;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, Ratio,
    postgres::{AnyStore, DbSettings, PostgresBreaker, PostgresStore},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fail") => fail(&args[1..]),
        Some("hammer") => hammer(&args[1..]),
        Some("select") => select(),
        _ => {
            eprintln!(
                "usage: pg_peer fail PORT DBNAME KEY COUNT WINDOW | hammer PORT DBNAME KEY MILLIS | select"
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
) -> PostgresBreaker {
    let store =
        PostgresStore::connect(DbSettings::from_config(pg::config(port, dbname))).expect("connect");
    let breaker = store
        .breaker(BreakerKey::resource(key).expect("key"), config)
        .expect("breaker");
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    breaker
}

fn fail(args: &[String]) {
    let [port, dbname, key, count, window] = args else {
        panic!("fail takes PORT DBNAME KEY COUNT WINDOW");
    };
    let port: u16 = port.parse().expect("PORT");
    let count: u32 = count.parse().expect("COUNT");
    let window: u16 = window.parse().expect("WINDOW");
    let config = BreakerConfig::new().failure_limit(Ratio::new(window, window).expect("ratio"));
    let breaker = breaker_at_the_start_line(port, dbname, key, config);
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

fn select() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match AnyStore::from_env() {
        Ok(store) if store.is_postgres() => println!("postgres {}", store.namespace()),
        Ok(store) => println!("memory {}", store.namespace()),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}
