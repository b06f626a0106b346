//! Test support for resilient-circuit: a fake clock, a sleeper that moves it, a hook that
//! remembers, and a minimal executor for async tests.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

pub mod buses;
pub mod call_loops;
pub mod certs;
pub mod pg;
/// The throwaway PostgreSQL server (the `test-postgres` crate, shared with xtask).
pub use test_postgres as pg_server;
pub mod proxy;
#[cfg(feature = "metrics")]
pub mod recorded;

use resilient_circuit::{
    CircuitState,
    time::{AsyncSleep, Clock, Instant, Sleep},
};

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<Instant>,
    reads: Cell<u64>,
}

impl FakeClock {
    /// A clock at the origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get().saturating_add(by));
    }

    /// Sets the clock to `secs` seconds (fractions allowed) after the origin.
    pub fn set_secs(&self, secs: f64) {
        self.now
            .set(Instant::from_nanos((secs * 1e9).round() as u64));
    }

    /// How many times `now()` was read.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.reads.set(self.reads.get() + 1);
        self.now.get()
    }
}

/// A sleeper that records each wait and moves a fake clock by it instead of sleeping.
#[derive(Debug)]
pub struct FakeSleep<'a> {
    clock: &'a FakeClock,
    waits: RefCell<Vec<Duration>>,
}

impl<'a> FakeSleep<'a> {
    /// A sleeper moving `clock`.
    pub fn new(clock: &'a FakeClock) -> Self {
        FakeSleep {
            clock,
            waits: RefCell::new(Vec::new()),
        }
    }

    /// Every wait so far, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.borrow().clone()
    }
}

impl Sleep for FakeSleep<'_> {
    fn sleep(&self, duration: Duration) {
        self.waits.borrow_mut().push(duration);
        self.clock.advance(duration);
    }
}

impl AsyncSleep for FakeSleep<'_> {
    async fn sleep(&self, duration: Duration) {
        Sleep::sleep(self, duration);
        YieldOnce(false).await;
    }
}

// By reference too, so a test keeps the sleeper to read its waits afterwards.
impl Sleep for &FakeSleep<'_> {
    fn sleep(&self, duration: Duration) {
        Sleep::sleep(*self, duration);
    }
}

impl AsyncSleep for &FakeSleep<'_> {
    async fn sleep(&self, duration: Duration) {
        AsyncSleep::sleep(*self, duration).await;
    }
}

/// Pending once, then ready: makes fake async waits real suspension points.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Records every transition a hook sees.
#[derive(Debug, Default)]
pub struct Transitions {
    seen: RefCell<Vec<(CircuitState, CircuitState)>>,
}

impl Transitions {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hook that appends to this record.
    pub fn hook(&self) -> impl Fn(CircuitState, CircuitState) + '_ {
        move |old, new| self.seen.borrow_mut().push((old, new))
    }

    /// The transitions so far, and forget them.
    pub fn take(&self) -> Vec<(CircuitState, CircuitState)> {
        std::mem::take(&mut *self.seen.borrow_mut())
    }
}

/// Polls `future` to completion on this thread (the fake sleeper never really waits).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

/// Runs `future` on a current-thread tokio runtime whose time is paused (it jumps to the next
/// timer when every task waits), with the IO driver on (for loopback servers).
pub fn on_paused_time<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

/// A tower service failing its first `failures` calls at once, counting every call in `calls`.
pub fn failing_first(
    failures: usize,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl tower::Service<u32, Response = u32, Error = &'static str, Future: Send> + Clone {
    tower::service_fn(move |n: u32| {
        let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { if call < failures { Err("reset") } else { Ok(n) } }
    })
}

/// Seconds as a `Duration` (fractions allowed), for tables written in seconds.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub use resilient_circuit::backoff::SplitMix64;

/// A fake clock that threads can share and move.
#[derive(Clone, Debug, Default)]
pub struct SharedFakeClock {
    nanos: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SharedFakeClock {
    /// A clock at the origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.nanos
            .fetch_add(by.as_nanos() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many times `now()` was read, by any clone.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Clock for SharedFakeClock {
    fn now(&self) -> Instant {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Instant::from_nanos(self.nanos.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Counts hook calls per transition, from any thread.
#[derive(Debug, Default)]
pub struct TransitionCounts {
    seen: std::sync::Mutex<Vec<(CircuitState, CircuitState)>>,
}

impl TransitionCounts {
    /// No transitions yet.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    /// A `Send + Sync` hook that records into `counts`.
    pub fn hook(
        counts: &std::sync::Arc<Self>,
    ) -> impl Fn(CircuitState, CircuitState) + Clone + Send + Sync + 'static {
        let counts = std::sync::Arc::clone(counts);
        move |old, new| counts.seen.lock().unwrap().push((old, new))
    }

    /// How many times `old -> new` was reported.
    pub fn count(&self, old: CircuitState, new: CircuitState) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t == (old, new))
            .count()
    }

    /// Every transition reported, in order.
    pub fn all(&self) -> Vec<(CircuitState, CircuitState)> {
        self.seen.lock().unwrap().clone()
    }
}

/// Runs `f` with a tracing subscriber, on this thread, that keeps the events at `max_level`
/// and above as text (no colours); returns that text.
pub fn capture_tracing(max_level: tracing::Level, f: impl FnOnce()) -> String {
    let (subscriber, captured) = text_subscriber(max_level);
    tracing::subscriber::with_default(subscriber, f);
    captured.text()
}

/// As [`capture_tracing`], for events of every thread (a store's worker has its own): the
/// process's global subscriber, so at most once per test binary.
pub fn capture_tracing_of_every_thread(max_level: tracing::Level, f: impl FnOnce()) -> String {
    let (subscriber, captured) = text_subscriber(max_level);
    tracing::subscriber::set_global_default(subscriber)
        .expect("the first global subscriber of this test binary");
    f();
    captured.text()
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes).expect("tracing writes UTF-8")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn text_subscriber(
    max_level: tracing::Level,
) -> (impl tracing::Subscriber + Send + Sync, Captured) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (subscriber, captured)
}
