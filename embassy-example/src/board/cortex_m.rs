//! QEMU's mps2-an386 (Cortex-M4F): SysTick at 1 kHz drives the time driver, the executor's
//! sleep, and the fault handler.

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, exception};

use crate::tick_driver::{self, TICK_HZ};

/// The board's core clock.
const CORE_CLOCK_HZ: u32 = 25_000_000;

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
    tick_driver::tick();
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
