//! Async retry delays and cooldowns on tokio's paused clock, and a shared breaker used from
//! many tasks.

use std::{sync::Arc, time::Duration};

use resilient_circuit_std::{
    AsyncPolicy, Breaker, BreakerConfig, BreakerKey, CircuitState, Error, MemoryStore, Ratio,
    RejectReason, Rejected, RetryWithBackoff, SafetyNet,
    backoff::ExponentialDelay,
    time::{TokioClock, TokioSleep},
};
use tokio::time::{Instant, advance};

#[tokio::test(start_paused = true)]
async fn async_retry_waits_its_backoff_on_tokio_time() {
    let backoff =
        ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    let mut retry = RetryWithBackoff::new(4).with_backoff(backoff, TokioSleep);
    let start = Instant::now();
    let result: Result<(), Error<&str>> = retry.call_async(async || Err("down")).await;
    assert_eq!(
        result,
        Err(Error::RetryLimitReached {
            attempts: 5,
            last_error: "down"
        })
    );
    // 0.1 + 0.2 + 0.4 + 0.8, and nothing after the last attempt.
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn cooldown_runs_on_tokio_time() {
    let store = MemoryStore::with_clock(TokioClock);
    let breaker = store
        .breaker(
            BreakerKey::resource("cooldown").unwrap(),
            BreakerConfig::new().cooldown(Duration::from_secs(30)),
        )
        .unwrap();
    let _ = breaker.call_async(async || Err::<(), _>("down")).await;
    advance(Duration::from_secs(29)).await;
    assert_eq!(
        breaker.call_async(async || Ok::<_, &str>(())).await,
        Err(Error::Rejected(Rejected::new(
            Duration::from_secs(1),
            RejectReason::Open
        )))
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.call_async(async || Ok::<_, &str>(5)).await, Ok(5));
    assert_eq!(breaker.status(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_future_gives_its_slot_back() {
    let store = MemoryStore::with_clock(TokioClock);
    let config = BreakerConfig::new()
        .success_limit(Ratio::new(1, 1).unwrap())
        .cooldown(Duration::from_secs(1));
    let breaker = store
        .breaker(BreakerKey::resource("timeout").unwrap(), config)
        .unwrap();
    breaker.force_open().unwrap();
    advance(Duration::from_secs(1)).await;
    let slow_probe = breaker.call_async(async || {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, &str>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), slow_probe)
            .await
            .is_err()
    );
    assert_eq!(
        (breaker.status(), breaker.state().probes_in_flight()),
        (CircuitState::HalfOpen, 0)
    );
    assert_eq!(breaker.call_async(async || Ok::<_, &str>(1)).await, Ok(1));
    assert_eq!(breaker.status(), CircuitState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safety_net_serves_many_spawned_tasks() {
    let store = MemoryStore::with_clock(TokioClock);
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(5, 10).unwrap())
        .cooldown(Duration::from_secs(10));
    let breaker = Arc::new(
        store
            .breaker(BreakerKey::resource("upstream").unwrap(), config)
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for task in 0..32u32 {
        let breaker = Arc::clone(&breaker);
        tasks.push(tokio::spawn(async move {
            let backoff =
                ExponentialDelay::new(Duration::from_millis(10), Duration::from_millis(100))
                    .unwrap();
            let mut net = SafetyNet::new((
                RetryWithBackoff::new(2).with_backoff(backoff, TokioSleep),
                &*breaker,
            ));
            let mut attempts = 0;
            // `async move`: a spawned operation owns its state (see the crate docs on `Send`).
            net.call_async(async move || {
                attempts += 1;
                tokio::task::yield_now().await;
                if task % 4 == 0 && attempts == 1 {
                    Err("flaky")
                } else {
                    Ok(task)
                }
            })
            .await
        }));
    }
    for (task, handle) in tasks.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), Ok(task as u32));
    }
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(breaker.execution_log().len(), 10);
}
