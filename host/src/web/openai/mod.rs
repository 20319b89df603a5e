//! The OpenAI-compatible API, for existing clients: `GET /v1/models` (the agent groups the
//! token's user may use) and `POST /v1/chat/completions`, streamed (`stream: true`, SSE
//! `chat.completion.chunk`s ending with `data: [DONE]`) or not (one `chat.completion`). Both
//! need `Authorization: Bearer <API token>` (scope `chat` or `admin`).
//!
//! `model` names the agent group (one the user may not use answers 404, as an unknown one
//! does). Each (user, request `user` field or `default`) is one web conversation, the chat
//! `web/api/<user>/<name>` with its own shared session: only the last user message of a
//! request is routed, since the agent keeps its own history. The answer is what the agent
//! sent in the turn ([`turn`]); its tool calls stay inside the agent. A question the agent
//! asks ends the answer, options listed, and the next request's message answers it. Errors have OpenAI's
//! shape ([`error`]); the body is read as hostile input ([`request`]).

pub mod error;
pub mod request;
pub mod turn;

use super::WebState;
use super::auth::{Caller, Rejection};
use crate::channels::web::{Subscription, WebChannel, WebChatError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::OpenAiError;
use protocol::AgentGroupId;
use request::{CompletionRequest, MAX_BODY_BYTES, parse_completion};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use turn::Turn;

/// How long a request waits for the agent's turn to complete.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(300);

/// Chunks queued for a streaming client.
const STREAM_QUEUE: usize = 64;

pub fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(completions))
        // The body limit is checked in the handler (for an OpenAI-shaped answer); this only
        // stops axum's own, lower default from answering first.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
}

/// Lets in only API tokens, answering in OpenAI's shape.
fn token_caller(caller: Result<Caller, Rejection>) -> Result<Caller, OpenAiError> {
    let caller = caller.map_err(|rejection| match rejection.status {
        StatusCode::UNAUTHORIZED => OpenAiError::unauthenticated(
            StatusCode::UNAUTHORIZED,
            format!(
                "{}: send Authorization: Bearer <crabpot API token>",
                rejection.error
            ),
        ),
        status => OpenAiError::server(status, rejection.error),
    })?;
    if caller.token_scope.is_none() {
        return Err(OpenAiError::unauthenticated(
            StatusCode::UNAUTHORIZED,
            "the OpenAI-compatible API takes an API token (crabpot tokens create), not a session cookie",
        ));
    }
    Ok(caller)
}

fn now_secs() -> i64 {
    protocol::time::now_ms() / 1000
}

async fn models(
    State(state): State<WebState>,
    caller: Result<Caller, Rejection>,
) -> Result<Json<serde_json::Value>, OpenAiError> {
    let caller = token_caller(caller)?;
    let groups = state.web.usable_groups(&caller.user_id).await?;
    let data: Vec<serde_json::Value> = groups
        .iter()
        .map(|group| {
            serde_json::json!({
                "id": group.id.as_str(),
                "object": "model",
                "created": group.created_at / 1000,
                "owned_by": "crabpot",
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "object": "list", "data": data })))
}

/// A turn the agent was asked to take, and the subscription that sees its events.
struct Started {
    subscription: Subscription,
    turn: Turn,
    id: String,
    model: String,
}

/// Routes the request's last user message into its conversation.
async fn start(
    web: &WebChannel,
    caller: &Caller,
    request: &CompletionRequest,
) -> Result<Started, OpenAiError> {
    let usable = web.usable_groups(&caller.user_id).await?;
    let group = AgentGroupId::new(request.model.clone());
    if !usable.iter().any(|usable| usable.id == group) {
        return Err(OpenAiError::model_not_found(&request.model));
    }
    let conversation = web
        .api_conversation(&caller.user_id, &group, &request.conversation)
        .await?;
    // Watching before the message goes in: no reply can come before the watch.
    let subscription = web.subscribe_from_now(&conversation.id).await?;
    // While the agent waits on a question it asked, the next message is the answer.
    let answered = match web.open_question(&conversation.id).await {
        Some(question_id) => match web.answer(&conversation, &question_id, &request.text).await {
            Ok(posted) if !posted.message_ids.is_empty() => Some(posted),
            Ok(_) | Err(WebChatError::Answer(_)) => None,
            Err(other) => return Err(other.into()),
        },
        None => None,
    };
    let posted = match answered {
        Some(posted) => posted,
        None => web.post(&conversation, &request.text).await?,
    };
    if posted.message_ids.is_empty() {
        let why = if posted.held.is_empty() {
            "the message was stored as context and started no turn".to_owned()
        } else {
            format!(
                "the message is held for an approval ({}); ask an approver",
                posted.held.join(", ")
            )
        };
        return Err(OpenAiError::server(StatusCode::FORBIDDEN, why));
    }
    Ok(Started {
        subscription,
        turn: Turn::new(&posted.message_ids),
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        model: request.model.clone(),
    })
}

async fn completions(
    State(state): State<WebState>,
    caller: Result<Caller, Rejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, OpenAiError> {
    let caller = token_caller(caller)?;
    let body = body.map_err(|e| {
        OpenAiError::invalid(
            format!("the request body could not be read (at most {MAX_BODY_BYTES} bytes): {e}"),
            None,
        )
    })?;
    let request = parse_completion(&body)?;
    let started = start(&state.web, &caller, &request).await?;
    if request.stream {
        Ok(stream(Arc::clone(&state.web), started).into_response())
    } else {
        Ok(Json(whole(&state.web, started).await?).into_response())
    }
}

/// Waits for the turn and answers one `chat.completion`.
async fn whole(web: &WebChannel, started: Started) -> Result<serde_json::Value, OpenAiError> {
    let Started {
        mut subscription,
        mut turn,
        id,
        model,
    } = started;
    let deadline = Instant::now() + TURN_TIMEOUT;
    while !turn.is_done() {
        match tokio::time::timeout_at(deadline, web.next_event(&mut subscription)).await {
            Ok(Some(event)) => {
                turn.apply(&event);
            }
            Ok(None) => {
                return Err(OpenAiError::server(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the host is shutting down",
                ));
            }
            Err(_) => return Err(turn_timeout()),
        }
    }
    Ok(serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": turn.content() },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 },
    }))
}

fn turn_timeout() -> OpenAiError {
    OpenAiError::timeout(format!(
        "the agent did not finish its turn within {} s",
        TURN_TIMEOUT.as_secs()
    ))
}

/// One `chat.completion.chunk`.
fn chunk(id: &str, model: &str, delta: serde_json::Value, finish: Option<&str>) -> Event {
    let chunk = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": now_secs(),
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    });
    Event::default().data(chunk.to_string())
}

/// Streams the turn: the role, each text delta as drafts grow and replies arrive, a last
/// chunk with `finish_reason: "stop"`, then `[DONE]`. A turn that fails or times out after
/// the stream began ends with an `error` event in OpenAI's shape, which clients raise.
fn stream(web: Arc<WebChannel>, started: Started) -> impl IntoResponse {
    let (sender, receiver) = mpsc::channel::<Event>(STREAM_QUEUE);
    tokio::spawn(async move {
        let Started {
            mut subscription,
            mut turn,
            id,
            model,
        } = started;
        let role = serde_json::json!({ "role": "assistant", "content": "" });
        if sender.send(chunk(&id, &model, role, None)).await.is_err() {
            return;
        }
        let deadline = Instant::now() + TURN_TIMEOUT;
        let failure = loop {
            if turn.is_done() {
                break None;
            }
            let event = tokio::select! {
                () = sender.closed() => return,
                next = tokio::time::timeout_at(deadline, web.next_event(&mut subscription)) => next,
            };
            match event {
                Ok(Some(event)) => {
                    if let Some(delta) = turn.apply(&event).delta {
                        let delta = serde_json::json!({ "content": delta });
                        if sender.send(chunk(&id, &model, delta, None)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    break Some(OpenAiError::server(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the host is shutting down",
                    ));
                }
                Err(_) => break Some(turn_timeout()),
            }
        };
        let last = match failure {
            None => chunk(&id, &model, serde_json::json!({}), Some("stop")),
            Some(error) => Event::default().data(error.body().to_string()),
        };
        if sender.send(last).await.is_ok() {
            let _ = sender.send(Event::default().data("[DONE]")).await;
        }
    });
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|event| (Ok::<Event, std::convert::Infallible>(event), receiver))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
