//! Many tokio tasks call a flaky upstream through `SafetyNet(retry, breaker)`; the breaker is
//! shared by all of them.
//!
//! The upstream is down from 200 ms to 900 ms. Watch one trip stop every task from calling
//! it, probes find it still down, and the first good probe close the breaker for everyone.
//!
//! `cargo run -p resilient-circuit-std --features tokio --example tokio_service`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use resilient_circuit_std::{
    AsyncPolicy, BreakerConfig, BreakerKey, Error, MemoryStore, Ratio, RetryWithBackoff, SafetyNet,
    backoff::{ExponentialDelay, SplitMix64},
    fixed_point::U1F31,
    time::TokioSleep,
};
use tokio::time::Instant;

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503 Service Unavailable")
    }
}

/// The upstream: a few milliseconds per call, down from 200 ms to 900 ms.
async fn upstream(start: Instant) -> Result<&'static str, Unavailable> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    match start.elapsed().as_millis() {
        200..900 => Err(Unavailable),
        _ => Ok("200 OK"),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU32,
    failed: AtomicU32,
    rejected: AtomicU32,
    upstream_calls: AtomicU32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let store = MemoryStore::new();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(5, 10)?)
        .success_limit(Ratio::new(1, 1)?)
        .cooldown(Duration::from_millis(300));
    let breaker = Arc::new(
        store
            .breaker(BreakerKey::resource("upstream")?, config)?
            .on_status_change(move |old, new| {
                println!(
                    "[{:>4} ms] breaker {old} -> {new}",
                    start.elapsed().as_millis()
                )
            }),
    );
    println!("16 tasks, one shared breaker (5 of the last 10 calls failed: open for 300 ms),");
    println!("each call retried twice with backoff; the upstream is down from 200 ms to 900 ms.\n");

    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let (breaker, tally) = (Arc::clone(&breaker), Arc::clone(&tally));
        tasks.push(tokio::spawn(async move {
            let backoff =
                ExponentialDelay::new(Duration::from_millis(10), Duration::from_millis(80))?
                    .with_jitter(U1F31::from_num(0.3), SplitMix64::new(task))?;
            let mut net = SafetyNet::new((
                RetryWithBackoff::new(2).with_backoff(backoff, TokioSleep),
                &*breaker,
            ));
            while start.elapsed() < Duration::from_millis(1_400) {
                let calls = Arc::clone(&tally);
                // `async move`: an operation in a spawned task owns what it uses.
                let result = net
                    .call_async(async move || {
                        calls.upstream_calls.fetch_add(1, Ordering::Relaxed);
                        upstream(start).await
                    })
                    .await;
                let counter = match result {
                    Ok(_) => &tally.ok,
                    Err(Error::Rejected(_)) => &tally.rejected,
                    Err(_) => &tally.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok::<_, resilient_circuit_std::backoff::BackoffError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let count = |c: &AtomicU32| c.load(Ordering::Relaxed);
    println!(
        "\nrequests: {} succeeded, {} failed after retries, {} rejected at once; the upstream saw {} calls",
        count(&tally.ok),
        count(&tally.failed),
        count(&tally.rejected),
        count(&tally.upstream_calls)
    );
    Ok(())
}
