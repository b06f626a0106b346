//! How long a PostgreSQL store's worker lives, and what a hook on its own thread may ask of
//! its store. In a test binary of its own, so that the threads it counts are its own.

use std::{
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use host_tests::{
    pg,
    pg::{fail, store_threads, until_no_store_thread},
};
use resilient_circuit_std::{
    Breaker, BreakerConfig, MemoryStore, Ratio, SharedBreaker,
    hook::BoxedHook,
    postgres::{OnOutage, PostgresStore},
};

fn trips_at_once() -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(60))
}

/// The worker stops when the last clone of its store goes, on whatever thread that happens: a
/// hook on the worker's own thread dropping it included. And a breaker a hook makes there is
/// loaded from its row, not left unknown (a store that fails closed would refuse it forever).
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_hook_on_the_workers_thread_may_make_a_breaker_and_drop_the_last_store() {
    let port = pg::port();
    let (_db, settings) = pg::fresh_database(port, "hook_on_worker");
    let store: MemoryStore = PostgresStore::builder(settings)
        .on_outage(OnOutage::FailClosed)
        .connect()
        .unwrap()
        .store()
        .clone();
    assert_eq!(store_threads(), 1);
    let held = Arc::new(Mutex::new(Some(store.clone())));
    let made: Arc<Mutex<Option<SharedBreaker>>> = Arc::default();
    let ran_on: Arc<Mutex<Option<String>>> = Arc::default();
    let hook: BoxedHook = Box::new({
        let (held, made, ran_on) = (held.clone(), made.clone(), ran_on.clone());
        move |_, _| {
            *ran_on.lock().unwrap() = thread::current().name().map(str::to_owned);
            if let Some(store) = held.lock().unwrap().take() {
                *made.lock().unwrap() = store.breaker("made-in-a-hook", BreakerConfig::new()).ok();
                // The last clone of the store, dropped on the worker's thread.
            }
        }
    });
    let breaker = store
        .breaker("payments-api", trips_at_once())
        .unwrap()
        .on_status_change(hook);
    drop(store);
    fail(&breaker);
    pg::until("the hook ran", || {
        made.lock().unwrap().is_some().then_some(())
    });
    assert_eq!(
        ran_on.lock().unwrap().as_deref(),
        Some("resilient-circuit-pg")
    );
    // Made on the worker's thread, the new key is loaded from its row: admitted, not refused.
    let second = made.lock().unwrap().take().unwrap();
    pg::until("the key made in a hook admits", || {
        second.call(|| Ok::<_, ()>(())).ok()
    });
    drop((breaker, second));
    assert_eq!(
        until_no_store_thread(Duration::from_secs(10)),
        0,
        "the worker outlived its store"
    );
}
