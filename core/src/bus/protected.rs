//! The protected bus: a bus and a policy, and the errors its driver sees.

use embedded_hal::{i2c, spi};

use crate::Error;

/// An I2C bus or SPI device that runs every transaction through `policy` (a breaker, a
/// [`RetryWithBackoff`](crate::RetryWithBackoff) or a [`SafetyNet`](crate::SafetyNet) of
/// both), and is itself a bus or device of the same kind: hand it to a driver in place of the
/// bus. An `embedded_hal_async` bus ([`I2c`](embedded_hal_async::i2c::I2c),
/// [`SpiDevice`](embedded_hal_async::spi::SpiDevice)) takes an async policy, and its futures
/// are `Send` whenever the bus's are; a blocking `embedded_hal` bus
/// ([`I2c`](embedded_hal::i2c::I2c), [`SpiDevice`](embedded_hal::spi::SpiDevice)) takes a
/// blocking one, whose retry waits with a blocking sleeper (a [`DelaySleep`](super::DelaySleep)
/// over the HAL's delay).
///
/// Its error is the policy's [`Error`] over the bus's: the driver sees
/// [`Error::Rejected`] (with the wait in [`Rejected::retry_after`](crate::Rejected::retry_after))
/// when the breaker refused the transaction without touching the bus, and the bus's own
/// error after the retries. `kind()` is the bus error's, and `Other` for a rejection. A retried
/// transaction is the same operations again: read buffers are written anew, and an SPI
/// `TransferInPlace` sends what its buffer holds then, which a failed attempt may have
/// overwritten (retry such a transfer in the driver, where the words to send are known).
///
/// Every call reaches the bus as one `transaction`: the other methods are the traits' defaults,
/// each one transaction of its operations, so the policy's code is generated once per bus. The
/// bus's own overrides of those methods are not called; its `transaction` must do the work.
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
    pub(super) bus: B,
    pub(super) policy: P,
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

impl<B: spi::ErrorType, P> spi::ErrorType for ProtectedBus<B, P> {
    type Error = Error<B::Error>;
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
