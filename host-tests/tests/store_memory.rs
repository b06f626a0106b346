//! The in-process store: per-key sharing, the bound, the live-OPEN rule, bad keys.

use std::time::Duration;

use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio, StoreError,
    breaker::ConfigError,
    key::{KeyError, MAX_KEY_CHARS},
};

fn key(name: &str) -> BreakerKey {
    BreakerKey::resource(name).unwrap()
}

#[test]
fn breakers_with_the_same_key_share_one_state() {
    let store = MemoryStore::new();
    let a = store
        .breaker(
            key("api"),
            BreakerConfig::new().cooldown(Duration::from_secs(60)),
        )
        .unwrap();
    let b = store
        .breaker(
            key("api"),
            BreakerConfig::new().cooldown(Duration::from_secs(60)),
        )
        .unwrap();
    let other = store.breaker(key("db"), BreakerConfig::new()).unwrap();
    let _ = a.call(|| Err::<(), _>("down"));
    assert_eq!(b.status(), CircuitState::Open);
    assert!(b.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
    assert_eq!(other.status(), CircuitState::Closed);
}

#[test]
fn namespaces_separate_equal_resource_keys() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let billing = store
        .breaker(BreakerKey::new("billing", "api").unwrap(), config)
        .unwrap();
    let search = store
        .breaker(BreakerKey::new("search", "api").unwrap(), config)
        .unwrap();
    let _ = billing.call(|| Err::<(), _>("down"));
    assert_eq!(
        (billing.status(), search.status()),
        (CircuitState::Open, CircuitState::Closed)
    );
}

#[test]
fn a_resource_key_names_a_breaker_in_the_stores_namespace() {
    let store = MemoryStore::new();
    assert_eq!(store.namespace(), "default");
    let config = BreakerConfig::new().cooldown(Duration::from_secs(60));
    let by_name = store.breaker("api", config).unwrap();
    let by_key = store.breaker(key("api"), config).unwrap();
    let elsewhere = store
        .breaker(BreakerKey::new("billing", "api").unwrap(), config)
        .unwrap();
    assert_eq!(by_name.store().key(), &key("api"));
    let _ = by_name.call(|| Err::<(), _>("down"));
    assert_eq!(
        (by_key.status(), elsewhere.status()),
        (CircuitState::Open, CircuitState::Closed)
    );
    assert_eq!(
        store.breaker(String::new(), config).unwrap_err(),
        StoreError::Key(KeyError::Empty {
            part: "resource_key"
        })
    );
    // Not replicated: no PostgreSQL handle.
    assert!(store.postgres().is_none());
}

#[test]
fn clones_share_the_state() {
    let store = MemoryStore::new();
    let a = store
        .breaker(
            key("api"),
            BreakerConfig::new().cooldown(Duration::from_secs(60)),
        )
        .unwrap();
    let b = a.clone();
    let _ = a.call(|| Err::<(), _>("down"));
    assert_eq!(b.status(), CircuitState::Open);
}

#[test]
fn the_store_is_bounded_and_forgets_the_least_recently_used_free_key() {
    let store = MemoryStore::with_max_entries(std::num::NonZeroUsize::new(3).unwrap());
    for name in ["a", "b", "c"] {
        drop(store.breaker(key(name), BreakerConfig::new()).unwrap());
    }
    drop(store.breaker(key("a"), BreakerConfig::new()).unwrap()); // "a" used again: "b" is now oldest
    drop(store.breaker(key("d"), BreakerConfig::new()).unwrap());
    assert_eq!(store.len(), 3);
    assert!(store.contains(&key("a")) && !store.contains(&key("b")));
    assert!(store.contains(&key("c")) && store.contains(&key("d")));
    assert_eq!(MemoryStore::new().max_entries(), 8192);
}

#[test]
fn the_store_never_forgets_a_live_open_or_a_held_key() {
    let store = MemoryStore::with_max_entries(std::num::NonZeroUsize::new(2).unwrap());
    let an_hour = BreakerConfig::new().cooldown(Duration::from_secs(3600));
    let open = store.breaker(key("open"), an_hour).unwrap();
    let _ = open.call(|| Err::<(), _>("down"));
    drop(open); // no handle, but OPEN for an hour
    let held = store.breaker(key("held"), BreakerConfig::new()).unwrap();
    assert_eq!(
        store.breaker(key("new"), BreakerConfig::new()).unwrap_err(),
        StoreError::Full { max_entries: 2 }
    );
    assert_eq!(
        StoreError::Full { max_entries: 2 }.to_string(),
        "the breaker store is full: all 2 keys are in use or OPEN; raise its max_entries"
    );
    // The OPEN state survived: a new handle sees it.
    let again = store.breaker(key("open"), an_hour).unwrap();
    assert_eq!(again.status(), CircuitState::Open);
    drop((again, held));
    assert!(
        store.breaker(key("new"), BreakerConfig::new()).is_ok(),
        "\"held\" is free now"
    );
    assert!(store.contains(&key("open")));
}

#[test]
fn an_expired_open_may_be_forgotten() {
    let store = MemoryStore::with_max_entries(std::num::NonZeroUsize::new(1).unwrap());
    let open = store.breaker(key("open"), BreakerConfig::new()).unwrap(); // cooldown 0
    let _ = open.call(|| Err::<(), _>("down"));
    assert_eq!(open.status(), CircuitState::Open);
    drop(open);
    assert!(store.breaker(key("next"), BreakerConfig::new()).is_ok());
    assert!(!store.contains(&key("open")));
}

#[test]
fn bad_keys_are_refused_with_a_clear_error() {
    assert_eq!(
        BreakerKey::new("", "api"),
        Err(KeyError::Empty { part: "namespace" })
    );
    assert_eq!(
        BreakerKey::resource(""),
        Err(KeyError::Empty {
            part: "resource_key"
        })
    );
    let long = "k".repeat(MAX_KEY_CHARS + 1);
    assert_eq!(
        BreakerKey::resource(&long),
        Err(KeyError::TooLong {
            part: "resource_key",
            chars: 256
        })
    );
    assert_eq!(
        KeyError::TooLong {
            part: "resource_key",
            chars: 256
        }
        .to_string(),
        "the breaker's resource_key has 256 characters; at most 255 are allowed"
    );
    assert!(
        BreakerKey::resource(&"é".repeat(MAX_KEY_CHARS)).is_ok(),
        "255 characters, 510 bytes"
    );
    assert_eq!(
        BreakerKey::resource("a\0b"),
        Err(KeyError::ContainsNul {
            part: "resource_key"
        })
    );
    assert_eq!(
        KeyError::Empty { part: "namespace" }.to_string(),
        "the breaker's namespace must not be empty"
    );
}

#[test]
fn a_keyed_store_refuses_a_probe_lease() {
    let store = MemoryStore::new();
    let leased = BreakerConfig::new().probe_lease(Duration::from_secs(5));
    let refused = store.breaker(key("leased"), leased).unwrap_err();
    assert_eq!(refused, StoreError::ProbeLease);
    assert!(refused.to_string().contains("probe_lease"));
    assert!(store.is_empty(), "nothing was made for a refused breaker");
}

#[test]
fn a_leased_breaker_refuses_a_store_that_applies_its_own_configuration() {
    // A key's store applies the key's configuration (which has no lease), whatever the
    // breaker built on it passes: a `Leased` breaker there would keep a dropped probe's slot.
    let store = MemoryStore::new();
    let shared = store.breaker(key("leased"), BreakerConfig::new()).unwrap();
    let leased_config = BreakerConfig::new()
        .probe_lease(Duration::from_secs(5))
        .validate::<resilient_circuit_std::store::SharedWindow>()
        .unwrap();
    let by_hand = resilient_circuit::CircuitProtector::new(
        leased_config,
        shared.store().clone(),
        resilient_circuit_std::time::Instant::ZERO,
    );
    assert_eq!(
        resilient_circuit_std::breaker::Leased::new(by_hand).unwrap_err(),
        ConfigError::NoProbeLease
    );
}

#[test]
fn a_window_above_the_shared_capacity_is_refused() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new().failure_limit(Ratio::new(1, 2000).unwrap());
    assert_eq!(
        store.breaker(key("big"), config).unwrap_err(),
        StoreError::Config(ConfigError::WindowAboveCapacity {
            window: 2000,
            capacity: 1024
        })
    );
    assert!(store.is_empty(), "nothing was made for a refused breaker");
}

#[test]
fn a_live_open_is_kept_until_its_cooldown_ends_on_the_stores_clock() {
    // Every breaker of the store reads its clock: the store judges "live OPEN" on the same
    // timeline as the breaker that opened.
    let clock = host_tests::SharedFakeClock::new();
    let store = MemoryStore::with_clock_and_max_entries(
        clock.clone(),
        std::num::NonZeroUsize::new(1).unwrap(),
    );
    let open = store
        .breaker(
            key("open"),
            BreakerConfig::new().cooldown(Duration::from_secs(3600)),
        )
        .unwrap();
    let _ = open.call(|| Err::<(), _>("down"));
    drop(open);
    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        store
            .breaker(key("next"), BreakerConfig::new())
            .unwrap_err(),
        StoreError::Full { max_entries: 1 }
    );
    clock.advance(Duration::from_secs(1));
    assert!(store.breaker(key("next"), BreakerConfig::new()).is_ok());
    assert!(
        !store.contains(&key("open")),
        "the cooldown ended: the key was forgotten"
    );
}

/// One configuration per key: a second handle asking for another is refused, saying which the
/// key has; the same configuration shares the state.
#[test]
fn a_second_handle_with_another_configuration_is_refused() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(60));
    let first = store.breaker(key("payments"), config).unwrap();
    let other = config.cooldown(Duration::from_secs(1));
    let refused = store.breaker(key("payments"), other).unwrap_err();
    assert_eq!(
        refused,
        StoreError::ConfigMismatch {
            key: key("payments"),
            existing: config
        }
    );
    assert!(
        refused
            .to_string()
            .starts_with("breaker default/payments already exists with another configuration"),
        "{refused}"
    );

    let second = store.breaker(key("payments"), config).unwrap();
    let _ = first.call(|| Err::<(), _>("down"));
    assert_eq!(second.status(), CircuitState::Open);

    // Nothing holds it, but it is a live OPEN: still refused, the OPEN is kept.
    drop((first, second));
    assert!(matches!(
        store.breaker(key("payments"), other),
        Err(StoreError::ConfigMismatch { .. })
    ));
    assert_eq!(
        store.breaker(key("payments"), config).unwrap().status(),
        CircuitState::Open
    );

    // A key nothing holds, with nothing to keep, is remade with the new configuration.
    drop(store.breaker(key("quiet"), config).unwrap());
    let remade = store.breaker(key("quiet"), other).unwrap();
    assert_eq!(remade.config(), &other);
    assert!(matches!(
        store.breaker(key("quiet"), config),
        Err(StoreError::ConfigMismatch { .. })
    ));
}
