//! Feature `metrics`: every counter and the state gauge of the in-process store's breakers, and
//! a `Counted` stage's retries and timeouts, read back through `metrics-util`'s
//! `DebuggingRecorder`. Each test records into a recorder of its own (a local one), so tests
//! running side by side do not see each other's counts.
#![cfg(feature = "metrics")]

use std::{
    future::pending,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use ::metrics::{CounterFn, Key as MetricKey, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::DebuggingRecorder;

use host_tests::{SharedFakeClock, failing_first, on_paused_time, recorded::Recorded, secs};
use resilient_circuit_std::{
    AsyncPolicy, Breaker, BreakerConfig, BreakerKey, CircuitState, Error, MemoryStore, Policy,
    Ratio, RetryWithBackoff, SafetyNet, SharedBreaker, Timeout,
    backoff::FixedDelay,
    classify::Verdict,
    metrics::{self, CALLS, Counted, RETRIES, TIMEOUTS},
    time::TokioSleep,
    tower::RetryPolicy,
};
use tower::{Service, ServiceBuilder, ServiceExt};

use CircuitState::{Closed, HalfOpen, Open};

fn key(name: &str) -> BreakerKey {
    BreakerKey::new("metrics-tests", name).unwrap()
}

/// Opens after 2 failures of the last 2; one probe closes it; OPEN for 30 s.
fn config() -> BreakerConfig {
    BreakerConfig::new()
        .failure_limit(Ratio::new(2, 2).unwrap())
        .success_limit(Ratio::new(1, 1).unwrap())
        .cooldown(secs(30.0))
}

fn breaker(store: &MemoryStore<SharedFakeClock>, name: &str) -> SharedBreaker<SharedFakeClock> {
    store.breaker(key(name), config()).unwrap()
}

fn fail(breaker: &SharedBreaker<SharedFakeClock>) {
    let _ = breaker.call(|| Err::<(), _>("down"));
}

fn succeed(breaker: &SharedBreaker<SharedFakeClock>) {
    breaker.call(|| Ok::<_, &str>(())).unwrap();
}

#[test]
fn every_outcome_is_counted_by_kind() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let breaker = recorded.run(|| breaker(&store, "outcomes"));
    let ignoring = recorded
        .run(|| store.breaker(key("outcomes"), config()))
        .unwrap()
        .should_handle(|e: &&str| {
            if *e == "busy" {
                Verdict::Ignore
            } else {
                Verdict::Failure
            }
        });
    for _ in 0..3 {
        succeed(&breaker);
    }
    fail(&breaker);
    let _ = ignoring.call(|| Err::<(), _>("busy"));
    let _ = ignoring.call(|| Err::<(), _>("busy"));
    metrics::flush();
    let k = key("outcomes");
    assert_eq!(recorded.calls(&k, "success"), 3);
    assert_eq!(recorded.calls(&k, "failure"), 1);
    assert_eq!(recorded.calls(&k, "ignored"), 2);
    assert_eq!(recorded.rejected(&k, "open"), 0);
}

#[test]
fn a_threads_batch_is_handed_over_when_it_switches_keys_on_any_flush_and_at_its_exit() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let (first, second) = recorded.run(|| (breaker(&store, "batch-a"), breaker(&store, "batch-b")));
    let (a, b) = (key("batch-a"), key("batch-b"));

    for _ in 0..100 {
        succeed(&first);
    }
    succeed(&second);
    assert_eq!(
        recorded.calls(&a, "success"),
        100,
        "another key's success hands over the batch"
    );

    // A flush on any thread hands over every thread's batch, this one's included.
    std::thread::scope(|s| s.spawn(metrics::flush).join().unwrap());
    assert_eq!(recorded.calls(&b, "success"), 1);

    // A thread's batch is handed over when the thread exits (its thread-locals are dropped
    // after its closure returns: join the thread itself, not only the closure).
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..7 {
                succeed(&second);
            }
        })
        .join()
        .unwrap();
    });
    assert_eq!(recorded.calls(&b, "success"), 8);
}

/// The case a scrape of a quiet service meets: successes spread over a multi-threaded
/// runtime's workers, which then sit idle. Every one reaches the recorder within the flush
/// interval with no flush called (real time: this is what the background flusher is for).
#[test]
fn successes_on_idle_tokio_workers_reach_the_recorder_within_the_flush_interval() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let breaker = recorded.run(|| breaker(&store, "idle-workers"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let breaker = breaker.clone();
                tokio::spawn(async move { succeed(&breaker) })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    });
    let called = std::time::Instant::now();
    let bound = 2 * metrics::FLUSH_INTERVAL;
    let k = key("idle-workers");
    while recorded.calls(&k, "success") < 20 && called.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        recorded.calls(&k, "success"),
        20,
        "within {bound:?}, the workers idle and nothing flushed"
    );
    drop(runtime);
}

/// Calls `breaker` when the thread that made it exits: a thread-local's destructor.
struct CallsOnExit(std::cell::Cell<Option<SharedBreaker<SharedFakeClock>>>);

impl Drop for CallsOnExit {
    fn drop(&mut self) {
        if let Some(breaker) = self.0.take() {
            for _ in 0..3 {
                succeed(&breaker);
            }
        }
    }
}

thread_local! {
    static CALLS_ON_EXIT: CallsOnExit = const { CallsOnExit(std::cell::Cell::new(None)) };
}

#[test]
fn successes_during_a_threads_exit_are_counted_too() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let breaker = recorded.run(|| breaker(&store, "exiting"));
    std::thread::scope(|s| {
        s.spawn(|| {
            // Registered before the batch's own thread-locals, so (destructors running in
            // reverse) it calls after the batch has been handed over at the thread's exit.
            CALLS_ON_EXIT.with(|calls| calls.0.set(Some(breaker.clone())));
            for _ in 0..5 {
                succeed(&breaker);
            }
        })
        .join()
        .unwrap();
    });
    assert_eq!(recorded.calls(&key("exiting"), "success"), 8);
}

/// A recorder handing its counts on to `inner`, whose counter of `trigger`'s successes is the
/// one `wrap` makes of the inner counter: a recorder that does something as it counts.
struct WrapsSuccesses<'a> {
    inner: &'a DebuggingRecorder,
    trigger: &'static str,
    wrap: Box<dyn Fn(::metrics::Counter) -> ::metrics::Counter + 'a>,
}

/// A counter that makes a success of `reentrant` the first time it is incremented.
struct SucceedsOnce {
    counter: ::metrics::Counter,
    reentrant: Arc<OnceLock<SharedBreaker<SharedFakeClock>>>,
    done: AtomicBool,
}

impl CounterFn for SucceedsOnce {
    fn increment(&self, value: u64) {
        self.counter.increment(value);
        if !self.done.swap(true, Ordering::SeqCst) {
            succeed(self.reentrant.get().expect("set before the first success"));
        }
    }

    fn absolute(&self, value: u64) {
        self.counter.absolute(value);
    }
}

impl Recorder for WrapsSuccesses<'_> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &MetricKey, metadata: &Metadata<'_>) -> ::metrics::Counter {
        let counter = self.inner.register_counter(key, metadata);
        let has = |name: &str, value: &str| {
            key.labels()
                .any(|label| label.key() == name && label.value() == value)
        };
        if has("resource_key", self.trigger) && has("outcome", "success") {
            (self.wrap)(counter)
        } else {
            counter
        }
    }

    fn register_gauge(&self, key: &MetricKey, metadata: &Metadata<'_>) -> ::metrics::Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &MetricKey, metadata: &Metadata<'_>) -> ::metrics::Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

#[test]
fn a_recorder_that_makes_a_success_while_counting_one_loses_nothing() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let reentrant = Arc::new(OnceLock::new());
    let recorder = WrapsSuccesses {
        inner: recorded.recorder(),
        trigger: "reenter-a",
        wrap: Box::new(|counter| {
            ::metrics::Counter::from_arc(Arc::new(SucceedsOnce {
                counter,
                reentrant: reentrant.clone(),
                done: AtomicBool::new(false),
            }))
        }),
    };
    let (a, b, c) = ::metrics::with_local_recorder(&recorder, || {
        let make = |name| breaker(&store, name);
        (make("reenter-a"), make("reenter-b"), make("reenter-c"))
    });
    reentrant.set(c).expect("set once");
    succeed(&a);
    // Hands a's success over; the recorder, counting it, makes a success of c.
    succeed(&b);
    metrics::flush();
    for name in ["reenter-a", "reenter-b", "reenter-c"] {
        assert_eq!(recorded.calls(&key(name), "success"), 1, "{name}");
    }
}

/// A counter whose first increment waits for `go` after saying it `entered`: a hand-over
/// caught half-way.
struct Gated {
    counter: ::metrics::Counter,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl CounterFn for Gated {
    fn increment(&self, value: u64) {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            let go = self.go.lock().unwrap().take().expect("set with entered");
            entered.send(()).unwrap();
            go.recv().unwrap();
        }
        self.counter.increment(value);
    }

    fn absolute(&self, value: u64) {
        self.counter.absolute(value);
    }
}

/// `flush` is exact when it returns, even while another thread's hand-over of the same batch
/// is under way (there, the background flusher's or another `flush`'s): it waits for it.
#[test]
fn a_flush_returns_only_once_every_batch_it_saw_is_counted() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let gate = Arc::new(Mutex::new(Some((entered_tx, go_rx))));
    let recorder = WrapsSuccesses {
        inner: recorded.recorder(),
        trigger: "gated",
        wrap: Box::new(|counter| {
            let (entered, go) = gate.lock().unwrap().take().expect("one success counter");
            ::metrics::Counter::from_arc(Arc::new(Gated {
                counter,
                entered: Mutex::new(Some(entered)),
                go: Mutex::new(Some(go)),
            }))
        }),
    };
    let gated = ::metrics::with_local_recorder(&recorder, || breaker(&store, "gated"));
    let returned_early = std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                succeed(&gated);
            }
            // Caught half-way through handing these three over.
            metrics::flush();
        });
        entered.recv().unwrap();
        let (returned_tx, returned) = mpsc::channel();
        s.spawn(move || {
            metrics::flush();
            let _ = returned_tx.send(());
        });
        std::thread::sleep(Duration::from_millis(100));
        let early = returned.try_recv().is_ok();
        go.send(()).unwrap();
        early
    });
    assert!(
        !returned_early,
        "a flush returned while the batch it saw was still being handed over"
    );
    assert_eq!(recorded.calls(&key("gated"), "success"), 3);
}

#[test]
fn a_cycle_counts_each_transition_and_moves_the_state_gauge() {
    let recorded = Recorded::new();
    let clock = SharedFakeClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let breaker = recorded.run(|| breaker(&store, "cycle"));
    let k = key("cycle");
    assert_eq!(recorded.state(&k), [1.0, 0.0, 0.0], "a new key is CLOSED");

    fail(&breaker);
    fail(&breaker);
    assert_eq!(breaker.status(), Open);
    assert_eq!(recorded.state(&k), [0.0, 1.0, 0.0]);
    assert_eq!(recorded.transitions(&k, Closed, Open), 1);

    let rejected = breaker.call(|| Ok::<_, &str>(())).unwrap_err();
    assert!(rejected.is_rejected());
    assert_eq!(recorded.rejected(&k, "open"), 1);

    clock.advance(secs(30.0));
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(recorded.state(&k), [0.0, 0.0, 1.0]);
    assert_eq!(recorded.transitions(&k, Open, HalfOpen), 1);
    assert!(
        breaker.call(|| Ok::<_, &str>(())).is_err(),
        "the one probe slot is taken"
    );
    assert_eq!(recorded.rejected(&k, "probes_busy"), 1);

    probe.record(Verdict::Success);
    assert_eq!(recorded.state(&k), [1.0, 0.0, 0.0]);
    assert_eq!(recorded.transitions(&k, HalfOpen, Closed), 1);
    // The probe's success is counted at once (it took the lock anyway).
    assert_eq!(recorded.calls(&k, "success"), 1);
    assert_eq!(recorded.transitions(&k, HalfOpen, Open), 0);
    assert_eq!(recorded.transitions(&k, Closed, HalfOpen), 0);
}

#[test]
fn manual_changes_are_transitions_too() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let breaker = recorded.run(|| breaker(&store, "manual"));
    let k = key("manual");
    breaker.force_open().unwrap();
    assert_eq!(recorded.state(&k), [0.0, 1.0, 0.0]);
    assert_eq!(recorded.transitions(&k, Closed, Open), 1);
    breaker.force_closed().unwrap();
    assert_eq!(recorded.state(&k), [1.0, 0.0, 0.0]);
    assert_eq!(recorded.transitions(&k, Open, Closed), 1);
}

#[test]
fn a_key_made_before_the_recorder_counts_nothing_into_it() {
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let early = breaker(&store, "early");
    let recorded = Recorded::new();
    recorded.run(|| {
        fail(&early);
        fail(&early);
    });
    assert_eq!(
        recorded.counter(CALLS, &key("early"), &[("outcome", "failure")]),
        None
    );
}

#[test]
fn counted_retries_start_after_their_wait_and_zero_waits_count_too() {
    let recorded = Recorded::new();
    let store = MemoryStore::with_clock(SharedFakeClock::new());
    let lenient = BreakerConfig::new().failure_limit(Ratio::new(10, 10).unwrap());
    let breaker = recorded.run(|| store.breaker(key("retries"), lenient).unwrap());
    let k = key("retries");
    let mut net =
        recorded.run(|| SafetyNet::new((Counted::new(RetryWithBackoff::new(3), &k), &breaker)));
    let mut runs = 0;
    let result: Result<(), Error<&str>> = net.call(|| {
        runs += 1;
        if runs < 3 { Err("down") } else { Ok(()) }
    });
    result.unwrap();
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(2));

    let given_up: Result<(), Error<&str>> = net.call(|| Err("down"));
    assert!(matches!(
        given_up,
        Err(Error::RetryLimitReached { attempts: 4, .. })
    ));
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(5));
    assert_eq!(recorded.counter(TIMEOUTS, &k, &[]), Some(0));
}

#[test]
fn a_counted_timeout_counts_each_limit_that_runs_out() {
    let recorded = Recorded::new();
    let k = key("per-attempt");
    let limit = Timeout::new(Duration::from_millis(100), TokioSleep);
    let retry =
        RetryWithBackoff::new(2).with_backoff(FixedDelay(Duration::from_millis(10)), TokioSleep);
    let mut net =
        recorded.run(|| SafetyNet::new((Counted::new(retry, &k), Counted::new(limit, &k))));
    let mut runs = 0;
    let result: Result<u32, Error<&str>> = on_paused_time(net.call_async(async || {
        runs += 1;
        if runs == 1 {
            pending::<()>().await;
        }
        Ok(7)
    }));
    assert_eq!(result.unwrap(), 7);
    assert_eq!(
        recorded.counter(TIMEOUTS, &k, &[]),
        Some(1),
        "the first attempt hung"
    );
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(1));

    // A limit that is not reached counts nothing.
    let fast: Result<u32, Error<&str>> = on_paused_time(net.call_async(async || Ok(8)));
    assert_eq!(fast.unwrap(), 8);
    assert_eq!(recorded.counter(TIMEOUTS, &k, &[]), Some(1));
}

#[test]
fn a_retry_cut_short_by_the_limit_around_it_is_not_counted() {
    let recorded = Recorded::new();
    let k = key("whole-call");
    let limit = Timeout::new(Duration::from_millis(100), TokioSleep);
    // Each failure asks for a 60 ms wait: the second wait is cut short by the limit.
    let retry =
        RetryWithBackoff::new(5).with_backoff(FixedDelay(Duration::from_millis(60)), TokioSleep);
    let mut net =
        recorded.run(|| SafetyNet::new((Counted::new(limit, &k), Counted::new(retry, &k))));
    let result: Result<(), Error<&str>> = on_paused_time(net.call_async(async || Err("down")));
    assert!(matches!(result, Err(Error::TimedOut(_))), "{result:?}");
    assert_eq!(recorded.counter(TIMEOUTS, &k, &[]), Some(1));
    assert_eq!(
        recorded.counter(RETRIES, &k, &[]),
        Some(1),
        "only the retry that started"
    );

    // The limit runs out while the second attempt hangs: the retry inside is left with the
    // timeout and goes no further, so nothing more is counted.
    let mut runs = 0;
    let result: Result<(), Error<&str>> = on_paused_time(net.call_async(async || {
        runs += 1;
        if runs == 2 {
            pending::<()>().await;
        }
        Err("down")
    }));
    assert!(matches!(result, Err(Error::TimedOut(_))), "{result:?}");
    assert_eq!(recorded.counter(TIMEOUTS, &k, &[]), Some(2));
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(2));
}

#[test]
fn a_counted_tower_retry_policy_counts_each_retry() {
    let recorded = Recorded::new();
    let k = key("tower-retries");
    let retry =
        RetryWithBackoff::new(3).with_backoff(FixedDelay(Duration::from_millis(10)), TokioSleep);
    let policy = recorded.run(|| Counted::new(RetryPolicy::new(retry), &k));
    let mut recovering = ServiceBuilder::new()
        .retry(policy.clone())
        .service(failing_first(2, Arc::default()));
    let answer = on_paused_time(async { recovering.ready().await?.call(7).await });
    assert_eq!(answer.unwrap(), 7);
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(2));

    let mut down = ServiceBuilder::new()
        .retry(policy)
        .service(failing_first(usize::MAX, Arc::default()));
    let answer = on_paused_time(async { down.ready().await?.call(7).await });
    assert!(answer.is_err());
    assert_eq!(
        recorded.counter(RETRIES, &k, &[]),
        Some(5),
        "3 more: 4 attempts"
    );
}

#[test]
fn a_tower_retry_whose_wait_a_timeout_cuts_short_is_not_counted() {
    let recorded = Recorded::new();
    let k = key("tower-cut-short");
    // Each failure waits 60 ms; tower's 100 ms timeout around the retry ends the second wait.
    let retry =
        RetryWithBackoff::new(5).with_backoff(FixedDelay(Duration::from_millis(60)), TokioSleep);
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .retry(recorded.run(|| Counted::new(RetryPolicy::new(retry), &k)))
        .service(failing_first(usize::MAX, Arc::default()));
    let answer = on_paused_time(async { service.ready().await?.call(7).await });
    let error = answer.unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    assert_eq!(recorded.counter(RETRIES, &k, &[]), Some(1));
}
