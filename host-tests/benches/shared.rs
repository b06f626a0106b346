//! Shared-breaker benchmarks.
fn main() {}
