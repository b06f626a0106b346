//! embassy-time's driver for both boards: a tick count the board's 1 kHz timer interrupt
//! advances, and an `embassy-time-queue-utils` queue it wakes from.
//!
//! There is no embassy HAL for QEMU's machines, so the firmware brings its own; each board
//! only starts its timer and calls [`tick`] from its handler.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// embassy-time's tick rate (feature `tick-hz-1_000`).
pub const TICK_HZ: u32 = 1_000;

struct TickDriver {
    ticks: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: TickDriver = TickDriver {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for TickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            if at <= self.ticks.borrow(cs).get() {
                waker.wake_by_ref();
            } else {
                self.queue.borrow_ref_mut(cs).schedule_wake(at, waker);
            }
        })
    }
}

/// One tick, from the board's timer interrupt: wakes what is due; the new tick count.
pub fn tick() -> u64 {
    critical_section::with(|cs| {
        let ticks = DRIVER.ticks.borrow(cs);
        ticks.set(ticks.get() + 1);
        DRIVER.queue.borrow_ref_mut(cs).next_expiration(ticks.get());
        ticks.get()
    })
}
