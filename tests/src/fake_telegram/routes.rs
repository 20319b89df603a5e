//! The fake's HTTP side: `/bot<token>/<method>` and `/file/bot<token>/<file_path>`, the
//! parameters of a call (query, JSON, urlencoded form or multipart) and the methods.

use super::multipart;
use super::{BOT_ID, BOT_USERNAME, Sent, Shared, unix_now};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The longest `getUpdates` wait the fake grants.
const MAX_POLL: Duration = Duration::from_secs(30);

pub(super) fn routes(shared: Shared) -> axum::Router {
    axum::Router::new()
        .route("/{bot}/{method}", any(method))
        .route("/file/{bot}/{*path}", get(file))
        .with_state(shared)
}

fn ok(result: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": true, "result": result})),
    )
        .into_response()
}

fn error(status: StatusCode, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error_code": status.as_u16(), "description": description})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// A call's parameters and the files it uploaded.
struct Call {
    params: Map<String, Value>,
    files: Vec<multipart::Part>,
}

/// A form field's text as a JSON value (numbers and JSON objects as Telegram reads them).
fn field(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|value| value.is_number() || value.is_object() || value.is_array())
        .unwrap_or_else(|| json!(text))
}

fn read_call(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Option<Call> {
    let mut params = Map::new();
    let mut files = Vec::new();
    let pairs = |text: &str, params: &mut Map<String, Value>| {
        for (key, value) in url_pairs(text) {
            params.insert(key, field(&value));
        }
    };
    if let Some(query) = query {
        pairs(&query, &mut params);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if body.is_empty() {
        return Some(Call { params, files });
    }
    if content_type.starts_with("application/json") {
        let Value::Object(object) = serde_json::from_slice::<Value>(body).ok()? else {
            return None;
        };
        params.extend(object);
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        pairs(std::str::from_utf8(body).ok()?, &mut params);
    } else if let Some(boundary) = multipart::boundary(&content_type) {
        for part in multipart::parse(body, &boundary)? {
            if part.file_name.is_some() {
                files.push(part);
            } else {
                let text = String::from_utf8_lossy(&part.data).into_owned();
                params.insert(part.name, field(&text));
            }
        }
    } else {
        return None;
    }
    Some(Call { params, files })
}

/// `a=1&b=x%20y` as pairs.
fn url_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn int(params: &Map<String, Value>, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

async fn file(State(shared): State<Shared>, Path((bot, path)): Path<(String, String)>) -> Response {
    let state = shared.state();
    if bot != format!("bot{}", state.token) {
        return unauthorized();
    }
    match state
        .files
        .values()
        .find(|(file_path, _)| *file_path == path)
    {
        Some((_, bytes)) => (StatusCode::OK, bytes.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn method(
    State(shared): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot != format!("bot{}", shared.state().token) {
        return unauthorized();
    }
    let Some(call) = read_call(query, &headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: unreadable parameters",
        );
    };
    // Method names are case-insensitive in the Bot API.
    let name = method.to_ascii_lowercase();
    {
        let mut state = shared.state();
        let limited = state
            .rate_limited
            .iter_mut()
            .find(|(limited, (left, _))| limited.to_ascii_lowercase() == name && *left > 0);
        if let Some((_, (left, retry_after))) = limited {
            *left -= 1;
            let retry_after = *retry_after;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {retry_after}"),
                    "parameters": {"retry_after": retry_after},
                })),
            )
                .into_response();
        }
    }
    match name.as_str() {
        "getme" => ok(bot_user()),
        "getupdates" => get_updates(&shared, &call.params).await,
        "setwebhook"
        | "deletewebhook"
        | "sendchataction"
        | "setmessagereaction"
        | "answercallbackquery" => ok(json!(true)),
        "deletemessage" => delete(&shared, &call.params),
        "sendmessage" => send(&shared, call, "sendMessage"),
        "senddocument" => send(&shared, call, "sendDocument"),
        "editmessagetext" | "editmessagereplymarkup" => edit(&shared, &call.params, &name),
        "getfile" => get_file(&shared, &call.params),
        _ => error(StatusCode::NOT_FOUND, "Not Found: method not found"),
    }
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Crab", "username": BOT_USERNAME})
}

async fn get_updates(shared: &Shared, params: &Map<String, Value>) -> Response {
    let offset = int(params, "offset");
    let limit = int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout =
        Duration::from_secs(int(params, "timeout").unwrap_or(0).max(0) as u64).min(MAX_POLL);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut state = shared.state();
            if let Some(offset) = offset {
                // An offset confirms every update before it: they are never sent again.
                state
                    .updates
                    .retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            }
            if !state.updates.is_empty() {
                let batch: Vec<Value> = state.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send(shared: &Shared, call: Call, method: &str) -> Response {
    let params = call.params;
    let Some(chat_id) = int(&params, "chat_id") else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty");
    };
    let document = call
        .files
        .into_iter()
        .find(|part| part.name == "document")
        .map(|part| (part.file_name.unwrap_or_default(), part.data));
    if method == "sendDocument" && document.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: there is no document in the request",
        );
    }
    let text_key = if method == "sendDocument" {
        "caption"
    } else {
        "text"
    };
    let text = params
        .get(text_key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if method == "sendMessage" && text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
        );
    }
    let message = {
        let mut state = shared.state();
        let message_id = state.next_message_id;
        state.next_message_id += 1;
        let chat = state
            .chats
            .get(&chat_id)
            .map(super::TgChat::json)
            .unwrap_or_else(|| json!({"id": chat_id, "type": "private"}));
        let mut message = json!({
            "message_id": message_id,
            "from": bot_user(),
            "chat": chat,
            "date": unix_now(),
        });
        message[text_key] = json!(text);
        if let Some(thread) = int(&params, "message_thread_id") {
            message["message_thread_id"] = json!(thread);
        }
        if let Some(markup) = params.get("reply_markup") {
            message["reply_markup"] = markup.clone();
        }
        if let Some((name, bytes)) = &document {
            message["document"] = json!({"file_id": format!("sent-{message_id}"), "file_unique_id": format!("s{message_id}"), "file_name": name, "file_size": bytes.len()});
        }
        state
            .messages
            .insert((chat_id, message_id), message.clone());
        state.sent.push(Sent {
            chat_id,
            message_id,
            method: method.to_owned(),
            text,
            parse_mode: params
                .get("parse_mode")
                .and_then(Value::as_str)
                .map(str::to_owned),
            reply_markup: params.get("reply_markup").cloned(),
            document,
            edits: 0,
            deleted: false,
        });
        message
    };
    shared.changed.notify_waiters();
    ok(message)
}

fn edit(shared: &Shared, params: &Map<String, Value>, name: &str) -> Response {
    let (Some(chat_id), Some(message_id)) = (int(params, "chat_id"), int(params, "message_id"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message identifier is not specified",
        );
    };
    let message = {
        let mut state = shared.state();
        let Some(sent) = state
            .sent
            .iter_mut()
            .find(|sent| sent.chat_id == chat_id && sent.message_id == message_id)
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request: message to edit not found",
            );
        };
        if name == "editmessagetext" {
            let text = params
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if text == sent.text && params.get("reply_markup") == sent.reply_markup.as_ref() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                );
            }
            sent.text = text.to_owned();
            sent.edits += 1;
        }
        sent.reply_markup = params.get("reply_markup").cloned();
        let sent = sent.clone();
        let message = state
            .messages
            .entry((chat_id, message_id))
            .or_insert_with(|| json!({}));
        message["text"] = json!(sent.text);
        message["reply_markup"] = sent.reply_markup.clone().unwrap_or(Value::Null);
        message.clone()
    };
    shared.changed.notify_waiters();
    ok(message)
}

fn delete(shared: &Shared, params: &Map<String, Value>) -> Response {
    let (Some(chat_id), Some(message_id)) = (int(params, "chat_id"), int(params, "message_id"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message identifier is not specified",
        );
    };
    let found = {
        let mut state = shared.state();
        state.messages.remove(&(chat_id, message_id));
        state
            .sent
            .iter_mut()
            .find(|sent| sent.chat_id == chat_id && sent.message_id == message_id && !sent.deleted)
            .map(|sent| sent.deleted = true)
            .is_some()
    };
    shared.changed.notify_waiters();
    if found {
        ok(json!(true))
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message to delete not found",
        )
    }
}

fn get_file(shared: &Shared, params: &Map<String, Value>) -> Response {
    let Some(file_id) = params.get("file_id").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: file_id is empty");
    };
    let state = shared.state();
    match state.files.get(file_id) {
        Some((path, bytes)) => ok(json!({
            "file_id": file_id,
            "file_unique_id": format!("u-{file_id}"),
            "file_size": bytes.len(),
            "file_path": path,
        })),
        None => error(StatusCode::BAD_REQUEST, "Bad Request: invalid file_id"),
    }
}
