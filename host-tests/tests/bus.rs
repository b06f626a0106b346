//! `bus::ProtectedBus`: a driver written against `embedded-hal-async` gets the breaker and the
//! retry without a change; simulated I2C and SPI buses with a fault schedule.

use std::time::Duration;

use embedded_hal::{
    i2c::{self, ErrorKind},
    spi,
};
use embedded_hal_async::{i2c::I2c, spi::SpiDevice};
use host_tests::{
    block_on,
    buses::{FlakySpi, NAK, SENSOR, ScheduledI2c, i2c_breaker},
};
use resilient_circuit::{
    BreakerConfig, CircuitProtector, CircuitState, Error, Ratio, RetryWithBackoff, SafetyNet,
    bus::ProtectedBus, store::InlineStore, time::Instant,
};

/// A driver crate's code: generic over the bus, unaware of any breaker.
async fn read_temperature<B: I2c>(bus: &mut B) -> Result<u16, B::Error> {
    let mut raw = [0; 2];
    bus.write_read(SENSOR, &[0x00], &mut raw).await?;
    Ok(u16::from_be_bytes(raw))
}

#[test]
fn naks_trip_the_breaker_and_a_rejected_read_never_touches_the_bus() {
    let breaker = i2c_breaker(3, 4);
    let net = SafetyNet::new((RetryWithBackoff::new(1), &breaker));
    let mut bus = ProtectedBus::new(
        ScheduledI2c::new([Ok(()), Err(NAK), Err(NAK), Err(NAK)]),
        net,
    );

    // The first read's value is the transaction number in both bytes.
    assert_eq!(block_on(read_temperature(&mut bus)), Ok(0x0101));
    // Two NAKs (the read and its retry): 2 failures of 3 outcomes, still CLOSED.
    let failed = block_on(read_temperature(&mut bus)).unwrap_err();
    assert_eq!(
        failed,
        Error::RetryLimitReached {
            attempts: 2,
            last_error: NAK
        }
    );
    assert_eq!(i2c::Error::kind(&failed), NAK);
    assert_eq!(breaker.status(), CircuitState::Closed);
    // The third NAK makes 3 of the last 4: OPEN; its retry is refused by the breaker.
    let tripped = block_on(read_temperature(&mut bus)).unwrap_err();
    assert!(
        tripped.is_rejected(),
        "the retry into the open breaker: {tripped:?}"
    );
    assert_eq!(breaker.status(), CircuitState::Open);
    assert_eq!(bus.into_parts().0.transactions, 4);

    let mut bus = ProtectedBus::new(
        ScheduledI2c::new([]),
        SafetyNet::new((RetryWithBackoff::new(1), &breaker)),
    );
    let refused = block_on(read_temperature(&mut bus)).unwrap_err();
    let Error::Rejected(rejection) = refused else {
        panic!("expected a rejection, got {refused:?}");
    };
    assert_eq!(rejection.retry_after(), Duration::from_millis(250));
    assert_eq!(i2c::Error::kind(&refused), ErrorKind::Other);
    assert_eq!(bus.into_parts().0.transactions, 0);
}

#[test]
fn a_lost_arbitration_is_retried_and_not_held_against_the_device() {
    // One failure of one would trip: the arbitration losses must not count.
    let breaker = i2c_breaker(1, 1);
    let net = SafetyNet::new((RetryWithBackoff::new(2), &breaker));
    let schedule = [
        Err(ErrorKind::ArbitrationLoss),
        Err(ErrorKind::ArbitrationLoss),
    ];
    let mut bus = ProtectedBus::new(ScheduledI2c::new(schedule), net);

    // Read buffers hold the last attempt's data: the third transaction.
    assert_eq!(block_on(read_temperature(&mut bus)), Ok(0x0303));
    assert_eq!(breaker.status(), CircuitState::Closed);
    assert_eq!(breaker.execution_log().failures(), 0);
    assert_eq!(bus.into_parts().0.transactions, 3);
}

#[test]
fn every_i2c_method_is_one_transaction_through_the_policy() {
    // Each method once into a NAK (recorded as a failure), then once through.
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
    block_on(async {
        assert_eq!(bus.read(SENSOR, &mut buffer).await, nak);
        bus.read(SENSOR, &mut buffer).await.unwrap();
        assert_eq!(buffer, [2; 3]);
        assert_eq!(bus.write(SENSOR, &[1, 2]).await, nak);
        bus.write(SENSOR, &[1, 2]).await.unwrap();
        assert_eq!(bus.write_read(SENSOR, &[0], &mut buffer).await, nak);
        bus.write_read(SENSOR, &[0], &mut buffer).await.unwrap();
        assert_eq!(buffer, [6; 3]);
        let mut operations = [
            i2c::Operation::Write(&[7]),
            i2c::Operation::Read(&mut buffer),
        ];
        assert_eq!(bus.transaction(SENSOR, &mut operations).await, nak);
        bus.transaction(SENSOR, &mut operations).await.unwrap();
    });
    assert_eq!(buffer, [8; 3]);
    assert_eq!(breaker.execution_log().len(), 8);
    assert_eq!(breaker.execution_log().failures(), 4);
    assert_eq!(bus.into_parts().0.transactions, 8);
}

fn spi_breaker() -> CircuitProtector<InlineStore<16>, Instant> {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<16, 16>())
        .cooldown(Duration::from_secs(1))
        .validated();
    CircuitProtector::new(config, InlineStore::new(), Instant::ZERO)
}

#[test]
fn every_spi_method_is_one_transaction_through_the_policy() {
    let breaker = spi_breaker();
    let mut device = ProtectedBus::new(FlakySpi::new(true), &breaker);
    let mut words = [0x0F, 0xF0];
    let fault = Err(Error::Operation(spi::ErrorKind::ChipSelectFault));
    block_on(async {
        assert_eq!(device.read(&mut words).await, fault);
        assert_eq!(device.write(&words).await, fault);
        assert_eq!(device.transfer(&mut words, &[1, 2]).await, fault);
        assert_eq!(device.transfer_in_place(&mut words).await, fault);
        let mut operations = [spi::Operation::Write(&[1])];
        assert_eq!(device.transaction(&mut operations).await, fault);
    });
    assert_eq!(words, [0x0F, 0xF0], "a failed transfer writes nothing here");
    assert_eq!(breaker.execution_log().failures(), 5);
    let (mut flaky, _) = device.into_parts();
    flaky.failing = false;
    let mut device = ProtectedBus::new(flaky, &breaker);
    block_on(async {
        device.transfer_in_place(&mut words).await.unwrap();
        assert_eq!(words, [0xF0, 0x0F]);
        device.transfer(&mut words, &[1, 2]).await.unwrap();
        assert_eq!(words, [0xAA, 0xAA]);
    });
    assert_eq!(breaker.execution_log().len(), 7);
    assert_eq!(device.into_parts().0.transactions, 7);
}

#[test]
fn an_spi_device_fails_into_the_breaker_and_then_is_left_alone() {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::of::<2, 2>())
        .cooldown(Duration::from_secs(1))
        .validated();
    let breaker = CircuitProtector::new(config, InlineStore::<2>::new(), Instant::ZERO);
    let net = SafetyNet::new((RetryWithBackoff::new(1), &breaker));
    let mut device = ProtectedBus::new(FlakySpi::new(true), net);
    let mut words = [0x0F, 0xF0];

    let failed = block_on(device.transfer_in_place(&mut words)).unwrap_err();
    assert_eq!(spi::Error::kind(&failed), spi::ErrorKind::ChipSelectFault);
    assert_eq!(breaker.status(), CircuitState::Open);
    let refused = block_on(device.transfer_in_place(&mut words)).unwrap_err();
    assert!(refused.is_rejected());
    assert_eq!(spi::Error::kind(&refused), spi::ErrorKind::Other);
    assert_eq!(
        words,
        [0x0F, 0xF0],
        "a refused transfer leaves the buffer alone"
    );
    assert_eq!(device.into_parts().0.transactions, 2);
}
