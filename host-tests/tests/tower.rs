//! The tower layer: admission in `call`, outcomes judged by both classifiers, the probe slot of
//! a dropped response future, rejections through tower's own layers, and a real HTTP upstream.

use std::{
    convert::Infallible,
    future::{Future, pending},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use host_tests::{SharedFakeClock, failing_first, on_paused_time};
use http::{Request, Response, StatusCode};
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, CircuitState, MemoryStore, Ratio, RejectReason, SharedBreaker,
    classify::{AllErrors, Verdict},
    error::find_rejection,
    tower::{CircuitBreakerError, CircuitBreakerLayer},
};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};

type Breaker<V = resilient_circuit_std::classify::AllValues> =
    SharedBreaker<SharedFakeClock, AllErrors, resilient_circuit_std::hook::NoHook, V>;

/// A breaker tripping when 2 of the last 2 calls failed, open for 30 s, on a fake clock.
fn breaker(clock: &SharedFakeClock) -> Breaker {
    MemoryStore::with_clock(clock.clone())
        .breaker(
            BreakerKey::resource("upstream").unwrap(),
            BreakerConfig::new()
                .failure_limit(Ratio::new(2, 2).unwrap())
                .cooldown(Duration::from_secs(30)),
        )
        .unwrap()
}

fn by_status<B>(response: &Response<B>) -> Verdict {
    match response.status() {
        s if s.is_server_error() => Verdict::Failure,
        _ => Verdict::Success,
    }
}

/// Polls `future` once, without a runtime.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    pin!(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn closed_calls_pass_through_and_failures_trip() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|n: u32| async move {
            if n == 0 { Err("zero") } else { Ok(n * 2) }
        }));
    on_paused_time(async {
        assert_eq!(service.ready().await.unwrap().call(21).await, Ok(42));
        assert_eq!(
            service.ready().await.unwrap().call(0).await,
            Err(CircuitBreakerError::Inner("zero"))
        );
        assert_eq!(breaker.status(), CircuitState::Closed);
        let _ = service.ready().await.unwrap().call(0).await;
        assert_eq!(breaker.status(), CircuitState::Open);
    });
}

#[test]
fn a_rejected_call_never_reaches_the_inner_service_and_says_when_to_retry() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    breaker.force_open().unwrap();
    clock.advance(Duration::from_secs(12));
    let reached = AtomicUsize::new(0);
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_: ()| {
        reached.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(()) }
    }));
    let Poll::Ready(result) = poll_once(service.call(())) else {
        panic!("a rejection is ready at once");
    };
    let rejected = match result {
        Err(CircuitBreakerError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(rejected.retry_after(), Duration::from_secs(18));
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[test]
fn an_ok_503_trips_and_is_returned_as_it_came() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock).classify_values(by_status::<&'static str>));
    let mut service =
        CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_: Request<()>| async {
            let response = Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body("busy")
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    on_paused_time(async {
        for _ in 0..2 {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            assert_eq!(
                (response.status(), *response.body()),
                (StatusCode::SERVICE_UNAVAILABLE, "busy")
            );
        }
        assert_eq!(breaker.status(), CircuitState::Open);
    });
}

#[test]
fn poll_ready_is_the_inner_services_and_records_nothing() {
    /// Not ready once, then failing readiness once, then ready.
    struct Moody(u32);
    impl Service<()> for Moody {
        type Response = ();
        type Error = &'static str;
        type Future = std::future::Ready<Result<(), &'static str>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            self.0 += 1;
            match self.0 {
                1 => Poll::Pending,
                2 => Poll::Ready(Err("not connected")),
                _ => Poll::Ready(Ok(())),
            }
        }
        fn call(&mut self, _: ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(Moody(0));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(service.poll_ready(&mut cx), Poll::Pending);
    assert_eq!(
        service.poll_ready(&mut cx),
        Poll::Ready(Err(CircuitBreakerError::Inner("not connected")))
    );
    assert_eq!(service.poll_ready(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(breaker.execution_log().len(), 0, "readiness is not a call");
}

#[test]
fn a_dropped_response_future_gives_back_its_probe_slot() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    breaker.force_open().unwrap();
    clock.advance(Duration::from_secs(30));
    let mut service = CircuitBreakerLayer::new(breaker.clone())
        .layer(service_fn(|_: ()| pending::<Result<(), Infallible>>()));
    let mut future = Box::pin(service.call(()));
    assert!(
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    assert_eq!(
        (breaker.status(), breaker.state().probes_in_flight()),
        (CircuitState::HalfOpen, 1)
    );
    drop(future);
    assert_eq!(breaker.state().probes_in_flight(), 0);
    assert_eq!(breaker.execution_log().len(), 0, "nothing recorded");
}

#[test]
fn a_classifier_that_panics_gives_back_the_probe_slot() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(
        breaker(&clock).classify_values(|_: &u32| -> Verdict { panic!("a classifier bug") }),
    );
    breaker.force_open().unwrap();
    clock.advance(Duration::from_secs(30));
    let mut service = CircuitBreakerLayer::new(breaker.clone())
        .layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }));
    let future = service.call(1);
    assert_eq!(breaker.state().probes_in_flight(), 1);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(future)));
    assert!(panicked.is_err());
    assert_eq!(
        (breaker.status(), breaker.state().probes_in_flight()),
        (CircuitState::HalfOpen, 0)
    );
}

#[test]
fn tower_timeout_inside_the_breaker_counts_as_a_failure() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .timeout(Duration::from_millis(100))
        .service(service_fn(|_: ()| pending::<Result<(), BoxError>>()));
    on_paused_time(async {
        for _ in 0..2 {
            let error = service.ready().await.unwrap().call(()).await.unwrap_err();
            let inner = error.into_inner().expect("the timeout's error");
            assert!(inner.is::<tower::timeout::error::Elapsed>());
        }
    });
    assert_eq!(breaker.status(), CircuitState::Open);
}

#[test]
fn a_rejection_boxed_by_an_outer_tower_layer_keeps_its_retry_after() {
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock));
    breaker.force_open().unwrap();
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    let error: BoxError =
        on_paused_time(async { service.ready().await.unwrap().call(()).await }).unwrap_err();
    let rejected = find_rejection(&*error).expect("a rejection inside the boxed error");
    assert_eq!(rejected.retry_after(), Duration::from_secs(30));
    assert!(error.to_string().contains("OPEN"), "{error}");
}

/// A real HTTP/1 server on loopback: answers 503 to its first `failures` requests, then 200.
async fn flaky_upstream(failures: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use hyper::{server::conn::http1, service::service_fn};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let answer = service_fn(move |_: Request<hyper::body::Incoming>| {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let status = if n < failures { 503 } else { 200 };
                    let response = Response::builder()
                        .status(status)
                        .body(http_body_util::Full::new(hyper::body::Bytes::from("reply")))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = http1::Builder::new().serve_connection(io, answer).await;
            });
        }
    });
    (address, served)
}

#[test]
fn a_hyper_client_behind_the_layer_trips_on_a_real_servers_503s_and_stops_calling_it() {
    use hyper_util::client::legacy::Client;
    let clock = SharedFakeClock::new();
    let breaker = Arc::new(breaker(&clock).classify_values(by_status::<hyper::body::Incoming>));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (address, served) = flaky_upstream(2).await;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
        let mut service = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service(client);
        let get = || {
            Request::get(format!("http://{address}/price"))
                .body(http_body_util::Empty::new())
                .unwrap()
        };
        for _ in 0..2 {
            let response = service.ready().await.unwrap().call(get()).await.unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(breaker.status(), CircuitState::Open);
        let refused = service
            .ready()
            .await
            .unwrap()
            .call(get())
            .await
            .unwrap_err();
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            served.load(Ordering::SeqCst),
            2,
            "the rejected request never left"
        );

        clock.advance(Duration::from_secs(30));
        let response = service.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the probe reaches the recovered server"
        );
        assert_eq!(breaker.status(), CircuitState::Closed);
    });
}

mod retry_policy {
    //! tower's retry layer with a `RetryPolicy`: our backoffs and rules (SEMANTICS §3).

    use super::*;
    use resilient_circuit_std::{
        RetryWithBackoff,
        backoff::{ExponentialDelay, FixedDelay, FullJitter, SplitMix64},
        time::TokioSleep,
        tower::RetryPolicy,
    };
    use tokio::time::Instant;

    #[test]
    fn waits_our_backoff_between_attempts_and_no_more() {
        let calls = Arc::new(AtomicUsize::new(0));
        let backoff = ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(1));
        let retry = RetryWithBackoff::new(3).with_backoff(backoff.unwrap(), TokioSleep);
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry))
            .service(failing_first(3, calls.clone()));
        on_paused_time(async {
            let start = Instant::now();
            assert_eq!(service.ready().await.unwrap().call(5).await, Ok(5));
            assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 400));
            assert_eq!(calls.load(Ordering::SeqCst), 4);

            // Out of attempts: tower returns the last error, with no wait after it.
            calls.store(0, Ordering::SeqCst);
            let mut always = ServiceBuilder::new()
                .retry(RetryPolicy::new(
                    RetryWithBackoff::new(2)
                        .with_backoff(FixedDelay(Duration::from_secs(1)), TokioSleep),
                ))
                .service(failing_first(usize::MAX, calls.clone()));
            let start = Instant::now();
            assert_eq!(always.ready().await.unwrap().call(5).await, Err("reset"));
            assert_eq!(start.elapsed(), Duration::from_secs(2));
            assert_eq!(calls.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn an_error_the_classifier_declines_is_not_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let retry = RetryWithBackoff::new(3)
            .with_backoff(FixedDelay(Duration::from_secs(1)), TokioSleep)
            .should_handle(|e: &&str| {
                if *e == "bad request" {
                    Verdict::Success
                } else {
                    Verdict::Failure
                }
            });
        let counted = calls.clone();
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry))
            .service(service_fn(move |_: ()| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("bad request") }
            }));
        on_paused_time(async {
            assert_eq!(
                service.ready().await.unwrap().call(()).await,
                Err("bad request")
            );
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn stops_at_an_open_breaker_instead_of_waiting_it_out() {
        let clock = SharedFakeClock::new();
        let breaker = Arc::new(breaker(&clock));
        let calls = Arc::new(AtomicUsize::new(0));
        let retry =
            RetryWithBackoff::new(5).with_backoff(FixedDelay(Duration::from_secs(1)), TokioSleep);
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry).behind_breaker())
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service(failing_first(usize::MAX, calls.clone()));
        on_paused_time(async {
            let start = Instant::now();
            let error = service.ready().await.unwrap().call(1).await.unwrap_err();
            // Two failures trip the breaker (fake clock: open for 30 s); the third attempt is
            // refused, and 30 s is longer than the retry's 1 s: it stops there.
            assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
            assert_eq!(
                start.elapsed(),
                Duration::from_secs(2),
                "two waits, then no more"
            );
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_rejection_boxed_by_tower_timeout_also_stops_it() {
        let clock = SharedFakeClock::new();
        let breaker = Arc::new(breaker(&clock));
        breaker.force_open().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let retry =
            RetryWithBackoff::new(5).with_backoff(FixedDelay(Duration::from_secs(1)), TokioSleep);
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry))
            .timeout(Duration::from_secs(5))
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service(failing_first(usize::MAX, calls.clone()));
        on_paused_time(async {
            let start = Instant::now();
            let error = service.ready().await.unwrap().call(1).await.unwrap_err();
            assert_eq!(
                find_rejection(&*error).map(|r| r.retry_after()),
                Some(Duration::from_secs(30))
            );
            assert_eq!(start.elapsed(), Duration::ZERO);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_ok_503_is_retried_and_the_last_response_returned() {
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let retry = RetryWithBackoff::new(2)
            .with_backoff(FixedDelay(Duration::from_millis(10)), TokioSleep)
            .classify_values(by_status::<()>);
        // `http::Request` is not `Clone`: the policy is told how to copy one.
        let policy = RetryPolicy::new(retry).clone_requests_with(|r: &Request<()>| {
            Some(Request::builder().uri(r.uri().clone()).body(()).unwrap())
        });
        let mut service =
            ServiceBuilder::new()
                .retry(policy)
                .service(service_fn(move |_: Request<()>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap()) }
                }));
        on_paused_time(async {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        });
        assert_eq!(served.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_request_keeps_its_own_jitter_sequence_across_its_retries() {
        use resilient_circuit_std::{backoff::DecorrelatedJitter, retry::Attempt};
        let backoff = DecorrelatedJitter::new(
            Duration::from_millis(100),
            Duration::from_secs(60),
            SplitMix64::new(9),
        )
        .unwrap();
        let retry = RetryWithBackoff::new(3).with_backoff(backoff, TokioSleep);
        // What one request should wait: the policy moves its backoff on once per request, then
        // the request's copy draws its waits in order.
        let mut expected = retry.clone();
        expected.skip_call_delays();
        let waits: Vec<Duration> = (1..=3)
            .map(
                |attempt| match expected.decide::<(), _>(attempt, Attempt::Failed(&"reset")) {
                    resilient_circuit_std::retry::Decision::RetryAfter(wait) => wait,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry))
            .service(failing_first(3, calls.clone()));
        on_paused_time(async {
            let start = Instant::now();
            assert_eq!(service.ready().await.unwrap().call(1).await, Ok(1));
            // tokio's timer counts whole milliseconds, rounding each wait up.
            let whole_ms =
                |w: &Duration| Duration::from_millis(w.as_nanos().div_ceil(1_000_000) as u64);
            assert_eq!(
                start.elapsed(),
                waits.iter().map(whole_ms).sum::<Duration>()
            );
        });
    }

    #[test]
    fn every_request_draws_its_own_jitter() {
        let exponential =
            ExponentialDelay::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        let retry = RetryWithBackoff::new(1).with_backoff(
            FullJitter::new(exponential, SplitMix64::new(42)),
            TokioSleep,
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // Fails every odd call: each request fails once, then succeeds.
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::new(retry))
            .service(service_fn(move |_: ()| {
                let call = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if call.is_multiple_of(2) {
                        Err("reset")
                    } else {
                        Ok(())
                    }
                }
            }));
        let waits: Vec<Duration> = on_paused_time(async {
            let mut waits = Vec::new();
            for _ in 0..4 {
                let start = Instant::now();
                service.ready().await.unwrap().call(()).await.unwrap();
                waits.push(start.elapsed());
            }
            waits
        });
        let mut distinct = waits.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "one wait each, all different: {waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
    }
}
