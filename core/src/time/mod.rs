//! Time and waiting: [`Instant`], a monotonic time as a plain value, the [`Clock`] that reads
//! it, and the sleepers that wait between retries ([`Sleep`], [`AsyncSleep`]).

mod clock;
#[cfg(feature = "embassy")]
mod embassy;
mod sleep;

pub(crate) use clock::duration_to_nanos;
pub use clock::{Clock, Instant};
#[cfg(feature = "embassy")]
pub(crate) use embassy::ticks_of;
#[cfg(feature = "embassy")]
pub use embassy::{EmbassyClock, EmbassySleep};
pub use sleep::{AsyncSleep, NoSleep, Sleep};
