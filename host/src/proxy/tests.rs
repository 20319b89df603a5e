//! Tests of the whole proxy over real sockets: a fake upstream (a hyper server on
//! 127.0.0.1:0 that records what it receives and answers with JSON or a stream the test feeds
//! chunk by chunk), a proxy bound on a socket in a temporary folder, and a hyper client
//! talking to it over a `UnixStream`, as the agent-runner does.

use super::error::NO_MODEL_MESSAGE;
use super::*;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::ProviderKind;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// The live endpoint (`super::live`).
mod egress;
mod live;

/// A deadline for things that should happen at once; a hang fails the test instead of
/// stalling the suite. Never a wait for something to happen.
const DEADLINE: Duration = Duration::from_secs(20);

const HOST_KEY: &str = "sk-host-secret-canary";
const HOST_MODEL: &str = "host-model";

type ChunkSender = mpsc::UnboundedSender<Result<Bytes, &'static str>>;
type TestError = Box<dyn std::error::Error + Send + Sync>;

/// What the fake upstream received.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// How the fake upstream answers one request.
enum Reply {
    Json {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: Value,
    },
    /// `text/event-stream`, fed by the test: each `Ok` is sent as it arrives, an `Err` breaks
    /// the response off, the channel closing ends it.
    Stream(mpsc::UnboundedReceiver<Result<Bytes, &'static str>>),
    /// Never answers.
    Silence,
}

fn json_reply(body: Value) -> Reply {
    Reply::Json {
        status: 200,
        headers: Vec::new(),
        body,
    }
}

/// A stream reply and the sender that feeds it.
fn stream_reply() -> (Reply, ChunkSender) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Reply::Stream(receiver), sender)
}

struct FakeUpstream {
    /// `http://127.0.0.1:<port>`.
    root: String,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// Starts a fake model server that answers its requests with `replies`, in order.
async fn fake_upstream(replies: Vec<Reply>) -> FakeUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (seen_sender, seen) = mpsc::unbounded_channel();
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen_sender = seen_sender.clone();
            let replies = Arc::clone(&replies);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen_sender = seen_sender.clone();
                    let replies = Arc::clone(&replies);
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body.collect().await?.to_bytes();
                        let _ = seen_sender.send(Seen {
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        });
                        let reply = replies.lock().unwrap().pop_front();
                        if let Some(Reply::Silence) = reply {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, hyper::Error>(respond(reply))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeUpstream { root, seen }
}

fn respond(reply: Option<Reply>) -> Response<UnsyncBoxBody<Bytes, TestError>> {
    match reply {
        None => {
            let mut response = Response::new(boxed_full("no reply left"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
        Some(Reply::Json {
            status,
            headers,
            body,
        }) => {
            let mut response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("set-cookie", "upstream=1")
                .header("x-request-id", "req-1");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(boxed_full(body.to_string())).unwrap()
        }
        Some(Reply::Silence) => unreachable!("a silent reply is never sent"),
        Some(Reply::Stream(chunks)) => {
            let frames = futures_util::stream::unfold(chunks, |mut chunks| async move {
                let next = chunks.recv().await?;
                Some((next.map(Frame::data).map_err(TestError::from), chunks))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(frames).boxed_unsync())
                .unwrap()
        }
    }
}

fn boxed_full(text: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, TestError> {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn label() -> SessionLabel {
    SessionLabel {
        session_id: SessionId::new("s-test"),
        agent_group_id: AgentGroupId::new("main"),
    }
}

fn upstream_config(provider: ProviderKind, base_url: String, key: Option<&str>) -> ModelUpstream {
    ModelUpstream {
        provider,
        base_url,
        model: HOST_MODEL.to_owned(),
        api_key: key.map(ApiKey::new),
    }
}

/// A proxy serving one session socket in a temporary folder.
struct RunningProxy {
    socket: PathBuf,
    usage: mpsc::UnboundedReceiver<UsageRecord>,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<()>,
    _folder: tempfile::TempDir,
}

impl RunningProxy {
    async fn start(upstream: Option<ModelUpstream>) -> Self {
        Self::start_with_limit(upstream, MAX_REQUEST_BODY_BYTES).await
    }

    async fn start_with_limit(upstream: Option<ModelUpstream>, limit: usize) -> Self {
        Self::start_configured(upstream, |proxy| proxy.max_request_body_bytes = limit).await
    }

    /// A proxy changed by `configure` before it serves.
    async fn start_configured(
        upstream: Option<ModelUpstream>,
        configure: impl FnOnce(&mut Proxy),
    ) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let socket = folder.path().join("proxy.sock");
        let (usage_sender, usage) = mpsc::unbounded_channel();
        let mut proxy = Proxy::new(upstream, usage_sender).unwrap();
        configure(Arc::get_mut(&mut proxy).unwrap());
        let listener = bind_session_socket(&socket, None).unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(proxy.serve(listener, label(), shutdown.clone()));
        Self {
            socket,
            usage,
            shutdown,
            served,
            _folder: folder,
        }
    }

    async fn next_usage(&mut self) -> UsageRecord {
        tokio::time::timeout(DEADLINE, self.usage.recv())
            .await
            .unwrap()
            .unwrap()
    }
}

/// Sends one request over a fresh connection to the socket.
async fn call<B>(socket: &Path, request: Request<B>) -> Response<Incoming>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<TestError>,
{
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap()
}

fn post(path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method("POST").uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(body.into())).unwrap()
}

/// Sends a request and reads the whole answer as JSON.
async fn call_json(socket: &Path, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Value) {
    let response = call(socket, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

/// Reads body frames until `expected` has arrived, and checks nothing else came with it.
async fn expect_data(body: &mut Incoming, expected: &str) {
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
    assert_eq!(String::from_utf8(received).unwrap(), expected);
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn openai_request_gets_the_host_key_and_model() {
    let reply = json!({
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    });
    let mut upstream = fake_upstream(vec![json_reply(reply.clone())]).await;
    let config = upstream_config(
        ProviderKind::OpenAi,
        format!("{}/v1/", upstream.root),
        Some(HOST_KEY),
    );
    let mut proxy = RunningProxy::start(Some(config)).await;

    let request = post(
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer container-key"),
            ("x-api-key", "container-key"),
            ("cookie", "a=b"),
            ("proxy-authorization", "Basic eA=="),
            ("openai-organization", "org-other"),
            ("x-stainless-lang", "rust"),
        ],
        json!({"model": "gpt-expensive", "messages": [{"role": "user", "content": "hello"}]})
            .to_string(),
    );
    let (status, headers, body) = call_json(&proxy.socket, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, reply);
    assert_eq!(values(&headers, "content-type"), ["application/json"]);
    assert_eq!(values(&headers, "x-request-id"), ["req-1"]);
    assert!(!headers.contains_key("set-cookie"));

    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    let expected_authorization = format!("Bearer {HOST_KEY}");
    assert_eq!(
        values(&seen.headers, "authorization"),
        [expected_authorization.as_str()]
    );
    for name in [
        "x-api-key",
        "cookie",
        "proxy-authorization",
        "openai-organization",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(values(&seen.headers, "x-stainless-lang"), ["rust"]);
    assert_eq!(
        seen.body,
        json!({"model": HOST_MODEL, "messages": [{"role": "user", "content": "hello"}]})
    );

    let usage = proxy.next_usage().await;
    assert_eq!(usage.session_id.as_str(), "s-test");
    assert_eq!(usage.agent_group_id.as_str(), "main");
    assert_eq!(usage.provider, ProviderKind::OpenAi);
    assert_eq!(usage.model, HOST_MODEL);
    assert_eq!(
        (
            usage.status,
            usage.input_tokens,
            usage.output_tokens,
            usage.completed
        ),
        (200, 12, 5, true)
    );
    assert!(usage.at_ms > 0);
}

#[tokio::test]
async fn anthropic_request_gets_the_host_key_and_a_version() {
    let reply = json!({
        "type": "message",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 30, "output_tokens": 4}
    });
    let mut upstream =
        fake_upstream(vec![json_reply(reply.clone()), json_reply(reply.clone())]).await;
    let config = upstream_config(
        ProviderKind::Anthropic,
        upstream.root.clone(),
        Some(HOST_KEY),
    );
    let mut proxy = RunningProxy::start(Some(config)).await;
    let body = json!({"model": "claude-other", "max_tokens": 10, "messages": []}).to_string();

    // Without an anthropic-version, the proxy supplies one.
    let request = post(
        "/v1/messages",
        &[
            ("x-api-key", "container-key"),
            ("authorization", "Bearer container-key"),
        ],
        body.clone(),
    );
    let (status, _, answer) = call_json(&proxy.socket, request).await;
    assert_eq!((status, answer), (StatusCode::OK, reply.clone()));
    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(values(&seen.headers, "x-api-key"), [HOST_KEY]);
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(
        values(&seen.headers, "anthropic-version"),
        [DEFAULT_ANTHROPIC_VERSION]
    );
    assert_eq!(seen.body["model"], HOST_MODEL);
    assert_eq!(seen.body["max_tokens"], 10);
    let usage = proxy.next_usage().await;
    assert_eq!(
        (
            usage.provider,
            usage.status,
            usage.input_tokens,
            usage.output_tokens
        ),
        (ProviderKind::Anthropic, 200, 30, 4)
    );

    // The container's own version and beta headers pass through.
    let request = post(
        "/v1/messages",
        &[
            ("anthropic-version", "2099-01-01"),
            ("anthropic-beta", "tools-x"),
        ],
        body,
    );
    let (status, _, _) = call_json(&proxy.socket, request).await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(values(&seen.headers, "anthropic-version"), ["2099-01-01"]);
    assert_eq!(values(&seen.headers, "anthropic-beta"), ["tools-x"]);
    proxy.next_usage().await;
}

#[tokio::test]
async fn no_key_configured_sends_none() {
    let mut upstream = fake_upstream(vec![json_reply(json!({"choices": []}))]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let request = post(
        "/v1/chat/completions",
        &[("authorization", "Bearer container-key")],
        "{}",
    );
    let (status, _, _) = call_json(&proxy.socket, request).await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.seen.recv().await.unwrap();
    assert!(!seen.headers.contains_key("authorization"));
    assert!(!seen.headers.contains_key("x-api-key"));
    let usage = proxy.next_usage().await;
    assert_eq!((usage.input_tokens, usage.output_tokens), (0, 0));
}

#[tokio::test]
async fn openai_stream_passes_through_as_it_arrives() {
    let (reply, chunks) = stream_reply();
    let mut upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(
        ProviderKind::OpenAi,
        format!("{}/v1", upstream.root),
        Some(HOST_KEY),
    );
    let mut proxy = RunningProxy::start(Some(config)).await;

    let request = post(
        "/v1/chat/completions",
        &[],
        json!({"model": "x", "stream": true, "messages": []}).to_string(),
    );
    let mut response = call(&proxy.socket, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        values(response.headers(), "content-type"),
        ["text/event-stream"]
    );
    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(seen.body["model"], HOST_MODEL);
    assert_eq!(seen.body["stream_options"]["include_usage"], true);

    // The second chunk does not exist until the client has the first: only a proxy that
    // passes chunks through as they arrive gets past this point.
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n";
    chunks
        .send(Ok(Bytes::from_static(first.as_bytes())))
        .unwrap();
    expect_data(response.body_mut(), first).await;

    let second = "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n";
    chunks
        .send(Ok(Bytes::from_static(second.as_bytes())))
        .unwrap();
    expect_data(response.body_mut(), second).await;
    assert!(
        proxy.usage.try_recv().is_err(),
        "no usage record before the stream ends"
    );

    let last = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                data: [DONE]\n\n";
    chunks
        .send(Ok(Bytes::from_static(last.as_bytes())))
        .unwrap();
    drop(chunks);
    let rest = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, last.as_bytes());

    let usage = proxy.next_usage().await;
    assert_eq!(
        (
            usage.status,
            usage.input_tokens,
            usage.output_tokens,
            usage.completed
        ),
        (200, 9, 2, true)
    );
}

#[tokio::test]
async fn anthropic_stream_usage_is_counted() {
    let (reply, chunks) = stream_reply();
    let upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(
        ProviderKind::Anthropic,
        upstream.root.clone(),
        Some(HOST_KEY),
    );
    let mut proxy = RunningProxy::start(Some(config)).await;
    let events = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    for event in events {
        chunks
            .send(Ok(Bytes::from_static(event.as_bytes())))
            .unwrap();
    }
    drop(chunks);

    let request = post(
        "/v1/messages",
        &[],
        json!({"stream": true, "max_tokens": 5, "messages": []}).to_string(),
    );
    let response = call(&proxy.socket, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(body, events.concat().as_bytes());
    let usage = proxy.next_usage().await;
    assert_eq!(
        (
            usage.provider,
            usage.input_tokens,
            usage.output_tokens,
            usage.completed
        ),
        (ProviderKind::Anthropic, 25, 15, true)
    );
}

#[tokio::test]
async fn a_stream_that_breaks_off_is_reported_incomplete() {
    let (reply, chunks) = stream_reply();
    let upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(ProviderKind::Anthropic, upstream.root.clone(), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let request = post("/v1/messages", &[], json!({"stream": true}).to_string());
    let mut response = call(&proxy.socket, request).await;

    let start =
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7}}}\n\n";
    chunks
        .send(Ok(Bytes::from_static(start.as_bytes())))
        .unwrap();
    expect_data(response.body_mut(), start).await;
    chunks.send(Err("upstream crashed")).unwrap();
    let ending = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap();
    assert!(ending.is_err(), "the client must see the stream break off");

    let usage = proxy.next_usage().await;
    assert_eq!(
        (
            usage.status,
            usage.input_tokens,
            usage.output_tokens,
            usage.completed
        ),
        (200, 7, 0, false)
    );
}

#[tokio::test]
async fn upstream_errors_pass_through() {
    let reply = Reply::Json {
        status: 429,
        headers: vec![
            ("retry-after", "3"),
            ("x-ratelimit-remaining-requests", "0"),
        ],
        body: json!({"error": {"type": "rate_limit_error", "message": "slow down"}}),
    };
    let upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let (status, headers, body) =
        call_json(&proxy.socket, post("/v1/chat/completions", &[], "{}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(values(&headers, "retry-after"), ["3"]);
    assert_eq!(values(&headers, "x-ratelimit-remaining-requests"), ["0"]);
    assert_eq!(body["error"]["message"], "slow down");
    let usage = proxy.next_usage().await;
    assert_eq!((usage.status, usage.completed), (429, true));
}

#[tokio::test]
async fn other_paths_and_methods_are_forbidden() {
    let mut upstream = fake_upstream(Vec::new()).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let requests = [
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/models"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions/extra"),
        ("DELETE", "/v1/messages"),
        ("POST", "/"),
        ("GET", "/crabpot/v1/live"),
        ("PUT", "/crabpot/v1/live"),
        ("POST", "/crabpot/v1/live/"),
        ("POST", "/crabpot/v1/other"),
    ];
    for (method, path) in requests {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let (status, headers, body) = call_json(&proxy.socket, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(values(&headers, "content-type"), ["application/json"]);
        assert_eq!(body["error"]["type"], "forbidden", "{method} {path}");
    }
    assert!(upstream.seen.try_recv().is_err(), "nothing was forwarded");
    assert!(
        proxy.usage.try_recv().is_err(),
        "refusals are not model usage"
    );
}

#[tokio::test]
async fn the_other_providers_shape_is_refused() {
    async fn check(provider: ProviderKind, path: &str, expected_message: &str) {
        let mut upstream = fake_upstream(Vec::new()).await;
        let config = upstream_config(provider, format!("{}/v1", upstream.root), None);
        let proxy = RunningProxy::start(Some(config)).await;
        let (status, _, body) = call_json(&proxy.socket, post(path, &[], "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {"type": "wrong_endpoint", "message": expected_message}})
        );
        assert!(upstream.seen.try_recv().is_err());
    }
    check(
        ProviderKind::OpenAi,
        "/v1/messages",
        "this session's model speaks openai; use /v1/chat/completions",
    )
    .await;
    check(
        ProviderKind::Anthropic,
        "/v1/chat/completions",
        "this session's model speaks anthropic; use /v1/messages",
    )
    .await;
}

#[tokio::test]
async fn no_model_configured_is_503_with_instructions() {
    let mut proxy = RunningProxy::start(None).await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let (status, _, body) = call_json(&proxy.socket, post(path, &[], "{}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"error": {
                "type": "no_model_configured",
                "message": "no model is configured on the host: set CRABPOT_MODEL_PROVIDER \
                    (openai or anthropic), CRABPOT_MODEL_BASE_URL, CRABPOT_MODEL and \
                    CRABPOT_MODEL_API_KEY (or OPENAI_API_KEY / ANTHROPIC_API_KEY) and restart \
                    crabpot serve"
            }})
        );
        assert_eq!(body["error"]["message"], NO_MODEL_MESSAGE);
    }
    // Other paths are still refused first.
    let request = Request::builder()
        .uri("/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, _) = call_json(&proxy.socket, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(proxy.usage.try_recv().is_err());
}

#[tokio::test]
async fn unreachable_upstream_is_502_without_the_key() {
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let config = upstream_config(
        ProviderKind::OpenAi,
        format!("http://{address}/v1"),
        Some(HOST_KEY),
    );
    let mut proxy = RunningProxy::start(Some(config)).await;
    let (status, _, body) = call_json(&proxy.socket, post("/v1/chat/completions", &[], "{}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["type"], "upstream_unreachable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(!message.contains(HOST_KEY), "{message}");
    let usage = proxy.next_usage().await;
    assert_eq!((usage.status, usage.completed), (502, false));
}

#[tokio::test]
async fn bad_bodies_are_refused() {
    let mut upstream = fake_upstream(Vec::new()).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let proxy = RunningProxy::start_with_limit(Some(config), 1024).await;
    for body in ["[1, 2]", "\"text\"", "not json", ""] {
        let (status, _, answer) =
            call_json(&proxy.socket, post("/v1/chat/completions", &[], body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(answer["error"]["type"], "invalid_request", "{body:?}");
    }

    // Declared too large.
    let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    let (status, _, answer) = call_json(
        &proxy.socket,
        post("/v1/chat/completions", &[], oversized.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["type"], "request_too_large");

    // Too large without a declared length (chunked).
    let frames = futures_util::stream::iter(
        oversized
            .into_bytes()
            .chunks(700)
            .map(|chunk| {
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::copy_from_slice(chunk)))
            })
            .collect::<Vec<_>>(),
    );
    let request = Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .body(StreamBody::new(frames))
        .unwrap();
    let response = call(&proxy.socket, request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(upstream.seen.try_recv().is_err());
}

#[tokio::test]
async fn serve_ends_on_shutdown() {
    let proxy = RunningProxy::start(None).await;
    // An idle keep-alive connection must not hold shutdown up.
    let stream = tokio::net::UnixStream::connect(&proxy.socket)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(post("/v1/messages", &[], "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    response.into_body().collect().await.unwrap();

    proxy.shutdown.cancel();
    tokio::time::timeout(DEADLINE, proxy.served)
        .await
        .unwrap()
        .unwrap();
    // The server closed the idle connection.
    tokio::time::timeout(DEADLINE, connection)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_stream_in_flight_finish() {
    let (reply, chunks) = stream_reply();
    let upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let request = post(
        "/v1/chat/completions",
        &[],
        json!({"stream": true}).to_string(),
    );
    let mut response = call(&proxy.socket, request).await;
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
    chunks
        .send(Ok(Bytes::from_static(first.as_bytes())))
        .unwrap();
    expect_data(response.body_mut(), first).await;

    proxy.shutdown.cancel();
    let last = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n";
    chunks
        .send(Ok(Bytes::from_static(last.as_bytes())))
        .unwrap();
    drop(chunks);
    let rest = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, last.as_bytes());
    let usage = proxy.next_usage().await;
    tokio::time::timeout(DEADLINE, proxy.served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.completed),
        (3, 1, true)
    );
}

#[tokio::test]
async fn a_request_given_up_before_the_answer_is_still_recorded() {
    let mut upstream = fake_upstream(vec![Reply::Silence]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start(Some(config)).await;
    let stream = tokio::net::UnixStream::connect(&proxy.socket)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let pending = tokio::spawn(sender.send_request(post("/v1/chat/completions", &[], "{}")));
    // The upstream has the request and keeps silent; the container hangs up.
    upstream.seen.recv().await.unwrap();
    pending.abort();
    connection.abort();
    drop(sender);
    let usage = proxy.next_usage().await;
    assert_eq!((usage.status, usage.completed), (0, false));
}

// The limits: per-session connections, the descriptor budget, and the three clocks.

/// One proxy serving several session sockets, as the host does.
struct Sockets {
    paths: Vec<PathBuf>,
    _shutdown: tokio_util::sync::DropGuard,
    _folder: tempfile::TempDir,
}

fn session(n: usize) -> SessionLabel {
    SessionLabel {
        session_id: SessionId::new(format!("s-{n}")),
        agent_group_id: AgentGroupId::new("main"),
    }
}

fn serve_sockets(proxy: &Arc<Proxy>, n_sessions: usize) -> Sockets {
    let folder = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let paths = (0..n_sessions)
        .map(|n| {
            let path = folder.path().join(format!("proxy-{n}.sock"));
            let listener = bind_session_socket(&path, None).unwrap();
            tokio::spawn(Arc::clone(proxy).serve(listener, session(n), shutdown.clone()));
            path
        })
        .collect();
    Sockets {
        paths,
        _shutdown: shutdown.drop_guard(),
        _folder: folder,
    }
}

fn limited_proxy(limits: ProxyLimits, budget: Arc<FdBudget>) -> Arc<Proxy> {
    let (usage, _) = mpsc::unbounded_channel();
    Proxy::new_with(None, usage, limits, budget).unwrap()
}

/// A kept-alive client connection; aborting `connection` closes it.
struct OpenConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<hyper::Result<()>>,
}

async fn open(socket: &Path) -> OpenConnection {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    OpenConnection {
        sender,
        connection: tokio::spawn(connection),
    }
}

/// Sends one request (no model is configured: the answer is 503) and reads the answer.
async fn answered(connection: &mut OpenConnection) -> StatusCode {
    let response = tokio::time::timeout(
        DEADLINE,
        connection
            .sender
            .send_request(post("/v1/messages", &[], "{}")),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// How long a connection that must NOT be served is given to (wrongly) be served.
const NOT_SERVED_WINDOW: Duration = Duration::from_millis(300);

/// Sends a request and checks it is not answered while the cap holds; returns the pending
/// answer, to be awaited once the cap is lifted.
async fn not_served_yet(
    mut connection: OpenConnection,
) -> tokio::task::JoinHandle<(StatusCode, OpenConnection)> {
    let mut pending = tokio::spawn(async move {
        let status = answered(&mut connection).await;
        (status, connection)
    });
    let early = tokio::time::timeout(NOT_SERVED_WINDOW, &mut pending).await;
    assert!(early.is_err(), "served past the cap");
    pending
}

#[tokio::test]
async fn a_session_past_its_connection_cap_waits_and_others_are_served() {
    let limits = ProxyLimits {
        max_connections_per_session: 2,
        ..ProxyLimits::default()
    };
    let proxy = limited_proxy(limits, FdBudget::unlimited());
    let sockets = serve_sockets(&proxy, 2);
    let mut first = open(&sockets.paths[0]).await;
    let mut second = open(&sockets.paths[0]).await;
    assert_eq!(answered(&mut first).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answered(&mut second).await, StatusCode::SERVICE_UNAVAILABLE);

    // The third waits in the backlog while two are open...
    let third = not_served_yet(open(&sockets.paths[0]).await).await;
    // ...while another session's socket is served as usual.
    let mut other = open(&sockets.paths[1]).await;
    assert_eq!(answered(&mut other).await, StatusCode::SERVICE_UNAVAILABLE);

    // One closes: the third is served.
    first.connection.abort();
    drop(first);
    let (status, _third) = tokio::time::timeout(DEADLINE, third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_exhausted_budget_pauses_accepting_on_every_socket() {
    let budget = FdBudget::new(1, 0);
    let proxy = limited_proxy(ProxyLimits::default(), Arc::clone(&budget));
    let sockets = serve_sockets(&proxy, 2);
    let mut first = open(&sockets.paths[0]).await;
    assert_eq!(answered(&mut first).await, StatusCode::SERVICE_UNAVAILABLE);
    // The one permit is held: the other session's connection is not accepted.
    let waiting = not_served_yet(open(&sockets.paths[1]).await).await;
    first.connection.abort();
    drop(first);
    let (status, _waiting) = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Reads from `stream` until the proxy closes it; returns what it sent.
async fn read_until_closed(stream: &mut tokio::net::UnixStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the connection was not closed in time");
    received
}

#[tokio::test]
async fn a_partial_header_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let limits = ProxyLimits {
        header_timeout: Duration::from_millis(200),
        ..ProxyLimits::default()
    };
    let proxy = limited_proxy(limits, FdBudget::unlimited());
    let sockets = serve_sockets(&proxy, 1);
    let mut stream = tokio::net::UnixStream::connect(&sockets.paths[0])
        .await
        .unwrap();
    stream
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: proxy\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;
    // Whatever hyper says on the way out (maybe a 408), it is never a served request.
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains("503"), "{text}");
    // And a connection that sends nothing at all is closed the same way.
    let mut silent = tokio::net::UnixStream::connect(&sockets.paths[0])
        .await
        .unwrap();
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let limits = ProxyLimits {
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_millis(200),
        ..ProxyLimits::default()
    };
    let proxy = limited_proxy(limits, FdBudget::unlimited());
    let sockets = serve_sockets(&proxy, 1);
    let mut connection = open(&sockets.paths[0]).await;
    assert_eq!(
        answered(&mut connection).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The server ends the kept-alive connection: the client's connection task finishes.
    tokio::time::timeout(DEADLINE, connection.connection)
        .await
        .expect("the idle connection was not closed")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_request_past_the_total_time_limit_is_answered_504() {
    let upstream = fake_upstream(vec![Reply::Silence]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let (usage, _usage) = mpsc::unbounded_channel();
    let limits = ProxyLimits {
        request_timeout: Duration::from_millis(300),
        ..ProxyLimits::default()
    };
    let proxy = Proxy::new_with(Some(config), usage, limits, FdBudget::unlimited()).unwrap();
    let sockets = serve_sockets(&proxy, 1);
    let (status, _, body) =
        call_json(&sockets.paths[0], post("/v1/chat/completions", &[], "{}")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"]["type"], "request_timeout");
}

#[tokio::test]
async fn a_stream_past_the_total_time_limit_is_cut() {
    let (reply, chunks) = stream_reply();
    let upstream = fake_upstream(vec![reply]).await;
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let (usage_sender, mut usage) = mpsc::unbounded_channel();
    let limits = ProxyLimits {
        request_timeout: Duration::from_millis(500),
        ..ProxyLimits::default()
    };
    let proxy = Proxy::new_with(Some(config), usage_sender, limits, FdBudget::unlimited()).unwrap();
    let sockets = serve_sockets(&proxy, 1);
    let mut response = call(
        &sockets.paths[0],
        post(
            "/v1/chat/completions",
            &[],
            json!({"stream": true}).to_string(),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
    chunks
        .send(Ok(Bytes::from_static(first.as_bytes())))
        .unwrap();
    expect_data(response.body_mut(), first).await;
    // The upstream goes on "streaming" forever (the channel stays open); the proxy cuts it.
    let rest = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the endless stream was not cut");
    assert!(rest.is_err(), "the cut stream must not look complete");
    let record = tokio::time::timeout(DEADLINE, usage.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!record.completed);
    drop(chunks);
}

#[tokio::test]
async fn serve_io_serves_one_connection_over_any_stream() {
    let proxy = limited_proxy(ProxyLimits::default(), FdBudget::unlimited());
    let (client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(Arc::clone(&proxy).serve_io(server, label()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(post("/v1/messages", &[], "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    response.into_body().collect().await.unwrap();
    drop(sender);
    tokio::time::timeout(DEADLINE, connection)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(DEADLINE, served)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn zero_limits_are_refused_naming_the_field() {
    for (limits, field) in [
        (
            ProxyLimits {
                max_connections_per_session: 0,
                ..ProxyLimits::default()
            },
            "max_connections_per_session",
        ),
        (
            ProxyLimits {
                header_timeout: Duration::ZERO,
                ..ProxyLimits::default()
            },
            "header_timeout",
        ),
        (
            ProxyLimits {
                request_timeout: Duration::ZERO,
                ..ProxyLimits::default()
            },
            "request_timeout",
        ),
    ] {
        let (usage, _) = mpsc::unbounded_channel();
        let error = Proxy::new_with(None, usage, limits, FdBudget::unlimited()).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
}
