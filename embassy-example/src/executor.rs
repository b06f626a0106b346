//! A thread-mode executor that sleeps with WFI between polls.
//!
//! embassy's stock Cortex-M executor waits with WFE, on which QEMU spins instead of sleeping;
//! with WFI (on either architecture), QEMU (`-icount sleep=off`) skips virtual time straight to
//! the next interrupt.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Spawner, raw};

/// Set by the pender (any context) when a task was woken; cleared before each poll.
static WORK_PENDING: AtomicBool = AtomicBool::new(true);

/// Called by embassy when a task is woken, from a task or an interrupt handler.
// SAFETY: `__pender` is the symbol embassy-executor calls to signal work; this is its only
// definition in the program, with the signature the executor declares.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WORK_PENDING.store(true, Ordering::Release);
}

/// The executor `#[embassy_executor::main]` builds and runs.
pub struct WfiExecutor {
    inner: raw::Executor,
}

impl WfiExecutor {
    /// A new executor (the main macro makes it `'static`).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        WfiExecutor {
            inner: raw::Executor::new(core::ptr::null_mut()),
        }
    }

    /// Spawns the main task with `init`, then polls forever, sleeping while there is no work.
    pub fn run(&'static mut self, init: impl FnOnce(Spawner)) -> ! {
        init(self.inner.spawner());
        loop {
            // "No work" and "sleep" cannot be split by a wake-up: the board tests and sleeps
            // with interrupts masked.
            let slept = crate::board::sleep_unless(|| !WORK_PENDING.swap(false, Ordering::AcqRel));
            if !slept {
                // SAFETY: `poll` runs only here, in thread mode, never re-entered (the pender
                // only sets a flag).
                unsafe { self.inner.poll() };
            }
        }
    }
}
