//! `/metrics` end to end: a real host answers one turn through a real container, then a real
//! Prometheus scrapes the host's web server and its HTTP API returns the host's counters. Also:
//! with `web_behind_https` the loopback exemption is off, so an unauthenticated scrape is
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tests::docker::require_docker;
use tests::fake_model::FakeModel;
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::http_client::{self, HttpResponse};
use tests::prometheus::Prometheus;

const TURN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long Prometheus may take to see the target up and to have a sample: scrapes are every
/// second, so this is a bound on a broken setup, not a timing.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(60);

/// The `host:port` of the host's web server.
fn web_address(host: &HostProcess) -> SocketAddr {
    let url = host.web_url().unwrap();
    let authority = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("web.url {url:?} is not http://"));
    authority
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("web.url {url:?}: {e}"))
}

async fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(http::header::HOST, address.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::new())).unwrap();
    http_client::send_tcp(address, request).await.unwrap()
}

/// The value of the sample line `series` (name and labels, exactly) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Scrapes `/metrics` until every one of `series` has a sample, or panics after
/// [`SCRAPE_TIMEOUT`] with the last text.
async fn wait_for_series(address: SocketAddr, series: &[&str]) -> String {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    loop {
        let text = get(address, "/metrics", &[]).await.text();
        if series.iter().all(|s| sample(&text, s).is_some()) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "not every one of {series:?} within {SCRAPE_TIMEOUT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_hosts_metrics() {
    if !require_docker("prometheus_scrapes_the_hosts_metrics").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(
        ModelConfig::openai(&fake).with_api_key("sk-test"),
    ))
    .await
    .unwrap();
    let output = host.chat("hello metrics", TURN_TIMEOUT).await.unwrap();
    assert!(
        output.success(),
        "crabpot chat failed: {:?}\nstdout: {}\nstderr: {}\nhost log:\n{}",
        output.status,
        output.stdout,
        output.stderr,
        host.log_tail(80)
    );
    let address = web_address(&host);

    // The host's own answer, from loopback without credentials. The proxy counts a request
    // when its response body has ended and the turn's duration when delivery hears the turn
    // is complete, which may be a moment after the reply reached the CLI: poll.
    let response = get(address, "/metrics", &[]).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let expected = [
        "crabpot_messages_routed_total{channel=\"cli\"}",
        "crabpot_deliveries_total{channel=\"cli\",outcome=\"delivered\"}",
        "crabpot_delivery_latency_seconds_count{channel=\"cli\"}",
        "crabpot_turn_duration_seconds_count{channel=\"cli\"}",
        "crabpot_containers_started_total",
        "crabpot_proxy_requests_total{agent_group=\"main\"}",
        "crabpot_adapter_up{channel=\"cli\"}",
    ];
    let text = wait_for_series(address, &expected).await;
    for series in expected {
        let value = sample(&text, series);
        assert!(
            value.is_some_and(|n| n >= 1.0),
            "{series}: {value:?}\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "crabpot_containers_running"),
        Some(1.0),
        "{text}"
    );

    // A real Prometheus scrapes it and answers through its HTTP API.
    let prometheus = Prometheus::start(&address.to_string(), "/metrics")
        .await
        .unwrap();
    prometheus.wait_until_up(SCRAPE_TIMEOUT).await.unwrap();
    let samples = prometheus
        .wait_for_sample("crabpot_messages_routed_total", SCRAPE_TIMEOUT)
        .await
        .unwrap();
    let cli = samples
        .iter()
        .find(|(labels, _)| labels["channel"] == "cli")
        .unwrap_or_else(|| panic!("no cli series: {samples:?}"));
    assert!(cli.1 >= 1.0, "{samples:?}");
    assert_eq!(cli.0["job"], "crabpot", "{samples:?}");
    let running = prometheus
        .wait_for_sample("crabpot_containers_running", SCRAPE_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_https_a_scrape_needs_an_admin_token() {
    if !require_docker("behind_https_a_scrape_needs_an_admin_token").await {
        return;
    }
    let host = HostProcess::start(HostOptions::default().env("CRABPOT_WEB_BEHIND_HTTPS", "1"))
        .await
        .unwrap();
    let address = web_address(&host);
    let response = get(address, "/metrics", &[]).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
    assert!(!response.text().contains("crabpot_"), "{}", response.text());
    let response = get(
        address,
        "/metrics",
        &[("authorization", "Bearer cpt_not-a-real-token")],
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
}
