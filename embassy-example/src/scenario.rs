//! The scenario the firmware runs and checks: 30 sensor reads, one every 50 ms, by a driver
//! whose I2C bus (failing from 200 ms to 1200 ms) runs every transaction through
//! `SafetyNet(retry, circuit protector)`.

use core::time::Duration;

use embassy_time::{Instant, Timer};
use resilient_circuit::{
    CircuitState, Error, RetryWithBackoff, SafetyNet,
    backoff::{ExponentialDelay, SplitMix64},
    bus::ProtectedBus,
    fixed_point::U1F31,
    time::EmbassySleep,
};

use crate::{
    breaker::{self, BREAKER},
    sensor::{SimulatedBus, TemperatureSensor},
    sleep::WholeMillis,
};

use CircuitState::{Closed, HalfOpen, Open};

/// Reads the scenario makes.
pub const REQUESTS: u32 = 30;

/// This device's jitter seed (a serial number, say): devices of one fleet must not retry in
/// lockstep.
pub const DEVICE_SEED: u64 = 0x00C0_FFEE_0042;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Reads that returned a value.
    pub ok: u32,
    /// Reads that failed after every retry.
    pub failed: u32,
    /// Reads the breaker rejected without touching the bus.
    pub rejected: u32,
    /// Retries (attempts after the first of a read).
    pub retries: u32,
    /// Transactions the bus saw.
    pub bus_reads: u32,
    /// Virtual time the scenario took, in milliseconds.
    pub elapsed_ms: u64,
    /// How many transitions the breaker made ([`breaker::transition`] has them).
    pub transition_count: usize,
}

/// Why the scenario failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "firmware", derive(defmt::Format))]
pub enum Failure {
    /// The backoff's configuration was refused.
    BadBackoff,
    /// A figure differed from the expected one.
    Mismatch {
        /// Which figure.
        what: &'static str,
        /// What the scenario expects.
        expected: u64,
        /// What happened.
        actual: u64,
    },
    /// Transition number `index` differed, or one was missing or extra (`None`).
    Transition {
        /// Which transition.
        index: usize,
        /// The one expected there.
        expected: Option<(CircuitState, CircuitState)>,
        /// The one that happened.
        actual: Option<(CircuitState, CircuitState)>,
    },
}

/// Runs the scenario and reports what happened.
pub async fn run() -> Result<Report, Failure> {
    let start = Instant::now();
    let backoff = ExponentialDelay::new(Duration::from_millis(10), Duration::from_millis(40))
        .and_then(|b| b.with_jitter(U1F31::from_num(0.25), SplitMix64::new(DEVICE_SEED)))
        .map_err(|_| Failure::BadBackoff)?;
    let retry = RetryWithBackoff::new(2).with_backoff(backoff, WholeMillis(EmbassySleep));
    // The driver talks to the bus through the retry and the breaker, unchanged.
    let bus = ProtectedBus::new(SimulatedBus::new(), SafetyNet::new((retry, &BREAKER)));
    let mut sensor = TemperatureSensor::new(bus);
    let (mut ok, mut failed, mut rejected, mut retries) = (0, 0, 0, 0);

    for request in 1..=REQUESTS {
        let before = transactions(&sensor);
        let result = sensor.read().await;
        let attempts = transactions(&sensor) - before;
        retries += attempts.saturating_sub(1);
        match result {
            Ok(centi_degrees) => {
                ok += 1;
                log!(
                    info,
                    "read {}: {} cC after {} attempt(s)",
                    request,
                    centi_degrees,
                    attempts
                );
            }
            Err(Error::Rejected(r)) => {
                rejected += 1;
                let wait = r.retry_after().as_millis() as u32;
                log!(info, "read {}: rejected, retry after {} ms", request, wait);
            }
            Err(Error::RetryLimitReached {
                attempts,
                last_error,
            }) => {
                failed += 1;
                log!(
                    info,
                    "read {}: failed after {} attempts: {}",
                    request,
                    attempts,
                    last_error
                );
            }
            Err(Error::Operation(e)) => {
                failed += 1;
                log!(info, "read {}: failed: {}", request, e);
            }
            // `Error` is non-exhaustive: a later version may say more.
            Err(other) => {
                failed += 1;
                log!(info, "read {}: failed: {}", request, other);
            }
        }
        Timer::after_millis(50).await;
    }

    Ok(Report {
        ok,
        failed,
        rejected,
        retries,
        bus_reads: transactions(&sensor),
        elapsed_ms: start.elapsed().as_millis(),
        transition_count: breaker::transition_count(),
    })
}

/// Transactions the bus under `sensor`'s driver saw: the attempts, retries included.
fn transactions<P>(sensor: &TemperatureSensor<ProtectedBus<SimulatedBus, P>>) -> u32 {
    sensor.bus().bus().transactions()
}

/// What the scenario must produce: the same on the firmware and on the host.
pub struct Expected {
    /// Reads that returned a value.
    pub ok: u32,
    /// Reads that failed after every retry.
    pub failed: u32,
    /// Reads rejected by the breaker.
    pub rejected: u32,
    /// Retries.
    pub retries: u32,
    /// Transactions on the bus.
    pub bus_reads: u32,
    /// Virtual milliseconds.
    pub elapsed_ms: u64,
    /// The transitions, in order.
    pub transitions: &'static [(CircuitState, CircuitState)],
}

/// The expected run.
///
/// Reads 1-4 succeed. From 200 ms the bus fails: read 5 fails three times (the third failure
/// makes 3 of the last 4 and trips the breaker) and gives up. From then on reads are rejected
/// without touching the bus, except a probe every 300 ms, which twice finds the bus still
/// failing and reopens the breaker. After 1200 ms a probe and the read after it succeed (2 of 2)
/// and the breaker closes for good.
pub const EXPECTED: Expected = Expected {
    ok: 12,
    failed: 1,
    rejected: 17,
    retries: 2,
    bus_reads: 17,
    elapsed_ms: 1_619,
    transitions: &[
        (
            Closed,
            if cfg!(feature = "wrong-expectation") {
                HalfOpen
            } else {
                Open
            },
        ),
        (Open, HalfOpen),
        (HalfOpen, Open),
        (Open, HalfOpen),
        (HalfOpen, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
    ],
};

/// Compares `report` with [`EXPECTED`], logging each figure.
pub fn check(report: &Report) -> Result<(), Failure> {
    let figures: [(&'static str, u64, u64); 6] = [
        ("reads ok", EXPECTED.ok.into(), report.ok.into()),
        ("reads failed", EXPECTED.failed.into(), report.failed.into()),
        (
            "reads rejected",
            EXPECTED.rejected.into(),
            report.rejected.into(),
        ),
        ("retries", EXPECTED.retries.into(), report.retries.into()),
        (
            "bus transactions",
            EXPECTED.bus_reads.into(),
            report.bus_reads.into(),
        ),
        ("virtual ms", EXPECTED.elapsed_ms, report.elapsed_ms),
    ];
    for (what, expected, actual) in figures {
        log!(info, "check {}: {} (expected {})", what, actual, expected);
        if actual != expected {
            return Err(Failure::Mismatch {
                what,
                expected,
                actual,
            });
        }
    }
    for index in 0..report.transition_count.max(EXPECTED.transitions.len()) {
        let actual = breaker::transition(index);
        let expected = EXPECTED.transitions.get(index).copied();
        if let Some((from, to)) = actual {
            log!(
                info,
                "check transition {}: {} -> {}",
                index,
                from.as_str(),
                to.as_str()
            );
        }
        if actual != expected {
            return Err(Failure::Transition {
                index,
                expected,
                actual,
            });
        }
    }
    Ok(())
}
