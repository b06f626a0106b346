//! A fleet shared through a key-value store of one's own (`store::SharedCopies`): processes
//! are stores over one map, faults are injected in the map's updates.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use host_tests::pg::until;
use resilient_circuit_std::{
    Breaker, BreakerConfig, CircuitState, Error, MemoryStore, Ratio, RejectReason, SharedBreaker,
    classify::Verdict,
    store::{CopyError, OnOutage, SharedCopies},
};

/// Every process's copies in one map, as a key-value store keeps them.
#[derive(Default)]
struct InMemory(Mutex<HashMap<String, Vec<u8>>>);

impl SharedCopies for InMemory {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        let mut copies = self.0.lock().unwrap();
        let new = change(copies.get(key).map(Vec::as_slice));
        copies.insert(key.to_owned(), new);
        Ok(())
    }
}

/// The map with faults drawn from a seed: three updates in ten fail before they store, three
/// more store and then lose their reply (the caller sees an error either way).
struct Lossy {
    map: InMemory,
    /// A xorshift generator's state: the same faults in every run of a seed.
    draws: Mutex<u64>,
    lost_replies: AtomicU64,
    failed: AtomicU64,
}

impl SharedCopies for Lossy {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        let draw = {
            let mut state = self.draws.lock().unwrap();
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state % 10
        };
        match draw {
            0..=2 => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err("connection refused".into())
            }
            3..=5 => {
                self.map.update(key, change)?;
                self.lost_replies.fetch_add(1, Ordering::Relaxed);
                Err("reply lost".into())
            }
            _ => self.map.update(key, change),
        }
    }
}

/// The map, counting its updates.
#[derive(Default)]
struct Counted {
    map: InMemory,
    updates: AtomicU64,
}

impl SharedCopies for Counted {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        let updated = self.map.update(key, change);
        self.updates.fetch_add(1, Ordering::Relaxed);
        updated
    }
}

/// Copies that cannot be reached at all.
struct Unreachable;

impl SharedCopies for Unreachable {
    fn update(
        &self,
        _: &str,
        _: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        Err("connection refused".into())
    }
}

fn process(copies: &Arc<impl SharedCopies>) -> MemoryStore {
    MemoryStore::replicated(Arc::clone(copies))
        .sync_interval(Duration::from_millis(5))
        .max_staleness(Duration::from_millis(20))
        .build()
}

fn trips_at_once(cooldown: Duration) -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(cooldown)
}

/// Two processes' breakers of one key, after a failure in the first tripped it and the second
/// saw the copy OPEN (the stores are returned too: they must outlive the test's calls).
fn tripped_in_two_processes(
    cooldown: Duration,
) -> ([MemoryStore; 2], SharedBreaker, SharedBreaker) {
    let copies = Arc::new(InMemory::default());
    let (here, there) = (process(&copies), process(&copies));
    let config = trips_at_once(cooldown);
    let (mine, theirs) = (
        here.breaker("payments", config).unwrap(),
        there.breaker("payments", config).unwrap(),
    );
    let _ = mine.call(|| Err::<(), _>("down"));
    until("the trip to reach the other process", || {
        (theirs.status() == CircuitState::Open).then_some(())
    });
    ([here, there], mine, theirs)
}

#[test]
fn a_trip_in_one_process_opens_the_breaker_of_the_others() {
    let (_stores, _, theirs) = tripped_in_two_processes(Duration::from_secs(60));
    let refused = theirs.call(|| Ok::<_, &str>(())).unwrap_err();
    assert!(refused.is_rejected());
}

#[test]
fn an_operator_opens_and_closes_a_breaker_for_the_whole_fleet() {
    let copies = Arc::new(InMemory::default());
    let (here, there) = (process(&copies), process(&copies));
    let config = trips_at_once(Duration::from_secs(60));
    let theirs = there.breaker("payments", config).unwrap();
    here.breaker("payments", config)
        .unwrap()
        .force_open()
        .unwrap();
    // In the copy before `force_open` returned: a breaker made now starts OPEN.
    let late = process(&copies).breaker("payments", config).unwrap();
    assert_eq!(late.status(), CircuitState::Open);
    until("the other process to see it", || {
        (theirs.status() == CircuitState::Open).then_some(())
    });
    here.breaker("payments", config)
        .unwrap()
        .force_closed()
        .unwrap();
    until("the other process to see it closed", || {
        (theirs.status() == CircuitState::Closed).then_some(())
    });
}

/// Two processes record failures while a seeded 30 % of the updates fail and another 30 % lose
/// their reply after storing: every failure is in the copy exactly once.
#[test]
fn every_outcome_reaches_the_copy_once_when_updates_fail_or_lose_their_reply() {
    const SEED: u64 = 0x5EED_C0DE;
    const EACH: usize = 200;
    let lossy = Arc::new(Lossy {
        map: InMemory::default(),
        draws: Mutex::new(SEED),
        lost_replies: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    // Never trips: the window holds every failure.
    let config = BreakerConfig::new().failure_limit(Ratio::new(1024, 1024).unwrap());
    let processes = [process(&lossy), process(&lossy)];
    std::thread::scope(|scope| {
        for store in &processes {
            scope.spawn(|| {
                let breaker = store.breaker("inventory", config).unwrap();
                for _ in 0..EACH {
                    let _ = breaker.call(|| Err::<(), _>("down"));
                    // Spread over the replication thread's turns: most updates carry a change.
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }
    });
    let copies = Arc::new(InMemory(Mutex::new(lossy.map.0.lock().unwrap().clone())));
    let in_the_copy = || {
        *copies.0.lock().unwrap() = lossy.map.0.lock().unwrap().clone();
        let reader = process(&copies).breaker("inventory", config).unwrap();
        reader.state().window().failures()
    };
    until("every failure to be in the copy", || {
        (usize::from(in_the_copy()) >= 2 * EACH).then_some(())
    });
    // Quiet now; the processes keep syncing: nothing goes in twice.
    std::thread::sleep(Duration::from_millis(100));
    let (lost, failed) = (
        lossy.lost_replies.load(Ordering::Relaxed),
        lossy.failed.load(Ordering::Relaxed),
    );
    println!("seed {SEED:#x}: {lost} replies lost, {failed} updates failed");
    assert!(lost > 0 && failed > 0, "the seed injected no fault");
    assert_eq!(usize::from(in_the_copy()), 2 * EACH);
}

#[test]
fn failing_closed_refuses_every_call_while_the_copies_are_unreachable() {
    let store = MemoryStore::replicated(Unreachable)
        .on_outage(OnOutage::FailClosed)
        .build();
    let breaker = store
        .breaker("payments", trips_at_once(Duration::from_secs(1)))
        .unwrap();
    match breaker.call(|| Ok::<_, &str>(())) {
        Err(Error::Rejected(rejected)) => {
            assert_eq!(rejected.reason(), RejectReason::StoreUnavailable)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(breaker.force_open().is_err());
}

#[test]
fn failing_open_keeps_to_the_process_while_the_copies_are_unreachable() {
    let store = MemoryStore::replicated(Unreachable).build();
    let breaker = store
        .breaker("payments", trips_at_once(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(breaker.call(|| Ok::<_, &str>(7)).unwrap(), 7);
    let _ = breaker.call(|| Err::<(), _>("down"));
    assert!(
        breaker
            .call(|| Ok::<_, &str>(()))
            .unwrap_err()
            .is_rejected()
    );
    // After the cooldown a probe runs here (none can be taken in the copy), and closes it.
    let probe = until("a probe admitted in the process", || {
        breaker.try_acquire().ok()
    });
    probe.record(Verdict::Success);
    until("the breaker to close", || {
        (breaker.status() == CircuitState::Closed).then_some(())
    });
}

#[test]
fn a_stored_value_that_is_not_a_copy_is_left_as_it_is() {
    let copies = Arc::new(Counted::default());
    let garbage = b"{\"state\": \"open\", \"written by\": \"someone else\"}".to_vec();
    let store = process(&copies);
    let key = format!("{}/payments", store.namespace());
    copies
        .map
        .0
        .lock()
        .unwrap()
        .insert(key.clone(), garbage.clone());
    let breaker = store
        .breaker("payments", trips_at_once(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(breaker.call(|| Ok::<_, &str>(1)).unwrap(), 1);
    let _ = breaker.call(|| Err::<(), _>("down"));
    // Three more updates (the failure's, polls): each read the value, and left it.
    let after = copies.updates.load(Ordering::Relaxed) + 3;
    until("three more updates", || {
        (copies.updates.load(Ordering::Relaxed) >= after).then_some(())
    });
    assert_eq!(copies.map.0.lock().unwrap()[&key], garbage);
}

#[test]
fn one_probe_at_a_time_across_the_fleet() {
    let (_stores, mine, theirs) = tripped_in_two_processes(Duration::from_millis(50));
    let probe = until("a probe slot for this process", || mine.try_acquire().ok());
    // While it runs, the other process gets none.
    for _ in 0..20 {
        match theirs.try_acquire() {
            Ok(_) => panic!("a second probe ran across the fleet"),
            Err(rejected) => assert_ne!(rejected.reason(), RejectReason::StoreUnavailable),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    probe.record(Verdict::Success);
    until("the fleet to close", || {
        (theirs.status() == CircuitState::Closed).then_some(())
    });
}

/// Copies whose update panics (a bug in the key-value store's client).
struct Panicking;

impl SharedCopies for Panicking {
    fn update(
        &self,
        _: &str,
        _: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        panic!("a bug in the client")
    }
}

#[test]
fn a_panicking_store_is_an_outage_not_a_crash() {
    let store = MemoryStore::replicated(Panicking)
        .on_outage(OnOutage::FailClosed)
        .build();
    let breaker = store
        .breaker("payments", trips_at_once(Duration::from_secs(1)))
        .unwrap();
    assert!(matches!(
        breaker.call(|| Ok::<_, &str>(())),
        Err(Error::Rejected(rejected)) if rejected.reason() == RejectReason::StoreUnavailable
    ));
    assert!(breaker.force_open().is_err());
}

/// What `copies` holds of `key`, as a new process reads it.
fn copy_of(copies: &Arc<InMemory>, key: &str, config: BreakerConfig) -> (u16, u16) {
    let reader = process(copies).breaker(key, config).unwrap();
    let state = reader.state();
    (state.window().len(), state.window().failures())
}

/// A key the store forgot (to make room) and made again goes on with its batches: its new
/// changes are not taken for ones the copy already holds.
#[test]
fn a_key_forgotten_and_made_again_still_sends_its_changes() {
    let copies = Arc::new(InMemory::default());
    let store = MemoryStore::replicated(Arc::clone(&copies))
        .sync_interval(Duration::from_millis(5))
        .max_entries(std::num::NonZeroUsize::MIN)
        .build();
    let config = counting();
    let breaker = store.breaker("payments", config).unwrap();
    let _ = breaker.call(|| Err::<(), _>("down"));
    until("the first failure in the copy", || {
        (copy_of(&copies, "payments", config).1 == 1).then_some(())
    });
    drop(breaker);
    // A second key takes the only place: "payments" is forgotten.
    drop(store.breaker("inventory", config).unwrap());
    assert!(!store.contains(&resilient_circuit_std::BreakerKey::resource("payments").unwrap()));
    let breaker = store.breaker("payments", config).unwrap();
    let _ = breaker.call(|| Err::<(), _>("down again"));
    until("the second failure in the copy", || {
        (copy_of(&copies, "payments", config).1 == 2).then_some(())
    });
}

/// A process whose thread waits an hour between turns: only a failure, or dropping, sends.
fn quiet_process(copies: &Arc<InMemory>) -> MemoryStore {
    MemoryStore::replicated(Arc::clone(copies))
        .sync_interval(Duration::from_secs(3600))
        .max_staleness(Duration::from_secs(3600))
        .build()
}

/// Trips only after eight failures in a row: outcomes are counted, nothing else happens.
fn counting() -> BreakerConfig {
    BreakerConfig::new().failure_limit(Ratio::new(8, 8).unwrap())
}

/// Successes wait for the sync interval (an hour here): dropping the store sends them.
#[test]
fn dropping_the_store_sends_what_its_keys_have_not_sent() {
    let copies = Arc::new(InMemory::default());
    let store = quiet_process(&copies);
    let config = counting();
    let breaker = store.breaker("payments", config).unwrap();
    for _ in 0..5 {
        breaker.call(|| Ok::<_, &str>(())).unwrap();
    }
    drop(breaker);
    drop(store);
    assert_eq!(copy_of(&copies, "payments", config), (5, 0));
}

/// The same, when the breaker outlives its store.
#[test]
fn the_last_breaker_of_a_store_gone_sends_what_is_pending() {
    let copies = Arc::new(InMemory::default());
    let store = quiet_process(&copies);
    let config = counting();
    let breaker = store.breaker("payments", config).unwrap();
    drop(store);
    for _ in 0..3 {
        breaker.call(|| Ok::<_, &str>(())).unwrap();
    }
    drop(breaker);
    assert_eq!(copy_of(&copies, "payments", config), (3, 0));
}

/// Copies whose update asks for manual control of a breaker of the store it serves (as code
/// calling back into the library could): refused, not a deadlock.
#[derive(Default)]
struct CallingBack {
    map: InMemory,
    breaker: std::sync::OnceLock<SharedBreaker>,
    answers: Mutex<Vec<bool>>,
}

impl SharedCopies for CallingBack {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), CopyError> {
        if let Some(breaker) = self.breaker.get() {
            let refused = breaker.force_open().is_err();
            self.answers.lock().unwrap().push(refused);
        }
        self.map.update(key, change)
    }
}

#[test]
fn manual_control_from_inside_an_update_is_refused_not_a_deadlock() {
    let copies = Arc::new(CallingBack::default());
    let store = process(&copies);
    let breaker = store.breaker("payments", counting()).unwrap();
    copies.breaker.set(breaker.clone()).ok().unwrap();
    let _ = breaker.call(|| Err::<(), _>("down"));
    let answers = until("an update that called back", || {
        let answers = copies.answers.lock().unwrap().clone();
        (!answers.is_empty()).then_some(answers)
    });
    assert!(answers.iter().all(|&refused| refused));
}
