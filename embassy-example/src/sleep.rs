//! Waiting in whole milliseconds.

use core::time::Duration;

use resilient_circuit::time::AsyncSleep;

/// Rounds every wait up to a whole millisecond, then waits with `inner`.
///
/// The firmware's time driver ticks at 1 kHz and the host test's mock driver at 1 MHz; waits in
/// whole milliseconds make both runs take exactly the same virtual time.
pub struct WholeMillis<S>(pub S);

impl<S: AsyncSleep> AsyncSleep for WholeMillis<S> {
    async fn sleep(&self, duration: Duration) {
        let millis = duration.as_nanos().div_ceil(1_000_000) as u64;
        self.0.sleep(Duration::from_millis(millis)).await
    }
}
