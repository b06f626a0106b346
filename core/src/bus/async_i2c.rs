//! `embedded_hal_async::i2c::I2c` through the policy.

use embedded_hal::i2c;
use embedded_hal_async::i2c::I2c;

use super::protected::ProtectedBus;
use super::transaction::{ByRef, Transaction};
use crate::{AsyncPolicy, Error};

// Each method hands the policy a transaction that already speaks `Error` (`run_async`): with
// `call_async`, one more future wraps every transaction, and on a Cortex-M moving it in and out
// of the driver's future links `memcpy` and `memmove`. The transaction is a type of its own,
// not a closure: a closure that borrows the buffers would make the future fail `Send`.
impl<A, B, P> I2c<A> for ProtectedBus<B, P>
where
    A: i2c::AddressMode + Copy,
    B: I2c<A>,
    P: AsyncPolicy<(), B::Error>,
{
    async fn read(&mut self, address: A, read: &mut [u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut I2cRead { bus, address, read }))
            .await
    }

    async fn write(&mut self, address: A, write: &[u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut I2cWrite {
                bus,
                address,
                write,
            }))
            .await
    }

    async fn write_read(
        &mut self,
        address: A,
        write: &[u8],
        read: &mut [u8],
    ) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut I2cWriteRead {
                bus,
                address,
                write,
                read,
            }))
            .await
    }

    async fn transaction(
        &mut self,
        address: A,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(ByRef(&mut I2cTransaction {
                bus,
                address,
                operations,
            }))
            .await
    }
}

struct I2cRead<'t, B, A> {
    bus: &'t mut B,
    address: A,
    read: &'t mut [u8],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> Transaction<B::Error> for I2cRead<'_, B, A> {
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .read(self.address, self.read)
            .await
            .map_err(Error::Operation)
    }
}

struct I2cWrite<'t, B, A> {
    bus: &'t mut B,
    address: A,
    write: &'t [u8],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> Transaction<B::Error> for I2cWrite<'_, B, A> {
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .write(self.address, self.write)
            .await
            .map_err(Error::Operation)
    }
}

struct I2cWriteRead<'t, B, A> {
    bus: &'t mut B,
    address: A,
    write: &'t [u8],
    read: &'t mut [u8],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> Transaction<B::Error> for I2cWriteRead<'_, B, A> {
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .write_read(self.address, self.write, self.read)
            .await
            .map_err(Error::Operation)
    }
}

struct I2cTransaction<'t, 'o, B, A> {
    bus: &'t mut B,
    address: A,
    operations: &'t mut [i2c::Operation<'o>],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> Transaction<B::Error> for I2cTransaction<'_, '_, B, A> {
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .transaction(self.address, self.operations)
            .await
            .map_err(Error::Operation)
    }
}
