//! Tests of egress over a real session socket: an allowed `CONNECT` is spliced to a loopback
//! destination and recorded with its bytes; refusals (not listed, a name resolving to
//! loopback, a port off the list, a deny rule) are answered with the rule to add and recorded
//! with their outcome; a plain HTTP request is forwarded without hop-by-hop headers or the
//! container's proxy credentials; a rule change holds for the next connection; without a
//! gate, egress is refused.

use super::*;
use crate::db::DbThread;
use crate::db::central::egress_log::{AttemptKind, EgressAttempt, Outcome};
use crate::db::central::groups::{self, GroupChanges};
use crate::egress::{EgressGate, EgressLimits, EgressRecorder, EgressRule};
use std::convert::Infallible;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// A loopback HTTP server answering every request with its method, URI and headers.
async fn destination() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let headers: Vec<String> = request
                        .headers()
                        .iter()
                        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
                        .collect();
                    let body = format!(
                        "hello from destination {} {}\n{}\n",
                        request.method(),
                        request.uri(),
                        headers.join("\n")
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// A proxy with an egress gate over a central DB holding group `main`.
struct EgressProxy {
    proxy: RunningProxy,
    central: Arc<DbThread<rusqlite::Connection>>,
    attempts: mpsc::Receiver<EgressAttempt>,
    _db_folder: tempfile::TempDir,
}

impl EgressProxy {
    async fn start() -> Self {
        let db_folder = tempfile::tempdir().unwrap();
        let path = db_folder.path().join("crabpot.db");
        let central =
            Arc::new(DbThread::spawn("central", move || crate::db::central::open(&path)).unwrap());
        central
            .call(|conn| groups::ensure_agent_group(conn, "main", "Main"))
            .await
            .unwrap();
        let (recorder, attempts) = EgressRecorder::channel(64);
        let gate = EgressGate::new(Arc::clone(&central), recorder, EgressLimits::default());
        let proxy = RunningProxy::start_configured(None, |proxy| proxy.set_egress(gate)).await;
        Self {
            proxy,
            central,
            attempts,
            _db_folder: db_folder,
        }
    }

    async fn change_rules(&self, allow: &[&str], deny: &[&str]) {
        let parse = |texts: &[&str]| -> Vec<EgressRule> {
            texts.iter().map(|text| text.parse().unwrap()).collect()
        };
        let changes = GroupChanges {
            allow_egress: parse(allow),
            deny_egress: parse(deny),
            ..GroupChanges::default()
        };
        self.central
            .call(move |conn| {
                groups::update_agent_group(conn, &AgentGroupId::new("main"), &changes)
            })
            .await
            .unwrap();
    }

    async fn next_attempt(&mut self) -> EgressAttempt {
        tokio::time::timeout(DEADLINE, self.attempts.recv())
            .await
            .unwrap()
            .unwrap()
    }
}

/// Sends `CONNECT authority` on a raw connection and returns the connection and the
/// response head.
async fn connect(socket: &Path, authority: &str) -> (UnixStream, String) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut byte = [0_u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "closed before the end of the head: {received:?}");
        received.push(byte[0]);
    }
    (stream, String::from_utf8(received).unwrap())
}

/// Sends a request through the proxy and returns its status and body text.
async fn call_text(socket: &Path, request: Request<Full<Bytes>>) -> (StatusCode, String) {
    let response = call(socket, request).await;
    let status = response.status();
    let bytes = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn connect_request(authority: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("CONNECT")
        .uri(authority)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn an_allowed_connect_is_spliced_and_recorded_with_its_bytes() {
    let port = destination().await;
    let mut egress = EgressProxy::start().await;
    egress
        .change_rules(&[&format!("127.0.0.1:{port}")], &[])
        .await;
    let (mut tunnel, head) = connect(&egress.proxy.socket, &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
        .write_all(b"GET /through-the-tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, tunnel.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.contains("hello from destination GET /through-the-tunnel"),
        "{answer}"
    );
    drop(tunnel);
    let attempt = egress.next_attempt().await;
    assert_eq!(attempt.kind, AttemptKind::Connect);
    assert_eq!(attempt.outcome, Outcome::Allowed);
    assert_eq!((attempt.host.as_str(), attempt.port), ("127.0.0.1", port));
    assert_eq!(attempt.session_id.as_str(), "s-test");
    assert!(
        attempt.bytes_up > 0 && attempt.bytes_down > 0,
        "{attempt:?}"
    );
    assert_eq!(attempt.bytes_down, answer.len() as u64);
    assert!(
        attempt.detail.contains(&format!("127.0.0.1:{port}")),
        "{}",
        attempt.detail
    );
}

#[tokio::test]
async fn refusals_name_the_rule_to_add_and_are_recorded() {
    let port = destination().await;
    let mut egress = EgressProxy::start().await;
    egress
        .change_rules(
            &[
                &format!("127.0.0.1:{port}"),
                &format!("localhost:{port}"),
                "*.example.com",
            ],
            &["blocked.example.com"],
        )
        .await;
    let socket = egress.proxy.socket.clone();
    let cases = [
        (
            "example.invalid:443".to_owned(),
            Outcome::NotListed,
            "crabpot groups update main --allow-egress example.invalid:443".to_owned(),
        ),
        (
            format!("localhost:{port}"),
            Outcome::InternalAddress,
            format!("only a rule naming the address (like 127.0.0.1:{port})"),
        ),
        (
            format!("127.0.0.1:{}", port.wrapping_add(1).max(1)),
            Outcome::NotListed,
            "--allow-egress 127.0.0.1:".to_owned(),
        ),
        (
            "blocked.example.com:443".to_owned(),
            Outcome::DeniedRule,
            "deny rule blocked.example.com:443".to_owned(),
        ),
    ];
    for (authority, outcome, fragment) in cases {
        let (status, body) = call_text(&socket, connect_request(&authority)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{authority}: {body}");
        assert!(body.contains(&fragment), "{authority}: {body}");
        let attempt = egress.next_attempt().await;
        assert_eq!(attempt.outcome, outcome, "{authority}");
        assert_eq!((attempt.bytes_up, attempt.bytes_down), (0, 0));
        assert!(attempt.detail.contains(&fragment), "{}", attempt.detail);
    }
    // A malformed request names the problem and is not an attempt.
    let (status, body) = call_text(&socket, connect_request("example.com")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("host:port"), "{body}");
    assert!(egress.attempts.try_recv().is_err());
}

#[tokio::test]
async fn plain_http_is_forwarded_without_hop_headers_or_proxy_credentials() {
    let port = destination().await;
    let mut egress = EgressProxy::start().await;
    egress
        .change_rules(&[&format!("127.0.0.1:{port}")], &[])
        .await;
    let request = Request::builder()
        .method("GET")
        .uri(format!("http://127.0.0.1:{port}/page?q=1"))
        .header("proxy-authorization", "Basic c2VjcmV0OnNlY3JldA==")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-end-to-end", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = call_text(&egress.proxy.socket, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Origin form upstream, the Host header set, the hop headers gone, nothing added.
    assert!(
        body.starts_with("hello from destination GET /page?q=1\n"),
        "{body}"
    );
    assert!(body.contains(&format!("host: 127.0.0.1:{port}")), "{body}");
    assert!(body.contains("x-end-to-end: kept"), "{body}");
    for absent in ["proxy-authorization", "x-hop", "authorization", "x-api-key"] {
        assert!(!body.contains(&format!("{absent}:")), "{absent}: {body}");
    }
    let attempt = egress.next_attempt().await;
    assert_eq!(attempt.kind, AttemptKind::Http);
    assert_eq!(attempt.outcome, Outcome::Allowed);
    assert_eq!(attempt.bytes_down, body.len() as u64);
    // https in absolute form is not forwarded in the clear.
    let request = Request::builder()
        .uri(format!("https://127.0.0.1:{port}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = call_text(&egress.proxy.socket, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("CONNECT"), "{body}");
}

#[tokio::test]
async fn a_rule_change_holds_for_the_next_connection() {
    let port = destination().await;
    let mut egress = EgressProxy::start().await;
    let rule = format!("127.0.0.1:{port}");
    let (status, _) = call_text(&egress.proxy.socket, connect_request(&rule)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(egress.next_attempt().await.outcome, Outcome::NotListed);
    egress.change_rules(&[&rule], &[]).await;
    let (_tunnel, head) = connect(&egress.proxy.socket, &rule).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    egress.change_rules(&[], &[&rule]).await;
    let (status, body) = call_text(&egress.proxy.socket, connect_request(&rule)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("is not allowed for agent group main"),
        "{body}"
    );
}

#[tokio::test]
async fn without_a_gate_egress_is_refused_and_model_routes_are_unchanged() {
    let proxy = RunningProxy::start(None).await;
    let (status, body) = call_text(&proxy.socket, connect_request("example.com:443")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("egress is not enabled"), "{body}");
    // Origin-form paths other than the model routes stay refused as before.
    let (status, _, json) = call_json(&proxy.socket, post("/v1/models", &[], "{}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["error"]["type"], "forbidden");
}
