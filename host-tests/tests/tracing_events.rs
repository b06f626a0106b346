//! Feature `tracing`: every transition and rejection is an event carrying the key.

use std::time::Duration;

use host_tests::capture_tracing;
use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, MemoryStore, time::Instant};

#[test]
fn transitions_rejections_and_hook_panics_are_tracing_events_with_the_key() {
    let text = capture_tracing(tracing::Level::DEBUG, || {
        let store = MemoryStore::with_clock(Instant::ZERO);
        let breaker = store
            .breaker(
                BreakerKey::new("billing", "payments-api").unwrap(),
                BreakerConfig::new().cooldown(Duration::from_secs(5)),
            )
            .unwrap()
            .on_status_change(|_, _| panic!("broken hook"));
        let _ = breaker.call(|| Err::<(), _>("down"));
        let _ = breaker.call(|| Ok::<_, &str>(()));
    });
    let lines: Vec<&str> = text.lines().collect();
    let transition = lines
        .iter()
        .find(|l| l.contains("circuit breaker transition"))
        .expect(&text);
    assert!(
        transition.contains("namespace=\"billing\"")
            && transition.contains("resource_key=\"payments-api\""),
        "{transition}"
    );
    assert!(
        transition.contains("from=\"CLOSED\"") && transition.contains("to=\"OPEN\""),
        "{transition}"
    );
    let rejection = lines
        .iter()
        .find(|l| l.contains("call rejected"))
        .expect(&text);
    assert!(
        rejection.contains("resource_key=\"payments-api\"")
            && rejection.contains("retry_after_ms=5000"),
        "{rejection}"
    );
    let panic = lines
        .iter()
        .find(|l| l.contains("hook panicked"))
        .expect(&text);
    assert!(
        panic.contains("ERROR") && panic.contains("broken hook"),
        "{panic}"
    );
}
