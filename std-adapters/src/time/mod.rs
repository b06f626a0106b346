//! Clocks and sleepers: the core's seams, monotonic std clocks, and blocking and tokio sleepers.

mod clock;
mod sleep;

#[doc(no_inline)]
pub use resilient_circuit::time::{AsyncSleep, Clock, Instant, NoSleep, Sleep};

#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{CoarseClock, StdClock};
pub use sleep::ThreadSleep;
#[cfg(feature = "tokio")]
pub use sleep::TokioSleep;
