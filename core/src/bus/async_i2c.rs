//! `embedded_hal_async::i2c::I2c` through the policy.

use core::future::Future;

use embedded_hal::i2c;
use embedded_hal_async::i2c::I2c;

use super::protected::ProtectedBus;
use crate::{AsyncPolicy, Error, compose::AsyncOperation};

// Every call is one `transaction` (the trait's other methods are defined by it, and are left
// to their defaults): the policy's code, which holds the bus's future, is generated once per
// bus instead of once per method a driver calls (a fifth of what the protected path adds on an
// RP2040 whose driver calls two). The transaction goes to the policy as a type of its own (a
// closure that borrows the operations would make the future fail `Send`), and the policy's
// future is the method's: no `async` wrapper around it, whose state and moves cost 80 bytes on
// an RP2040.
impl<A, B, P> I2c<A> for ProtectedBus<B, P>
where
    A: i2c::AddressMode + Copy,
    B: I2c<A>,
    P: AsyncPolicy<(), B::Error>,
{
    fn transaction(
        &mut self,
        address: A,
        operations: &mut [i2c::Operation<'_>],
    ) -> impl Future<Output = Result<(), Self::Error>> {
        let bus = &mut self.bus;
        self.policy.run_async(I2cTransaction {
            bus,
            address,
            operations,
        })
    }
}

struct I2cTransaction<'b, 'ops, 'o, B, A> {
    bus: &'b mut B,
    address: A,
    operations: &'ops mut [i2c::Operation<'o>],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> AsyncOperation<(), B::Error>
    for I2cTransaction<'_, '_, '_, B, A>
{
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .transaction(self.address, self.operations)
            .await
            .map_err(Error::Operation)
    }
}
