//! The example's firmware with the driver on the bare I2C: no breaker, no retry. Only built, to
//! weigh what `ProtectedBus` adds (`cargo xtask rp2040`).
#![no_std]
#![no_main]

use defmt_rtt as _;
use embassy_executor::Spawner;
use panic_halt as _;
use rp2040_example::{READ_EVERY, read_forever, sensor_bus};

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    read_forever(sensor_bus(p.I2C0, p.PIN_17, p.PIN_16), |_| READ_EVERY).await
}
