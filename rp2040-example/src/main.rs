//! A BME280 on an RP2040 (embassy-rp), its I2C behind `ProtectedBus`: a retry with exponential
//! backoff inside a circuit breaker. The driver crate (`bme280-rs`) is used unchanged: it sees an
//! async I2C whose error is `resilient_circuit::Error`.
//!
//! When the sensor stops answering, each read is tried three times; after 3 failed reads of the
//! last 5 the breaker opens, and reads are refused without touching the bus until its cooldown
//! has passed. The loop then waits as long as the rejection says, not a fixed period.
#![no_std]
#![no_main]

use core::time::Duration;

use defmt_rtt as _;
use embassy_executor::Spawner;
use panic_halt as _;
use resilient_circuit::{
    BreakerConfig, CircuitProtector, Error, Ratio, RetryWithBackoff, SafetyNet, ValidConfig,
    backoff::ExponentialDelay,
    breaker::Leased,
    bus::{I2cDeviceFaults, ProtectedBus},
    hook::NoHook,
    state::OutcomeWindow,
    store::CriticalSectionStore,
    time::{EmbassyClock, EmbassySleep},
};
use rp2040_example::{READ_EVERY, read_forever, sensor_bus};

/// Open after 3 failed reads of the last 5, for 5 seconds; a probe slot is lent for a second.
/// Checked at compile time.
const CONFIG: ValidConfig<OutcomeWindow<5, 1>> = BreakerConfig::new()
    .failure_limit(Ratio::of::<3, 5>())
    .cooldown(Duration::from_secs(5))
    .probe_lease(Duration::from_secs(1))
    .validated();

/// The sensor's breaker, in a `static` so that any task (or an interrupt) can ask its state.
/// A NAK or a bus error is the device's fault; an arbitration loss is not counted. Leased: a
/// read dropped halfway leaves its probe slot to the lease, so the protected futures carry no
/// code to give it back.
static SENSOR: Leased<CircuitProtector<CriticalSectionStore<5, 1>, EmbassyClock, I2cDeviceFaults>> =
    Leased::validated(CircuitProtector::with_parts(
        CONFIG,
        CriticalSectionStore::new(),
        EmbassyClock,
        I2cDeviceFaults,
        NoHook,
    ));

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    // Three attempts, 10 ms apart and then 20 ms, on embassy's timer.
    let retry = RetryWithBackoff::new(3)
        .with_backoff(ExponentialDelay::millis::<10, 1_000>(), EmbassySleep);
    let bus = ProtectedBus::new(
        sensor_bus(p.I2C0, p.PIN_17, p.PIN_16),
        SafetyNet::new((retry, &SENSOR)),
    );
    read_forever(bus, |error| match error {
        // Refused by the open breaker: come back when it lets a probe through.
        Error::Rejected(rejected) => rejected.retry_after_embassy(),
        _ => READ_EVERY,
    })
    .await
}
