//! The routes Slack posts to when it is not in Socket Mode: the Events API at
//! `POST /hooks/slack/events` and interactivity (button presses) at
//! `POST /hooks/slack/interactivity`. Every request is checked against the signing secret
//! first ([`super::signature`]); an unsigned, forged or stale one is answered 401 and read
//! no further. The answer comes once the event is durable: 200, or 500 so Slack retries.

use super::SlackChannel;
use super::events::{Envelope, envelope};
use super::signature;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest request body taken (Slack's events are a few KB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The hooks of `channel`, verified with its signing secret.
pub fn routes(channel: Arc<SlackChannel>) -> axum::Router {
    axum::Router::new()
        .route("/hooks/slack/events", axum::routing::post(events))
        .route(
            "/hooks/slack/interactivity",
            axum::routing::post(interactivity),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(channel)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `Err` with the answer when the request is not signed by Slack.
#[expect(clippy::result_large_err, reason = "the error is the response itself")]
fn verified(channel: &SlackChannel, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let Some(secret) = channel.signing_secret() else {
        return Err((StatusCode::NOT_FOUND, "slack events are not enabled").into_response());
    };
    signature::verify(
        secret.as_bytes(),
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "a request to /hooks/slack was refused");
        (StatusCode::UNAUTHORIZED, e.to_string()).into_response()
    })
}

async fn events(
    State(channel): State<Arc<SlackChannel>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&channel, &headers, &body) {
        return refused;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    match envelope(&body) {
        Envelope::UrlVerification { challenge } => {
            axum::Json(json!({ "challenge": challenge })).into_response()
        }
        Envelope::Callback { event_id, event } => {
            if let Some(retry) = header(&headers, "x-slack-retry-num") {
                tracing::debug!(event_id, retry, "slack sent an event again");
            }
            match channel.take_event(&event_id, &event).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => {
                    tracing::warn!(event_id, error = %e, "a slack event was not taken; Slack will retry");
                    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                }
            }
        }
        Envelope::Other => StatusCode::OK.into_response(),
    }
}

async fn interactivity(
    State(channel): State<Arc<SlackChannel>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&channel, &headers, &body) {
        return refused;
    }
    let Some(payload) = form_pairs(&body)
        .into_iter()
        .find_map(|(name, value)| (name == "payload").then_some(value))
    else {
        return (StatusCode::BAD_REQUEST, "the body has no payload field").into_response();
    };
    let Ok(payload) = serde_json::from_str::<Value>(&payload) else {
        return (StatusCode::BAD_REQUEST, "the payload is not JSON").into_response();
    };
    match channel.take_press(&payload).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a slack button press was not taken");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |byte| *byte == b'=');
            let name = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut index = 0;
    while let Some(&byte) = text.get(index) {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = text
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                match hex {
                    Some(value) => {
                        bytes.push(value);
                        index += 2;
                    }
                    None => bytes.push(b'%'),
                }
            }
            other => bytes.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
