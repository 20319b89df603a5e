//! The route of inbound hooks: `POST /hooks/webhooks/<name>` ([`routes`]).
//!
//! A request is checked in this order, and refused at the first failure with nothing stored:
//! the body at most [`MAX_BODY_BYTES`] (413); an inbound hook of that name (404); a valid
//! signature under its secret (401, [`super::signature`]); a JSON body (400); not seen before
//! (409: the same signature taken already; GitHub's `X-GitHub-Delivery` is not signed, so it
//! does not decide). Then it is pushed to the router as the hook's message and answered 202
//! with the message id once it is durable, and only then is its signature written down; a
//! router failure is a 503 (retryable) or 500, and the request may be sent again.

use super::signature::{self, Signed};
use super::{CHANNEL_TYPE, WebhookChannel};
use crate::db::central::{channel_state, webhooks};
use crate::edge::{InboundEvent, RouteOutcome};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use protocol::Sender;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest request body taken.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Payloads up to this size are shown to the agent pretty-printed; larger ones as sent.
const MAX_PRETTY_BYTES: usize = 32 * 1024;
/// GitHub's event name header (`push`, `workflow_run`, ...).
const GITHUB_EVENT: &str = "x-github-event";
/// Longest delivery id or event name taken from a header.
const MAX_HEADER_CHARS: usize = 200;

/// The inbound hooks' route.
pub fn routes(channel: Arc<WebhookChannel>) -> axum::Router {
    axum::Router::new()
        .route("/hooks/webhooks/{name}", axum::routing::post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(channel)
}

fn refuse(status: StatusCode, error: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": error.into() }))).into_response()
}

/// A header's value when it is short printable text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| {
            !value.is_empty()
                && value.chars().count() <= MAX_HEADER_CHARS
                && !value.chars().any(char::is_control)
        })
}

async fn receive(
    State(channel): State<Arc<WebhookChannel>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(context) = channel.context() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are not ready yet",
        );
    };
    let lookup = name.clone();
    let found = channel
        .parts
        .central
        .call(move |conn| {
            webhooks::check_name(&lookup)?;
            webhooks::find(conn, &lookup)
        })
        .await;
    let hook = match found {
        Ok(Some(found)) if found.hook.direction == webhooks::Direction::Inbound => found,
        Ok(_) | Err(crate::db::DbError::Invalid(_)) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("there is no inbound webhook named {name:?}"),
            );
        }
        Err(e) => {
            tracing::warn!(hook = %name, error = %e, "looking up a webhook failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "looking up the webhook failed",
            );
        }
    };
    let signed = match signature::verify(
        hook.secret.expose_secret().as_bytes(),
        header(&headers, signature::CRABPOT_HEADER),
        header(&headers, signature::GITHUB_HEADER),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::warn!(hook = %name, error = %e, "a request to an inbound webhook was refused");
            return refuse(StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let github_event = header(&headers, GITHUB_EVENT).map(str::to_owned);
    // The signature names the request: a replay carries the same one. GitHub's delivery id is
    // not signed (anyone holding one request could send it again under a new id), so it only
    // names the message. The message id derives from the signature too, so two copies racing
    // past the check below are stored once by the router.
    let (seen_id, platform_message_id) = match &signed {
        Signed::Crabpot { timestamp, tag } => (
            format!("sig:{name}:{tag}"),
            format!("{timestamp}-{}", tag.get(..16).unwrap_or(tag)),
        ),
        Signed::Github { tag } => (
            format!("github:{name}:{tag}"),
            format!("github-{}", tag.get(..16).unwrap_or(tag)),
        ),
    };
    let id = seen_id.clone();
    let seen = channel
        .parts
        .central
        .call(move |conn| channel_state::seen_event(conn, CHANNEL_TYPE, &id))
        .await;
    match seen {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(hook = %name, "a replayed request to an inbound webhook was refused");
            return refuse(
                StatusCode::CONFLICT,
                "this request was taken already (a replay of the same signature)",
            );
        }
        Err(e) => {
            tracing::warn!(hook = %name, error = %e, "reading the webhook's seen requests failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "checking the request failed",
            );
        }
    }
    let event = InboundEvent {
        channel_type: CHANNEL_TYPE.to_owned(),
        platform_id: name.clone(),
        thread_id: None,
        platform_message_id,
        sender: Sender {
            id: format!("{CHANNEL_TYPE}:{name}"),
            name: Some(format!("webhook {name}")),
        },
        text: text(&name, github_event.as_deref(), &payload, &body),
        attachments: Vec::new(),
        is_mention: true,
        is_group: false,
        chat_name: Some(format!("webhook {name}")),
        uploads: Vec::new(),
    };
    match context.push(event).await {
        Ok(outcome) => {
            // Written down only once the message is durable: a crash before this line loses
            // nothing, and the platform's retry is stored once by its message id.
            let recorded = channel
                .parts
                .central
                .call(move |conn| channel_state::first_event(conn, CHANNEL_TYPE, &seen_id))
                .await;
            if let Err(e) = recorded {
                tracing::warn!(hook = %name, error = %e, "recording a webhook request failed; a replay of it is still stored once");
            }
            accepted(&name, &outcome)
        }
        Err(e) => {
            tracing::warn!(hook = %name, error = %e, "a webhook request could not be stored");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            refuse(status, format!("the request could not be stored: {e}"))
        }
    }
}

/// What the agent reads: a line naming the hook (and GitHub's event), then the payload.
fn text(name: &str, github_event: Option<&str>, payload: &Value, body: &[u8]) -> String {
    let first = match github_event {
        Some(event) => format!("webhook {name} received GitHub event {event}:"),
        None => format!("webhook {name} received:"),
    };
    let shown = if body.len() <= MAX_PRETTY_BYTES {
        serde_json::to_string_pretty(payload).ok()
    } else {
        None
    }
    .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    format!("{first}\n{shown}")
}

/// 202 once the message is durable; what became of it in the body.
fn accepted(name: &str, outcome: &RouteOutcome) -> Response {
    let message_id = outcome
        .routed
        .first()
        .map(|routed| routed.message_id.to_string());
    if message_id.is_none() {
        tracing::warn!(hook = %name, dropped = ?outcome.dropped, held = ?outcome.held, "a webhook request reached no agent");
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "message_id": message_id,
            "dropped": outcome.dropped,
            "held": outcome.held,
        })),
    )
        .into_response()
}
