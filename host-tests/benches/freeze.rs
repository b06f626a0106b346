//! The worst call while the store's server process is frozen, side by side with the worst call
//! while it is healthy, in one run: four threads call one key of a PostgreSQL store (1 call in 50
//! failing) for 8 s; in the second run the store's server process is SIGSTOPped for those 8 s.
//!
//! `cargo xtask bench` (or `cargo bench -p host-tests --bench freeze` with `RC_TEST_PG_PORT`
//! naming a server; without it, this starts a throwaway server of its own).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use host_tests::pg;
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, Ratio,
    postgres::{DbSettings, PostgresStore},
};

const THREADS: usize = 4;
const RUN: Duration = Duration::from_secs(8);

/// What the callers saw in one run.
#[derive(Default)]
struct Calls {
    count: u64,
    worst: Duration,
    over_1ms: u64,
}

impl Calls {
    fn add(&mut self, other: Calls) {
        self.count += other.count;
        self.worst = self.worst.max(other.worst);
        self.over_1ms += other.over_1ms;
    }
}

/// Four threads calling for [`RUN`]; `during` runs meanwhile (on this thread).
fn run(settings: &DbSettings, during: impl FnOnce(&PostgresStore)) -> (Calls, u64) {
    let store = PostgresStore::connect(settings.clone()).expect("connect");
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(50, 100).unwrap())
        .cooldown(Duration::from_secs(3600));
    let breaker = store
        .breaker(BreakerKey::resource("frozen").unwrap(), config)
        .unwrap();
    let running = AtomicBool::new(true);
    let mut total = Calls::default();
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut calls = Calls::default();
                    while running.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let fails = calls.count % 50 == 0;
                        let _ = breaker.call(|| if fails { Err("down") } else { Ok(()) });
                        let took = start.elapsed();
                        calls.count += 1;
                        calls.worst = calls.worst.max(took);
                        calls.over_1ms += u64::from(took > Duration::from_millis(1));
                    }
                    calls
                })
            })
            .collect();
        during(&store);
        running.store(false, Ordering::Relaxed);
        for caller in callers {
            total.add(caller.join().unwrap());
        }
    });
    (total, store.dropped_outcomes())
}

fn report(what: &str, (calls, dropped): &(Calls, u64)) {
    println!(
        "freeze: {what:<26} {:>11} calls, worst {:>9.3} ms, {:>3} over 1 ms, {dropped} outcomes dropped",
        calls.count,
        calls.worst.as_secs_f64() * 1000.0,
        calls.over_1ms
    );
}

fn main() {
    let (port, _own_server) = pg::bench_server();
    let (db, settings) = pg::fresh_database(port, "bench_freeze");
    let mut client = pg::connect(port, &db);
    let healthy = run(&settings, |_| std::thread::sleep(RUN));
    let frozen = run(&settings, |_| {
        let pid = pg::newest_store_backend(&mut client, &db).expect("the store's server process");
        assert!(pg::signal(pid, "STOP"));
        std::thread::sleep(RUN);
        assert!(pg::signal(pid, "CONT"));
    });
    report("healthy, 8 s", &healthy);
    report("server process frozen 8 s", &frozen);
    println!(
        "freeze: worst call frozen / healthy: {:.2}",
        frozen.0.worst.as_secs_f64() / healthy.0.worst.as_secs_f64()
    );
}
