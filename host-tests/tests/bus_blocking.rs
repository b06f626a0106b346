//! `bus::ProtectedBus` over blocking `embedded-hal` buses: a blocking driver gets the breaker
//! and the retry without a change, and the retry waits on the HAL's delay (`DelaySleep`).

use std::{cell::Cell, rc::Rc, time::Duration};

use embedded_hal::{
    delay::DelayNs,
    i2c::{self, ErrorKind, I2c},
    spi::{self, SpiDevice},
};
use host_tests::buses::{FlakySpi, NAK, SENSOR, ScheduledI2c, i2c_breaker};
use resilient_circuit::{
    BreakerConfig, CircuitProtector, CircuitState, Error, Ratio, RetryWithBackoff, SafetyNet,
    backoff::FixedDelay,
    bus::{DelaySleep, ProtectedBus},
    store::InlineStore,
    time::Instant,
};

/// A blocking driver crate's code: generic over the bus, unaware of any breaker.
fn read_humidity<B: I2c>(bus: &mut B) -> Result<u16, B::Error> {
    let mut raw = [0; 2];
    bus.write_read(SENSOR, &[0xFD], &mut raw)?;
    Ok(u16::from_be_bytes(raw))
}

/// A HAL delay that only adds up what it is asked to wait.
#[derive(Clone, Default)]
struct TotalDelay(Rc<Cell<u64>>);

impl DelayNs for TotalDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.0.set(self.0.get() + u64::from(ns));
    }
}

fn retry(waited: &TotalDelay) -> RetryWithBackoff<FixedDelay, DelaySleep<TotalDelay>> {
    RetryWithBackoff::new(1).with_backoff(
        FixedDelay(Duration::from_millis(1500)),
        DelaySleep::new(waited.clone()),
    )
}

#[test]
fn naks_on_a_blocking_bus_are_retried_after_the_delay_and_trip_the_breaker() {
    let breaker = i2c_breaker(3, 4);
    let waited = TotalDelay::default();
    let net = SafetyNet::new((retry(&waited), &breaker));
    let mut bus = ProtectedBus::new(
        ScheduledI2c::new([Ok(()), Err(NAK), Err(NAK), Err(NAK)]),
        net,
    );

    assert_eq!(read_humidity(&mut bus), Ok(0x0101));
    assert_eq!(waited.0.get(), 0);
    // A NAK and its retry, 1.5 s apart on the HAL's delay: 2 failures of 3, still CLOSED.
    assert_eq!(
        read_humidity(&mut bus),
        Err(Error::RetryLimitReached {
            attempts: 2,
            last_error: NAK
        })
    );
    assert_eq!(waited.0.get(), 1_500_000_000);
    assert_eq!(breaker.status(), CircuitState::Closed);
    // The third NAK trips the breaker; its retry is refused without touching the bus.
    let tripped = read_humidity(&mut bus).unwrap_err();
    assert!(tripped.is_rejected(), "{tripped:?}");
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(bus.into_parts().0.transactions, 4);

    let mut bus = ProtectedBus::new(ScheduledI2c::new([]), &breaker);
    let refused = read_humidity(&mut bus).unwrap_err();
    assert_eq!(
        refused.retry_after(),
        Some(Duration::from_millis(250)),
        "{refused:?}"
    );
    assert_eq!(i2c::Error::kind(&refused), ErrorKind::Other);
    assert_eq!(bus.into_parts().0.transactions, 0);
}

#[test]
fn every_blocking_i2c_method_is_one_transaction_through_the_policy() {
    let breaker = i2c_breaker(8, 8);
    let schedule = [
        Err(NAK),
        Ok(()),
        Err(NAK),
        Ok(()),
        Err(NAK),
        Ok(()),
        Err(NAK),
    ];
    let mut bus = ProtectedBus::new(ScheduledI2c::new(schedule), &breaker);
    let mut buffer = [0; 3];
    let nak = Err(Error::Operation(NAK));
    assert_eq!(bus.read(SENSOR, &mut buffer), nak);
    bus.read(SENSOR, &mut buffer).unwrap();
    assert_eq!(buffer, [2; 3]);
    assert_eq!(bus.write(SENSOR, &[1, 2]), nak);
    bus.write(SENSOR, &[1, 2]).unwrap();
    assert_eq!(bus.write_read(SENSOR, &[0], &mut buffer), nak);
    bus.write_read(SENSOR, &[0], &mut buffer).unwrap();
    assert_eq!(buffer, [6; 3]);
    let mut operations = [
        i2c::Operation::Write(&[7]),
        i2c::Operation::Read(&mut buffer),
    ];
    assert_eq!(bus.transaction(SENSOR, &mut operations), nak);
    bus.transaction(SENSOR, &mut operations).unwrap();
    assert_eq!(buffer, [8; 3]);
    assert_eq!(breaker.execution_log().len(), 8);
    assert_eq!(breaker.execution_log().failures(), 4);
    assert_eq!(bus.into_parts().0.transactions, 8);
}

#[test]
fn every_blocking_spi_method_goes_through_the_policy() {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<2, 2>())
        .cooldown(Duration::from_secs(1))
        .validated();
    let breaker = CircuitProtector::new(config, InlineStore::<16>::new(), Instant::ZERO);
    let mut device = ProtectedBus::new(FlakySpi::new(false), &breaker);
    let mut words = [0x0F; 2];
    device.read(&mut words).unwrap();
    assert_eq!(words, [0xF0; 2]);
    device.write(&[1, 2]).unwrap();
    device.transfer(&mut words, &[3, 4]).unwrap();
    assert_eq!(words, [0xAA; 2]);
    device.transfer_in_place(&mut words).unwrap();
    assert_eq!(words, [0x55; 2]);
    device
        .transaction(&mut [spi::Operation::Read(&mut words)])
        .unwrap();
    assert_eq!(words, [0xAA; 2]);
    // Five successes through a two-outcome window.
    assert_eq!(
        (
            breaker.execution_log().len(),
            breaker.execution_log().failures()
        ),
        (2, 0)
    );
    assert_eq!(device.bus().transactions, 5);

    // Two chip-select faults trip the breaker; the next transfer never reaches the device.
    let (flaky, _) = device.into_parts();
    let mut device = ProtectedBus::new(
        FlakySpi {
            failing: true,
            ..flaky
        },
        &breaker,
    );
    for _ in 0..2 {
        assert_eq!(
            device.write(&[1]),
            Err(Error::Operation(spi::ErrorKind::ChipSelectFault))
        );
    }
    assert_eq!(breaker.status(), CircuitState::Open);
    let refused = device.transfer_in_place(&mut words).unwrap_err();
    assert!(refused.is_rejected());
    assert_eq!(spi::Error::kind(&refused), spi::ErrorKind::Other);
    assert_eq!(device.into_parts().0.transactions, 7);
}
