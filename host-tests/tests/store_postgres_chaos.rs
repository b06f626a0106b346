//! A seeded run of random faults (SEMANTICS §5): four threads record failures while a schedule
//! drawn from a seed loses replies (with the server process cut off or living on), black-holes
//! the link, cuts it, freezes the store's server process and terminates it. However the faults
//! fall, every failure is in the row exactly once and no call waits.
//!
//! `cargo xtask test` runs one seed; `cargo xtask chaos --seed N --faults N` runs others
//! (`RC_CHAOS_SEED`, `RC_CHAOS_FAULTS`). A failing run prints its seed, which replays its
//! schedule.

use std::time::Duration;

use host_tests::{SplitMix64, pg, proxy::FaultProxy};
use postgres::Client;
use resilient_circuit::rand_core::TryRng;
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, Ratio,
    postgres::{DbSettings, PostgresStore},
};

/// The seed `cargo xtask test` runs.
const DEFAULT_SEED: u64 = 0x2026_1205;
const DEFAULT_FAULTS: u32 = 12;
const THREADS: u32 = 4;
/// Calls per thread: every one fails, and all of them fit the window (1024), so the row's log
/// and failure count tell exactly how many arrived.
const CALLS: u32 = 240;

/// A seed's whole schedule.
struct Schedule(SplitMix64);

impl Schedule {
    fn next(&mut self) -> u64 {
        let Ok(next) = self.0.try_next_u64();
        next
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The next reply is lost and the link cut (the server process ends with it).
    LostReply,
    /// The next reply is lost and the client's side cut; the server process lives on a while.
    LostReplyServerLives,
    /// Nothing passes either way for a while.
    BlackHole,
    /// Every connection reset.
    Cut,
    /// The store's server process SIGSTOPped for a while, then resumed.
    Freeze,
    /// The store's server process terminated (`pg_terminate_backend`).
    Terminate,
}

const FAULTS: [Fault; 6] = [
    Fault::LostReply,
    Fault::LostReplyServerLives,
    Fault::BlackHole,
    Fault::Cut,
    Fault::Freeze,
    Fault::Terminate,
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_seeded_run_of_random_faults_counts_every_failure_once() {
    let seed = env_or("RC_CHAOS_SEED", DEFAULT_SEED);
    let faults = env_or("RC_CHAOS_FAULTS", DEFAULT_FAULTS);
    println!("chaos: seed {seed} ({seed:#x}), {faults} faults");
    let port = pg::port();
    let (db, _) = pg::fresh_database(port, "chaos");
    let proxy = FaultProxy::start(port);
    let store = PostgresStore::builder(DbSettings::from_config(pg::config(proxy.port(), &db)))
        .max_staleness(Duration::from_millis(200))
        .round_trip_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .connect()
        .expect("connect");
    let key = BreakerKey::resource("chaos").unwrap();
    let config = BreakerConfig::new().failure_limit(Ratio::new(1024, 1024).unwrap());
    let breaker = store.breaker(key, config).unwrap();
    let mut client = pg::connect(port, &db);
    let applied = std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CALLS {
                    // Never blocked, whatever the database does.
                    pg::quick(|| pg::fail(&breaker));
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        run_schedule(seed, faults, &proxy, &mut client, &db)
    });
    proxy.pass();
    pg::until("the reconnection", || store.is_connected().then_some(()));
    pg::until("everything in the row", || {
        store.flush(Duration::from_secs(2)).ok()
    });
    let total = i32::try_from(THREADS * CALLS).unwrap();
    let (log, failures) = pg::log_and_failure_count(&mut client, "chaos");
    let logged = log.expect("a log").matches("false").count();
    assert_eq!(
        (failures, logged),
        (total, total as usize),
        "seed {seed}: every failure once, after {applied:?}"
    );
    assert_eq!(store.dropped_outcomes(), 0, "seed {seed}");
}

/// Runs `faults` faults drawn from `seed`, a pause between each; the faults it applied.
fn run_schedule(
    seed: u64,
    faults: u32,
    proxy: &FaultProxy,
    client: &mut Client,
    db: &str,
) -> Vec<Fault> {
    let mut schedule = Schedule(SplitMix64::new(seed));
    let mut applied = Vec::new();
    for _ in 0..faults {
        std::thread::sleep(schedule.millis(50, 300));
        let fault = FAULTS[schedule.between(0, FAULTS.len() as u64) as usize];
        let hold = schedule.millis(100, 600);
        match fault {
            Fault::LostReply => {
                proxy.lose_next_reply(FaultProxy::drop_next_reply_and_cut, Duration::from_secs(1));
            }
            Fault::LostReplyServerLives => {
                proxy.lose_next_reply(
                    |proxy| proxy.drop_next_reply_and_cut_client(hold),
                    Duration::from_secs(1),
                );
            }
            Fault::BlackHole => {
                proxy.black_hole();
                std::thread::sleep(hold);
                proxy.pass();
            }
            Fault::Cut => proxy.cut_all(),
            Fault::Freeze => {
                let Some(backend) = pg::newest_store_backend(client, db) else {
                    continue;
                };
                assert!(pg::signal(backend, "STOP"));
                std::thread::sleep(hold);
                assert!(pg::signal(backend, "CONT"));
            }
            Fault::Terminate => {
                let Some(backend) = pg::newest_store_backend(client, db) else {
                    continue;
                };
                client
                    .execute("SELECT pg_terminate_backend($1)", &[&backend])
                    .unwrap();
            }
        }
        applied.push(fault);
    }
    applied
}
