//! What both images share: a sensor driver written against `embedded-hal-async`, an I2C bus
//! whose answers come from a register (so nothing is optimised away), and a poll loop. The
//! `protected` image puts a breaker and a retry with exponential backoff between them; the
//! difference of the two images' `.text` is what the library costs.
#![no_std]

use core::{
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use cortex_m::peripheral::SYST;
use embedded_hal::i2c::{self, ErrorKind, NoAcknowledgeSource, Operation};
use embedded_hal_async::i2c::I2c;
use resilient_circuit::time::{AsyncSleep, Clock, Instant};

/// The sensor's address.
pub const SENSOR: u8 = 0x76;

/// An I2C bus whose device answers, or does not, as SysTick's counter says.
pub struct RegisterBus;

impl i2c::ErrorType for RegisterBus {
    type Error = ErrorKind;
}

impl I2c for RegisterBus {
    async fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), ErrorKind> {
        black_box(address);
        if SYST::get_current() & 0x100 == 0 {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for operation in operations {
            match operation {
                Operation::Write(bytes) => {
                    black_box(bytes);
                }
                Operation::Read(buffer) => buffer.fill(SYST::get_current() as u8),
            }
        }
        Ok(())
    }
}

/// A driver crate's read: a register, then two bytes of data.
pub async fn read_sample<B: I2c>(bus: &mut B) -> Result<u16, B::Error> {
    let mut raw = [0; 2];
    bus.write_read(SENSOR, &[0xFA], &mut raw).await?;
    Ok(u16::from_be_bytes(raw))
}

/// Polls `future` until it is ready.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

/// A clock on SysTick's counter, read as nanoseconds (no arithmetic of the probe's own to
/// weigh).
pub struct TickClock;

impl Clock for TickClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::from(SYST::get_current()))
    }
}

/// A sleeper that spins for about the wait's microseconds (a shift, not a division: the probe
/// weighs the library, not its own arithmetic).
pub struct SpinSleep;

impl AsyncSleep for SpinSleep {
    async fn sleep(&self, duration: Duration) {
        cortex_m::asm::delay(duration.subsec_nanos() >> 10);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
