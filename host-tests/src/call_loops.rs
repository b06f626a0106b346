//! What the callgrind loops (`call_loop`, `net_loop`) share: their arguments and their breaker.

use std::time::Duration;

use resilient_circuit::{BreakerConfig, Ratio};
use resilient_circuit_std::{BreakerKey, MemoryStore, SharedBreaker};

/// `MODE COUNT` from the command line, `MODE` one of `modes`: whether it is the second mode,
/// and the count; `Err` with the message to print (usage, or a count that is not a number).
pub fn mode_and_count(program: &str, modes: [&str; 2]) -> Result<(bool, u64), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, count] if modes.contains(&mode.as_str()) => match count.parse::<u64>() {
            Ok(count) => Ok((mode == modes[1], count)),
            Err(error) => Err(format!("{program}: COUNT {count:?}: {error}")),
        },
        _ => Err(format!("usage: {program} {}|{} COUNT", modes[0], modes[1])),
    }
}

/// A `MemoryStore` breaker keyed `resource`: a window of 100, half of it to open, a minute's
/// cooldown.
pub fn breaker(resource: &str) -> SharedBreaker {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<50, 100>())
        .cooldown(Duration::from_secs(60));
    MemoryStore::new()
        .breaker(BreakerKey::resource(resource).unwrap(), config)
        .unwrap()
}
