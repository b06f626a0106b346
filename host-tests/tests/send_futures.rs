//! Protected futures are `Send` when what they wrap is: a `ProtectedBus` transaction under a
//! breaker, a retry and a `SafetyNet`, on I2C and SPI, as an `InterruptExecutor`'s
//! `SendSpawner` or a tokio task needs them, and a composed call whose operation borrows, as a
//! server handler's does. Checked when this file compiles.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use embedded_hal::{i2c, spi};
use embedded_hal_async::{i2c::I2c, spi::SpiDevice};
use host_tests::buses::{FlakySpi, ScheduledI2c};
use resilient_circuit::{
    AsyncPolicy, Breaker, BreakerConfig, CircuitProtector, Error, RetryWithBackoff, SafetyNet,
    backoff::FixedDelay,
    bus::{I2cDeviceFaults, ProtectedBus},
    compose::AsyncOperation,
    store::CriticalSectionStore,
    time::{AsyncSleep, Instant},
};

/// A sleeper whose futures are `Send`, as `EmbassySleep`'s and tokio's are.
#[derive(Clone, Copy)]
struct ReadySleep;

impl AsyncSleep for ReadySleep {
    fn sleep(&self, _: Duration) -> impl Future<Output = ()> {
        std::future::ready(())
    }
}

type SharedBreaker = CircuitProtector<CriticalSectionStore<8>, Instant, I2cDeviceFaults>;

fn breaker() -> SharedBreaker {
    let config = BreakerConfig::new().validate().unwrap();
    CircuitProtector::new(config, CriticalSectionStore::new(), Instant::ZERO)
        .should_handle(I2cDeviceFaults)
}

fn retry() -> RetryWithBackoff<FixedDelay, ReadySleep> {
    RetryWithBackoff::new(2).with_backoff(FixedDelay(Duration::from_millis(1)), ReadySleep)
}

fn send<F: Future + Send>(future: F) -> F {
    future
}

#[test]
fn i2c_transactions_are_send_under_a_breaker_a_retry_and_a_safety_net() {
    let breaker = breaker();
    let (mut read, write) = ([0u8; 2], [1u8]);

    let mut bus = ProtectedBus::new(ScheduledI2c::new([]), &breaker);
    host_tests::block_on(send(bus.write_read(0x48, &write, &mut read))).unwrap();
    host_tests::block_on(send(bus.read(0x48, &mut read))).unwrap();
    host_tests::block_on(send(bus.write(0x48, &write))).unwrap();

    let mut bus = ProtectedBus::new(ScheduledI2c::new([]), retry());
    host_tests::block_on(send(bus.write_read(0x48, &write, &mut read))).unwrap();

    let mut bus = ProtectedBus::new(ScheduledI2c::new([]), SafetyNet::new((retry(), &breaker)));
    host_tests::block_on(send(bus.write_read(0x48, &write, &mut read))).unwrap();
    let mut operations = [
        i2c::Operation::Write(&write),
        i2c::Operation::Read(&mut read),
    ];
    host_tests::block_on(send(bus.transaction(0x48, &mut operations))).unwrap();
    // The last bus's second transaction filled the buffer.
    assert_eq!(read, [2, 2]);
}

#[test]
fn spi_transactions_are_send_under_a_breaker_a_retry_and_a_safety_net() {
    let breaker = CircuitProtector::new(
        BreakerConfig::new().validate().unwrap(),
        CriticalSectionStore::<8>::new(),
        Instant::ZERO,
    );
    let (mut read, write) = ([0u8; 2], [1u8; 2]);

    let mut device = ProtectedBus::new(FlakySpi::new(false), &breaker);
    host_tests::block_on(send(device.read(&mut read))).unwrap();
    host_tests::block_on(send(device.write(&write))).unwrap();

    let mut device = ProtectedBus::new(FlakySpi::new(false), retry());
    host_tests::block_on(send(device.transfer(&mut read, &write))).unwrap();

    let mut device = ProtectedBus::new(FlakySpi::new(false), SafetyNet::new((retry(), &breaker)));
    host_tests::block_on(send(device.transfer_in_place(&mut read))).unwrap();
    let mut operations = [spi::Operation::Read(&mut read)];
    host_tests::block_on(send(device.transaction(&mut operations))).unwrap();
    // A transfer read 0xAA, then two reads inverted it twice.
    assert_eq!(read, [0xAA, 0xAA]);
}

/// What a server handler's operation borrows (a request, a client), as a type of its own: the
/// composed call's future is `Send`, so a multi-threaded runtime can run it.
struct Lookup<'r> {
    request: &'r str,
}

impl AsyncOperation<usize, Infallible> for Lookup<'_> {
    async fn attempt(&mut self) -> Result<usize, Error<Infallible>> {
        tokio::task::yield_now().await;
        Ok(self.request.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safety_net_call_whose_operation_borrows_runs_on_a_spawned_task() {
    let breaker = Arc::new(breaker());
    let task = tokio::spawn(async move {
        let request = String::from("GET /stock");
        let mut net = SafetyNet::new((retry(), &*breaker));
        net.run_async(Lookup { request: &request }).await
    });
    assert_eq!(task.await.unwrap(), Ok(10));
}

/// A breaker's own async call, with an operation that borrows, as an axum handler's would.
#[test]
fn a_breakers_async_call_that_borrows_is_send() {
    let breaker = breaker();
    let request = String::from("GET /stock");
    let reply = host_tests::block_on(send(
        breaker.call_async(async || Ok::<_, i2c::ErrorKind>(request.len())),
    ));
    assert_eq!(reply, Ok(10));
}
