//! Simulated I2C and SPI peripherals for the bus tests. Each is both an `embedded-hal-async` and
//! a blocking `embedded-hal` bus (a test file imports the one trait it drives).

use std::{collections::VecDeque, time::Duration};

use embedded_hal::{
    i2c::{self, ErrorKind, NoAcknowledgeSource},
    spi,
};
use resilient_circuit::{
    BreakerConfig, CircuitProtector, Ratio, bus::I2cDeviceFaults, store::InlineStore, time::Instant,
};

/// A device that did not acknowledge its address.
pub const NAK: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

/// The address every simulated device answers on.
pub const SENSOR: u8 = 0x48;

/// An I2C bus that answers transactions from a schedule (`Ok` fills every read buffer with
/// the transaction's number), and counts them.
pub struct ScheduledI2c {
    schedule: VecDeque<Result<(), ErrorKind>>,
    /// Transactions that reached the bus.
    pub transactions: u8,
}

impl ScheduledI2c {
    /// A bus that answers with `schedule`, then with `Ok`.
    pub fn new(schedule: impl IntoIterator<Item = Result<(), ErrorKind>>) -> Self {
        ScheduledI2c {
            schedule: schedule.into_iter().collect(),
            transactions: 0,
        }
    }

    fn answer(
        &mut self,
        address: u8,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), ErrorKind> {
        assert_eq!(address, SENSOR);
        self.transactions += 1;
        self.schedule.pop_front().unwrap_or(Ok(()))?;
        for operation in operations {
            if let i2c::Operation::Read(buffer) = operation {
                buffer.fill(self.transactions);
            }
        }
        Ok(())
    }
}

impl i2c::ErrorType for ScheduledI2c {
    type Error = ErrorKind;
}

impl embedded_hal_async::i2c::I2c for ScheduledI2c {
    async fn transaction(
        &mut self,
        address: u8,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), ErrorKind> {
        self.answer(address, operations)
    }
}

impl i2c::I2c for ScheduledI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), ErrorKind> {
        self.answer(address, operations)
    }
}

/// An SPI device that fails its transactions with a chip-select fault while `failing`, and
/// counts them; a read or a transfer in place inverts the words, a transfer reads `0xAA`.
pub struct FlakySpi {
    /// Whether transactions fail.
    pub failing: bool,
    /// Transactions that reached the device.
    pub transactions: u32,
}

impl FlakySpi {
    /// A device that fails while `failing`.
    pub fn new(failing: bool) -> Self {
        FlakySpi {
            failing,
            transactions: 0,
        }
    }

    fn answer(&mut self, operations: &mut [spi::Operation<'_, u8>]) -> Result<(), spi::ErrorKind> {
        self.transactions += 1;
        if self.failing {
            return Err(spi::ErrorKind::ChipSelectFault);
        }
        for operation in operations {
            match operation {
                spi::Operation::TransferInPlace(words) | spi::Operation::Read(words) => {
                    words.iter_mut().for_each(|word| *word = !*word)
                }
                spi::Operation::Transfer(read, _) => read.fill(0xAA),
                _ => {}
            }
        }
        Ok(())
    }
}

impl spi::ErrorType for FlakySpi {
    type Error = spi::ErrorKind;
}

impl embedded_hal_async::spi::SpiDevice for FlakySpi {
    async fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, u8>],
    ) -> Result<(), spi::ErrorKind> {
        self.answer(operations)
    }
}

impl spi::SpiDevice for FlakySpi {
    fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, u8>],
    ) -> Result<(), spi::ErrorKind> {
        self.answer(operations)
    }
}

/// A breaker that counts device faults: `failures` of the last `window` trip it, for 250 ms.
pub fn i2c_breaker(
    failures: u16,
    window: u16,
) -> CircuitProtector<InlineStore<8>, Instant, I2cDeviceFaults> {
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(failures, window).unwrap())
        .cooldown(Duration::from_millis(250))
        .validate()
        .unwrap();
    CircuitProtector::new(config, InlineStore::new(), Instant::ZERO).should_handle(I2cDeviceFaults)
}
