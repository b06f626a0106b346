//! The PostgreSQL store side by side with bare statements on the same server, in one run.
//!
//! `cargo xtask bench` (or `cargo bench -p host-tests --bench postgres` with `RC_TEST_PG_PORT`
//! naming a server; without it, this starts a throwaway server of its own).
//!
//! Per call, one thread, interleaved rounds: a bare prepared single-row `UPDATE ... RETURNING`,
//! then protected calls on our store (a healthy key, and one with 1 call in 50 failing, whose
//! every outcome is a write); criterion for a rejection (no round trip). Then throughput with
//! 1, 2 and 4 processes calling one key.

use std::{
    hint::black_box,
    process::{Command, Stdio},
    time::{Duration, Instant as StdInstant},
};

use criterion::Criterion;
use host_tests::{pg, pg_server::PgServer};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, Ratio,
    postgres::{DbSettings, PostgresStore},
};

type Subject<'a> = Box<dyn FnMut() + 'a>;

fn per_call(c: &mut Criterion, port: u16, db: &str) {
    let mut client = pg::connect(port, db);
    let settings = DbSettings::from_config(pg::config(port, db));
    let store = PostgresStore::connect(settings).expect("connect");
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(50, 100).unwrap())
        .cooldown(Duration::from_secs(3600));
    let healthy = store
        .breaker(BreakerKey::resource("healthy").unwrap(), config)
        .unwrap();
    let mixed = store
        .breaker(BreakerKey::resource("mixed").unwrap(), config)
        .unwrap();
    let small = BreakerConfig::new()
        .failure_limit(Ratio::new(5, 10).unwrap())
        .cooldown(Duration::from_secs(3600));
    let mixed_small = store
        .breaker(BreakerKey::resource("mixed-small").unwrap(), small)
        .unwrap();
    let open = store
        .breaker(BreakerKey::resource("open").unwrap(), config)
        .unwrap();
    for _ in 0..200 {
        let _ = healthy.call(|| Ok::<_, ()>(()));
    }
    open.force_open().unwrap();
    client
        .execute(
            "INSERT INTO rc_circuit_breakers (resource_key, state) VALUES ('bare', 'CLOSED')",
            &[],
        )
        .unwrap();
    let update = client
        .prepare(
            "UPDATE rc_circuit_breakers SET failure_count = failure_count + 1
             WHERE resource_key = $1 AND namespace = 'default' RETURNING now()",
        )
        .unwrap();

    let select = client
        .prepare(
            "SELECT now(), xmin FROM rc_circuit_breakers WHERE resource_key = $1 AND namespace = 'default'",
        )
        .unwrap();
    // Two subjects use the bench's own connection, one after the other.
    let client = std::cell::RefCell::new(client);
    let (mut n, mut m) = (0u64, 0u64);
    let mut subjects: Vec<(&str, Subject)> = vec![
        (
            "bare prepared UPDATE ... RETURNING",
            Box::new(|| {
                black_box(client.borrow_mut().query_one(&update, &[&"bare"]).unwrap());
            }),
        ),
        (
            "bare prepared SELECT of the row's version",
            Box::new(|| {
                black_box(client.borrow_mut().query_one(&select, &[&"bare"]).unwrap());
            }),
        ),
        (
            "ours, closed success (healthy, window 100)",
            Box::new(|| {
                let _ = black_box(healthy.call(|| Ok::<_, ()>(black_box(1))));
            }),
        ),
        (
            "ours, 1 in 50 failing, window 10",
            Box::new(|| {
                n += 1;
                let fails = n.is_multiple_of(50);
                let _ = black_box(mixed_small.call(|| if fails { Err(()) } else { Ok(1) }));
            }),
        ),
        (
            "ours, 1 in 50 failing, window 100",
            Box::new(|| {
                m += 1;
                let fails = m.is_multiple_of(50);
                let _ = black_box(mixed.call(|| if fails { Err(()) } else { Ok(1) }));
            }),
        ),
    ];
    interleaved("as the scheduler places them", &mut subjects);
    // On this virtual machine, a round trip between a client and a server process on different
    // CPUs pays for waking the idle one (tens of µs); on one CPU it does not.
    let pinned = pin_to_one_cpu(&mut client.borrow_mut());
    match pinned {
        Ok(()) => interleaved(
            "the bench and its server processes on one CPU",
            &mut subjects,
        ),
        Err(why) => println!("not pinned to one CPU ({why}): no second table"),
    }
    drop(subjects);
    let mut group = c.benchmark_group("postgres, no round trip");
    group.bench_function("ours, rejected while OPEN", |b| {
        b.iter(|| black_box(open.call(|| Ok::<_, ()>(1))))
    });
    group.finish();
    println!(
        "round trips by our store during the run: {} (one per admitted call)",
        store.round_trips()
    );
}

const ROUNDS: usize = 21;
const CALLS: u32 = 200;

/// Interleaved rounds: each round times every subject in turn, so drift on this shared machine
/// (autovacuum, other load) hits them alike; the median round is reported.
fn interleaved(placement: &str, subjects: &mut [(&str, Subject)]) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    for round in 0..ROUNDS {
        for i in 0..subjects.len() {
            let index = (i + round) % subjects.len();
            let subject = &mut subjects[index].1;
            let start = StdInstant::now();
            for _ in 0..CALLS {
                subject();
            }
            times[index].push(start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!(
        "\npostgres, one protected call, {placement} ({ROUNDS} interleaved rounds of {CALLS} calls, median)"
    );
    println!(
        "{:<44} {:>10} {:>16}",
        "subject", "µs/call", "vs bare UPDATE"
    );
    for ((name, _), median) in subjects.iter().zip(&medians) {
        println!("{name:<44} {median:>10.1} {:>15.2}x", median / medians[0]);
    }
}

/// Pins this process and every server process of this database to the first CPU (`taskset`).
fn pin_to_one_cpu(client: &mut postgres::Client) -> Result<(), String> {
    let mut pids = vec![std::process::id()];
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
            &[],
        )
        .map_err(|e| e.to_string())?;
    pids.extend(rows.iter().map(|row| row.get::<_, i32>(0) as u32));
    for pid in pids {
        let status = Command::new("taskset")
            .args(["-a", "-p", "0x1", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("taskset: {e}"))?;
        if !status.success() {
            return Err(format!("taskset could not pin process {pid}"));
        }
    }
    Ok(())
}

/// Total calls per second with `processes` processes calling one key for `millis` ms.
fn throughput(port: u16, db: &str, processes: usize, millis: u64) -> f64 {
    let key = format!("throughput-{processes}");
    let args = ["hammer", &port.to_string(), db, &key, &millis.to_string()];
    let calls: u64 = pg::run_peers(env!("CARGO_BIN_EXE_pg_peer"), &args, processes)
        .iter()
        .map(|line| line.parse::<u64>().expect("a count"))
        .sum();
    calls as f64 / (millis as f64 / 1000.0)
}

fn main() {
    let own_server;
    let port = match std::env::var("RC_TEST_PG_PORT") {
        Ok(port) => port.parse().expect("RC_TEST_PG_PORT is a port number"),
        Err(_) => {
            own_server = PgServer::start().expect("a throwaway PostgreSQL server");
            own_server.port()
        }
    };
    let (db, _) = pg::fresh_database(port, "bench");
    // Short defaults; the command line may override them.
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    // Throughput first: the per-call tables end by pinning this process to one CPU.
    println!("closed success, processes calling one key (each its own connection)");
    println!("{:<12} {:>14}", "processes", "calls/s");
    for processes in [1, 2, 4] {
        let rate = throughput(port, &db, processes, 3000);
        println!("{processes:<12} {rate:>14.0}");
    }
    per_call(&mut criterion, port, &db);
    criterion.final_summary();
}
