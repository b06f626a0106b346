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
        // Whole seconds, then the fraction rounded up: only a 32-bit division by a constant
        // (a multiply), none of `compiler_builtins`' 64-bit division.
        let fraction = Duration::new(0, duration.subsec_nanos().div_ceil(1_000_000) * 1_000_000);
        let whole_millis = Duration::from_secs(duration.as_secs()).saturating_add(fraction);
        self.0.sleep(whole_millis).await
    }
}
