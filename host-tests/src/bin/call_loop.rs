//! Calls one `MemoryStore` breaker in a loop, for counting instructions per call with callgrind
//! (repeatable, where timings on a shared machine are not).
//!
//! `call_loop closed|open COUNT`: makes a breaker (window full of successes, or forced OPEN),
//! warms it up with 1 000 calls, then makes COUNT calls that succeed (CLOSED) or are rejected
//! (OPEN). Two runs under `valgrind --tool=callgrind`, with COUNT 100 000 and 200 000: the
//! difference of their totals, over 100 000, is one call's instructions. Built with and without
//! `--no-default-features`, it compares the `metrics` feature off and on.

use std::{hint::black_box, process::ExitCode};

use host_tests::call_loops;
use resilient_circuit::Breaker;
use resilient_circuit_std::SharedBreaker;

#[inline(never)]
fn call(breaker: &SharedBreaker, count: u64) -> u64 {
    (0..count)
        .filter(|_| breaker.call(|| Ok::<u64, u64>(black_box(1))).is_ok())
        .count() as u64
}

fn main() -> ExitCode {
    let (open, count) = match call_loops::mode_and_count("call_loop", ["closed", "open"]) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let breaker = call_loops::breaker("call-loop");
    if open {
        breaker.force_open().unwrap();
    }
    call(&breaker, 1_000);
    let succeeded = call(&breaker, count);
    println!("{succeeded} of {count} calls succeeded");
    ExitCode::SUCCESS
}
