//! The firmware's scenario on the host: embassy-time's mock driver (deterministic virtual
//! time), critical-section's `std` implementation, and a thread standing in for the interrupt
//! that reads the breaker while the scenario runs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::run_on_virtual_time;
use embassy_example::{breaker, scenario};

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
