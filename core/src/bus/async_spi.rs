//! `embedded_hal_async::spi::SpiDevice` through the policy.

use core::future::Future;

use embedded_hal::spi;
use embedded_hal_async::spi::SpiDevice;

use super::protected::ProtectedBus;
use crate::{AsyncPolicy, Error, compose::AsyncOperation};

// As for I2C: every call is one `transaction` (`read`, `write`, `transfer` and
// `transfer_in_place` are the trait's defaults, each one transaction of one operation), so the
// policy's code is generated once per device, however many of its methods a driver calls; and
// the policy's future is the method's, with no `async` wrapper around it.
impl<W, B, P> SpiDevice<W> for ProtectedBus<B, P>
where
    W: Copy + 'static,
    B: SpiDevice<W>,
    P: AsyncPolicy<(), B::Error>,
{
    fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, W>],
    ) -> impl Future<Output = Result<(), Self::Error>> {
        let device = &mut self.bus;
        self.policy.run_async(SpiTransaction { device, operations })
    }
}

struct SpiTransaction<'d, 'ops, 'o, D, W: 'static> {
    device: &'d mut D,
    operations: &'ops mut [spi::Operation<'o, W>],
}

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error>
    for SpiTransaction<'_, '_, '_, D, W>
{
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device
            .transaction(self.operations)
            .await
            .map_err(Error::Operation)
    }
}
