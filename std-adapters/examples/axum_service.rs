//! An axum service on loopback whose upstream, a second real HTTP server, fails for a while and
//! then recovers. The service calls it through reqwest behind a breaker, a retry and a timeout
//! per attempt, and serves its metrics at `/metrics` (Prometheus).
//!
//! The upstream's 3rd call hangs (the timeout drops it and the retry tries again), its 4th to
//! 7th answer `503` with `Retry-After: 1` (the retry waits that second instead of its own
//! 100 ms, and the breaker opens), and then it is healthy. While OPEN, the service answers `503`
//! with the breaker's `Retry-After` without calling the upstream.
//!
//! `cargo run -p resilient-circuit-std --features tokio,http,reqwest,metrics --example axum_service`

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use resilient_circuit_std::{
    AsyncPolicy, BreakerConfig, BreakerKey, Error, MemoryStore, Ratio, RetryWithBackoff, SafetyNet,
    Timeout,
    backoff::FixedDelay,
    hook::{BoxedHook, SharedHook},
    http::{HttpBreaker, HttpStatus, service_unavailable},
    metrics::{self, Counted},
};
use tokio::{net::TcpListener, time::Instant};

/// The breaker guarding the upstream: its responses judged by `HttpStatus`, its transitions
/// printed by a closure.
type Upstream = HttpBreaker<SharedHook<BoxedHook>>;

/// The upstream: healthy, then one call that hangs, then four `503`s, then healthy again.
async fn inventory(State(calls): State<Arc<AtomicU32>>) -> Response {
    match calls.fetch_add(1, Ordering::SeqCst) + 1 {
        3 => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late".into_response()
        }
        4..=7 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "busy",
        )
            .into_response(),
        _ => "42 in stock".into_response(),
    }
}

/// The retry's own wait.
const BACKOFF: Duration = Duration::from_millis(100);

struct App {
    client: reqwest::Client,
    upstream: String,
    breaker: Upstream,
    prometheus: PrometheusHandle,
    start: Instant,
}

impl App {
    fn ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }
}

async fn stock(State(app): State<Arc<App>>) -> http::Response<String> {
    let key = app.breaker.store().key();
    // Each request owns its retry; the breaker is shared. The retry's waits are printed, so
    // the honoured `Retry-After` shows.
    let start = app.start;
    let waits = move |wait: Duration| {
        let asked = if wait > BACKOFF {
            " (the upstream's Retry-After)"
        } else {
            ""
        };
        println!(
            "[{:>5} ms]   retrying in {} ms{asked}",
            start.elapsed().as_millis(),
            wait.as_millis()
        );
        tokio::time::sleep(wait)
    };
    // Completes only if the limit runs out first.
    let limit = move |limit: Duration| async move {
        tokio::time::sleep(limit).await;
        println!(
            "[{:>5} ms]   attempt timed out after {} ms",
            start.elapsed().as_millis(),
            limit.as_millis()
        );
    };
    let retry = RetryWithBackoff::new(1)
        .with_backoff(FixedDelay(BACKOFF), waits)
        .classify_values(HttpStatus::new())
        .with_max_retry_after(Duration::from_secs(2));
    let per_attempt = Timeout::new(Duration::from_millis(300), limit);
    let mut net = SafetyNet::new((
        Counted::new(retry, key),
        Counted::new(per_attempt, key),
        &app.breaker,
    ));
    // The call owns what it needs (clones of the client and the URL): a closure borrowing
    // `app` across its await would not be `Send`, and axum needs the handler's future to be.
    let (client, url) = (app.client.clone(), app.upstream.clone());
    let call = move || client.get(url.clone()).send();
    // `HttpStatus` judges each `reqwest::Response` (feature `reqwest`): a 503 counts as a
    // failure and is retried after its `Retry-After`; the last one comes back as it is.
    match net.call_async(call).await {
        Ok(response) => {
            let status = response.status();
            reply(status, response.text().await.unwrap_or_default())
        }
        Err(Error::Rejected(rejected)) => {
            let mut response: http::Response<String> = service_unavailable(rejected);
            *response.body_mut() = format!(
                "breaker OPEN, upstream not called; retry in {} ms",
                rejected.retry_after().as_millis()
            );
            response
        }
        Err(Error::TimedOut(elapsed)) => {
            reply(StatusCode::GATEWAY_TIMEOUT, format!("upstream {elapsed}"))
        }
        Err(other) => reply(StatusCode::BAD_GATEWAY, format!("upstream failed: {other}")),
    }
}

fn reply(status: StatusCode, body: String) -> http::Response<String> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
}

async fn metrics_page(State(app): State<Arc<App>>) -> String {
    // Every thread's batched CLOSED successes, handed over before rendering (the flusher
    // would within `metrics::FLUSH_INTERVAL`).
    metrics::flush();
    app.prometheus.render()
}

async fn serve(router: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(address)
}

// One thread: the service's calls, and so its batched successes, are all on the thread that
// renders `/metrics`.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    // The recorder first: a breaker registers its metrics when it is made.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let calls = Arc::new(AtomicU32::new(0));
    let upstream = serve(
        Router::new()
            .route("/inventory", get(inventory))
            .with_state(calls.clone()),
    )
    .await?;

    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(3, 4)?)
        .success_limit(Ratio::new(1, 1)?)
        .cooldown(Duration::from_secs(1));
    let hook: BoxedHook = Box::new(move |old, new| {
        println!(
            "[{:>5} ms] breaker {old} -> {new}",
            start.elapsed().as_millis()
        )
    });
    let breaker = MemoryStore::new()
        .breaker(BreakerKey::new("shop", "inventory-api")?, config)?
        .classify_values(HttpStatus::new())
        .on_status_change(hook);
    let app = Arc::new(App {
        client: reqwest::Client::new(),
        upstream: format!("http://{upstream}/inventory"),
        breaker,
        prometheus,
        start,
    });
    let service = serve(
        Router::new()
            .route("/stock", get(stock))
            .route("/metrics", get(metrics_page))
            .with_state(app.clone()),
    )
    .await?;
    println!("service on http://{service}/stock, upstream on http://{upstream}/inventory");
    println!("breaker: OPEN at 3 failures of the last 4, for 1 s; 1 retry; 300 ms per attempt\n");

    let client = reqwest::Client::new();
    for _ in 0..14 {
        let response = client.get(format!("http://{service}/stock")).send().await?;
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body = response.text().await?;
        let retry_after = retry_after.map_or(String::new(), |v| {
            format!(" (Retry-After: {})", v.to_str().unwrap_or("?"))
        });
        println!(
            "[{:>5} ms] GET /stock -> {status}{retry_after} {body:?}; upstream calls so far: {}",
            app.ms(),
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!("\nGET /metrics (the resilient_circuit lines):");
    let page = client
        .get(format!("http://{service}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in page
        .lines()
        .filter(|line| line.starts_with("resilient_circuit"))
    {
        println!("  {line}");
    }
    Ok(())
}
