//! Feature `tracing`: every transition and rejection is an event carrying the key.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, Instant, MemoryStore};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn transitions_rejections_and_hook_panics_are_tracing_events_with_the_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let store = MemoryStore::new();
        let breaker = store
            .breaker(
                BreakerKey::new("billing", "payments-api").unwrap(),
                BreakerConfig::new().cooldown(Duration::from_secs(5)),
            )
            .unwrap()
            .with_clock(Instant::ZERO)
            .on_status_change(|_, _| panic!("broken hook"));
        let _ = breaker.call(|| Err::<(), _>("down"));
        let _ = breaker.call(|| Ok::<_, &str>(()));
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
