//! QEMU's mps2-an386 (Cortex-M4F): embassy-time's driver (SysTick at 1 kHz, owning the timer
//! queue), the executor's sleep, and the fault handler.
//!
//! There is no embassy HAL for this board, so the firmware brings its own: a tick count the
//! SysTick handler advances, and an `embassy-time-queue-utils` queue it wakes from.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, exception};
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// The board's core clock.
const CORE_CLOCK_HZ: u32 = 25_000_000;
/// embassy-time's tick rate (feature `tick-hz-1_000`).
const TICK_HZ: u32 = 1_000;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for SysTickDriver {
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

/// Starts the 1 kHz tick.
pub fn start_ticks() {
    let Some(core) = cortex_m::Peripherals::take() else {
        defmt::error!("core peripherals already taken");
        crate::exit(crate::status::PANIC);
    };
    let mut syst = core.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_CLOCK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ticks = DRIVER.ticks.borrow(cs);
        ticks.set(ticks.get() + 1);
        DRIVER.queue.borrow_ref_mut(cs).next_expiration(ticks.get());
    });
    // The interrupt that reads the breaker while the scenario task uses it.
    embassy_example::breaker::observe_from_interrupt();
}

/// Sleeps until an interrupt is pending, if `idle` says there is no work, with interrupts masked
/// around the test so that a wake-up cannot fall between it and the sleep.
pub fn sleep_unless(idle: impl FnOnce() -> bool) -> bool {
    cortex_m::interrupt::disable();
    let slept = idle();
    if slept {
        cortex_m::asm::wfi();
    }
    // SAFETY: re-enables the interrupts masked above; no critical section is open here.
    unsafe { cortex_m::interrupt::enable() };
    slept
}

#[exception]
// SAFETY: cortex-m-rt requires the HardFault handler to be an `unsafe fn`; it only exits.
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    crate::exit(crate::status::HARD_FAULT)
}
