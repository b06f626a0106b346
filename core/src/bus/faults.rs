//! How a breaker counts I2C errors.

use embedded_hal::i2c;

use crate::{Classify, classify::Verdict};

/// How a breaker counts I2C errors: a fault of the device or the bus (no acknowledge, a bus
/// error, an overrun, any other) is a failure; a lost arbitration (another controller won the
/// bus) is not the device's doing and is not recorded. A retry retries every error by default,
/// arbitration losses included; given this classifier instead, a retry would stop at one.
///
/// ```
/// use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
/// use resilient_circuit::{Classify, bus::I2cDeviceFaults, classify::Verdict};
///
/// let nak = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
/// assert_eq!(I2cDeviceFaults.classify(&nak), Verdict::Failure);
/// assert_eq!(I2cDeviceFaults.classify(&ErrorKind::ArbitrationLoss), Verdict::Ignore);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct I2cDeviceFaults;

impl<E: i2c::Error> Classify<E> for I2cDeviceFaults {
    #[inline]
    fn classify(&self, error: &E) -> Verdict {
        match error.kind() {
            i2c::ErrorKind::ArbitrationLoss => Verdict::Ignore,
            _ => Verdict::Failure,
        }
    }
}
