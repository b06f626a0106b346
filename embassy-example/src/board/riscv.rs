//! QEMU's `virt` machine (RV32IMAC): the machine timer at 1 kHz drives the time driver (the
//! CLINT's `mtime` counts at 10 MHz; the handler moves `mtimecmp` one tick on), the executor's
//! sleep, and the exception handler.

use riscv::interrupt::Interrupt;

use crate::tick_driver::{self, TICK_HZ};

/// The CLINT's timer compare register on QEMU's `virt` machine, and the timer's clock.
const MTIMECMP: usize = 0x0200_4000;
const MTIME_HZ: u64 = 10_000_000;
/// The timer's counts per tick.
const PERIOD: u64 = MTIME_HZ / TICK_HZ as u64;

/// Sets `mtimecmp` to `at`, never passing through a value below both the old and the new one
/// (the high half first set to its maximum), so no interrupt fires early.
fn set_mtimecmp(at: u64) {
    // SAFETY: MTIMECMP and MTIMECMP + 4 are hart 0's mtimecmp halves on this machine, always
    // mapped and writable; this hart is the only one, and only this module writes them.
    unsafe {
        core::ptr::write_volatile((MTIMECMP + 4) as *mut u32, u32::MAX);
        core::ptr::write_volatile(MTIMECMP as *mut u32, at as u32);
        core::ptr::write_volatile((MTIMECMP + 4) as *mut u32, (at >> 32) as u32);
    }
}

/// Starts the 1 kHz tick.
pub fn start_ticks() {
    // Tick n at n periods of mtime after its reset (the boot takes far less than one).
    set_mtimecmp(PERIOD);
    // SAFETY: the machine-timer handler below is ready, and nothing runs in a critical
    // section yet.
    unsafe {
        riscv::interrupt::enable_interrupt(Interrupt::MachineTimer);
        riscv::interrupt::enable();
    }
}

#[riscv_rt::core_interrupt(Interrupt::MachineTimer)]
fn machine_timer() {
    // The next tick a fixed period after this one: no drift from the handler's latency.
    let ticks = tick_driver::tick();
    set_mtimecmp((ticks + 1) * PERIOD);
    // The interrupt that reads the breaker while the scenario task uses it.
    embassy_example::breaker::observe_from_interrupt();
}

/// Sleeps until an interrupt is pending, if `idle` says there is no work, with interrupts masked
/// around the test so that a wake-up cannot fall between it and the sleep (WFI still returns
/// on a pending interrupt while they are masked).
pub fn sleep_unless(idle: impl FnOnce() -> bool) -> bool {
    riscv::interrupt::disable();
    let slept = idle();
    if slept {
        riscv::asm::wfi();
    }
    // SAFETY: re-enables the interrupts masked above; no critical section is open here.
    unsafe { riscv::interrupt::enable() };
    slept
}

/// An exception (an illegal instruction, a bad access): exit with the fault status.
// SAFETY: `ExceptionHandler` is the symbol riscv-rt's trap handler calls for an exception
// without a handler of its own; this is its only definition, with the signature it expects.
#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &mut riscv_rt::TrapFrame) -> ! {
    crate::exit(crate::status::HARD_FAULT)
}
