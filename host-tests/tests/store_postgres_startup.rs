//! Starting a PostgreSQL store against a server that accepts the connection and never answers
//! (a frozen postmaster, an authentication that hangs): the start keeps its deadline, says
//! so, and leaves no thread behind. In a test binary of its own, so that the threads it counts
//! are its own.

use std::{
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use host_tests::pg::until_no_store_thread;
use resilient_circuit_std::postgres::{DbSettings, PostgresStore};

/// A listener on loopback that accepts every connection and never says a word; it holds the
/// connections open for as long as it lives.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            held.lock().unwrap().push(stream);
        }
    });
    port
}

fn start(dsn: &str, round_trip_timeout: Duration) -> (String, Duration) {
    let settings = DbSettings::from_dsn(dsn).unwrap();
    let started = Instant::now();
    let error = PostgresStore::builder(settings)
        .round_trip_timeout(round_trip_timeout)
        .connect()
        .unwrap_err()
        .to_string();
    (error, started.elapsed())
}

#[test]
fn a_server_that_never_answers_fails_the_start_within_its_deadline_leaving_nothing_behind() {
    let port = silent_server();
    let dsn = format!("host=127.0.0.1 port={port} user=app dbname=rc sslmode=disable");

    let (error, took) = start(&dsn, Duration::from_millis(300));
    assert!(error.contains("connect timed out after 300ms"), "{error}");
    assert!(took < Duration::from_millis(1_300), "took {took:?}");

    // The DSN's connect_timeout (in seconds) bounds the connection, whatever the round trip's.
    let (error, took) = start(&format!("{dsn} connect_timeout=1"), Duration::from_secs(30));
    assert!(error.contains("connect timed out after 1s"), "{error}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Each failed start ended its thread (and so its connection).
    assert_eq!(until_no_store_thread(Duration::from_secs(2)), 0);
}
