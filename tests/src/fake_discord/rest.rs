//! The fake's REST API under `/api/v10`: `Authorization: Bot <token>` checked on every
//! call (401 otherwise), messages created (JSON or multipart `payload_json` + `files[n]`,
//! `enforce_nonce` honoured), edited, deleted and reacted to, typing, DM channels, and
//! interaction callbacks; the messages route sends `X-RateLimit-*` headers and, when a test
//! armed it, a 429 (`retry_after`, `global`) or an exhausted bucket it enforces.

use super::{FakeMessage, Shared, State, multipart};
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

fn rate_headers(remaining: u32, reset_after: f64) -> [(&'static str, String); 5] {
    [
        ("x-ratelimit-bucket", "fakemessagesbucket".to_owned()),
        ("x-ratelimit-limit", "5".to_owned()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset-after", format!("{reset_after:.3}")),
        ("x-ratelimit-scope", "user".to_owned()),
    ]
}

fn too_many(retry_after: f64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false})),
    )
        .into_response();
    for (name, value) in rate_headers(0, retry_after) {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    if let Ok(value) = format!("{}", retry_after.ceil()).parse() {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// The message payload of a POST: JSON, or multipart `payload_json` + `files[n]`.
/// The uploaded files of a message: (file name, bytes).
type Files = Vec<(String, Vec<u8>)>;

fn read_payload(headers: &HeaderMap, body: &[u8]) -> Option<(Value, Files)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = multipart::boundary(content_type) {
        let parts = multipart::parse(body, &boundary)?;
        let payload = parts
            .iter()
            .find(|part| part.name == "payload_json")
            .and_then(|part| serde_json::from_slice(&part.bytes).ok())?;
        let files = parts
            .into_iter()
            .filter(|part| part.name.starts_with("files["))
            .map(|part| (part.filename.unwrap_or_default(), part.bytes))
            .collect();
        return Some((payload, files));
    }
    Some((serde_json::from_slice(body).ok()?, Vec::new()))
}

pub(super) async fn rest(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let mut state = shared.lock();
    if let Some(file) = path.strip_prefix("/files/") {
        return match state.files.get(file) {
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let Some(route) = path.strip_prefix("/api/v10/") else {
        return error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    };
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bot {}", state.token).as_str());
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let segments: Vec<String> = route.split('/').map(str::to_owned).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["users", "@me"]) => axum::Json(state.bot_json()).into_response(),
        ("GET", ["gateway", "bot"]) => axum::Json(json!({"url": state.gateway_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}))
        .into_response(),
        ("GET", ["channels", id]) => match state.channels.get(*id) {
            Some(channel) => axum::Json(channel.clone()).into_response(),
            // Any other id is a guild text channel.
            None => axum::Json(json!({"id": id, "type": 0, "name": "general"})).into_response(),
        },
        ("POST", ["channels", channel, "messages"]) => create(&mut state, channel, &headers, &body),
        ("PATCH", ["channels", channel, "messages", id]) => {
            let Some(payload) = serde_json::from_slice::<Value>(&body).ok() else {
                return error(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON.");
            };
            let Some(index) = state.messages.iter().position(|m| m.id == *id && m.channel_id == *channel) else {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            };
            let message = &mut state.messages[index];
            if let Some(content) = payload.get("content").and_then(Value::as_str) {
                if content.chars().count() > 2000 {
                    return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
                }
                message.content = content.to_owned();
                message.edits.push(content.to_owned());
            }
            if let Some(components) = payload.get("components") {
                message.components = components.clone();
            }
            let message = message.clone();
            axum::Json(state.message_json(&message)).into_response()
        }
        ("DELETE", ["channels", channel, "messages", id]) => {
            match state.messages.iter_mut().find(|m| m.id == *id && m.channel_id == *channel) {
                Some(message) => {
                    message.deleted = true;
                    StatusCode::NO_CONTENT.into_response()
                }
                None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            }
        }
        ("PUT", ["channels", _, "messages", id, "reactions", emoji, "@me"]) => {
            match state.messages.iter_mut().find(|m| m.id == *id) {
                Some(message) => {
                    message.reactions.push((*emoji).to_owned());
                    StatusCode::NO_CONTENT.into_response()
                }
                None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            }
        }
        ("POST", ["channels", _, "typing"]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["users", "@me", "channels"]) => {
            let Some(recipient) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("recipient_id").and_then(Value::as_str).map(str::to_owned))
            else {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            };
            let id = match state.dms.get(&recipient) {
                Some(id) => id.clone(),
                None => {
                    let id = state.snowflake();
                    state.dms.insert(recipient.clone(), id.clone());
                    id
                }
            };
            axum::Json(json!({"id": id, "type": 1, "last_message_id": null,
                "recipients": [{"id": recipient, "username": "someone"}]}))
            .into_response()
        }
        ("POST", ["interactions", id, _token, "callback"]) => {
            let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
            state.callbacks.push(((*id).to_owned(), payload));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

/// POST /channels/{id}/messages, with the rate limits armed on that channel.
fn create(state: &mut State, channel: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let now = Instant::now();
    if let Some(until) = state.bucket_until.get(channel).copied()
        && now < until
    {
        state.violations.push(format!(
            "POST channels/{channel}/messages {:?} early",
            until - now
        ));
        return too_many((until - now).as_secs_f64());
    }
    if let Some(retry_after) = state.limit_next_post.remove(channel) {
        state.bucket_until.insert(
            channel.to_owned(),
            now + Duration::from_secs_f64(retry_after),
        );
        return too_many(retry_after);
    }
    let Some((payload, files)) = read_payload(headers, body) else {
        return error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let content = payload["content"].as_str().unwrap_or_default().to_owned();
    if content.chars().count() > 2000 {
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    if content.is_empty() && files.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    let nonce = payload["nonce"].as_str().map(str::to_owned);
    if nonce
        .as_ref()
        .is_some_and(|nonce| nonce.chars().count() > 25)
    {
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let enforce = payload["enforce_nonce"].as_bool() == Some(true);
    let existing = state
        .messages
        .iter()
        .find(|m| enforce && nonce.is_some() && m.nonce == nonce && m.channel_id == channel)
        .cloned();
    let message = match existing {
        Some(message) => message,
        None => {
            let message = FakeMessage {
                id: state.snowflake(),
                channel_id: channel.to_owned(),
                content,
                components: payload.get("components").cloned().unwrap_or(json!([])),
                nonce,
                files,
                edits: Vec::new(),
                deleted: false,
                reactions: Vec::new(),
            };
            state.messages.push(message.clone());
            message
        }
    };
    let (remaining, reset_after) = match state.exhaust_next_post.remove(channel) {
        Some(reset_after) => {
            state.bucket_until.insert(
                channel.to_owned(),
                now + Duration::from_secs_f64(reset_after),
            );
            (0, reset_after)
        }
        None => (4, 5.0),
    };
    let mut response = axum::Json(state.message_json(&message)).into_response();
    for (name, value) in rate_headers(remaining, reset_after) {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
