//! The fake's Web API methods, as Slack's reference describes them: `POST /api/<method>`
//! with a Bearer token, JSON or form arguments, `{"ok": ...}` answers; the upload URL of the
//! external upload flow; private file downloads.

use super::{APP_TOKEN, BOT_ID, BOT_USER_ID, PostedMessage, Shared, TEAM_ID, UploadedFile, lock};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

pub(super) fn routes(state: Shared) -> axum::Router {
    axum::Router::new()
        .route("/api/{method}", axum::routing::post(method))
        .route("/upload/{file_id}", axum::routing::post(upload))
        .route(
            "/files-pri/{team_file}/{name}",
            axum::routing::get(private_file),
        )
        .with_state(state)
}

fn ok(mut body: Value) -> Response {
    body["ok"] = Value::Bool(true);
    axum::Json(body).into_response()
}

fn error(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}

/// The arguments of a call: a JSON object, or a form's fields as strings.
fn arguments(headers: &HeaderMap, body: &[u8]) -> Value {
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let mut fields = serde_json::Map::new();
    for pair in body
        .split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
    {
        let mut halves = pair.splitn(2, |byte| *byte == b'=');
        let name = decode(halves.next().unwrap_or_default());
        let value = decode(halves.next().unwrap_or_default());
        fields.insert(name, Value::String(value));
    }
    Value::Object(fields)
}

fn decode(text: &[u8]) -> String {
    let mut bytes = Vec::new();
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

fn text(arguments: &Value, name: &str) -> Option<String> {
    match arguments.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

async fn method(
    State(state): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let wanted = if method == "apps.connections.open" {
        APP_TOKEN.to_owned()
    } else {
        lock(&state).bot_token.clone()
    };
    if token.is_empty() {
        return error("not_authed");
    }
    if token != wanted {
        return error("invalid_auth");
    }
    {
        let mut state = lock(&state);
        if let Some((left, retry_after)) = state.rate_limits.get_mut(&method)
            && *left > 0
        {
            *left -= 1;
            let retry_after = *retry_after;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(http::header::RETRY_AFTER, retry_after.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
        }
    }
    let arguments = arguments(&headers, &body);
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": "https://crab.slack.com/", "team": "Crab", "user": "crabbot",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
        })),
        "apps.connections.open" => ok(json!({"url": lock(&state).socket_url.clone()})),
        "users.info" => users_info(&state, &arguments),
        "chat.postMessage" => post_message(&state, &arguments),
        "chat.update" => update_message(&state, &arguments),
        "chat.delete" => delete_message(&state, &arguments),
        "reactions.add" => match (
            text(&arguments, "channel"),
            text(&arguments, "timestamp"),
            text(&arguments, "name"),
        ) {
            (Some(_), Some(_), Some(_)) => ok(json!({})),
            _ => error("invalid_arguments"),
        },
        "conversations.history" | "conversations.replies" => history(&state, &arguments),
        "conversations.open" => match text(&arguments, "users") {
            Some(user) => ok(json!({"channel": {"id": format!("D{user}")}})),
            None => error("users_list_not_supplied"),
        },
        "files.getUploadURLExternal" => get_upload_url(&state, &arguments),
        "files.completeUploadExternal" => complete_upload(&state, &arguments),
        _ => error("unknown_method"),
    }
}

fn users_info(state: &Shared, arguments: &Value) -> Response {
    let Some(user) = text(arguments, "user") else {
        return error("user_not_found");
    };
    let Some(name) = lock(state).users.get(&user).cloned() else {
        return error("user_not_found");
    };
    ok(json!({"user": {
        "id": user, "name": name.to_lowercase(), "real_name": format!("{name} Real"),
        "profile": {"display_name": name, "real_name": format!("{name} Real")},
    }}))
}

fn post_message(state: &Shared, arguments: &Value) -> Response {
    let (Some(channel), Some(message_text)) = (text(arguments, "channel"), text(arguments, "text"))
    else {
        return error("no_text");
    };
    let mut state = lock(state);
    let ts = state.next_ts();
    let message = PostedMessage {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts: text(arguments, "thread_ts"),
        text: message_text.clone(),
        blocks: arguments.get("blocks").cloned().unwrap_or(Value::Null),
        metadata: arguments.get("metadata").cloned().unwrap_or(Value::Null),
        updates: 0,
        deleted: false,
    };
    state.messages.insert(ts.clone(), message);
    ok(json!({"channel": channel, "ts": ts, "message": {
        "type": "message", "text": message_text, "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts,
    }}))
}

/// The channel's (or the thread's, with `ts`) messages, newest first, with their metadata
/// when `include_all_metadata` is set.
fn history(state: &Shared, arguments: &Value) -> Response {
    let Some(channel) = text(arguments, "channel") else {
        return error("channel_not_found");
    };
    let thread = text(arguments, "ts");
    let with_metadata = text(arguments, "include_all_metadata").as_deref() == Some("true");
    let limit = text(arguments, "limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .unwrap_or(100);
    let state = lock(state);
    let messages: Vec<Value> = state
        .messages
        .values()
        .rev()
        .filter(|message| message.channel == channel && !message.deleted)
        .filter(|message| {
            thread.is_none() || message.thread_ts == thread || Some(&message.ts) == thread.as_ref()
        })
        .take(limit)
        .map(|message| {
            let mut shown = json!({"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                "ts": message.ts, "text": message.text});
            if with_metadata && !message.metadata.is_null() {
                shown["metadata"] = message.metadata.clone();
            }
            shown
        })
        .collect();
    ok(json!({"messages": messages, "has_more": false}))
}

fn update_message(state: &Shared, arguments: &Value) -> Response {
    let (Some(channel), Some(ts)) = (text(arguments, "channel"), text(arguments, "ts")) else {
        return error("invalid_arguments");
    };
    let mut state = lock(state);
    let Some(message) = state
        .messages
        .get_mut(&ts)
        .filter(|message| message.channel == channel && !message.deleted)
    else {
        return error("message_not_found");
    };
    if let Some(new_text) = text(arguments, "text") {
        message.text = new_text;
    }
    if let Some(blocks) = arguments.get("blocks") {
        message.blocks = blocks.clone();
    }
    message.updates += 1;
    ok(json!({"channel": channel, "ts": ts, "text": message.text.clone()}))
}

fn delete_message(state: &Shared, arguments: &Value) -> Response {
    let (Some(channel), Some(ts)) = (text(arguments, "channel"), text(arguments, "ts")) else {
        return error("invalid_arguments");
    };
    let mut state = lock(state);
    match state
        .messages
        .get_mut(&ts)
        .filter(|message| message.channel == channel && !message.deleted)
    {
        Some(message) => {
            message.deleted = true;
            ok(json!({"channel": channel, "ts": ts}))
        }
        None => error("message_not_found"),
    }
}

fn get_upload_url(state: &Shared, arguments: &Value) -> Response {
    let (Some(filename), Some(length)) = (
        text(arguments, "filename"),
        text(arguments, "length").and_then(|length| length.parse::<u64>().ok()),
    ) else {
        return error("invalid_arguments");
    };
    let mut state = lock(state);
    let id = state.next_file_id();
    state.files.insert(
        id.clone(),
        UploadedFile {
            id: id.clone(),
            filename,
            length,
            bytes: None,
            shared_in: None,
            thread_ts: None,
            initial_comment: None,
        },
    );
    let upload_url = format!("{}/upload/{id}", state.base_url);
    ok(json!({"upload_url": upload_url, "file_id": id}))
}

fn complete_upload(state: &Shared, arguments: &Value) -> Response {
    // `files` is a JSON array (JSON body) or a JSON string of one (form body).
    let files = match arguments.get("files") {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    };
    let Some(files) = files.as_array().filter(|files| !files.is_empty()) else {
        return error("invalid_arguments");
    };
    let mut state = lock(state);
    let mut done = Vec::new();
    for file in files {
        let Some(id) = file.get("id").and_then(Value::as_str) else {
            return error("invalid_arguments");
        };
        let Some(uploaded) = state.files.get_mut(id) else {
            return error("file_not_found");
        };
        if uploaded.bytes.is_none() {
            return error("file_upload_not_completed");
        }
        uploaded.shared_in = text(arguments, "channel_id");
        uploaded.thread_ts = text(arguments, "thread_ts");
        uploaded.initial_comment = text(arguments, "initial_comment");
        done.push(json!({"id": id, "title": file.get("title").cloned().unwrap_or(Value::Null)}));
    }
    ok(json!({"files": done}))
}

async fn upload(State(state): State<Shared>, Path(file_id): Path<String>, body: Bytes) -> Response {
    let mut state = lock(&state);
    let Some(file) = state.files.get_mut(&file_id) else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    if body.len() as u64 != file.length {
        return (
            StatusCode::BAD_REQUEST,
            "the length differs from the one reserved",
        )
            .into_response();
    }
    file.bytes = Some(body.clone());
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}

async fn private_file(
    State(state): State<Shared>,
    Path((team_file, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = lock(&state);
    let authorized = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bearer {}", state.bot_token).as_str());
    if !authorized {
        return (StatusCode::FORBIDDEN, "login required").into_response();
    }
    let file_id = team_file
        .strip_prefix(&format!("{TEAM_ID}-"))
        .unwrap_or(&team_file);
    match state.private_files.get(file_id) {
        Some(bytes) => bytes.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
