//! The firmware's scenario on the host: embassy-time's mock driver (deterministic virtual
//! time), critical-section's `std` implementation, and a thread standing in for the interrupt
//! that reads the breaker while the scenario runs.

use std::{
    future::Future,
    pin::pin,
    sync::atomic::{AtomicBool, Ordering},
    task::{Context, Poll, Waker},
};

use embassy_example::{breaker, scenario};
use embassy_time::{Duration, MockDriver};

/// Polls `future`, moving the mock clock one millisecond whenever it waits.
fn run_on_virtual_time<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        MockDriver::get().advance(Duration::from_millis(1));
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn the_firmware_scenario_passes_on_virtual_time() {
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        // The "interrupt": reads the breaker's state while the scenario changes it.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                breaker::observe_from_interrupt();
                std::thread::yield_now();
            }
        });
        // Stops the "interrupt" however the scenario ends, a panic included.
        let _stop = StopOnDrop(&done);
        run_on_virtual_time(scenario::run())
    })
    .expect("the scenario's configuration is valid");
    println!("{report:#?}");
    assert_eq!(scenario::check(&report), Ok(()));
}
