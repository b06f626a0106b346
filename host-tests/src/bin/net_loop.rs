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
};

use host_tests::call_loops;
use resilient_circuit::{AsyncPolicy, Policy, RetryWithBackoff, SafetyNet};

fn main() -> ExitCode {
    let (is_async, count) = match call_loops::mode_and_count("net_loop", ["blocking", "async"]) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let breaker = call_loops::breaker("net-loop");
    let mut net = SafetyNet::new((RetryWithBackoff::new(2), &breaker));
    let mut succeeded = 0u64;
    for _ in 0..1_000 + count {
        let result = if !is_async {
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
