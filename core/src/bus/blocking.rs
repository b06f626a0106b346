//! The blocking `embedded_hal` I2C bus and SPI device through the policy: blocking driver
//! crates are protected unchanged.

use embedded_hal::{
    i2c::{self, I2c},
    spi::{self, SpiDevice},
};

use super::protected::ProtectedBus;
use crate::{Error, Policy};

impl<A, B, P> I2c<A> for ProtectedBus<B, P>
where
    A: i2c::AddressMode + Copy,
    B: I2c<A>,
    P: Policy<(), B::Error>,
{
    fn read(&mut self, address: A, read: &mut [u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run(|| bus.read(address, read).map_err(Error::Operation))
    }

    fn write(&mut self, address: A, write: &[u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run(|| bus.write(address, write).map_err(Error::Operation))
    }

    fn write_read(&mut self, address: A, write: &[u8], read: &mut [u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy.run(|| {
            bus.write_read(address, write, read)
                .map_err(Error::Operation)
        })
    }

    fn transaction(
        &mut self,
        address: A,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy.run(|| {
            bus.transaction(address, operations)
                .map_err(Error::Operation)
        })
    }
}

impl<W, B, P> SpiDevice<W> for ProtectedBus<B, P>
where
    W: Copy + 'static,
    B: SpiDevice<W>,
    P: Policy<(), B::Error>,
{
    fn read(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.read(buf).map_err(Error::Operation))
    }

    fn write(&mut self, buf: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.write(buf).map_err(Error::Operation))
    }

    fn transfer(&mut self, read: &mut [W], write: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.transfer(read, write).map_err(Error::Operation))
    }

    fn transfer_in_place(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.transfer_in_place(buf).map_err(Error::Operation))
    }

    fn transaction(&mut self, operations: &mut [spi::Operation<'_, W>]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.transaction(operations).map_err(Error::Operation))
    }
}
