//! A simulated peripheral with a deterministic fault schedule.

use embassy_time::{Duration, Instant, Timer};

/// How a read fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "firmware", derive(defmt::Format))]
pub enum SensorError {
    /// The device did not acknowledge its address (fails fast).
    Nak,
    /// The device stopped answering mid-transfer (fails slowly).
    Timeout,
}

/// When the bus is faulty, from the start of the scenario: NAKs and timeouts in a burst.
pub const FAULTY_FROM: Duration = Duration::from_millis(200);
/// When the bus recovers.
pub const FAULTY_UNTIL: Duration = Duration::from_millis(1_200);

/// A temperature sensor on a flaky bus: healthy, then failing from [`FAULTY_FROM`] to
/// [`FAULTY_UNTIL`] (two NAKs, then a timeout, over and over), then healthy again.
pub struct FlakySensor {
    start: Instant,
    reads: u32,
}

impl FlakySensor {
    /// A sensor whose schedule starts now.
    pub fn new() -> Self {
        FlakySensor {
            start: Instant::now(),
            reads: 0,
        }
    }

    /// Reads the temperature in centi-degrees; takes 2 ms, a NAK 1 ms, a timeout 20 ms.
    pub async fn read(&mut self) -> Result<u16, SensorError> {
        self.reads += 1;
        let since_start = Instant::now() - self.start;
        if since_start >= FAULTY_FROM && since_start < FAULTY_UNTIL {
            if self.reads.is_multiple_of(3) {
                Timer::after_millis(20).await;
                return Err(SensorError::Timeout);
            }
            Timer::after_millis(1).await;
            return Err(SensorError::Nak);
        }
        Timer::after_millis(2).await;
        Ok(2_150 + (self.reads % 7) as u16)
    }

    /// How many reads the bus saw.
    pub fn reads(&self) -> u32 {
        self.reads
    }
}

impl Default for FlakySensor {
    fn default() -> Self {
        Self::new()
    }
}
