//! `embedded-hal-async` buses whose every transaction goes through a policy (feature
//! `embedded-hal`): any driver crate gets a breaker and a retry without a change.

use embedded_hal::{i2c, spi};
use embedded_hal_async::{i2c::I2c, spi::SpiDevice};

use crate::{AsyncPolicy, Classify, Error, classify::Verdict, compose::AsyncOperation};

/// An I2C bus or SPI device that runs every transaction through `policy` (a breaker, a
/// [`RetryWithBackoff`](crate::RetryWithBackoff) or a [`SafetyNet`](crate::SafetyNet) of
/// both), and is itself an `embedded_hal_async` [`I2c`] bus or [`SpiDevice`]: hand it to a
/// driver in place of the bus.
///
/// Its error is the policy's [`Error`] over the bus's: the driver sees
/// [`Error::Rejected`] (with the wait in [`Rejected::retry_after`](crate::Rejected::retry_after))
/// when the breaker refused the transaction without touching the bus, and the bus's own
/// error after the retries. `kind()` is the bus error's, and `Other` for a rejection. A retried
/// transaction is the same transaction again (its read buffers are written anew).
///
/// ```
/// # futures_executor_stand_in::block_on(async {
/// use core::time::Duration;
/// use embedded_hal::i2c::{ErrorKind, ErrorType, NoAcknowledgeSource, Operation};
/// use embedded_hal_async::i2c::I2c;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, CircuitState, Error, Ratio, RetryWithBackoff, SafetyNet,
///     bus::{I2cDeviceFaults, ProtectedBus}, store::InlineStore, time::Instant,
/// };
///
/// /// A bus whose device never answers.
/// struct AbsentDevice;
/// impl ErrorType for AbsentDevice {
///     type Error = ErrorKind;
/// }
/// impl I2c for AbsentDevice {
///     async fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
///         Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address))
///     }
/// }
///
/// /// A driver written against the trait, knowing nothing of breakers.
/// async fn read_register<B: I2c>(bus: &mut B, register: u8) -> Result<u8, B::Error> {
///     let mut value = [0];
///     bus.write_read(0x48, &[register], &mut value).await?;
///     Ok(value[0])
/// }
///
/// let config = BreakerConfig::new()
///     .failure_limit(Ratio::of::<2, 2>())
///     .cooldown(Duration::from_millis(500))
///     .validate()?;
/// let breaker = CircuitProtector::new(config, InlineStore::<2>::new(), Instant::ZERO)
///     .should_handle(I2cDeviceFaults);
/// let mut bus = ProtectedBus::new(AbsentDevice, SafetyNet::new((RetryWithBackoff::new(1), &breaker)));
///
/// // Two NAKs (one retry) trip the breaker; the next read is refused without touching the bus.
/// let failed = read_register(&mut bus, 0x00).await.unwrap_err();
/// assert!(matches!(failed, Error::RetryLimitReached { attempts: 2, .. }));
/// assert_eq!(breaker.status(), CircuitState::Open);
/// let refused = read_register(&mut bus, 0x00).await.unwrap_err();
/// assert!(matches!(refused, Error::Rejected(r) if r.retry_after() == Duration::from_millis(500)));
/// # Ok::<(), resilient_circuit::ConfigError>(())
/// # }).unwrap();
/// # mod futures_executor_stand_in {
/// #     pub fn block_on<F: core::future::Future>(f: F) -> F::Output {
/// #         let mut f = core::pin::pin!(f);
/// #         let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
/// #         loop {
/// #             if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
/// #         }
/// #     }
/// # }
/// ```
#[derive(Debug)]
pub struct ProtectedBus<B, P> {
    bus: B,
    policy: P,
}

impl<B, P> ProtectedBus<B, P> {
    /// `bus`, each of whose transactions runs through `policy`.
    pub const fn new(bus: B, policy: P) -> Self {
        ProtectedBus { bus, policy }
    }

    /// The bus.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The bus and the policy, apart again.
    pub fn into_parts(self) -> (B, P) {
        (self.bus, self.policy)
    }
}

impl<B: i2c::ErrorType, P> i2c::ErrorType for ProtectedBus<B, P> {
    type Error = Error<B::Error>;
}

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
        self.policy.run_async(I2cRead { bus, address, read }).await
    }

    async fn write(&mut self, address: A, write: &[u8]) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(I2cWrite {
                bus,
                address,
                write,
            })
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
            .run_async(I2cWriteRead {
                bus,
                address,
                write,
                read,
            })
            .await
    }

    async fn transaction(
        &mut self,
        address: A,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let bus = &mut self.bus;
        self.policy
            .run_async(I2cTransaction {
                bus,
                address,
                operations,
            })
            .await
    }
}

struct I2cRead<'t, B, A> {
    bus: &'t mut B,
    address: A,
    read: &'t mut [u8],
}

impl<B: I2c<A>, A: i2c::AddressMode + Copy> AsyncOperation<(), B::Error> for I2cRead<'_, B, A> {
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

impl<B: I2c<A>, A: i2c::AddressMode + Copy> AsyncOperation<(), B::Error> for I2cWrite<'_, B, A> {
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

impl<B: I2c<A>, A: i2c::AddressMode + Copy> AsyncOperation<(), B::Error>
    for I2cWriteRead<'_, B, A>
{
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

impl<B: I2c<A>, A: i2c::AddressMode + Copy> AsyncOperation<(), B::Error>
    for I2cTransaction<'_, '_, B, A>
{
    async fn attempt(&mut self) -> Result<(), Error<B::Error>> {
        self.bus
            .transaction(self.address, self.operations)
            .await
            .map_err(Error::Operation)
    }
}

impl<B: spi::ErrorType, P> spi::ErrorType for ProtectedBus<B, P> {
    type Error = Error<B::Error>;
}

impl<W, B, P> SpiDevice<W> for ProtectedBus<B, P>
where
    W: Copy + 'static,
    B: SpiDevice<W>,
    P: AsyncPolicy<(), B::Error>,
{
    async fn read(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy.run_async(SpiRead { device, buf }).await
    }

    async fn write(&mut self, buf: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy.run_async(SpiWrite { device, buf }).await
    }

    async fn transfer(&mut self, read: &mut [W], write: &[W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(SpiTransfer {
                device,
                read,
                write,
            })
            .await
    }

    async fn transfer_in_place(&mut self, buf: &mut [W]) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(SpiTransferInPlace { device, buf })
            .await
    }

    async fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, W>],
    ) -> Result<(), Self::Error> {
        let device = &mut self.bus;
        self.policy
            .run_async(SpiTransaction { device, operations })
            .await
    }
}

struct SpiRead<'t, D, W> {
    device: &'t mut D,
    buf: &'t mut [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error> for SpiRead<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device.read(self.buf).await.map_err(Error::Operation)
    }
}

struct SpiWrite<'t, D, W> {
    device: &'t mut D,
    buf: &'t [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error> for SpiWrite<'_, D, W> {
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device.write(self.buf).await.map_err(Error::Operation)
    }
}

struct SpiTransfer<'t, D, W> {
    device: &'t mut D,
    read: &'t mut [W],
    write: &'t [W],
}

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error> for SpiTransfer<'_, D, W> {
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

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error>
    for SpiTransferInPlace<'_, D, W>
{
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

impl<W: Copy + 'static, D: SpiDevice<W>> AsyncOperation<(), D::Error>
    for SpiTransaction<'_, '_, D, W>
{
    async fn attempt(&mut self) -> Result<(), Error<D::Error>> {
        self.device
            .transaction(self.operations)
            .await
            .map_err(Error::Operation)
    }
}

/// The bus error's kind; `Other` for a rejection (the bus was not touched).
impl<E: i2c::Error> i2c::Error for Error<E> {
    fn kind(&self) -> i2c::ErrorKind {
        self.operation_error()
            .map_or(i2c::ErrorKind::Other, i2c::Error::kind)
    }
}

/// The device error's kind; `Other` for a rejection (the device was not touched).
impl<E: spi::Error> spi::Error for Error<E> {
    fn kind(&self) -> spi::ErrorKind {
        self.operation_error()
            .map_or(spi::ErrorKind::Other, spi::Error::kind)
    }
}

/// How a breaker counts I2C errors: a fault of the device or the bus (no acknowledge, a bus
/// error, an overrun, any other) is a failure; a lost arbitration (another controller won the
/// bus) is not the device's doing and is not recorded. A retry retries every error by default,
/// arbitration losses included; given this classifier instead, a retry would stop at one.
///
/// ```
/// use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
/// use resilient_circuit::{Classify, bus::I2cDeviceFaults, classify::Verdict};
///
/// let nak = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
/// assert_eq!(I2cDeviceFaults.classify(&nak), Verdict::Failure);
/// assert_eq!(I2cDeviceFaults.classify(&ErrorKind::ArbitrationLoss), Verdict::Ignore);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct I2cDeviceFaults;

impl<E: i2c::Error> Classify<E> for I2cDeviceFaults {
    #[inline]
    fn classify(&self, error: &E) -> Verdict {
        match error.kind() {
            i2c::ErrorKind::ArbitrationLoss => Verdict::Ignore,
            _ => Verdict::Failure,
        }
    }
}
