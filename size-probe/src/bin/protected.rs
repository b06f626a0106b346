//! The driver on a `ProtectedBus`: a breaker and a retry with exponential backoff (no jitter).
#![no_std]
#![no_main]

use core::{hint::black_box, time::Duration};

use cortex_m_rt::entry;
use embedded_hal::i2c::Error as _;
use resilient_circuit::{
    BreakerConfig, CircuitProtector, Error, Ratio, RetryWithBackoff, SafetyNet, ValidConfig,
    backoff::ExponentialDelay,
    breaker::Leased,
    bus::{I2cDeviceFaults, ProtectedBus},
    hook::NoHook,
    state::OutcomeWindow,
    store::CriticalSectionStore,
};
use size_probe::{RegisterBus, SpinSleep, TickClock, block_on, read_sample};

const CONFIG: ValidConfig<OutcomeWindow<16>> = BreakerConfig::new()
    .failure_limit(Ratio::of::<3, 5>())
    .probe_lease(Duration::from_secs(1))
    .validated();

/// Shared by the firmware's tasks, as a breaker usually is: built at compile time. Leased, so
/// that the protected future needs no code to give a probe slot back when dropped.
static BREAKER: Leased<CircuitProtector<CriticalSectionStore<16>, TickClock, I2cDeviceFaults>> =
    Leased::validated(CircuitProtector::with_parts(
        CONFIG,
        CriticalSectionStore::new(),
        TickClock,
        I2cDeviceFaults,
        NoHook,
    ));

#[entry]
fn main() -> ! {
    let retry =
        RetryWithBackoff::new(3).with_backoff(ExponentialDelay::millis::<10, 1_000>(), SpinSleep);
    let mut bus = ProtectedBus::new(RegisterBus, SafetyNet::new((retry, &BREAKER)));
    loop {
        match block_on(read_sample(&mut bus)) {
            Err(Error::Rejected(rejected)) => {
                black_box(rejected.retry_after());
            }
            other => {
                let _ = black_box(other.map_err(|error| error.kind()));
            }
        }
    }
}
