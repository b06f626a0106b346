//! The core on the inline store (and the embassy-sync store), next to a bare closure and
//! `AtomicU64::fetch_add`, in one run.
//!
//! `cargo bench -p host-tests --bench core`

use std::{
    cell::Cell,
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio,
    store::{InlineStore, RawMutexStore},
    time::{Clock, Instant},
};

/// A monotonic clock on `std::time::Instant`, for the rejection path with a real clock read.
struct MonotonicClock(std::time::Instant);

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
}

fn core_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");

    group.bench_function("bare closure", |b| {
        let operation = || Ok::<u64, u64>(black_box(1));
        b.iter(operation)
    });

    let counter = AtomicU64::new(0);
    group.bench_function("AtomicU64::fetch_add", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::Relaxed))
    });

    let closed = CircuitProtector::new(
        BreakerConfig::new()
            .failure_limit(Ratio::of::<32, 64>())
            .validated(),
        InlineStore::<64>::new(),
        Instant::ZERO,
    );
    group.bench_function("inline: closed success", |b| {
        b.iter(|| closed.call(|| Ok::<u64, u64>(black_box(1))))
    });

    // The same call on the embassy-sync store: without a critical section (NoopRawMutex), and
    // with one (critical-section's std implementation here, a global lock; on a single-core
    // MCU it masks interrupts instead). embassy-sync's `lock` is not `#[inline]`: at the bench
    // profile's 16 codegen units it may stay a call (about 16 ns here); with one codegen unit,
    // as firmware is built, the NoopRawMutex line is the inline store's figure.
    let on_noop = CircuitProtector::new(
        BreakerConfig::new()
            .failure_limit(Ratio::of::<32, 64>())
            .validated(),
        RawMutexStore::<NoopRawMutex, 64>::new(),
        Instant::ZERO,
    );
    group.bench_function("noop raw mutex: closed success", |b| {
        b.iter(|| on_noop.call(|| Ok::<u64, u64>(black_box(1))))
    });
    let on_critical_section = CircuitProtector::new(
        BreakerConfig::new()
            .failure_limit(Ratio::of::<32, 64>())
            .validated(),
        RawMutexStore::<CriticalSectionRawMutex, 64>::new(),
        Instant::ZERO,
    );
    group.bench_function("critical-section raw mutex: closed success", |b| {
        b.iter(|| on_critical_section.call(|| Ok::<u64, u64>(black_box(1))))
    });

    // Every call fails; the hook flags the trip after each 64th failure and the loop resets.
    let tripped = Cell::new(false);
    let failing = CircuitProtector::new(
        BreakerConfig::new()
            .failure_limit(Ratio::of::<64, 64>())
            .validated(),
        InlineStore::<64>::new(),
        Instant::ZERO,
    )
    .on_status_change(|_, _| tripped.set(true));
    group.bench_function("inline: closed failure", |b| {
        b.iter(|| {
            let result = failing.call(|| Err::<u64, u64>(black_box(1)));
            if tripped.replace(false) {
                failing.reset().unwrap();
            }
            result
        })
    });

    let open_config = BreakerConfig::new()
        .cooldown(Duration::from_secs(1_000_000))
        .validated();
    let open = CircuitProtector::new(open_config, InlineStore::<64>::new(), Instant::ZERO);
    open.force_open().unwrap();
    group.bench_function("inline: rejected (fixed clock)", |b| {
        b.iter(|| open.call(|| Ok::<u64, u64>(black_box(1))))
    });

    let open_std = CircuitProtector::new(
        open_config,
        InlineStore::<64>::new(),
        MonotonicClock(std::time::Instant::now()),
    );
    open_std.force_open().unwrap();
    group.bench_function("inline: rejected (std clock)", |b| {
        b.iter(|| open_std.call(|| Ok::<u64, u64>(black_box(1))))
    });
    let clock = MonotonicClock(std::time::Instant::now());
    group.bench_function("std clock read alone", |b| b.iter(|| clock.now()));

    // HALF_OPEN with a probe window of 64: successful probes fill it; when it closes, the hook
    // flags it and the loop reopens with cooldown 0, so the next call is a probe again.
    let closed_again = Cell::new(false);
    let probing = CircuitProtector::new(
        BreakerConfig::new()
            .success_limit(Ratio::of::<64, 64>())
            .validated(),
        InlineStore::<64>::new(),
        Instant::ZERO,
    )
    .on_status_change(|_, new| closed_again.set(new == CircuitState::Closed));
    probing.force_open().unwrap();
    group.bench_function("inline: half-open probe", |b| {
        b.iter(|| {
            let result = probing.call(|| Ok::<u64, u64>(black_box(1)));
            if closed_again.replace(false) {
                probing.force_open().unwrap();
            }
            result
        })
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = core_paths
}
criterion_main!(benches);
