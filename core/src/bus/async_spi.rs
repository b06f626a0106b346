//! `embedded_hal_async::spi::SpiDevice` through the policy.

use embedded_hal::spi;
use embedded_hal_async::spi::SpiDevice;

use super::protected::ProtectedBus;
use super::transaction::{ByRef, Transaction};
use crate::{AsyncPolicy, Error};

impl<W, B, P> SpiDevice<W> for ProtectedBus<B, P>
where
    W: Copy + 'static,
    B: SpiDevice<W>,
    P: AsyncPolicy<(), B::Error>,
{
    async fn read(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut SpiRead { device, buf }))
            .await
    }

    async fn write(&mut self, buf: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut SpiWrite { device, buf }))
            .await
    }

    async fn transfer(&mut self, read: &mut [W], write: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut SpiTransfer {
                device,
                read,
                write,
            }))
            .await
    }

    async fn transfer_in_place(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut SpiTransferInPlace { device, buf }))
            .await
    }

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

struct SpiRead<'t, D, W> {
    device: &'t mut D,
    buf: &'t mut [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> Transaction<D::Error> for SpiRead<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device.read(self.buf).await.map_err(Error::Operation)
    }
}

struct SpiWrite<'t, D, W> {
    device: &'t mut D,
    buf: &'t [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> Transaction<D::Error> for SpiWrite<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device.write(self.buf).await.map_err(Error::Operation)
    }
}

struct SpiTransfer<'t, D, W> {
    device: &'t mut D,
    read: &'t mut [W],
    write: &'t [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> Transaction<D::Error> for SpiTransfer<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device
            .transfer(self.read, self.write)
            .await
            .map_err(Error::Operation)
    }
}

struct SpiTransferInPlace<'t, D, W> {
    device: &'t mut D,
    buf: &'t mut [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> Transaction<D::Error> for SpiTransferInPlace<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device
            .transfer_in_place(self.buf)
            .await
            .map_err(Error::Operation)
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
