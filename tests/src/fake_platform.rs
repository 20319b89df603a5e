//! What the fake chat platforms (Telegram, Slack, Discord: `fake_telegram`, `fake_slack`,
//! `fake_discord`) share: a loopback HTTP server on its own thread and runtime
//! ([`FakeServer`]), so it keeps answering whatever the test's runtime does, and a
//! [`Recorder`] of every request it received (method, path, query, headers, body, arrival
//! time), with waits that have a deadline.
//!
//! Each fake routes its platform's documented paths in an `axum::Router`; the recording is a
//! middleware in front of it, so no handler can forget to record.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One request a fake received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Call {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Every request a fake received, in order, plus anything else a fake wants to record
/// (gateway frames, say) as a [`Call`] of its own making.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    changed: Arc<Notify>,
}

impl Recorder {
    pub fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
        self.changed.notify_waiters();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The calls whose path ends with `suffix` (a method name such as `/sendMessage`).
    pub fn calls_to(&self, suffix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.path.ends_with(suffix))
            .collect()
    }

    /// Waits until `check` finds what it looks for in the calls so far, for at most
    /// `timeout`; the error names `what` and lists the paths received.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Call]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Some(found) = check(&self.calls()) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let paths: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|call| format!("{} {}", call.method, call.path))
                    .collect();
                anyhow::bail!("waited {timeout:?} for {what}; the fake received: {paths:?}");
            }
        }
    }
}

async fn record(State(recorder): State<Recorder>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    recorder.record(Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A fake platform's HTTP server on `127.0.0.1`, on its own thread and runtime; dropped, it
/// stops.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Binds a port, then serves `routes` (every request recorded first).
    pub fn start(routes: axum::Router) -> anyhow::Result<FakeServer> {
        let recorder = Recorder::default();
        let app = routes.layer(axum::middleware::from_fn_with_state(
            recorder.clone(),
            record,
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        // Bound with std, not `block_on`, so a fake can be started from inside a test's
        // runtime; it becomes tokio's on the fake's own thread.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let handle = runtime.handle().clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-platform-{}", addr.port()))
            .spawn(move || {
                // Not a graceful shutdown: a host's long poll would hold it open. Dropping
                // the runtime at the end of the thread drops every connection.
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop.cancelled() => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(FakeServer {
            addr,
            recorder,
            runtime: handle,
            shutdown,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fake's runtime, for more servers of its own (a WebSocket gateway).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Cancelled when the fake stops.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
