//! `embedded_hal_async::i2c::I2c` through the policy.

use embedded_hal::i2c;
use embedded_hal_async::i2c::I2c;

use super::protected::ProtectedBus;
use super::transaction::{ByRef, Transaction};
use crate::{AsyncPolicy, Error};

// Every call is one `transaction` (the trait's other methods are defined by it, and are left
// to their defaults): the policy's code, which holds the bus's future, is generated once per
// bus instead of once per method a driver calls (a fifth of what the protected path adds on an
// RP2040 whose driver calls two). The transaction goes to the policy as a type of its
// own, by reference (`run_async`): a closure that borrows the operations would make the future
// fail `Send`, and a transaction moved by value links `memcpy` on a Cortex-M0+.
impl<A, B, P> I2c<A> for ProtectedBus<B, P>
where
    A: i2c::AddressMode + Copy,
    B: I2c<A>,
    P: AsyncPolicy<(), B::Error>,
{
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
