//! The web chat's JSON and Server-Sent Events API, under `/api/chat/`, for the browser (a
//! session cookie, with `X-CSRF-Token` on every call that changes something) or a script (an
//! API token). Every route needs a [`Caller`], and a conversation is only ever its owner's:
//! anyone else gets 404, as for one that does not exist.
//!
//! - `GET /api/chat/groups`: the agent groups the caller may talk to.
//! - `GET /api/chat/conversations`, `POST /api/chat/conversations` `{group, title?}` (201).
//! - `GET /api/chat/conversations/{id}`: the conversation.
//! - `GET /api/chat/conversations/{id}/messages`: its messages as they stand (edits applied,
//!   deletions gone) and `last_event_id`, to open the event stream after.
//! - `POST /api/chat/conversations/{id}/messages` `{text}`: sends a message; `/stop` ends
//!   the turn in flight (`POST .../stop` does the same).
//! - `POST /api/chat/conversations/{id}/uploads?name=NAME`, the file as the body: stages an
//!   upload; `POST .../messages` `{text, uploads: [upload_id]}` sends it into the session's
//!   inbox with the message.
//! - `POST /api/chat/conversations/{id}/answers` `{question_id, answer}`: answers a question
//!   (an option's number or label, or free text).
//! - `GET /api/chat/conversations/{id}/events`: Server-Sent Events, `event:` the type,
//!   `data:` the JSON of [`crate::channels::web::ConversationEvent`], and `id:` the event id
//!   for durable events; resumes after `Last-Event-ID` (or `?after=`), so a reconnecting
//!   browser gets every durable event once. Drafts and typing carry no id.
//!
//! - `GET /api/chat/conversations/{id}/files/{event_id}/{index}`: file `index` of the
//!   message stored as event `event_id` (its `files` lists the names), always as a download
//!   (`Content-Disposition: attachment`, `nosniff`, a sandboxing CSP), so a file the agent
//!   made never runs as a page of this origin.
//!
//! Errors are `{"kind", "error"}` with the status, like the authentication's.

use super::WebState;
use super::auth::Caller;
use crate::channels::web::{
    ConversationEvent, MAX_MESSAGE_BYTES, Posted, WebChannel, WebChatError, events::fold_messages,
};
use crate::db::central::web_chats::WebConversation;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::AgentGroupId;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body of this API.
const MAX_BODY_BYTES: usize = MAX_MESSAGE_BYTES + 64 * 1024;

pub fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route("/api/chat/groups", get(groups))
        .route(
            "/api/chat/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route("/api/chat/conversations/{id}", get(show_conversation))
        .route(
            "/api/chat/conversations/{id}/messages",
            get(list_messages).post(post_message),
        )
        .route(
            "/api/chat/conversations/{id}/uploads",
            post(upload).layer(DefaultBodyLimit::max(
                usize::try_from(crate::channels::web::uploads::MAX_UPLOAD_BYTES)
                    .unwrap_or(usize::MAX),
            )),
        )
        .route("/api/chat/conversations/{id}/answers", post(post_answer))
        .route("/api/chat/conversations/{id}/stop", post(stop_turn))
        .route("/api/chat/conversations/{id}/events", get(events))
        .route(
            "/api/chat/conversations/{id}/files/{event_id}/{index}",
            get(download),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// An error answer: `{"kind", "error"}`.
#[derive(Debug)]
pub struct ChatApiError {
    status: StatusCode,
    kind: &'static str,
    error: String,
}

impl ChatApiError {
    fn invalid(error: impl Into<String>) -> Self {
        ChatApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid",
            error: error.into(),
        }
    }
}

impl IntoResponse for ChatApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "kind": self.kind, "error": self.error });
        (self.status, Json(body)).into_response()
    }
}

impl From<WebChatError> for ChatApiError {
    fn from(error: WebChatError) -> Self {
        let (status, kind) = match &error {
            WebChatError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            WebChatError::Forbidden(_) => (StatusCode::FORBIDDEN, "refused"),
            WebChatError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            WebChatError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            WebChatError::NotRouted(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_routed"),
            WebChatError::Answer(crate::edge::AnswerError::NoQuestion(_))
            | WebChatError::Answer(crate::edge::AnswerError::AlreadyAnswered(_))
            | WebChatError::Answer(crate::edge::AnswerError::Empty) => {
                (StatusCode::CONFLICT, "no_question")
            }
            WebChatError::NotRunning => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            WebChatError::Db(_)
            | WebChatError::Route(_)
            | WebChatError::Answer(crate::edge::AnswerError::Db(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        ChatApiError {
            status,
            kind,
            error: error.to_string(),
        }
    }
}

type ApiResult<T> = Result<T, ChatApiError>;

/// A JSON body, read as hostile input.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<T> {
    let body = body.map_err(|e| {
        ChatApiError::invalid(format!(
            "the request body could not be read (at most {MAX_BODY_BYTES} bytes): {e}"
        ))
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ChatApiError::invalid(format!("the request body is not valid: {e}")))
}

async fn groups(
    State(state): State<WebState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let groups = state.web.usable_groups(&caller.user_id).await?;
    Ok(Json(serde_json::json!({ "groups": groups })))
}

async fn list_conversations(
    State(state): State<WebState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let conversations = state.web.conversations(&caller.user_id).await?;
    Ok(Json(serde_json::json!({ "conversations": conversations })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConversation {
    group: String,
    #[serde(default)]
    title: Option<String>,
}

async fn create_conversation(
    State(state): State<WebState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let request: CreateConversation = parse(body)?;
    let conversation = state
        .web
        .create_conversation(
            &caller.user_id,
            &AgentGroupId::new(request.group),
            request.title.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(conversation)).into_response())
}

async fn owned(web: &WebChannel, caller: &Caller, id: &str) -> ApiResult<WebConversation> {
    Ok(web.owned_conversation(&caller.user_id, id).await?)
}

async fn show_conversation(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WebConversation>> {
    Ok(Json(owned(&state.web, &caller, &id).await?))
}

async fn list_messages(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let events = state.web.all_events(&conversation.id).await;
    let last_event_id = events.last().and_then(|e| e.event_id).unwrap_or(0);
    let messages: Vec<serde_json::Value> = fold_messages(&events)
        .into_iter()
        .map(|(event_id, message)| {
            let mut value = serde_json::to_value(&message).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("event_id".into(), event_id.into());
            }
            value
        })
        .collect();
    Ok(Json(serde_json::json!({
        "conversation": conversation,
        "messages": messages,
        "last_event_id": last_event_id,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    #[serde(default)]
    text: String,
    /// Ids from `POST .../uploads`: the files go with the message into the session's inbox.
    #[serde(default)]
    uploads: Vec<String>,
}

#[derive(Deserialize)]
struct UploadQuery {
    name: String,
}

/// `POST /api/chat/conversations/{id}/uploads?name=NAME`, the file as the raw body: staged
/// for the next message, which names the returned `upload_id`.
async fn upload(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let body = body.map_err(|e| {
        ChatApiError::invalid(format!(
            "cannot read the file (at most {} bytes): {e}",
            crate::channels::web::uploads::MAX_UPLOAD_BYTES
        ))
    })?;
    let bytes = body.len();
    let upload_id = state
        .web
        .uploads
        .stage(&conversation.id, &query.name, body)
        .await?;
    Ok(Json(
        serde_json::json!({ "upload_id": upload_id, "name": query.name, "bytes": bytes }),
    ))
}

async fn post_message(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Posted>> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let request: PostMessage = parse(body)?;
    Ok(Json(
        state
            .web
            .post_with_files(&conversation, &request.text, &request.uploads)
            .await?,
    ))
}

async fn stop_turn(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Posted>> {
    let conversation = owned(&state.web, &caller, &id).await?;
    // The runner watches for `/stop` during a turn, as it does in every chat.
    Ok(Json(state.web.post(&conversation, "/stop").await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostAnswer {
    question_id: String,
    answer: String,
}

async fn post_answer(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Posted>> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let request: PostAnswer = parse(body)?;
    if request.question_id.is_empty() || request.question_id.len() > 256 {
        return Err(ChatApiError::invalid("`question_id` must name a question"));
    }
    Ok(Json(
        state
            .web
            .answer(&conversation, &request.question_id, &request.answer)
            .await?,
    ))
}

/// The largest file served (the channel's `max_file_bytes`).
const MAX_DOWNLOAD_BYTES: u64 = 32 * 1024 * 1024;

async fn download(
    State(state): State<WebState>,
    caller: Caller,
    Path((id, event_id, index)): Path<(String, i64, usize)>,
) -> ApiResult<Response> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let not_found = || ChatApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found",
        error: format!("no file {index} in event {event_id}"),
    };
    let path = state
        .web
        .file_path(&conversation.id, event_id, index)
        .await?
        .ok_or_else(not_found)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let bytes = read_file(&path).await.map_err(|error| {
        tracing::warn!(path = %path.display(), %error, "serving a web chat file failed");
        not_found()
    })?;
    // Only plain characters in the header's file name; the rest become `_`.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}\""),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                "nosniff".to_owned(),
            ),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "sandbox".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Reads a file the host copied out of an outbox: a regular file, not through a link, at
/// most [`MAX_DOWNLOAD_BYTES`].
async fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .await?;
    let meta = file.metadata().await?;
    if !meta.is_file() || meta.len() > MAX_DOWNLOAD_BYTES {
        return Err(std::io::Error::other(
            "not a regular file within the size cap",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_DOWNLOAD_BYTES)
        .read_to_end(&mut bytes)
        .await?;
    Ok(bytes)
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
}

/// Where a stream resumes: `Last-Event-ID` (the browser's reconnect), else `?after=`, else
/// the start of the log.
fn resume_after(headers: &HeaderMap, query: &EventsQuery) -> ApiResult<i64> {
    match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .filter(|id| *id >= 0)
            .ok_or_else(|| ChatApiError::invalid("Last-Event-ID must be an event id")),
        None => Ok(query.after.unwrap_or(0).max(0)),
    }
}

/// One event as SSE: `event:` its type, `id:` its id when durable, `data:` its JSON.
pub fn sse_event(event: &ConversationEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let sse = Event::default().event(event.body.kind()).data(data);
    match event.event_id {
        Some(id) => sse.id(id.to_string()),
        None => sse,
    }
}

async fn events(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let conversation = owned(&state.web, &caller, &id).await?;
    let after = resume_after(&headers, &query)?;
    let subscription = state.web.subscribe_after(&conversation.id, after).await;
    let web: Arc<WebChannel> = Arc::clone(&state.web);
    let stream =
        futures_util::stream::unfold((web, subscription), |(web, mut subscription)| async move {
            let event = web.next_event(&mut subscription).await?;
            Some((
                Ok::<Event, std::convert::Infallible>(sse_event(&event)),
                (web, subscription),
            ))
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::web::EventBody;

    #[test]
    fn streams_resume_after_the_last_event_id() {
        let mut headers = HeaderMap::new();
        let none = EventsQuery { after: None };
        assert_eq!(resume_after(&headers, &none).unwrap(), 0);
        assert_eq!(
            resume_after(&headers, &EventsQuery { after: Some(4) }).unwrap(),
            4
        );
        headers.insert("last-event-id", "12".parse().unwrap());
        assert_eq!(
            resume_after(&headers, &EventsQuery { after: Some(4) }).unwrap(),
            12
        );
        headers.insert("last-event-id", "x".parse().unwrap());
        assert!(resume_after(&headers, &none).is_err());
    }

    #[test]
    fn durable_events_carry_their_id_and_live_ones_none() {
        let durable = ConversationEvent {
            event_id: Some(3),
            body: EventBody::TurnComplete {
                message_id: "m".into(),
            },
        };
        // The event's Debug shows the bytes it will send.
        let text = format!("{:?}", sse_event(&durable));
        assert!(text.contains("event: turn_complete"), "{text}");
        assert!(text.contains("id: 3"), "{text}");
        let live = ConversationEvent {
            event_id: None,
            body: EventBody::Typing { on: true },
        };
        let text = format!("{:?}", sse_event(&live));
        assert!(text.contains("event: typing"), "{text}");
        assert!(!text.contains("id: "), "{text}");
    }
}
