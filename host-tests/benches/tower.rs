//! Breakers as tower layers, side by side in one run: a bare `service_fn`, our
//! `CircuitBreakerLayer` (through an `Arc` handle and a `&'static` one) and
//! tower-resilience-circuitbreaker 0.14 (its default layer), a CLOSED success and a rejection.
//!
//! `cargo bench -p host-tests --bench tower`. Every call is `ready().await` then `call().await`
//! inside one tokio current-thread `block_on`, so the figures are the layers' cost per call,
//! not the runtime's.

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::Criterion;
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, MemoryStore, Ratio, SharedBreaker, tower::CircuitBreakerLayer,
};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

fn upstream()
-> impl Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone + Send {
    service_fn(|n: u64| async move { Ok(n) })
}

fn ours() -> SharedBreaker {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<50, 100>())
        .cooldown(Duration::from_secs(600));
    MemoryStore::new()
        .breaker(BreakerKey::resource("bench").unwrap(), config)
        .unwrap()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Times `iterations` calls of `service` inside one `block_on`.
fn calls<S, E>(runtime: &Runtime, service: &mut S, iterations: u64) -> Duration
where
    S: Service<u64, Response = u64, Error = E>,
{
    runtime.block_on(async {
        let start = std::time::Instant::now();
        for n in 0..iterations {
            let ready = service.ready().await.ok().unwrap();
            let _ = black_box(ready.call(black_box(n)).await.is_ok());
        }
        start.elapsed()
    })
}

fn closed_success(c: &mut Criterion, runtime: &Runtime) {
    let mut group = c.benchmark_group("tower: CLOSED success");
    let mut bare = upstream();
    group.bench_function("bare service_fn", |b| {
        b.iter_custom(|n| calls(runtime, &mut bare, n))
    });
    let mut ours_arc = CircuitBreakerLayer::new(Arc::new(ours())).layer(upstream());
    group.bench_function("ours: Arc<SharedBreaker>", |b| {
        b.iter_custom(|n| calls(runtime, &mut ours_arc, n))
    });
    let leaked: &'static SharedBreaker = Box::leak(Box::new(ours()));
    let mut ours_static = CircuitBreakerLayer::new(leaked).layer(upstream());
    group.bench_function("ours: &'static SharedBreaker", |b| {
        b.iter_custom(|n| calls(runtime, &mut ours_static, n))
    });
    let theirs = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap();
    let mut theirs = theirs.layer(upstream());
    group.bench_function("tower-resilience default", |b| {
        b.iter_custom(|n| calls(runtime, &mut theirs, n))
    });
    group.finish();
}

fn rejected(c: &mut Criterion, runtime: &Runtime) {
    let mut group = c.benchmark_group("tower: rejected while OPEN");
    let breaker = Arc::new(ours());
    breaker.force_open().unwrap();
    let mut ours_arc = CircuitBreakerLayer::new(breaker).layer(upstream());
    group.bench_function("ours: Arc<SharedBreaker>", |b| {
        b.iter_custom(|n| calls(runtime, &mut ours_arc, n))
    });
    let theirs = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .wait_duration_in_open(Duration::from_secs(600))
        .build()
        .unwrap();
    let theirs = theirs.layer_fn(upstream());
    runtime.block_on(theirs.force_open());
    let mut theirs = theirs;
    group.bench_function("tower-resilience default", |b| {
        b.iter_custom(|n| calls(runtime, &mut theirs, n))
    });
    group.finish();
}

fn main() {
    let runtime = runtime();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    closed_success(&mut criterion, &runtime);
    rejected(&mut criterion, &runtime);
    criterion.final_summary();
}
