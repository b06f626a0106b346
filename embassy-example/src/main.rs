//! Firmware: a flaky sensor guarded by retry and a circuit protector, on QEMU's mps2-an386
//! (Cortex-M4F) or `virt` (RV32IMAC).
//!
//! It runs the scenario, checks every figure against the expected run, logs with `defmt` over
//! semihosting and exits through semihosting: 0 when the scenario passed, 1 when a check
//! failed, 2 on a panic, 3 on a fault.
#![no_std]
#![no_main]

mod executor;
mod tick_driver;

/// The board: its time driver, how the executor sleeps, its fault handler.
#[cfg_attr(target_arch = "arm", path = "board/cortex_m.rs")]
#[cfg_attr(target_arch = "riscv32", path = "board/riscv.rs")]
mod board;

use defmt_semihosting as _;
use embassy_example::{breaker, scenario};
use embassy_executor::Spawner;
use resilient_circuit::CircuitState;

/// Exit statuses QEMU passes on.
mod status {
    pub const PASSED: i32 = 0;
    pub const CHECK_FAILED: i32 = 1;
    pub const PANIC: i32 = 2;
    pub const HARD_FAULT: i32 = 3;
}

/// Ends the run with `status`, QEMU's exit status.
fn exit(status: i32) -> ! {
    semihosting::process::exit(status)
}

#[cfg_attr(
    target_arch = "arm",
    embassy_executor::main(
        entry = "cortex_m_rt::entry",
        executor = "crate::executor::WfiExecutor"
    )
)]
#[cfg_attr(
    target_arch = "riscv32",
    embassy_executor::main(entry = "riscv_rt::entry", executor = "crate::executor::WfiExecutor")
)]
async fn main(_spawner: Spawner) {
    board::start_ticks();
    defmt::info!("scenario: 30 sensor reads through SafetyNet(retry, circuit protector)");

    let outcome = match scenario::run().await {
        Ok(report) => scenario::check(&report).and_then(|()| check_interrupt_view()),
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(()) => {
            defmt::info!("PASS");
            exit(status::PASSED);
        }
        Err(failure) => {
            report_failure(failure);
            exit(status::CHECK_FAILED);
        }
    }
}

fn report_failure(failure: scenario::Failure) {
    match failure {
        scenario::Failure::Mismatch {
            what,
            expected,
            actual,
        } => {
            defmt::error!("FAIL: {} was {}, expected {}", what, actual, expected)
        }
        scenario::Failure::Transition {
            index,
            expected,
            actual,
        } => {
            let (actual, expected) = (names(actual), names(expected));
            defmt::error!(
                "FAIL: transition {} was {} -> {}, expected {} -> {}",
                index,
                actual.0,
                actual.1,
                expected.0,
                expected.1
            )
        }
        scenario::Failure::BadBackoff => defmt::error!("FAIL: the backoff was refused"),
    }
}

/// A transition's state names, or "none" for a missing one.
fn names(transition: Option<(CircuitState, CircuitState)>) -> (&'static str, &'static str) {
    transition.map_or(("none", "none"), |(from, to)| (from.as_str(), to.as_str()))
}

/// The tick interrupt (SysTick, or the machine timer) read the breaker on every 1 ms tick while the task used it; under
/// QEMU's instruction-counted time it found it OPEN on exactly this many ticks (the three
/// cooldowns of 300 ms, less the ticks between each deadline and the probe that ended it).
const EXPECTED_OPEN_TICKS: u32 = 920;

fn check_interrupt_view() -> Result<(), scenario::Failure> {
    let open_ticks = breaker::open_ticks();
    defmt::info!(
        "check interrupt saw OPEN on ticks: {} (expected {})",
        open_ticks,
        EXPECTED_OPEN_TICKS
    );
    if open_ticks == EXPECTED_OPEN_TICKS {
        Ok(())
    } else {
        Err(scenario::Failure::Mismatch {
            what: "interrupt ticks OPEN",
            expected: EXPECTED_OPEN_TICKS.into(),
            actual: open_ticks.into(),
        })
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The message is not formatted: core::fmt would cost kilobytes of flash.
    defmt::error!("panic");
    exit(status::PANIC)
}
