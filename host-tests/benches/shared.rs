//! Server-side breakers side by side, in one run: a bare closure, `AtomicU64::fetch_add`,
//! `Mutex<u64>`, failsafe 1.3 (consecutive failures, and its default), recloser 1.4 (default),
//! our core inline breaker and our thread-shared breaker.
//!
//! `cargo bench -p host-tests --bench shared` (criterion for one thread; then plain threads for
//! two, keeping only rounds where both threads really ran in parallel).
//!
//! The `metrics` feature is on by default; `--no-default-features` builds without it, and with
//! it the shared breaker also runs counting into a Prometheus recorder. To compare:
//! `cargo bench -p host-tests --no-default-features --bench shared -- --save-baseline no-metrics`,
//! then `cargo bench -p host-tests --bench shared -- --baseline-lenient no-metrics` (lenient: the
//! Prometheus rows have no counterpart without the feature).

use std::{
    hint::black_box,
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant as StdInstant},
};

use criterion::Criterion;
use failsafe::{CircuitBreaker, Config, backoff, failure_policy};
use recloser::Recloser;
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, Ratio,
    store::InlineStore,
    time::{Clock, Instant},
};
use resilient_circuit_std::{
    BreakerKey, MemoryStore, SharedBreaker,
    time::{CoarseClock, StdClock},
};

fn failsafe_consecutive() -> impl CircuitBreaker + Clone + Send + Sync + 'static {
    let backoff = backoff::exponential(Duration::from_secs(10), Duration::from_secs(60));
    Config::new()
        .failure_policy(failure_policy::consecutive_failures(5, backoff))
        .build()
}

fn failsafe_default() -> impl CircuitBreaker + Clone + Send + Sync + 'static {
    Config::new().build()
}

fn ours_shared() -> SharedBreaker {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<50, 100>())
        .cooldown(Duration::from_secs(60));
    MemoryStore::new()
        .breaker(BreakerKey::resource("bench").unwrap(), config)
        .unwrap()
}

fn ours_inline<C: Clock>(clock: C) -> CircuitProtector<InlineStore<128, 4>, C> {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<50, 100>())
        .cooldown(Duration::from_secs(60));
    CircuitProtector::new(config.validated(), InlineStore::new(), clock)
}

/// A breaker made with a Prometheus recorder installed (on this thread), so it counts into it.
#[cfg(feature = "metrics")]
fn with_prometheus(make: impl FnOnce() -> SharedBreaker) -> SharedBreaker {
    let recorder = Box::leak(Box::new(
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
    ));
    metrics::with_local_recorder(recorder, make)
}

/// Warm a breaker up so its window is full of successes.
fn warm(mut call: impl FnMut()) {
    for _ in 0..1_000 {
        call();
    }
}

fn ok() -> Result<u64, u64> {
    Ok(black_box(1))
}

fn fail() -> Result<u64, u64> {
    Err(black_box(1))
}

fn closed_success(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed success, 1 thread");
    group.bench_function("bare closure", |b| b.iter(ok));
    let counter = AtomicU64::new(0);
    group.bench_function("AtomicU64::fetch_add", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::Relaxed))
    });
    let mutex = Mutex::new(0u64);
    group.bench_function("Mutex<u64>", |b| {
        b.iter(|| {
            let mut guard = mutex.lock().unwrap();
            *guard += 1;
            *guard
        })
    });
    let fs = failsafe_consecutive();
    group.bench_function("failsafe consecutive_failures(5)", |b| {
        b.iter(|| fs.call(ok))
    });
    let fs_default = failsafe_default();
    group.bench_function("failsafe Config::new()", |b| b.iter(|| fs_default.call(ok)));
    let rc = Recloser::default();
    group.bench_function("recloser default", |b| b.iter(|| rc.call(ok)));
    let inline = ours_inline(Instant::ZERO);
    warm(|| {
        let _ = inline.call(ok);
    });
    group.bench_function("ours: core inline", |b| b.iter(|| inline.call(ok)));
    let shared = ours_shared();
    warm(|| {
        let _ = shared.call(ok);
    });
    group.bench_function("ours: shared", |b| b.iter(|| shared.call(ok)));
    #[cfg(feature = "metrics")]
    {
        let counted = with_prometheus(ours_shared);
        warm(|| {
            let _ = counted.call(ok);
        });
        group.bench_function("ours: shared, metrics into Prometheus", |b| {
            b.iter(|| counted.call(ok))
        });
    }
    // A window that always holds a failure (1 call in 50 fails): successes take the lock.
    let mixed = ours_shared();
    let calls = AtomicU64::new(0);
    group.bench_function("ours: shared, 1 call in 50 failing", |b| {
        b.iter(|| mixed.call(|| one_in_fifty_fails(&calls)))
    });
    group.finish();
}

/// Fails every 50th call.
fn one_in_fifty_fails(calls: &AtomicU64) -> Result<u64, u64> {
    if calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(50) {
        fail()
    } else {
        ok()
    }
}

fn rejected(c: &mut Criterion) {
    let mut group = c.benchmark_group("rejected while OPEN, 1 thread");
    let fs = failsafe_consecutive();
    (0..10).for_each(|_| {
        let _ = fs.call(fail);
    });
    group.bench_function("failsafe consecutive_failures(5)", |b| {
        b.iter(|| fs.call(ok))
    });
    let fs_default = failsafe_default();
    (0..10).for_each(|_| {
        let _ = fs_default.call(fail);
    });
    group.bench_function("failsafe Config::new()", |b| b.iter(|| fs_default.call(ok)));
    let rc = Recloser::default();
    (0..1_000).for_each(|_| {
        let _ = rc.call(fail);
    });
    group.bench_function("recloser default", |b| b.iter(|| rc.call(ok)));
    let inline = ours_inline(StdClock);
    inline.force_open().unwrap();
    group.bench_function("ours: core inline, StdClock", |b| {
        b.iter(|| inline.call(ok))
    });
    let coarse = ours_inline(CoarseClock);
    coarse.force_open().unwrap();
    group.bench_function("ours: core inline, CoarseClock", |b| {
        b.iter(|| coarse.call(ok))
    });
    let shared = ours_shared();
    shared.force_open().unwrap();
    group.bench_function("ours: shared (CoarseClock)", |b| b.iter(|| shared.call(ok)));
    #[cfg(feature = "metrics")]
    {
        let counted = with_prometheus(ours_shared);
        counted.force_open().unwrap();
        group.bench_function("ours: shared, metrics into Prometheus", |b| {
            b.iter(|| counted.call(ok))
        });
    }
    group.finish();
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One call on a subject shared by both threads.
type Subject<'a> = Box<dyn Fn() + Sync + 'a>;

const ROUNDS: usize = 12;
/// How long a round should last, so thread start-up skew is small beside it.
const ROUND: Duration = Duration::from_millis(100);

/// Two threads calling `call` on one shared subject: the median total calls per second over
/// the rounds where CPU time / wall time was at least 1.9 (both threads really ran), how many
/// rounds those were, and the median CPU / wall ratio of all rounds.
fn two_threads(call: impl Fn() + Sync) -> (Option<f64>, usize, f64) {
    // Calibrate on one thread: enough calls for a round of about `ROUND`.
    let probe = StdInstant::now();
    for _ in 0..10_000 {
        call();
    }
    let per_call = probe.elapsed().as_secs_f64() / 10_000.0;
    let calls_per_thread = ((ROUND.as_secs_f64() / per_call) as u64).max(10_000);
    let mut kept = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let barrier = Barrier::new(2);
        // Each worker times itself: the spawning thread may be descheduled on this 2-core
        // machine, so its own clock readings would not bracket the work.
        let spans: Vec<(StdInstant, StdInstant, Duration)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (call, barrier) = (&call, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let (wall_start, cpu_start) = (StdInstant::now(), thread_cpu_time());
                        for _ in 0..calls_per_thread {
                            call();
                        }
                        (wall_start, StdInstant::now(), thread_cpu_time() - cpu_start)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let first_start = spans.iter().map(|s| s.0).min().unwrap();
        let last_end = spans.iter().map(|s| s.1).max().unwrap();
        let wall = last_end - first_start;
        let cpu: Duration = spans.iter().map(|s| s.2).sum();
        let ratio = cpu.as_secs_f64() / wall.as_secs_f64();
        ratios.push(ratio);
        if ratio >= 1.9 {
            kept.push(2.0 * calls_per_thread as f64 / wall.as_secs_f64());
        }
    }
    kept.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    (
        kept.get(kept.len() / 2).copied(),
        kept.len(),
        ratios[ratios.len() / 2],
    )
}

fn two_thread_table() {
    println!("\nclosed success, 2 threads on one shared subject (median of parallel rounds)");
    println!("{:<36} {:>16} {:>10}", "subject", "calls/s", "rounds");
    let counter = AtomicU64::new(0);
    let mutex = Mutex::new(0u64);
    let fs = failsafe_consecutive();
    let fs_default = failsafe_default();
    let rc = Arc::new(Recloser::default());
    let shared = ours_shared();
    warm(|| {
        let _ = shared.call(ok);
    });
    let mixed = ours_shared();
    let mixed_calls = AtomicU64::new(0);
    let rows: Vec<(&str, Subject)> = vec![
        (
            "bare closure (nothing shared)",
            Box::new(|| {
                let _ = black_box(ok());
            }),
        ),
        (
            "AtomicU64::fetch_add",
            Box::new(|| {
                black_box(counter.fetch_add(1, Ordering::Relaxed));
            }),
        ),
        ("Mutex<u64>", Box::new(|| *mutex.lock().unwrap() += 1)),
        (
            "failsafe consecutive_failures(5)",
            Box::new(|| {
                let _ = black_box(fs.call(ok));
            }),
        ),
        (
            "failsafe Config::new()",
            Box::new(|| {
                let _ = black_box(fs_default.call(ok));
            }),
        ),
        (
            "recloser default",
            Box::new(|| {
                let _ = black_box(rc.call(ok));
            }),
        ),
        (
            "ours: shared, 1 call in 50 failing",
            Box::new(|| {
                let _ = black_box(mixed.call(|| one_in_fifty_fails(&mixed_calls)));
            }),
        ),
        (
            "ours: shared",
            Box::new(|| {
                let _ = black_box(shared.call(ok));
            }),
        ),
    ];
    for (name, call) in rows {
        match two_threads(call) {
            (Some(rate), kept, _) => println!("{name:<36} {rate:>16.0} {kept:>6}/{ROUNDS}"),
            (None, _, ratio) => println!(
                "{name:<36} {:>16} {:>6}/{ROUNDS} (median CPU/wall {ratio:.2}: the threads serialise)",
                "no parallel round", 0
            ),
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    closed_success(&mut criterion);
    rejected(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        two_thread_table();
    }
}
