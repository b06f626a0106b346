//! `embedded_hal_async::spi::SpiDevice` through the policy.

use embedded_hal::spi;
use embedded_hal_async::spi::SpiDevice;

use super::protected::ProtectedBus;
use super::transaction::{ByRef, Transaction};
use crate::{AsyncPolicy, Error};

// As for I2C: every call is one `transaction` (`read`, `write`, `transfer` and
// `transfer_in_place` are the trait's defaults, each one transaction of one operation), so the
// policy's code is generated once per device, however many of its methods a driver calls.
impl<W, B, P> SpiDevice<W> for ProtectedBus<B, P>
where
    W: Copy + 'static,
    B: SpiDevice<W>,
    P: AsyncPolicy<(), B::Error>,
{
    async fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, W>],
    ) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut SpiTransaction { device, operations }))
            .await
    }
}

struct SpiTransaction<'t, 'o, D, W: 'static> {
    device: &'t mut D,
    operations: &'t mut [spi::Operation<'o, W>],
}

impl<W: Copy + 'static, D: SpiDevice<W>> Transaction<D::Error> for SpiTransaction<'_, '_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device
            .transaction(self.operations)
            .await
            .map_err(Error::Operation)
    }
}
