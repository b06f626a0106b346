//! Clocks and sleepers: the core's seams, monotonic std clocks, and blocking and tokio sleepers.

pub use resilient_circuit::time::*;

#[cfg(feature = "tokio")]
pub use crate::clock::TokioClock;
pub use crate::clock::{CoarseClock, StdClock};
pub use crate::sleep::ThreadSleep;
#[cfg(feature = "tokio")]
pub use crate::sleep::TokioSleep;
