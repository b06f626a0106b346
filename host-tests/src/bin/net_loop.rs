//! Calls a `SafetyNet` of a retry and a `MemoryStore` breaker in a loop, for counting
//! instructions per call with callgrind, as `call_loop` does for a breaker alone.
//!
//! `net_loop blocking|async COUNT`: warms up with 1 000 calls, then makes COUNT calls that
//! succeed at once (the async ones polled once, with a waker that does nothing). Two runs under
//! `valgrind --tool=callgrind`, with COUNT 100 000 and 200 000: the difference of their totals,
//! over 100 000, is one call's instructions through the composition.

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    process::ExitCode,
    task::{Context, Poll, Waker},
    time::Duration,
};

use resilient_circuit::{AsyncPolicy, BreakerConfig, Policy, Ratio, RetryWithBackoff, SafetyNet};
use resilient_circuit_std::{BreakerKey, MemoryStore};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (blocking, count) = match args.as_slice() {
        [mode, count] if mode == "blocking" || mode == "async" => match count.parse::<u64>() {
            Ok(count) => (mode == "blocking", count),
            Err(error) => {
                eprintln!("net_loop: COUNT {count:?}: {error}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: net_loop blocking|async COUNT");
            return ExitCode::FAILURE;
        }
    };
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<50, 100>())
        .cooldown(Duration::from_secs(60));
    let breaker = MemoryStore::new()
        .breaker(BreakerKey::resource("net-loop").unwrap(), config)
        .unwrap();
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &breaker));
    let mut succeeded = 0u64;
    for _ in 0..1_000 + count {
        let result = if blocking {
            net.call(|| Ok::<u64, u64>(black_box(1)))
        } else {
            let call = pin!(net.call_async(async || Ok::<u64, u64>(black_box(1))));
            match call.poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => result,
                Poll::Pending => continue,
            }
        };
        succeeded += u64::from(result.is_ok());
    }
    println!("{succeeded} of {} calls succeeded", 1_000 + count);
    ExitCode::SUCCESS
}
