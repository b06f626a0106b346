//! The blocking `embedded_hal` I2C bus and SPI device through the policy: blocking driver
//! crates are protected unchanged. As for the async ones, every call is one `transaction` (the
//! traits' other methods are their defaults), so the policy's code is generated once per bus.

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
    fn transaction(&mut self, operations: &mut [spi::Operation<'_, W>]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run(|| device.transaction(operations).map_err(Error::Operation))
    }
}
