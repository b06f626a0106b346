//! A temperature sensor on a simulated I2C bus with a deterministic fault schedule, and its
//! driver, written against `embedded-hal-async` as a driver crate would be.

use embassy_time::{Duration, Instant, Timer};
use embedded_hal::i2c::{self, ErrorKind, ErrorType, NoAcknowledgeSource, Operation};
use embedded_hal_async::i2c::I2c;

/// How a transaction fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "firmware", derive(defmt::Format))]
pub enum SensorError {
    /// The device did not acknowledge its address (fails fast).
    Nak,
    /// The device stopped answering mid-transfer (fails slowly).
    Timeout,
}

impl i2c::Error for SensorError {
    fn kind(&self) -> ErrorKind {
        match self {
            SensorError::Nak => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            // The controller gave up waiting on a held clock line: a bus fault.
            SensorError::Timeout => ErrorKind::Bus,
        }
    }
}

/// When the bus is faulty, from the start of the scenario: NAKs and timeouts in a burst.
pub const FAULTY_FROM: Duration = Duration::from_millis(200);
/// When the bus recovers.
pub const FAULTY_UNTIL: Duration = Duration::from_millis(1_200);

/// The sensor's address.
pub const SENSOR_ADDRESS: u8 = 0x48;

/// An I2C bus with one temperature sensor on it: healthy, then failing from [`FAULTY_FROM`] to
/// [`FAULTY_UNTIL`] (two NAKs, then a timeout, over and over), then healthy again.
pub struct SimulatedBus {
    start: Instant,
    transactions: u32,
}

impl SimulatedBus {
    /// A bus whose schedule starts now.
    pub fn new() -> Self {
        SimulatedBus {
            start: Instant::now(),
            transactions: 0,
        }
    }

    /// How many transactions the bus saw.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }
}

impl Default for SimulatedBus {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorType for SimulatedBus {
    type Error = SensorError;
}

impl I2c for SimulatedBus {
    /// A transaction takes 2 ms, a NAK 1 ms, a timeout 20 ms; reads return the temperature in
    /// centi-degrees, big-endian.
    async fn transaction(
        &mut self,
        _address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SensorError> {
        self.transactions += 1;
        let since_start = Instant::now() - self.start;
        if since_start >= FAULTY_FROM && since_start < FAULTY_UNTIL {
            if self.transactions.is_multiple_of(3) {
                Timer::after_millis(20).await;
                return Err(SensorError::Timeout);
            }
            Timer::after_millis(1).await;
            return Err(SensorError::Nak);
        }
        Timer::after_millis(2).await;
        let centi_degrees = 2_150 + (self.transactions % 7) as u16;
        for operation in operations {
            if let Operation::Read(buffer) = operation {
                for (byte, value) in buffer.iter_mut().zip(centi_degrees.to_be_bytes()) {
                    *byte = value;
                }
            }
        }
        Ok(())
    }
}

/// The sensor's driver: generic over the bus, knowing nothing of breakers or retries.
pub struct TemperatureSensor<B> {
    bus: B,
}

impl<B: I2c> TemperatureSensor<B> {
    /// The temperature register.
    const TEMPERATURE: u8 = 0x00;

    /// A driver for the sensor on `bus`.
    pub fn new(bus: B) -> Self {
        TemperatureSensor { bus }
    }

    /// The temperature in centi-degrees.
    pub async fn read(&mut self) -> Result<u16, B::Error> {
        let mut raw = [0; 2];
        self.bus
            .write_read(SENSOR_ADDRESS, &[Self::TEMPERATURE], &mut raw)
            .await?;
        Ok(u16::from_be_bytes(raw))
    }
}

impl<B> TemperatureSensor<B> {
    /// The bus.
    pub fn bus(&self) -> &B {
        &self.bus
    }
}
