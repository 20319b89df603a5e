//! What Slack sends to an app, built as Slack's reference shows it: the Events API envelope
//! ([`event_callback`]) of a `message` ([`message_event`]) or `app_mention`, the
//! `block_actions` payload of a button press ([`block_actions`]), signed as Slack signs
//! ([`sign`]) and posted to the host's hooks ([`post_signed`]).

use super::{BOT_USER_ID, SIGNING_SECRET, TEAM_ID};
use crate::http_client::{HttpResponse, send_tcp};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

/// `X-Slack-Signature` of `body` at `timestamp`: `v0=` + hex HMAC-SHA256 of
/// `v0:<timestamp>:<body>` under `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &base);
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("v0={hex}")
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

/// A person's message event. `channel_type` is `im` for a direct chat, `channel` else.
pub fn message_event(channel: &str, user: &str, text: &str, ts: &str) -> Value {
    let channel_type = if channel.starts_with('D') {
        "im"
    } else {
        "channel"
    };
    json!({
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
        "team": TEAM_ID,
    })
}

/// The `app_mention` of the same message (Slack sends both when the bot is named).
pub fn app_mention_event(channel: &str, user: &str, text: &str, ts: &str) -> Value {
    json!({
        "type": "app_mention",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "team": TEAM_ID,
    })
}

/// The Events API envelope of `event`.
pub fn event_callback(event_id: &str, event: Value) -> Value {
    json!({
        "token": "XXYYZZ",
        "team_id": TEAM_ID,
        "api_app_id": "A0CRAB",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now(),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": true}],
    })
}

/// The `block_actions` payload of `user` pressing the button with `value` and `label` on
/// message `message_ts` (text `message_text`) in `channel`.
pub fn block_actions(
    channel: &str,
    user: &str,
    message_ts: &str,
    message_text: &str,
    label: &str,
    value: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": TEAM_ID},
        "api_app_id": "A0CRAB",
        "token": "XXYYZZ",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": {"id": TEAM_ID, "domain": "crab"},
        "channel": {"id": channel, "name": "crab-chat"},
        "message": {"type": "message", "user": BOT_USER_ID, "ts": message_ts, "text": message_text},
        "response_url": "https://hooks.slack.com/actions/T0CRAB/1/xyz",
        "actions": [{
            "action_id": "crabpot-0",
            "block_id": "crabpot-actions-0",
            "text": {"type": "plain_text", "text": label, "emoji": true},
            "value": value,
            "type": "button",
            "action_ts": format!("{}.000100", now()),
        }],
    })
}

/// How one request to the host is signed.
#[derive(Clone, Debug)]
pub struct Signing {
    pub secret: String,
    /// The timestamp header (seconds); `None` = now.
    pub timestamp: Option<i64>,
    /// `X-Slack-Retry-Num`, for a retried event.
    pub retry: Option<u32>,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            secret: SIGNING_SECRET.to_owned(),
            timestamp: None,
            retry: None,
        }
    }
}

/// Posts `body` (with `content_type`) to `path` on the host at `web_url`, signed.
pub async fn post_signed(
    web_url: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    signing: &Signing,
) -> anyhow::Result<HttpResponse> {
    let addr: std::net::SocketAddr = web_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let timestamp = signing.timestamp.unwrap_or_else(now).to_string();
    let signature = sign(&signing.secret, &timestamp, &body);
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, content_type)
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature);
    if let Some(retry) = signing.retry {
        request = request
            .header("x-slack-retry-num", retry.to_string())
            .header("x-slack-retry-reason", "http_timeout");
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
    send_tcp(addr, request).await
}

/// Posts an Events API body to `/hooks/slack/events`.
pub async fn post_event(
    web_url: &str,
    body: &Value,
    signing: &Signing,
) -> anyhow::Result<HttpResponse> {
    post_signed(
        web_url,
        "/hooks/slack/events",
        "application/json",
        body.to_string().into_bytes(),
        signing,
    )
    .await
}

/// Posts a `block_actions` payload to `/hooks/slack/interactivity` as Slack does
/// (`application/x-www-form-urlencoded`, `payload=<json>`).
pub async fn post_interaction(
    web_url: &str,
    payload: &Value,
    signing: &Signing,
) -> anyhow::Result<HttpResponse> {
    let body = format!("payload={}", form_encode(&payload.to_string()));
    post_signed(
        web_url,
        "/hooks/slack/interactivity",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
        signing,
    )
    .await
}

/// Percent-encodes `text` for a form value.
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                char::from(byte).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
