//! Calling the model through the host proxy. [`ModelClient::complete`] renders a
//! provider-neutral [`ModelRequest`] for the session's provider ([`openai`] or [`anthropic`],
//! with the tool definitions rendered and normalised by [`tool_schema`] and the images
//! chosen by [`images`]), posts it, decodes the SSE stream (or a plain JSON response) into a
//! [`ModelResponse`], and
//! retries 429 and 5xx answers with exponential backoff ([`RetryPolicy`]).
//! [`ModelClient::complete_noting`] also reports the stream as it is decoded ([`StreamNote`]:
//! text deltas, the first tool call, a retry), which is what live drafts are made of.
//!
//! Errors are [`ModelError`]; [`ModelError::user_message`] is what the user is told when the
//! model cannot be reached, taken verbatim from the proxy's JSON error body where there is one.

pub mod anthropic;
pub mod images;
pub mod openai;
pub mod tool_schema;

use crate::http::{HttpError, ProxyClient};
use crate::sse::{SseError, SseEvent, SseParser};
use crate::tools::ToolDefinition;
use crate::transcript::{Entry, ToolCall};
use protocol::ProviderKind;
use std::path::PathBuf;
use std::time::Duration;

/// The error type the host proxy answers with when no model is configured. Final: retrying
/// cannot help until an operator configures one.
pub const NO_MODEL_CONFIGURED: &str = "no_model_configured";

/// Largest error or non-streaming body read, in bytes.
const MAX_JSON_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest `retry-after` honoured; a longer one is capped so a turn does not stall for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One model call, provider-neutral.
#[derive(Clone, Copy, Debug)]
pub struct ModelRequest<'a> {
    pub model: &'a str,
    pub system: &'a str,
    /// The conversation so far, already repaired by `transcript::for_model`.
    pub entries: &'a [Entry],
    pub tools: &'a [ToolDefinition],
    pub max_output_tokens: u32,
    /// The images sent with this request; the others are described as text.
    pub images: &'a images::ImageInputs,
}

/// What the model answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelResponse {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// The provider's reason for stopping (`stop`, `tool_calls`, `end_turn`, `max_tokens` ...).
    pub stop_reason: Option<String>,
}

/// What a streamed answer shows while it arrives, in stream order. The final
/// [`ModelResponse`] is the same whether or not anyone listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamNote<'a> {
    /// More text of the answer, as decoded.
    Text(&'a str),
    /// The answer calls a tool (noted once, at its first call): its text is not the reply.
    ToolCall,
    /// The call failed part-way and is being tried again: everything noted before is void.
    Retry,
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The proxy could not be reached or the connection broke. Retryable.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The proxy or the upstream answered with an error status. Retryable for 429 and 5xx,
    /// except a 503 `no_model_configured`.
    #[error("the model proxy answered HTTP {status}: {message}")]
    Status {
        status: u16,
        error_type: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The stream carried an error event. Retryable when the provider says it is overloaded
    /// or had an internal error.
    #[error("the model stream reported an error: {message}")]
    Stream {
        error_type: Option<String>,
        message: String,
    },
    /// The stream ended before the response was complete. Retryable.
    #[error("the model stream ended before the response was complete")]
    Truncated,
    /// The response could not be decoded. Not retryable.
    #[error("could not decode the model response: {0}")]
    Decode(String),
}

impl From<SseError> for ModelError {
    fn from(error: SseError) -> Self {
        ModelError::Decode(error.to_string())
    }
}

impl ModelError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Http(error) => error.is_retryable(),
            ModelError::Status {
                status, error_type, ..
            } => {
                let no_model = error_type.as_deref() == Some(NO_MODEL_CONFIGURED);
                (*status == 429 || (500..600).contains(status)) && !no_model
            }
            ModelError::Stream { error_type, .. } => matches!(
                error_type.as_deref(),
                Some("overloaded_error" | "api_error" | "rate_limit_error" | "server_error")
            ),
            ModelError::Truncated => true,
            ModelError::Decode(_) => false,
        }
    }

    /// How long the server asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Status { retry_after, .. } => *retry_after,
            ModelError::Http(_)
            | ModelError::Stream { .. }
            | ModelError::Truncated
            | ModelError::Decode(_) => None,
        }
    }

    /// The explanation for the user: the proxy's own message where it sent one.
    pub fn user_message(&self) -> String {
        match self {
            ModelError::Status { message, .. } | ModelError::Stream { message, .. } => {
                message.clone()
            }
            ModelError::Http(_) | ModelError::Truncated | ModelError::Decode(_) => self.to_string(),
        }
    }
}

/// When and how often to retry a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_tries: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    /// 0.5 s, 1 s, 2 s, 4 s: five tries.
    fn default() -> Self {
        Self {
            max_tries: 5,
            first_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// The wait before try number `failed_tries + 1`.
    pub fn delay(&self, failed_tries: u32, error: &ModelError) -> Duration {
        let backoff = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(failed_tries.saturating_sub(1)));
        match error.retry_after() {
            Some(asked) => asked.min(MAX_RETRY_AFTER),
            None => backoff,
        }
    }
}

/// Calls the session's model through the proxy socket.
#[derive(Clone, Debug)]
pub struct ModelClient {
    provider: ProviderKind,
    http: ProxyClient,
    retry: RetryPolicy,
}

impl ModelClient {
    pub fn new(provider: ProviderKind, socket: PathBuf, retry: RetryPolicy) -> Self {
        Self {
            provider,
            http: ProxyClient::new(socket),
            retry,
        }
    }

    /// The JSON body of a request, as sent.
    pub fn render(&self, request: &ModelRequest<'_>) -> serde_json::Value {
        match self.provider {
            ProviderKind::OpenAi => openai::render_request(request),
            ProviderKind::Anthropic => anthropic::render_request(request),
        }
    }

    /// Calls the model, retrying transient failures.
    pub async fn complete(&self, request: &ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.complete_noting(request, &mut |_| {}).await
    }

    /// [`ModelClient::complete`], telling `notes` what the stream shows as it is decoded.
    /// `notes` runs on the runner's thread between two reads of the stream, so it must be
    /// quick (live drafts only queue the text).
    pub async fn complete_noting(
        &self,
        request: &ModelRequest<'_>,
        notes: &mut dyn FnMut(StreamNote<'_>),
    ) -> Result<ModelResponse, ModelError> {
        let body = serde_json::to_vec(&self.render(request)).map_err(|error| {
            ModelError::Decode(format!("could not encode the request: {error}"))
        })?;
        let mut failed_tries = 0;
        loop {
            if failed_tries > 0 {
                notes(StreamNote::Retry);
            }
            match self.complete_once(body.clone(), notes).await {
                Ok(response) => return Ok(response),
                Err(error) => {
                    failed_tries += 1;
                    if !error.is_retryable() || failed_tries >= self.retry.max_tries {
                        return Err(error);
                    }
                    let delay = self.retry.delay(failed_tries, &error);
                    tracing::warn!(%error, ?delay, try_number = failed_tries, "model call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn complete_once(
        &self,
        body: Vec<u8>,
        notes: &mut dyn FnMut(StreamNote<'_>),
    ) -> Result<ModelResponse, ModelError> {
        let (path, headers): (&str, &[(&str, &str)]) = match self.provider {
            ProviderKind::OpenAi => (openai::PATH, &[]),
            ProviderKind::Anthropic => (anthropic::PATH, anthropic::HEADERS),
        };
        let response = self.http.post_json(path, headers, body).await?;
        let status = response.status();
        let is_json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("application/json"));
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(|seconds| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())));
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = self.http.read_body(&mut body, MAX_JSON_BODY_BYTES).await?;
            return Err(status_error(status, &bytes, retry_after));
        }
        if is_json {
            let bytes = self.http.read_body(&mut body, MAX_JSON_BODY_BYTES).await?;
            return match self.provider {
                ProviderKind::OpenAi => openai::parse_response(&bytes),
                ProviderKind::Anthropic => anthropic::parse_response(&bytes),
            };
        }
        let mut decoder = StreamDecoder::new(self.provider);
        let mut parser = SseParser::new();
        while let Some(chunk) = self.http.next_chunk(&mut body).await? {
            for event in parser.feed(&chunk)? {
                if decoder.on_event(&event, notes)? {
                    return decoder.finish(true);
                }
            }
        }
        if let Some(event) = parser.finish()?
            && decoder.on_event(&event, notes)?
        {
            return decoder.finish(true);
        }
        decoder.finish(false)
    }
}

/// Builds the error for a non-success answer from its JSON body: both providers (and the
/// host proxy) send `{"error": {"type": ..., "message": ...}}`.
fn status_error(
    status: http::StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ModelError {
    let (error_type, message) = error_fields(body);
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() || text.len() > 500 {
            format!("HTTP {status}")
        } else {
            text.to_owned()
        }
    });
    ModelError::Status {
        status: status.as_u16(),
        error_type,
        message,
        retry_after,
    }
}

/// `error.type` (or `error.code`) and `error.message` of a JSON error body.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let error = value.get("error").unwrap_or(&value);
    let text = |key: &str| error.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let error_type = text("type").or_else(|| text("code"));
    let message = match error {
        serde_json::Value::String(message) => Some(message.clone()),
        _ => text("message"),
    };
    (error_type, message)
}

/// The stream decoder of the session's provider.
enum StreamDecoder {
    OpenAi(openai::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
}

impl StreamDecoder {
    fn new(provider: ProviderKind) -> Self {
        match provider {
            ProviderKind::OpenAi => StreamDecoder::OpenAi(openai::StreamDecoder::default()),
            ProviderKind::Anthropic => {
                StreamDecoder::Anthropic(anthropic::StreamDecoder::default())
            }
        }
    }

    /// Takes one event, noting what it shows; true when the stream is complete.
    fn on_event(
        &mut self,
        event: &SseEvent,
        notes: &mut dyn FnMut(StreamNote<'_>),
    ) -> Result<bool, ModelError> {
        match self {
            StreamDecoder::OpenAi(decoder) => decoder.on_event_noting(event, notes),
            StreamDecoder::Anthropic(decoder) => decoder.on_event_noting(event, notes),
        }
    }

    fn finish(self, complete: bool) -> Result<ModelResponse, ModelError> {
        match self {
            StreamDecoder::OpenAi(decoder) => decoder.finish(complete),
            StreamDecoder::Anthropic(decoder) => decoder.finish(complete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_table() {
        let status = |status: u16, error_type: Option<&str>| ModelError::Status {
            status,
            error_type: error_type.map(str::to_owned),
            message: "m".into(),
            retry_after: None,
        };
        assert!(status(429, None).is_retryable());
        assert!(status(500, None).is_retryable());
        assert!(status(503, Some("overloaded")).is_retryable());
        assert!(!status(503, Some(NO_MODEL_CONFIGURED)).is_retryable());
        assert!(!status(400, None).is_retryable());
        assert!(!status(401, None).is_retryable());
        assert!(ModelError::Truncated.is_retryable());
        assert!(!ModelError::Decode("x".into()).is_retryable());
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        let plain = ModelError::Truncated;
        let delays: Vec<u128> = (1..5)
            .map(|n| policy.delay(n, &plain).as_millis())
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000]);
        let asked = ModelError::Status {
            status: 429,
            error_type: None,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(policy.delay(1, &asked), Duration::from_secs(3));
    }

    #[test]
    fn error_bodies() {
        let proxy = br#"{"error":{"type":"no_model_configured","message":"no model is configured on the host: set CRABPOT_MODEL_PROVIDER"}}"#;
        let error = status_error(http::StatusCode::SERVICE_UNAVAILABLE, proxy, None);
        assert!(!error.is_retryable());
        assert_eq!(
            error.user_message(),
            "no model is configured on the host: set CRABPOT_MODEL_PROVIDER"
        );
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            error_fields(anthropic),
            (Some("overloaded_error".into()), Some("Overloaded".into()))
        );
        let openai = br#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            error_fields(openai),
            (Some("invalid_request_error".into()), Some("bad key".into()))
        );
        let plain = status_error(http::StatusCode::BAD_GATEWAY, b"upstream down", None);
        assert_eq!(plain.user_message(), "upstream down");
        assert!(plain.is_retryable());
        let empty = status_error(http::StatusCode::BAD_REQUEST, b"", None);
        assert_eq!(empty.user_message(), "HTTP 400 Bad Request");
    }
}

/// Shared test data: a conversation with every kind of entry, and a stream driver.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Feeds `body` to a parser in chunks of `chunk_size` bytes and each event to `on_event`
    /// until it reports completion; returns the decoder and whether it completed.
    pub fn decode_stream<D: Default>(
        body: &str,
        chunk_size: usize,
        mut on_event: impl FnMut(&SseEvent, &mut D) -> Result<bool, ModelError>,
    ) -> Result<(D, bool), ModelError> {
        let mut decoder = D::default();
        let mut parser = SseParser::new();
        for chunk in body.as_bytes().chunks(chunk_size.min(body.len().max(1))) {
            for event in parser.feed(chunk)? {
                if on_event(&event, &mut decoder)? {
                    return Ok((decoder, true));
                }
            }
        }
        if let Some(event) = parser.finish()?
            && on_event(&event, &mut decoder)?
        {
            return Ok((decoder, true));
        }
        Ok((decoder, false))
    }

    pub fn conversation() -> (Vec<Entry>, Vec<ToolDefinition>) {
        let entries = vec![
            Entry::Summary {
                text: "Ann asked for reminders earlier.".into(),
                seqs: vec![0],
            },
            Entry::User {
                text: "[seq 2] Ann: tell the family I'm late".into(),
                seqs: vec![2],
                images: Vec::new(),
            },
            Entry::Assistant {
                text: "I'll let them know.".into(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "send_message".into(),
                    arguments: r#"{"to":"famly","text":"Ann is late"}"#.into(),
                }],
            },
            Entry::ToolResult {
                call_id: "call_1".into(),
                content: "unknown destination \"famly\"; valid destinations: family".into(),
                is_error: true,
                images: Vec::new(),
            },
            Entry::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_2".into(),
                    name: "send_message".into(),
                    arguments: r#"{"to":"family","text":"Ann is late"}"#.into(),
                }],
            },
            Entry::ToolResult {
                call_id: "call_2".into(),
                content: "sent (seq 5)".into(),
                is_error: false,
                images: Vec::new(),
            },
            Entry::Assistant {
                text: "Done: I told the family.".into(),
                tool_calls: vec![],
            },
            Entry::User {
                text: "[seq 6] Ann: thanks\n[seq 8] system: the family chat is muted".into(),
                seqs: vec![6, 8],
                images: Vec::new(),
            },
            Entry::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_3".into(),
                    name: "send_message".into(),
                    arguments: "{not json".into(),
                }],
            },
            Entry::ToolResult {
                call_id: "call_3".into(),
                content: "invalid arguments for send_message: arguments are not valid JSON".into(),
                is_error: true,
                images: Vec::new(),
            },
        ];
        // One tool is enough here; the whole list has snapshots of its own in `tool_schema`.
        use crate::tools::Tool;
        (
            entries,
            vec![crate::tools::send_message::SendMessage.definition()],
        )
    }

    pub fn request<'a>(entries: &'a [Entry], tools: &'a [ToolDefinition]) -> ModelRequest<'a> {
        static NO_IMAGES: std::sync::LazyLock<images::ImageInputs> =
            std::sync::LazyLock::new(images::ImageInputs::none);
        ModelRequest {
            model: "test-model",
            system: "You are a test agent.",
            entries,
            tools,
            max_output_tokens: 1024,
            images: &NO_IMAGES,
        }
    }

    /// A conversation with a screenshot (a tool result) and a photo a person sent, its
    /// image store, and the inputs that send both (the store lives in the returned dir).
    pub fn conversation_with_images() -> (tempfile::TempDir, Vec<Entry>, images::ImageInputs) {
        use crate::image::ImageStore;
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::in_out_dir(dir.path());
        let png = crate::image::tests::png_header(800, 600);
        // The stored file names are random, but they never appear on the wire.
        let shot = store.keep(".previews/index-800x600.png", &png).unwrap();
        let photo = store.keep("cat.png", &png).unwrap();
        let entries = vec![
            Entry::User {
                text: "[seq 2] Ann: make me a landing page".into(),
                seqs: vec![2],
                images: Vec::new(),
            },
            Entry::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "preview_screenshot".into(),
                    arguments: r#"{"path":"index.html","width":800,"height":600}"#.into(),
                }],
            },
            Entry::ToolResult {
                call_id: "call_1".into(),
                content: "saved .previews/index-800x600.png (800x600)".into(),
                is_error: false,
                images: vec![shot],
            },
            Entry::Assistant {
                text: "Here it is.".into(),
                tool_calls: vec![],
            },
            Entry::User {
                text: "[seq 4] Ann: like this cat [attachments: /session/in/inbox/m4/cat.png]"
                    .into(),
                seqs: vec![4],
                images: vec![photo],
            },
        ];
        let inputs = images::ImageInputs::load(&entries, &store, true);
        (dir, entries, inputs)
    }
}
