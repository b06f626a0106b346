//! PostgreSQL test support: the server `cargo xtask test` started, and a fresh database per test.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use postgres::{Client, NoTls};
use resilient_circuit_std::postgres::Config;
use resilient_circuit_std::{
    Breaker,
    classify::{AllErrors, AllValues},
    postgres::{DbSettings, schema::setup},
};
use test_postgres::PgServer;

/// Why a PostgreSQL test is ignored by a plain `cargo test`.
pub const NEEDS_POSTGRES: &str = "needs PostgreSQL: cargo xtask test";

/// The port of the server `cargo xtask test` started (`RC_TEST_PG_PORT`). The PostgreSQL tests
/// are `#[ignore]`d by a plain `cargo test`; run without the server, they fail here.
pub fn port() -> u16 {
    let port = std::env::var("RC_TEST_PG_PORT")
        .expect("RC_TEST_PG_PORT is not set: run `cargo xtask test` for the PostgreSQL tests");
    port.parse().expect("RC_TEST_PG_PORT is a port number")
}

/// The server a benchmark runs against: the one `RC_TEST_PG_PORT` names, or else a throwaway
/// server of its own, which lives as long as the returned handle.
pub fn bench_server() -> (u16, Option<PgServer>) {
    match std::env::var("RC_TEST_PG_PORT") {
        Ok(port) => (
            port.parse().expect("RC_TEST_PG_PORT is a port number"),
            None,
        ),
        Err(_) => {
            let server = PgServer::start().expect("a throwaway PostgreSQL server");
            (server.port(), Some(server))
        }
    }
}

/// A protected call that fails; it must run (not be rejected).
pub fn fail(breaker: &impl Breaker<Classifier = AllErrors, ValueClassifier = AllValues>) {
    let result = breaker.call(|| Err::<(), _>("upstream failed"));
    assert!(
        result.unwrap_err().operation_error().is_some(),
        "the call ran"
    );
}

/// A protected call that succeeds; it must run (not be rejected).
pub fn succeed(breaker: &impl Breaker<Classifier = AllErrors, ValueClassifier = AllValues>) {
    breaker.call(|| Ok::<_, &str>(())).expect("the call ran");
}

/// Runs `call` and checks that it did not wait (a breaker's call never touches the database).
pub fn quick<T>(call: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let result = call();
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_millis(100),
        "a call waited {took:?}"
    );
    result
}

/// The `execution_log` (as text) and `failure_count` of `resource_key`'s row, in the default
/// namespace.
pub fn log_and_failure_count(client: &mut Client, resource_key: &str) -> (Option<String>, i32) {
    let row = client
        .query_one(
            "SELECT execution_log::text, failure_count FROM rc_circuit_breakers WHERE resource_key = $1 AND namespace = 'default'",
            &[&resource_key],
        )
        .expect("the key has a row");
    (row.get(0), row.get(1))
}

/// Waits (up to 10 s) until `check` gives a value: for what a store's worker does on its own
/// thread, after a round trip or a notification. Panics with `what` if it never does.
pub fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "waited 10 s for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The connection configuration of `dbname` on the test server.
pub fn config(port: u16, dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(dbname);
    config
}

/// A client of `dbname`.
pub fn connect(port: u16, dbname: &str) -> Client {
    postgres::Config::from(config(port, dbname))
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect to {dbname}: {e}"))
}

/// A new empty database named `rc_<test>` (dropped first if a run left it).
pub fn empty_database(port: u16, test: &str) -> String {
    recreate(&mut connect(port, "postgres"), test)
}

/// Database `rc_<test>`, dropped if it was there and made empty, through `admin`; its name.
fn recreate(admin: &mut Client, test: &str) -> String {
    let name = format!("rc_{test}");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    name
}

/// A new database with the table set up, and settings for it.
pub fn fresh_database(port: u16, test: &str) -> (String, DbSettings) {
    let name = empty_database(port, test);
    setup(&mut connect(port, &name), None).expect("setup");
    let settings = DbSettings::from_config(config(port, &name));
    (name, settings)
}

/// A plaintext client of `dbname` on `server` over its Unix socket (trusted locally, whatever
/// `pg_hba.conf` says of TCP: a TLS-only server's, say).
pub fn connect_over_socket(server: &PgServer, dbname: &str) -> Client {
    let mut config = postgres::Config::new();
    config
        .host_path(server.socket_dir())
        .port(server.port())
        .user("postgres")
        .dbname(dbname);
    config
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect to {dbname} over the socket: {e}"))
}

/// A fresh database `rc_{test}` on `server`, with the table, made over its Unix socket.
pub fn fresh_database_over_socket(server: &PgServer, test: &str) -> (String, DbSettings) {
    let name = recreate(&mut connect_over_socket(server, "postgres"), test);
    setup(&mut connect_over_socket(server, &name), None).expect("setup");
    (
        name.clone(),
        DbSettings::from_config(config(server.port(), &name)),
    )
}

/// Runs `count` processes of the `pg_peer` binary at `exe` with `args`: starts them all, waits
/// until each says `ready`, lets them go at once, and returns the line each printed last (after
/// checking that it exited successfully).
pub fn run_peers(exe: &str, args: &[&str], count: usize) -> Vec<String> {
    run_peers_with(exe, args, count, || {}, || {})
}

/// As [`run_peers`], running `before_go` once every peer is ready, and `meanwhile` once every
/// peer has been told to go.
pub fn run_peers_with(
    exe: &str,
    args: &[&str],
    count: usize,
    before_go: impl FnOnce(),
    meanwhile: impl FnOnce(),
) -> Vec<String> {
    let mut peers: Vec<_> = (0..count)
        .map(|_| {
            let mut child = Command::new(exe)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start pg_peer");
            let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut line = String::new();
            out.read_line(&mut line).expect("pg_peer's first line");
            assert_eq!(line.trim(), "ready");
            (child, out)
        })
        .collect();
    before_go();
    for (child, _) in &mut peers {
        writeln!(child.stdin.as_mut().expect("piped stdin"), "go").expect("tell pg_peer to go");
    }
    meanwhile();
    peers
        .into_iter()
        .map(|(mut child, mut out)| {
            let mut line = String::new();
            out.read_line(&mut line).expect("pg_peer's last line");
            assert!(child.wait().expect("pg_peer exits").success());
            line.trim().to_owned()
        })
        .collect()
}

/// `kill -SIGNAL pid` through the system's `kill` command (a server process frozen with `STOP`
/// and resumed with `CONT`, as an operator would); whether it was sent.
pub fn signal(pid: i32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|status| status.success())
}

/// The newest server process of a store (`application_name` resilient-circuit) in `db`.
pub fn newest_store_backend(client: &mut Client, db: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1
               AND application_name = 'resilient-circuit'
             ORDER BY backend_start DESC LIMIT 1",
            &[&db],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// The store workers running in this process (threads are named `resilient-circuit-pg`; the
/// kernel keeps the first 15 bytes). A test that counts them runs in a binary of its own.
pub fn store_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "resilient-circu")
        })
        .count()
}

/// Waits, at most `within`, until no store worker runs in this process; how many still do.
pub fn until_no_store_thread(within: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    while store_threads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    store_threads()
}
