//! Buses whose every transaction goes through a policy (feature `embedded-hal`): any driver
//! crate, async (`embedded-hal-async`) or blocking (`embedded-hal`), gets a breaker and a retry
//! without a change.

mod async_i2c;
mod async_spi;
mod blocking;
mod delay;
mod faults;
mod protected;

pub use delay::DelaySleep;
pub use faults::I2cDeviceFaults;
pub use protected::ProtectedBus;
