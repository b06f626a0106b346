//! Property test: the same random sequences of calls, held and dropped calls, ended cooldowns
//! and manual control drive a breaker on the in-process store and one on the PostgreSQL store;
//! after every step (and a flush of the PostgreSQL store) both must hold the same state and
//! give the same answers.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use host_tests::{SharedFakeClock, pg};
use postgres::Client;
use proptest::{prelude::*, test_runner::TestCaseError};
use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, MemoryStore, Ratio, RejectReason,
    classify::Verdict,
    postgres::{DbSettings, PostgresStore},
    state::Admission,
};

#[derive(Clone, Copy, Debug)]
enum Step {
    /// A call that runs at once and ends with this verdict.
    Call(Verdict),
    /// A call admitted and kept running.
    Hold,
    /// The held call at this index (modulo) ends with this verdict.
    Finish(usize, Verdict),
    /// The held call at this index (modulo) is dropped without an outcome.
    Drop(usize),
    /// The cooldown ends.
    Expire,
    ForceOpen,
    ForceClosed,
    Reset,
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        4 => Just(Verdict::Failure),
        4 => Just(Verdict::Success),
        1 => Just(Verdict::Ignore),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => verdict().prop_map(Step::Call),
        2 => Just(Step::Hold),
        2 => (any::<usize>(), verdict()).prop_map(|(i, v)| Step::Finish(i, v)),
        1 => any::<usize>().prop_map(Step::Drop),
        3 => Just(Step::Expire),
        1 => Just(Step::ForceOpen),
        1 => Just(Step::ForceClosed),
        1 => Just(Step::Reset),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    let failure = (1u16..=5).prop_flat_map(|b| (1..=b, Just(b)));
    let success = prop::option::of((1u16..=4).prop_flat_map(|b| (1..=b, Just(b))));
    (failure, success).prop_map(|((fa, fb), success)| {
        let config = BreakerConfig::new()
            .failure_limit(Ratio::new(fa, fb).unwrap())
            .cooldown(Duration::from_secs(3600))
            .busy_retry_after(Duration::from_millis(250));
        match success {
            Some((sa, sb)) => config.success_limit(Ratio::new(sa, sb).unwrap()),
            None => config,
        }
    })
}

static CASE: AtomicU32 = AtomicU32::new(0);

fn run(
    settings: &DbSettings,
    client: &mut Client,
    config: BreakerConfig,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let key =
        BreakerKey::resource(&format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed))).unwrap();
    let clock = SharedFakeClock::new();
    let memory = MemoryStore::with_clock(clock.clone())
        .breaker(key.clone(), config)
        .unwrap();
    let pg_store = PostgresStore::connect(settings.clone()).unwrap();
    let shared = pg_store.breaker(key.clone(), config).unwrap();
    // Everything recorded is in the row, and the row (whose cooldown may have ended behind the
    // store's back) is read again.
    let flush = || pg_store.flush(Duration::from_secs(5)).unwrap();
    // A probe runs in a slot the store's worker reserves in the row: the first caller is told
    // the probes are busy while it does; the next one gets the slot.
    let admit_on_postgres = || match shared.admit() {
        Err(busy) if busy.reason() == RejectReason::ProbesBusy => {
            flush();
            shared.admit()
        }
        answer => answer,
    };
    let mut held: Vec<(Admission, Admission)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Call(_) | Step::Hold => {
                let answers = (memory.admit(), admit_on_postgres());
                match answers {
                    (Ok(m), Ok(p)) => {
                        prop_assert_eq!(m.is_probe(), p.is_probe(), "step {}: {:?}", i, step);
                        match *step {
                            Step::Call(verdict) => {
                                memory.record(m, verdict);
                                shared.record(p, verdict);
                            }
                            _ => held.push((m, p)),
                        }
                    }
                    (Err(m), Err(p)) => {
                        prop_assert_eq!(m.reason(), p.reason(), "step {}", i);
                        if m.reason() == RejectReason::ProbesBusy {
                            prop_assert_eq!(m.retry_after(), p.retry_after());
                        }
                    }
                    (m, p) => {
                        return Err(TestCaseError::fail(format!(
                            "step {i} {step:?}: in process {m:?}, PostgreSQL {p:?}"
                        )));
                    }
                }
            }
            Step::Finish(index, verdict) if !held.is_empty() => {
                let (m, p) = held.remove(index % held.len());
                memory.record(m, verdict);
                shared.record(p, verdict);
            }
            Step::Drop(index) if !held.is_empty() => {
                let (m, p) = held.remove(index % held.len());
                memory.release(m);
                shared.release(p);
            }
            Step::Finish(..) | Step::Drop(_) => {}
            Step::Expire => {
                clock.advance(Duration::from_secs(3600));
                client
                    .execute(
                        "UPDATE rc_circuit_breakers SET open_until = now() - interval '1 millisecond'
                         WHERE resource_key = $1 AND state = 'OPEN'",
                        &[&key.resource_key()],
                    )
                    .unwrap();
            }
            Step::ForceOpen => {
                memory.force_open().unwrap();
                shared.force_open().unwrap();
            }
            Step::ForceClosed => {
                memory.force_closed().unwrap();
                shared.force_closed().unwrap();
            }
            Step::Reset => {
                memory.reset().unwrap();
                shared.reset().unwrap();
            }
        }
        flush();
        let (m, p) = (memory.state(), shared.state());
        let context = format!("after step {i} {step:?}: in process {m:?}, PostgreSQL {p:?}");
        prop_assert_eq!(m.status(), p.status(), "{}", context);
        prop_assert_eq!(m.failure_count(), p.failure_count(), "{}", context);
        prop_assert!(m.window().iter().eq(p.window().iter()), "{}", context);
        prop_assert_eq!(m.probes_in_flight(), p.probes_in_flight(), "{}", context);
        prop_assert_eq!(m.epoch(), p.epoch(), "{}", context);
    }
    Ok(())
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn the_postgres_store_agrees_with_the_in_process_store() {
    let port = pg::port();
    let (db, settings) = pg::fresh_database(port, "model");
    let client = std::cell::RefCell::new(pg::connect(port, &db));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(config(), prop::collection::vec(step(), 1..40)),
        |(config, steps)| run(&settings, &mut client.borrow_mut(), config, &steps),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
