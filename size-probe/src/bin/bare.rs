//! The driver straight on the bus.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use size_probe::{RegisterBus, block_on, read_sample};

#[entry]
fn main() -> ! {
    let mut bus = RegisterBus;
    loop {
        let _ = black_box(block_on(read_sample(&mut bus)));
    }
}
