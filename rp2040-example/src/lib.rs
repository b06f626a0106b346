//! What both images share: the board's I2C (I2C0 on GP16 and GP17, as wired on a Pico) and the
//! driver's read loop. `rp2040-example` runs the loop on a `ProtectedBus`, `bare` on the bus
//! itself; the difference of their `.text` is what the library costs on an RP2040.
#![no_std]

use bme280_rs::{AsyncBme280, Configuration, Oversampling, SensorMode};
use embassy_rp::{
    Peri, bind_interrupts,
    i2c::{self, I2c},
    peripherals::{I2C0, PIN_16, PIN_17},
};
use embassy_time::{Delay, Duration, Timer};
use embedded_hal_async::i2c::I2c as AsyncI2c;

bind_interrupts!(struct Irqs {
    I2C0_IRQ => i2c::InterruptHandler<I2C0>;
});

/// The async I2C the sensor is on.
pub type SensorBus = I2c<'static, I2C0, i2c::Async>;

/// I2C0 at the default 100 kHz, SCL on GP17 and SDA on GP16.
pub fn sensor_bus(
    i2c0: Peri<'static, I2C0>,
    scl: Peri<'static, PIN_17>,
    sda: Peri<'static, PIN_16>,
) -> SensorBus {
    I2c::new_async(i2c0, scl, sda, Irqs, i2c::Config::default())
}

/// How often the temperature is read when all is well.
pub const READ_EVERY: Duration = Duration::from_secs(1);

/// Sets the BME280 up, then logs its temperature every [`READ_EVERY`]. After a failed read
/// the sensor is set up again, after the wait `wait_after` gives for the error.
pub async fn read_forever<B>(bus: B, mut wait_after: impl FnMut(&B::Error) -> Duration) -> !
where
    B: AsyncI2c,
    B::Error: defmt::Format,
{
    let mut sensor = AsyncBme280::new(bus, Delay);
    let mut set_up = false;
    loop {
        let read = async {
            if !set_up {
                sensor.init().await?;
                let sampling = Configuration::default()
                    .with_temperature_oversampling(Oversampling::Oversample1)
                    .with_sensor_mode(SensorMode::Normal);
                sensor.set_sampling_configuration(sampling).await?;
                set_up = true;
            }
            sensor.read_temperature().await
        };
        let wait = match read.await {
            Ok(Some(celsius)) => {
                defmt::info!("temperature: {} °C", celsius);
                READ_EVERY
            }
            Ok(None) => {
                defmt::warn!("temperature sampling is off");
                READ_EVERY
            }
            Err(error) => {
                defmt::warn!("read failed: {}", error);
                set_up = false;
                wait_after(&error)
            }
        };
        Timer::after(wait).await;
    }
}
