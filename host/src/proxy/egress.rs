//! Egress on the proxy socket (DESIGN §6): `CONNECT host:port` and plain HTTP requests in
//! absolute form (`GET http://host/path`), both checked by the host's [`EgressGate`] against
//! the session's agent group rules. [`is_egress`] tells them from the model routes (which are
//! in origin form), [`handle`] answers them.
//!
//! - An allowed `CONNECT` is answered `200` and, once hyper hands over the upgraded
//!   connection, spliced to the destination on the connection's [`Tunnels`]. The connection
//!   (and so its slot in the session's connection cap and its descriptor permit) lasts until
//!   every tunnel on it has ended: `connection` waits for them. Tunnels have their own idle
//!   and total bounds, not the model request timeout.
//! - An allowed plain HTTP request is sent to the address the host resolved, in origin form,
//!   without hop-by-hop headers and without any credential added; the response streams back.
//! - A refusal is `403` (the rules) or `502` (the destination failed), with a plain-text
//!   message naming the rule to add, which curl, git and pip show.
//!
//! Every attempt, allowed or refused, goes to the egress log through the gate's recorder: a
//! refused one at once, an allowed one when its tunnel or response ends (an [`AttemptLog`]
//! records itself on drop, so a broken-off exchange is recorded too).

use super::body::{ProxyBody, full};
use super::error::ProxyError;
use super::{Proxy, SessionLabel};
use crate::egress::{
    AttemptKind, ByteCounters, EgressAttempt, EgressGate, EgressRecorder, Opened, Outcome, Target,
};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The tunnels (and forwarded HTTP exchanges) of one container connection.
pub(crate) struct Tunnels {
    tracker: TaskTracker,
    /// Cancelled when the host stops waiting for open connections: every tunnel ends.
    close: CancellationToken,
}

impl Tunnels {
    pub(crate) fn new(close: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            tracker: TaskTracker::new(),
            close,
        })
    }

    /// Waits until every tunnel of the connection has ended.
    pub(crate) async fn finish(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Whether a request is egress rather than a call to the proxy's own routes: `CONNECT`, or
/// a request line naming a scheme and host (absolute form).
pub(crate) fn is_egress<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT || request.uri().scheme().is_some()
}

/// Answers one egress request.
pub(crate) async fn handle(
    proxy: &Proxy,
    session: &SessionLabel,
    tunnels: &Arc<Tunnels>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(gate) = proxy.egress.get() else {
        return text(
            StatusCode::FORBIDDEN,
            "egress is not enabled on this host (no egress gate is set on the model proxy)",
        );
    };
    let kind = if request.method() == Method::CONNECT {
        AttemptKind::Connect
    } else {
        AttemptKind::Http
    };
    let target = match kind {
        AttemptKind::Connect => Target::of_connect(request.uri()),
        AttemptKind::Http | AttemptKind::Fetch | AttemptKind::Search => {
            Target::of_http(request.uri())
        }
    };
    let target = match target {
        Ok(target) => target,
        Err(error) => return text(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let started = std::time::Instant::now();
    let mut attempt = EgressAttempt::new(
        session.session_id.clone(),
        session.agent_group_id.clone(),
        &target.host,
        target.port,
        kind,
    );
    let opened = match gate.open(&session.agent_group_id, &target).await {
        Ok(opened) => opened,
        Err(refusal) => {
            attempt.outcome = refusal.outcome();
            attempt.detail = refusal.to_string();
            attempt.duration_ms = elapsed_ms(started);
            gate.recorder().record(attempt);
            let key = format!("proxy.egress {} {}", session.session_id, refusal.outcome());
            if proxy.log_gate.should_log(&key) {
                tracing::info!(%target, outcome = %refusal.outcome(), "egress refused");
            }
            let status = if refusal.is_destination_failure() {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::FORBIDDEN
            };
            return text(status, &refusal.to_string());
        }
    };
    attempt.outcome = Outcome::Allowed;
    attempt.detail = format!("allowed by {} ({})", opened.rule, opened.address);
    tracing::debug!(%target, rule = %opened.rule, "egress allowed");
    let log = AttemptLog::new(attempt, started, gate.recorder().clone());
    match kind {
        AttemptKind::Connect => connect(gate, tunnels, request, opened, log),
        AttemptKind::Http | AttemptKind::Fetch | AttemptKind::Search => {
            forward(tunnels, request, opened, &target, log).await
        }
    }
}

/// Answers `200` and splices the upgraded connection to the destination on `tunnels`.
fn connect(
    gate: &EgressGate,
    tunnels: &Arc<Tunnels>,
    mut request: Request<Incoming>,
    opened: Opened,
    mut log: AttemptLog,
) -> Response<ProxyBody> {
    let on_upgrade = hyper::upgrade::on(&mut request);
    let limits = gate.limits().tunnel;
    let close = tunnels.close.clone();
    tunnels.tracker.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let end = crate::egress::tunnel::splice(
                        TokioIo::new(upgraded),
                        opened.stream,
                        limits,
                        &log.counters,
                        &close,
                    )
                    .await;
                    log.note(end.describe());
                }
                Err(error) => log.note(&format!("the connection did not upgrade: {error}")),
            }
        }
        .in_current_span(),
    );
    Response::new(full(Bytes::new()))
}

/// Sends a plain HTTP request to the opened destination and streams its response back.
async fn forward(
    tunnels: &Arc<Tunnels>,
    request: Request<Incoming>,
    opened: Opened,
    target: &Target,
    mut log: AttemptLog,
) -> Response<ProxyBody> {
    let (sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(opened.stream)).await {
            Ok(parts) => parts,
            Err(error) => {
                let message = format!("egress to {target} failed: {error}");
                log.note(&message);
                return text(StatusCode::BAD_GATEWAY, &message);
            }
        };
    let mut sender = sender;
    let close = tunnels.close.clone();
    tunnels.tracker.spawn(
        async move {
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "egress http connection ended with an error");
                },
                () = close.cancelled() => {}
            }
        }
        .in_current_span(),
    );
    let (mut parts, body) = request.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    parts.uri = match origin_form.parse::<Uri>() {
        Ok(uri) => uri,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("bad request path: {error}"),
            );
        }
    };
    let authority = host_header(target);
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(&authority)
    {
        parts.headers.insert(header::HOST, value);
    }
    parts.version = http::Version::HTTP_11;
    let outgoing = Request::from_parts(
        parts,
        CountingBody::new(body, Arc::clone(&log.counters.up), None),
    );
    let response = match sender.send_request(outgoing).await {
        Ok(response) => response,
        Err(error) => {
            let message = format!("egress to {target} failed: {error}");
            log.note(&message);
            return text(StatusCode::BAD_GATEWAY, &message);
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let down = Arc::clone(&log.counters.down);
    let body = CountingBody::new(body, down, Some(log))
        .map_err(ProxyError::EgressBody)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

/// `host[:port]` for the Host header (the port only when it is not 80).
fn host_header(target: &Target) -> String {
    if target.port == 80 {
        target.host.clone()
    } else {
        target.to_string()
    }
}

/// The headers of one hop, never forwarded (RFC 9110 §7.6.1), plus every header the
/// `Connection` header names. `Proxy-Authorization` is among them, so no credential the
/// container sent to its proxy goes further.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}

/// A plain-text answer (refusals and malformed requests).
fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An allowed attempt in progress; recorded, with its bytes and duration, when dropped.
struct AttemptLog {
    attempt: Option<EgressAttempt>,
    counters: ByteCounters,
    started: std::time::Instant,
    recorder: EgressRecorder,
}

impl AttemptLog {
    fn new(attempt: EgressAttempt, started: std::time::Instant, recorder: EgressRecorder) -> Self {
        Self {
            attempt: Some(attempt),
            counters: ByteCounters::default(),
            started,
            recorder,
        }
    }

    /// Adds how the exchange ended to the recorded detail.
    fn note(&mut self, note: &str) {
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.detail.push_str("; ");
            attempt.detail.push_str(note);
        }
    }
}

impl Drop for AttemptLog {
    fn drop(&mut self) {
        if let Some(mut attempt) = self.attempt.take() {
            attempt.bytes_up = self.counters.up();
            attempt.bytes_down = self.counters.down();
            attempt.duration_ms = elapsed_ms(self.started);
            self.recorder.record(attempt);
        }
    }
}

/// A body passed through unchanged while its data bytes are counted; it may hold the
/// attempt's log, so the attempt is recorded once the body is done or dropped.
struct CountingBody<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    _log: Option<AttemptLog>,
}

impl<B> CountingBody<B> {
    fn new(inner: B, counter: Arc<AtomicU64>, log: Option<AttemptLog>) -> Self {
        Self {
            inner,
            counter,
            _log: log,
        }
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // Every field is Unpin (B is required to be), so the body can be used unpinned.
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_requests_are_told_from_model_routes() {
        let request = |method: Method, uri: &str| {
            Request::builder().method(method).uri(uri).body(()).unwrap()
        };
        assert!(is_egress(&request(Method::CONNECT, "example.com:443")));
        assert!(is_egress(&request(Method::GET, "http://example.com/")));
        assert!(!is_egress(&request(Method::POST, "/v1/messages")));
        assert!(!is_egress(&request(Method::GET, "/etc/passwd")));
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("proxy-connection", "keep-alive"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "text/html"),
            ("authorization", "Bearer the-containers-own"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        // The container's own end-to-end headers pass; nothing is added.
        assert_eq!(left, ["accept", "authorization"]);
    }
}
