//! HTTP: the status classifier, `Retry-After` in both forms and what a retry does with it
//! (SEMANTICS §3), and a rejection as a 503.

use std::time::{Duration, SystemTime};

use host_tests::{FakeClock, FakeSleep, secs};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header::RETRY_AFTER};
use resilient_circuit_std::{
    Breaker, BreakerConfig, CircuitState, Policy, RejectReason, Rejected, RetryWithBackoff,
    backoff::FixedDelay,
    breaker::CircuitProtector,
    classify::Verdict,
    http::{HttpStatus, retry_after, service_unavailable},
    store::InlineStore,
    time::Instant,
};

fn headers(values: &[&'static str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(RETRY_AFTER, HeaderValue::from_static(value));
    }
    headers
}

fn reply(status: u16, retry_after: Option<&'static str>) -> Response<()> {
    let mut response = Response::builder().status(status);
    if let Some(value) = retry_after {
        response = response.header(RETRY_AFTER, value);
    }
    response.body(()).unwrap()
}

#[test]
fn the_default_classifier_fails_5xx_408_and_429_and_nothing_else() {
    let status = HttpStatus::new();
    for code in 100..1000 {
        let expected = if (500..600).contains(&code) || code == 408 || code == 429 {
            Verdict::Failure
        } else {
            Verdict::Success
        };
        assert_eq!(
            status.verdict(StatusCode::from_u16(code).unwrap()),
            expected,
            "{code}"
        );
    }
}

#[test]
fn each_status_can_be_made_a_failure_a_success_or_ignored() {
    let status = HttpStatus::new()
        .failure(StatusCode::CONFLICT)
        .success(StatusCode::SERVICE_UNAVAILABLE)
        .ignore(StatusCode::TOO_MANY_REQUESTS)
        .ignore(StatusCode::NOT_FOUND)
        .failure(StatusCode::NOT_FOUND);
    assert_eq!(status.verdict(StatusCode::CONFLICT), Verdict::Failure);
    assert_eq!(
        status.verdict(StatusCode::SERVICE_UNAVAILABLE),
        Verdict::Success
    );
    assert_eq!(
        status.verdict(StatusCode::TOO_MANY_REQUESTS),
        Verdict::Ignore
    );
    assert_eq!(
        status.verdict(StatusCode::NOT_FOUND),
        Verdict::Failure,
        "the last word counts"
    );
    assert_eq!(status.verdict(StatusCode::BAD_GATEWAY), Verdict::Failure);
    assert_eq!(status.verdict(StatusCode::OK), Verdict::Success);
}

#[test]
fn a_breaker_counts_responses_by_status_and_returns_them() {
    let breaker = CircuitProtector::new(
        BreakerConfig::new().validate().unwrap(),
        InlineStore::<4>::new(),
        Instant::ZERO,
    )
    .classify_values(HttpStatus::new());
    let answer = breaker.call(|| Ok::<_, ()>(reply(404, None))).unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(breaker.status(), CircuitState::Closed);
    let answer = breaker.call(|| Ok::<_, ()>(reply(502, None))).unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(breaker.status(), CircuitState::Open);
}

#[test]
fn retry_after_reads_delta_seconds() {
    let now = SystemTime::now();
    assert_eq!(retry_after(&headers(&["120"]), now), Some(secs(120.0)));
    assert_eq!(retry_after(&headers(&["0"]), now), Some(Duration::ZERO));
    assert_eq!(retry_after(&headers(&[" 7 "]), now), Some(secs(7.0)));
    assert_eq!(
        retry_after(&headers(&["99999999999999999999999"]), now),
        Some(Duration::MAX),
        "more seconds than a u64 holds"
    );
}

#[test]
fn retry_after_reads_an_http_date_from_now() {
    let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
    assert_eq!(
        retry_after(&headers(&["Wed, 21 Oct 2015 07:30:30 GMT"]), now),
        Some(secs(150.0))
    );
    // The obsolete forms RFC 9110 still asks recipients to accept.
    assert_eq!(
        retry_after(&headers(&["Wednesday, 21-Oct-15 07:29:00 GMT"]), now),
        Some(secs(60.0))
    );
    assert_eq!(
        retry_after(&headers(&["Wed Oct 21 07:28:10 2015"]), now),
        Some(secs(10.0))
    );
    assert_eq!(
        retry_after(&headers(&["Wed, 21 Oct 2015 07:00:00 GMT"]), now),
        Some(Duration::ZERO),
        "a date already past asks for no wait"
    );
}

#[test]
fn retry_after_is_none_when_missing_garbled_or_repeated() {
    let now = SystemTime::now();
    for garbled in [
        &[][..],
        &["soon"],
        &["-5"],
        &["1.5"],
        &[""],
        &["12 s"],
        &["3", "4"],
    ] {
        assert_eq!(retry_after(&headers(garbled), now), None, "{garbled:?}");
    }
}

#[test]
fn a_retry_waits_the_longer_of_its_delay_and_the_servers() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(4)
        .with_backoff(FixedDelay(secs(2.0)), &sleep)
        .classify_values(HttpStatus::new());
    let mut replies = [
        reply(503, Some("5")),    // longer than the backoff: 5 s
        reply(429, Some("1")),    // shorter: the backoff's 2 s
        reply(503, None),         // nothing said: 2 s
        reply(503, Some("soon")), // garbled: 2 s
        reply(200, None),
    ]
    .into_iter();
    let answer = retry.call(|| Ok::<_, ()>(replies.next().unwrap())).unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(sleep.waits(), [secs(5.0), secs(2.0), secs(2.0), secs(2.0)]);
}

#[test]
fn a_retry_gives_up_at_once_when_the_server_asks_for_longer_than_its_cap() {
    let clock = FakeClock::new();
    let sleep = FakeSleep::new(&clock);
    let mut retry = RetryWithBackoff::new(4)
        .with_backoff(FixedDelay(secs(1.0)), &sleep)
        .classify_values(HttpStatus::new())
        .with_max_retry_after(secs(30.0));
    let mut runs = 0;
    let answer = retry
        .call(|| {
            runs += 1;
            Ok::<_, ()>(reply(503, Some(if runs == 1 { "30" } else { "31" })))
        })
        .unwrap();
    assert_eq!(
        (answer.status().as_u16(), runs),
        (503, 2),
        "30 s is waited, 31 s is not"
    );
    assert_eq!(sleep.waits(), [secs(30.0)]);
    assert_eq!(
        RetryWithBackoff::new(1).max_retry_after(),
        secs(60.0),
        "the default cap"
    );
}

#[test]
fn a_rejection_becomes_a_503_whose_retry_after_is_rounded_up() {
    for (wait, header) in [(2.0, "2"), (2.001, "3"), (0.0, "0"), (0.2, "1")] {
        let refused = Rejected::new(secs(wait), RejectReason::Open);
        let answer: Response<Vec<u8>> = service_unavailable(refused);
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[RETRY_AFTER], header, "{wait} s");
        assert!(answer.body().is_empty());
        // What a client reads back is at least the wait.
        let read = retry_after(answer.headers(), SystemTime::now()).unwrap();
        assert!(read >= secs(wait));
    }
}

/// With feature `reqwest`, a `reqwest::Response` is judged as it is: its status, and its
/// `Retry-After` as the wait it asks for. A real response, from a server on loopback.
#[test]
fn a_reqwest_response_is_judged_by_its_status_and_retry_after() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(2) {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
            );
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime
        .block_on(
            reqwest::Client::new()
                .get(format!("http://{address}/"))
                .send(),
        )
        .unwrap();
    let status = HttpStatus::new();
    use resilient_circuit_std::classify::ClassifyValue;
    assert_eq!(status.classify_value(&response), Verdict::Failure);
    assert_eq!(status.retry_after(&response), Some(Duration::from_secs(2)));
}
