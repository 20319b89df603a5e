//! The scripted side of the fake model: a [`Reply`] (an assistant message with text and
//! [`ToolCall`]s, or an error), with its [`Usage`], extra headers, simulated delay and, for
//! streamed replies, the pace of its text ([`StreamPacing`]).

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

/// One tool call in a scripted reply. Without an id, the fake assigns `call_<n>` (OpenAI) or
/// `toolu_<n>` (Anthropic).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: Value,
}

impl ToolCall {
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self {
            id: None,
            name: name.into(),
            arguments,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Token counts reported in a reply's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// False: the reply carries no usage at all, as some llama.cpp and vLLM builds answer
    /// (OpenAI shape only).
    pub reported: bool,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            input_tokens: 10,
            output_tokens: 5,
            reported: true,
        }
    }
}

/// How slowly a streamed reply's text is sent: in chunks of `chunk_chars` characters, each
/// sent `delay` after the one before (the first `delay` after the response head), so a test
/// or the bench can watch the text grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPacing {
    pub chunk_chars: usize,
    pub delay: Duration,
}

/// What a scripted reply says.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyContent {
    /// An assistant message: optional text, then tool calls in order.
    Message {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// An HTTP error with exactly this JSON body.
    Error { status: StatusCode, body: Value },
    /// An HTTP error whose body is rendered in the requested API's own error shape.
    ApiError { status: StatusCode, message: String },
}

/// One scripted reply, rendered in whichever format and streaming mode the request asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub content: ReplyContent,
    pub usage: Usage,
    /// Extra response headers, e.g. `retry-after` on a 429.
    pub headers: Vec<(String, String)>,
    /// Simulated model latency before the response starts.
    pub delay: Option<Duration>,
    /// How slowly the text of a streamed reply is sent; `None`: a few deltas at once. A
    /// non-streaming request gets the whole reply at once either way.
    pub pacing: Option<StreamPacing>,
}

impl Reply {
    fn from_content(content: ReplyContent) -> Self {
        Self {
            content,
            usage: Usage::default(),
            headers: Vec::new(),
            delay: None,
            pacing: None,
        }
    }

    /// A plain text answer (`finish_reason: "stop"`, `stop_reason: "end_turn"`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::from_content(ReplyContent::Message {
            text: Some(text.into()),
            tool_calls: Vec::new(),
        })
    }

    /// One tool call and no text (`finish_reason: "tool_calls"`, `stop_reason: "tool_use"`).
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::tool_calls(vec![ToolCall::new(name, arguments)])
    }

    /// Several tool calls and no text.
    pub fn tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self::from_content(ReplyContent::Message {
            text: None,
            tool_calls,
        })
    }

    /// An error reply with exactly this status and JSON body, whatever the API.
    pub fn error(status: u16, body: Value) -> Self {
        Self::from_content(ReplyContent::Error {
            status: status_code(status),
            body,
        })
    }

    /// An error reply whose body is the requested API's own error object (`rate_limit_error`,
    /// `overloaded_error`, ... for Anthropic; `{"error": {...}}` for OpenAI).
    pub fn api_error(status: u16, message: impl Into<String>) -> Self {
        Self::from_content(ReplyContent::ApiError {
            status: status_code(status),
            message: message.into(),
        })
    }

    /// Adds (or replaces) the text of a message reply; no effect on an error reply.
    pub fn with_text(mut self, new_text: impl Into<String>) -> Self {
        if let ReplyContent::Message { text, .. } = &mut self.content {
            *text = Some(new_text.into());
        }
        self
    }

    /// Appends a tool call to a message reply; no effect on an error reply.
    pub fn with_tool_call(self, name: impl Into<String>, arguments: Value) -> Self {
        self.with_tool(ToolCall::new(name, arguments))
    }

    /// Appends a fully specified tool call (e.g. with a fixed id) to a message reply.
    pub fn with_tool(mut self, tool_call: ToolCall) -> Self {
        if let ReplyContent::Message { tool_calls, .. } = &mut self.content {
            tool_calls.push(tool_call);
        }
        self
    }

    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.usage = Usage {
            input_tokens,
            output_tokens,
            reported: true,
        };
        self
    }

    /// The reply reports no usage, even when the request asks for it (OpenAI shape): the
    /// JSON body has no `usage` and the stream no usage chunk.
    pub fn without_usage(mut self) -> Self {
        self.usage.reported = false;
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Streams the text in chunks of `chunk_chars` characters (at least one), `delay` apart
    /// (see [`StreamPacing`]); when each chunk went out is recorded
    /// ([`super::FakeModelHandle::sent_chunks`]).
    pub fn streamed_slowly(mut self, chunk_chars: usize, delay: Duration) -> Self {
        self.pacing = Some(StreamPacing {
            chunk_chars: chunk_chars.max(1),
            delay,
        });
        self
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
