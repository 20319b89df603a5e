//! The webhook adapter over real loopback HTTP, with a real central DB and a fake router:
//! what `POST /hooks/webhooks/<name>` takes and refuses (size, unknown hook, signatures,
//! JSON, replays, GitHub's delivery ids), and how an outbound hook's answers become
//! delivery's errors (2xx, 429, 5xx, 4xx), signed and keyed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::signature::{sign, sign_github};
use super::*;
use crate::config::ApiKey;
use crate::db::DbThread;
use crate::db::central::webhooks;
use crate::edge::{
    AnswerError, Answered, InboundEvent, InboundSink, QuestionAnswer, RouteError, RouteOutcome,
    RoutedMessage,
};
use crate::session::SessionRef;
use axum::http::StatusCode;
use protocol::{AgentGroupId, MessageId, Seq, SessionId};
use std::time::Duration;

const SECRET: &str = "cpw_test-secret";

/// Routes every event to one row, and records it.
#[derive(Default)]
struct FakeRouter {
    pushed: Mutex<Vec<InboundEvent>>,
}

impl InboundSink for FakeRouter {
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>> {
        self.pushed.lock().unwrap().push(event);
        Box::pin(async {
            Ok(RouteOutcome {
                routed: vec![RoutedMessage {
                    session: SessionRef {
                        id: SessionId::new("s-1"),
                        agent_group: AgentGroupId::new("main"),
                        group_folder: "main".into(),
                    },
                    message_id: MessageId::new("in-1"),
                    seq: Seq(2),
                    trigger: true,
                }],
                ..RouteOutcome::default()
            })
        })
    }

    fn answer(&self, _answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>> {
        Box::pin(async { Err(AnswerError::NoQuestion("no open question".into())) })
    }
}

struct Running {
    channel: Arc<WebhookChannel>,
    router: Arc<FakeRouter>,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _folder: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The adapter with an inbound hook `ci` and the outbound hook `out` (to `outbound_url`),
/// its routes served on a loopback port.
async fn start(outbound_url: &str) -> Running {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("crabpot.db");
    let central =
        Arc::new(DbThread::spawn("central", move || crate::db::central::open(&path)).unwrap());
    let url = outbound_url.to_owned();
    central
        .call(move |conn| {
            let group = crate::db::central::ensure_agent_group(conn, "main", "Main")?.id;
            webhooks::create_inbound(conn, "ci", &group, &ApiKey::new(SECRET))?;
            webhooks::create_outbound(conn, "out", &url, &ApiKey::new(SECRET))?;
            Ok(())
        })
        .await
        .unwrap();
    let channel = WebhookChannel::new(PlatformParts {
        central,
        uploads_dir: folder.path().join("uploads"),
        web_base_url: Arc::default(),
    });
    let router = Arc::new(FakeRouter::default());
    let (arrivals, _) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let context = ChannelContext::new(router.clone(), arrivals);
    tokio::spawn(Arc::clone(&channel).start(context, shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = channel.hooks();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    // The context is set as the adapter starts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while channel.context().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the adapter never started"
        );
        tokio::task::yield_now().await;
    }
    Running {
        channel,
        router,
        base,
        http: reqwest::Client::new(),
        shutdown,
        _folder: folder,
    }
}

impl Running {
    async fn post(&self, hook: &str, headers: &[(&str, String)], body: &str) -> StatusCode {
        let mut request = self
            .http
            .post(format!("{}/hooks/webhooks/{hook}", self.base))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let status = request.send().await.unwrap().status();
        StatusCode::from_u16(status.as_u16()).unwrap()
    }

    fn pushed(&self) -> Vec<InboundEvent> {
        self.router.pushed.lock().unwrap().clone()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn crabpot(body: &str, at: i64) -> Vec<(&'static str, String)> {
    vec![(
        "X-Crabpot-Signature",
        sign(SECRET.as_bytes(), at, body.as_bytes()),
    )]
}

#[tokio::test]
async fn signed_json_is_taken_once_and_everything_else_is_refused() {
    let running = start("http://127.0.0.1:9/unused").await;
    let body = r#"{"alert":"disk full","host":"db-1"}"#;

    // Refused, nothing pushed: unsigned, forged, stale, unknown hooks, not JSON, too big.
    assert_eq!(
        running.post("ci", &[], body).await,
        StatusCode::UNAUTHORIZED
    );
    let forged = vec![(
        "X-Crabpot-Signature",
        sign(b"another secret", now(), body.as_bytes()),
    )];
    assert_eq!(
        running.post("ci", &forged, body).await,
        StatusCode::UNAUTHORIZED
    );
    let stale = crabpot(body, now() - 600);
    assert_eq!(
        running.post("ci", &stale, body).await,
        StatusCode::UNAUTHORIZED
    );
    let future = crabpot(body, now() + 600);
    assert_eq!(
        running.post("ci", &future, body).await,
        StatusCode::UNAUTHORIZED
    );
    let bad_hex = vec![("X-Crabpot-Signature", format!("t={},v1=xyz", now()))];
    assert_eq!(
        running.post("ci", &bad_hex, body).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        running.post("nope", &crabpot(body, now()), body).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        running.post("out", &crabpot(body, now()), body).await,
        StatusCode::NOT_FOUND,
        "an outbound hook takes no requests"
    );
    assert_eq!(
        running.post("..", &crabpot(body, now()), body).await,
        StatusCode::NOT_FOUND
    );
    let text = "not json";
    assert_eq!(
        running.post("ci", &crabpot(text, now()), text).await,
        StatusCode::BAD_REQUEST
    );
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(inbound::MAX_BODY_BYTES));
    assert_eq!(
        running.post("ci", &crabpot(&big, now()), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(running.pushed().is_empty(), "{:?}", running.pushed());

    // Taken: the hook's message, from the hook itself, naming it.
    let signed = crabpot(body, now());
    assert_eq!(
        running.post("ci", &signed, body).await,
        StatusCode::ACCEPTED
    );
    let pushed = running.pushed();
    assert_eq!(pushed.len(), 1);
    let event = &pushed[0];
    assert_eq!(
        (event.channel_type.as_str(), event.platform_id.as_str()),
        ("webhook", "ci")
    );
    assert_eq!(event.sender.id, "webhook:ci");
    assert!(event.is_mention && !event.is_group);
    assert!(
        event.text.starts_with("webhook ci received:\n"),
        "{}",
        event.text
    );
    assert!(
        event.text.contains(r#""alert": "disk full""#),
        "{}",
        event.text
    );

    // The same request again is a replay.
    assert_eq!(
        running.post("ci", &signed, body).await,
        StatusCode::CONFLICT
    );
    assert_eq!(running.pushed().len(), 1);

    // GitHub's header, deduplicated by its signature (its delivery id is not signed).
    let github = vec![
        (
            "X-Hub-Signature-256",
            sign_github(SECRET.as_bytes(), body.as_bytes()),
        ),
        ("X-GitHub-Event", "workflow_run".to_owned()),
        ("X-GitHub-Delivery", "d-1".to_owned()),
    ];
    assert_eq!(
        running.post("ci", &github, body).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        running.post("ci", &github, body).await,
        StatusCode::CONFLICT
    );
    // The same signed body under another delivery id, or none, is the same request.
    let mut renamed = github.clone();
    renamed[2].1 = "d-2".to_owned();
    assert_eq!(
        running.post("ci", &renamed, body).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        running.post("ci", &github[..2], body).await,
        StatusCode::CONFLICT
    );
    let pushed = running.pushed();
    assert_eq!(pushed.len(), 2);
    assert!(
        pushed[1]
            .text
            .starts_with("webhook ci received GitHub event workflow_run:"),
        "{}",
        pushed[1].text
    );
    // Named by its signature, not by the unsigned delivery id.
    let tag = &github[0].1["sha256=".len()..];
    assert_eq!(
        pushed[1].platform_message_id,
        format!("github-{}", &tag[..16])
    );
    let wrong = vec![(
        "X-Hub-Signature-256",
        sign_github(b"another secret", body.as_bytes()),
    )];
    assert_eq!(
        running.post("ci", &wrong, body).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(running.pushed().len(), 2);
}

/// A receiver that answers each POST with the next status of its script (the last one
/// after that), with `Retry-After: 2` on a 429, and records each request.
async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
    let seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let recorded = Arc::clone(&recorded);
            let script = script.clone();
            async move {
                let mut recorded = recorded.lock().unwrap();
                let status = script
                    .get(recorded.len())
                    .or(script.last())
                    .copied()
                    .unwrap_or(200);
                recorded.push((headers, body));
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("retry-after", "2")],
                    "answer",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn outbound_answers_become_delivery_errors_and_requests_are_signed() {
    let (url, seen) = receiver(vec![500, 429, 404, 200]).await;
    let running = start(&url).await;
    let to = ChatAddress {
        channel_type: "webhook".into(),
        platform_id: "out".into(),
        thread_id: None,
    };
    let message = OutgoingMessage {
        id: MessageId::new("out-7"),
        text: "build **failed**".into(),
        ..OutgoingMessage::default()
    };
    let channel = &running.channel;
    assert!(matches!(
        channel.deliver(&to, &message).await,
        Err(ChannelError::Unavailable(why)) if why.contains("500")
    ));
    assert_eq!(
        channel.deliver(&to, &message).await,
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_secs(2)
        })
    );
    assert!(matches!(
        channel.deliver(&to, &message).await,
        Err(ChannelError::Rejected(why)) if why.contains("404")
    ));
    assert_eq!(channel.deliver(&to, &message).await.unwrap(), "out-7");
    let second_piece = OutgoingMessage {
        piece: 1,
        ..message.clone()
    };
    assert_eq!(
        channel.deliver(&to, &second_piece).await.unwrap(),
        "out-7-1"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    for (index, (headers, body)) in seen.iter().enumerate() {
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        let key = if index == 4 { "out-7-1" } else { "out-7" };
        assert_eq!(
            header("x-crabpot-delivery"),
            key,
            "the same key on every retry"
        );
        assert!(
            super::signature::verify(
                SECRET.as_bytes(),
                Some(&header("x-crabpot-signature")),
                None,
                body.as_bytes(),
                now()
            )
            .is_ok(),
            "signed: {body}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["hook"], "out");
        assert_eq!(json["id"], key);
        assert_eq!(json["text"], "build **failed**");
    }
    // An inbound hook takes no messages; an unknown one is gone.
    let inbound = ChatAddress {
        platform_id: "ci".into(),
        ..to.clone()
    };
    assert!(matches!(
        channel.deliver(&inbound, &message).await,
        Err(ChannelError::Rejected(_))
    ));
    let gone = ChatAddress {
        platform_id: "gone".into(),
        ..to
    };
    assert!(matches!(
        channel.deliver(&gone, &message).await,
        Err(ChannelError::Rejected(_))
    ));
}
