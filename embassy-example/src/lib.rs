//! The firmware's scenario: a sensor driver on a flaky I2C bus whose transactions go through
//! `SafetyNet(retry, circuit protector)`.
//!
//! Shared by the firmware (`main.rs`, run under QEMU) and the host test (`tests/scenario.rs`,
//! on embassy-time's mock driver), so the logic is covered with and without QEMU.
#![no_std]

/// Logs with `defmt` on the firmware; compiles to nothing on the host.
#[cfg(feature = "firmware")]
macro_rules! log {
    (info, $($arg:tt)*) => { defmt::info!($($arg)*) };
    (error, $($arg:tt)*) => { defmt::error!($($arg)*) };
}
#[cfg(not(feature = "firmware"))]
macro_rules! log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{ $(let _ = &$arg;)* }};
}

pub mod breaker;
pub mod scenario;
pub mod sensor;
pub mod sleep;
