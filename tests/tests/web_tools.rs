//! The web tools end to end: a real host, a real container (the small image is enough: the
//! host does the network work) and the fake model scripting `web_fetch` and `web_search`.
//!
//! - `web_fetch` of a page served on the host's loopback, with the group allowed
//!   `127.0.0.1:<port>`, returns the page as Markdown (title, heading, text, link; no script)
//!   to the model; a host with no rule, a name allowed but resolving to loopback, and a
//!   redirect to a port with no rule are refused with the fix named; the egress log has the
//!   fetches (kind `fetch`) with their outcomes.
//! - `web_search` against a fake SearXNG returns its results to the model; the fake saw the
//!   query and the host's key, and the key is nowhere the container or the model can see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::{TURN, cli_ok, echo_or_tool_result, egress_log_until, tool_result};
use tests::docker::{self, require_docker};
use tests::fake_model::{FakeModel, Reply};
use tests::fake_platform::FakeServer;
use tests::fake_search::FakeSearch;
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const PAGE: &str = r#"<!doctype html><html><head><title>Crab page</title>
<script>alert("never shown")</script><style>p { color: red }</style></head>
<body><h2>Pots and traps</h2><p>Crab pots are <b>baited</b> traps.</p>
<p>See <a href="https://example.org/docs">the crab docs</a>.</p>
<ul><li>first item</li><li>second item</li></ul></body></html>"#;

/// A page server on loopback: `/page` is HTML, `/away` redirects to `redirect_to`.
fn page_server(redirect_to: String) -> FakeServer {
    let routes = axum::Router::new()
        .route(
            "/page",
            axum::routing::get(|| async {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
            }),
        )
        .route(
            "/away",
            axum::routing::get(move || {
                let location = redirect_to.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, location)]).into_response() }
            }),
        );
    FakeServer::start(routes).unwrap()
}

/// Runs one turn scripted as `calls` tool calls and returns their results in order.
async fn run_calls(host: &HostProcess, fake: &FakeModel, calls: &[(&str, Value)]) -> Vec<String> {
    let n_before = fake.requests().len();
    for (name, arguments) in calls {
        fake.push(Reply::tool_call(*name, arguments.clone()));
    }
    fake.push(Reply::text("done"));
    let output = host.chat("use the web", TURN).await.unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    let results: Vec<String> = fake
        .requests()
        .iter()
        .skip(n_before)
        .filter_map(tool_result)
        .collect();
    assert_eq!(
        results.len(),
        calls.len(),
        "{results:#?}\n{}",
        host.log_tail(60)
    );
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn web_fetch_returns_allowed_pages_as_markdown_and_refuses_the_rest() {
    if !require_docker("web_fetch_returns_allowed_pages_as_markdown_and_refuses_the_rest").await {
        return;
    }
    // A server no rule allows, to redirect to.
    let unlisted = page_server(String::new());
    let q = unlisted.addr.port();
    let site = page_server(format!("http://127.0.0.1:{q}/page"));
    let p = site.addr.port();
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "main",
            "--allow-egress",
            &format!("127.0.0.1:{p}"),
            "--allow-egress",
            &format!("localhost:{p}"),
        ],
    )
    .await;
    let results = run_calls(
        &host,
        &fake,
        &[
            (
                "web_fetch",
                json!({"url": format!("http://127.0.0.1:{p}/page")}),
            ),
            ("web_fetch", json!({"url": "http://example.invalid/"})),
            (
                "web_fetch",
                json!({"url": format!("http://localhost:{p}/page")}),
            ),
            (
                "web_fetch",
                json!({"url": format!("http://127.0.0.1:{p}/away")}),
            ),
            (
                "web_fetch",
                json!({"url": format!("http://127.0.0.1:{p}/page"), "max_chars": 12}),
            ),
        ],
    )
    .await;

    let page = &results[0];
    assert!(page.contains("# Crab page"), "{page}");
    assert!(page.contains("## Pots and traps"), "{page}");
    assert!(page.contains("Crab pots are **baited** traps."), "{page}");
    assert!(
        page.contains("[the crab docs](https://example.org/docs)"),
        "{page}"
    );
    assert!(
        page.contains("first item") && page.contains("second item"),
        "{page}"
    );
    assert!(
        !page.contains("alert") && !page.contains("color: red"),
        "{page}"
    );

    let unlisted_host = &results[1];
    assert!(
        unlisted_host.contains("crabpot groups update main --allow-egress example.invalid:80"),
        "{unlisted_host}"
    );
    let loopback_name = &results[2];
    assert!(
        loopback_name.contains("localhost resolves to")
            && loopback_name.contains("only a rule naming the address"),
        "{loopback_name}"
    );
    let redirect = &results[3];
    assert!(
        redirect.contains(&format!("--allow-egress 127.0.0.1:{q}")),
        "{redirect}"
    );
    assert!(!redirect.contains("Pots and traps"), "{redirect}");
    let short = &results[4];
    assert!(short.contains("[truncated: showing 12 of"), "{short}");
    assert!(!short.contains("Pots"), "{short}");
    assert!(
        unlisted.recorder.calls().is_empty(),
        "the redirect target was never contacted"
    );

    // Every hop is in the egress log with its outcome.
    let stdout = egress_log_until(&host, "the web tools' attempts", |entries| {
        let fetches: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "fetch").collect();
        let has = |host: &str, port: u16, outcome: &str| {
            fetches
                .iter()
                .any(|e| e["host"] == host && e["port"] == port && e["outcome"] == outcome)
        };
        has("127.0.0.1", p, "allowed")
            && has("example.invalid", 80, "not_listed")
            && has("localhost", p, "internal_address")
            && has("127.0.0.1", q, "not_listed")
    })
    .await;
    let allowed_bytes = stdout
        .iter()
        .filter(|e| e["kind"] == "fetch" && e["host"] == "127.0.0.1" && e["port"] == p)
        .filter_map(|e| e["bytes_down"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(allowed_bytes >= PAGE.len() as u64, "{stdout:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn web_search_returns_the_backends_results_and_the_key_stays_on_the_host() {
    if !require_docker("web_search_returns_the_backends_results_and_the_key_stays_on_the_host")
        .await
    {
        return;
    }
    let search = FakeSearch::start().unwrap();
    let key = format!("search-canary-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    let mut options = HostOptions::with_model(ModelConfig::openai(&fake));
    options
        .env
        .push(("CRABPOT_SEARCH_URL".into(), search.url()));
    options.env.push(("CRABPOT_SEARCH_KEY".into(), key.clone()));
    let host = HostProcess::start(options).await.unwrap();
    let results = run_calls(
        &host,
        &fake,
        &[("web_search", json!({"query": "crab pots", "limit": 2}))],
    )
    .await;
    let text = &results[0];
    assert!(text.contains("1. Result 1 about crab pots"), "{text}");
    assert!(text.contains("https://example.org/2"), "{text}");
    assert!(text.contains("Snippet 2 for crab pots."), "{text}");
    assert!(!text.contains("Result 3"), "the limit holds: {text}");

    // The backend saw the query and the key...
    let calls = search.recorder().calls_to(tests::fake_search::PATH);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let query: Vec<(String, String)> = url_pairs(&calls[0].query);
    assert!(
        query.contains(&("q".into(), "crab pots".into())),
        "{query:?}"
    );
    assert!(
        query.contains(&("format".into(), "json".into())),
        "{query:?}"
    );
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );

    // ...which the model never saw and the container does not hold.
    for request in fake.requests() {
        assert!(!String::from_utf8_lossy(&request.raw_body).contains(&key));
    }
    let docker = docker::connect().await.unwrap();
    let containers =
        docker::list_containers_by_label(&docker, "crabpot.install", host.install_id())
            .await
            .unwrap();
    assert_eq!(containers.len(), 1);
    let id = containers[0].id.clone().unwrap();
    let inspect = docker::inspect_container_json(&docker, &id).await.unwrap();
    assert!(!inspect.to_string().contains(&key), "key in docker inspect");
    let environ = docker::exec(&docker, &id, &["cat", "/proc/1/environ"])
        .await
        .unwrap();
    assert!(
        environ.success() && !environ.stdout.contains(&key),
        "{environ:?}"
    );

    // The search is in the egress log under the backend's host.
    let port = search
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    egress_log_until(&host, "the web tools' attempts", |entries| {
        entries.iter().any(|e| {
            e["kind"] == "search"
                && e["host"] == "127.0.0.1"
                && e["port"] == port
                && e["outcome"] == "allowed"
        })
    })
    .await;
}

/// Decodes `a=b&c=d+e` (form encoding, as reqwest writes queries).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
