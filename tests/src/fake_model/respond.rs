//! Answers one HTTP request to the fake model: records it, picks its [`Reply`], and renders
//! the reply as JSON or SSE in the requested API's format (through [`super::openai`] and
//! [`super::anthropic`]). A paced reply's text events go out one by one
//! ([`super::StreamPacing`]), each recorded as a [`super::SentChunk`] when it is handed to
//! the connection.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use super::{
    ANTHROPIC_MESSAGES_PATH, Api, FakeModelHandle, OPENAI_CHAT_PATH, RecordedRequest, ReplyContent,
    SentChunk, StreamPacing, Usage, anthropic, openai,
};

type ResponseBody = BoxBody<Bytes, Infallible>;

/// A message reply with every id and number filled in, ready to render in either format.
pub(crate) struct ResolvedMessage {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub text: Option<String>,
    /// `(id, name, arguments)` of each tool call.
    pub tool_calls: Vec<(String, String, Value)>,
    pub usage: Usage,
    /// Streamed text goes in chunks of this many characters; `None`: a few deltas.
    pub text_chunk_chars: Option<usize>,
}

impl ResolvedMessage {
    /// The pieces the text is streamed in: `default_pieces` of them, or chunks of
    /// `text_chunk_chars` characters.
    pub fn text_pieces(&self, default_pieces: usize) -> Vec<&str> {
        match (&self.text, self.text_chunk_chars) {
            (None, _) => Vec::new(),
            (Some(text), None) => split_pieces(text, default_pieces),
            (Some(text), Some(chars)) => split_every(text, chars),
        }
    }
}

/// One SSE event of a stream: the whole `...\n\n` block, and the text delta it carries.
pub(crate) struct StreamEvent {
    pub block: String,
    pub text: Option<String>,
}

pub(super) async fn respond(
    handle: &FakeModelHandle,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let raw_body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return plain_response(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            );
        }
    };
    let path = parts.uri.path().to_string();
    let api = match path.as_str() {
        OPENAI_CHAT_PATH => Some(Api::OpenAiChat),
        ANTHROPIC_MESSAGES_PATH => Some(Api::AnthropicMessages),
        _ => None,
    };
    let parsed: Result<Value, _> = serde_json::from_slice(&raw_body);
    let is_json = parsed.is_ok();
    let recorded = RecordedRequest {
        method: parts.method.clone(),
        path,
        headers: parts.headers,
        body: parsed.unwrap_or(Value::Null),
        raw_body,
        api,
        received_at: Instant::now(),
        received_at_system: SystemTime::now(),
    };
    let is_stream = recorded.is_stream();
    let include_usage = recorded
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let model = recorded.model().unwrap_or("fake-model").to_string();
    let acceptable = api.is_some() && parts.method == Method::POST && is_json;
    let (reply, message_number, request_index) = handle.record(recorded, acceptable);

    let Some(api) = api else {
        return plain_response(
            StatusCode::NOT_FOUND,
            "the fake model serves only /v1/chat/completions and /v1/messages".to_string(),
        );
    };
    if parts.method != Method::POST {
        return api_error_response(api, StatusCode::METHOD_NOT_ALLOWED, "use POST", &[]);
    }
    let Some(reply) = reply else {
        return api_error_response(
            api,
            StatusCode::BAD_REQUEST,
            "the request body is not JSON",
            &[],
        );
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    match reply.content {
        ReplyContent::Error { status, body } => json_response(status, &body, &reply.headers),
        ReplyContent::ApiError { status, message } => {
            api_error_response(api, status, &message, &reply.headers)
        }
        ReplyContent::Message { text, tool_calls } => {
            let tool_calls = tool_calls
                .into_iter()
                .map(|tool_call| {
                    let id = tool_call.id.unwrap_or_else(|| match api {
                        Api::OpenAiChat => format!("call_{}", handle.next_id()),
                        Api::AnthropicMessages => format!("toolu_{}", handle.next_id()),
                    });
                    (id, tool_call.name, tool_call.arguments)
                })
                .collect();
            let message = ResolvedMessage {
                id: match api {
                    Api::OpenAiChat => format!("chatcmpl-fake{message_number}"),
                    Api::AnthropicMessages => format!("msg_fake{message_number}"),
                },
                model,
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or(0),
                text,
                tool_calls,
                usage: reply.usage,
                text_chunk_chars: reply.pacing.map(|pacing| pacing.chunk_chars),
            };
            let paced = Paced {
                handle: handle.clone(),
                request_index,
                pacing: reply.pacing,
            };
            match (api, is_stream) {
                (Api::OpenAiChat, false) => json_response(
                    StatusCode::OK,
                    &openai::completion(&message),
                    &reply.headers,
                ),
                (Api::OpenAiChat, true) => sse_response(
                    openai::stream(&message, include_usage),
                    &reply.headers,
                    paced,
                ),
                (Api::AnthropicMessages, false) => json_response(
                    StatusCode::OK,
                    &anthropic::message(&message),
                    &reply.headers,
                ),
                (Api::AnthropicMessages, true) => {
                    sse_response(anthropic::stream(&message), &reply.headers, paced)
                }
            }
        }
    }
}

fn with_headers(
    mut response: Response<ResponseBody>,
    headers: &[(String, String)],
) -> Response<ResponseBody> {
    for (name, value) in headers {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            (Err(_), _) | (_, Err(_)) => {
                eprintln!("fake model: skipping invalid scripted header {name}: {value}");
            }
        }
    }
    response
}

fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

fn json_response(
    status: StatusCode,
    body: &Value,
    headers: &[(String, String)],
) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_headers(response, headers)
}

fn plain_response(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn api_error_response(
    api: Api,
    status: StatusCode,
    message: &str,
    headers: &[(String, String)],
) -> Response<ResponseBody> {
    let body = match api {
        Api::OpenAiChat => openai::error(status, message),
        Api::AnthropicMessages => anthropic::error(status, message),
    };
    json_response(status, &body, headers)
}

/// How one streamed response sends its text: its pace, and where it records the chunks.
struct Paced {
    handle: FakeModelHandle,
    request_index: usize,
    pacing: Option<StreamPacing>,
}

/// Streams each SSE event as its own body frame, as a real server flushes them; with a pace,
/// each text event waits its delay first and is recorded as it goes out.
fn sse_response(
    events: Vec<StreamEvent>,
    headers: &[(String, String)],
    paced: Paced,
) -> Response<ResponseBody> {
    let frames = futures_util::StreamExt::then(futures_util::stream::iter(events), move |event| {
        let handle = paced.handle.clone();
        let (request_index, pacing) = (paced.request_index, paced.pacing);
        async move {
            if let (Some(pacing), Some(_)) = (pacing, &event.text) {
                tokio::time::sleep(pacing.delay).await;
            }
            if let Some(text) = event.text {
                handle.record_chunk(SentChunk {
                    request_index,
                    text,
                    sent_at: Instant::now(),
                    sent_at_system: SystemTime::now(),
                });
            }
            Ok::<_, Infallible>(Frame::data(Bytes::from(event.block)))
        }
    });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    let response_headers = response.headers_mut();
    response_headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response_headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    with_headers(response, headers)
}

/// Splits `text` into up to `pieces` non-empty parts on char boundaries, so streamed text and
/// JSON arrive in several deltas.
pub(crate) fn split_pieces(text: &str, pieces: usize) -> Vec<&str> {
    let n_chars = text.chars().count();
    if n_chars == 0 {
        return Vec::new();
    }
    let piece_len = n_chars.div_ceil(pieces.max(1));
    let mut parts = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (index, _) in text.char_indices() {
        if count == piece_len {
            parts.push(&text[start..index]);
            start = index;
            count = 0;
        }
        count += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// Splits `text` into parts of `chars` characters (the last may be shorter), on char
/// boundaries.
pub(crate) fn split_every(text: &str, chars: usize) -> Vec<&str> {
    let chars = chars.max(1);
    let mut parts = Vec::new();
    let mut start = 0;
    for (count, (index, _)) in text.char_indices().enumerate() {
        if count > 0 && count % chars == 0 {
            parts.push(&text[start..index]);
            start = index;
        }
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}
