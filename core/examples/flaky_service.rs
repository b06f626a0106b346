//! A flaky service protected by `SafetyNet(retry, circuit protector)` on the in-process store.
//!
//! The service is down from 150 ms to 700 ms into the run. Watch the breaker trip, reject
//! calls (saying how long to wait), probe, reopen while the service is still down, and close
//! once it has recovered.
//!
//! `cargo run -p resilient-circuit --example flaky_service`

use std::{
    cell::Cell,
    thread,
    time::{Duration, Instant as StdInstant},
};

use resilient_circuit::{
    BreakerConfig, CircuitProtector, Error, Policy, Ratio, RetryWithBackoff, SafetyNet,
    backoff::{ExponentialDelay, SplitMix64},
    fixed_point::U1F31,
    store::InlineStore,
    time::{Clock, Instant, Sleep},
};

/// Monotonic time since the start of the run.
#[derive(Clone, Copy)]
struct RunClock(StdInstant);

impl Clock for RunClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
}

impl RunClock {
    fn millis(&self) -> u128 {
        self.0.elapsed().as_millis()
    }
}

/// Waits by sleeping the thread.
struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep(&self, duration: Duration) {
        thread::sleep(duration);
    }
}

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503 Service Unavailable")
    }
}

/// The upstream: healthy, then down from 150 ms to 700 ms, then healthy again.
fn flaky_service(clock: &RunClock) -> Result<&'static str, Unavailable> {
    match clock.millis() {
        150..700 => Err(Unavailable),
        _ => Ok("200 OK"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = RunClock(StdInstant::now());
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(3, 5)?)
        .success_limit(Ratio::new(2, 2)?)
        .cooldown(Duration::from_millis(400))
        .validate()?;
    let breaker = CircuitProtector::new(config, InlineStore::<64>::new(), clock).on_status_change(
        |old, new| println!("[{:>4} ms]   breaker {old} -> {new}", clock.millis()),
    );
    let backoff = ExponentialDelay::new(Duration::from_millis(20), Duration::from_millis(200))?
        .with_jitter(
            U1F31::from_num(0.2),
            SplitMix64::new(clock.0.elapsed().as_nanos() as u64),
        )?;
    let mut net = SafetyNet::new((
        RetryWithBackoff::new(2).with_backoff(backoff, ThreadSleep),
        &breaker,
    ));

    println!("A flaky service behind SafetyNet(retry, circuit protector):");
    println!(
        "  breaker: trips when 3 of the last 5 calls failed, cooldown 400 ms, closes after 2 of 2 probes"
    );
    println!("  retry:   2 retries, exponential backoff 20 ms .. 200 ms with 20 % jitter");
    println!("  service: down from 150 ms to 700 ms\n");

    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    for request in 1..=30 {
        let attempts = Cell::new(0);
        let result = net.call(|| {
            attempts.set(attempts.get() + 1);
            flaky_service(&clock)
        });
        let at = clock.millis();
        match result {
            Ok(body) => {
                ok += 1;
                println!(
                    "[{at:>4} ms] request {request:>2}: {body} after {} attempt(s)",
                    attempts.get()
                );
            }
            Err(Error::Rejected(r)) => {
                rejected += 1;
                println!(
                    "[{at:>4} ms] request {request:>2}: rejected, retry after {:?}",
                    r.retry_after()
                );
            }
            Err(error) => {
                failed += 1;
                println!("[{at:>4} ms] request {request:>2}: failed: {error}");
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    println!("\n{ok} succeeded, {failed} failed, {rejected} rejected without calling the service");
    Ok(())
}
