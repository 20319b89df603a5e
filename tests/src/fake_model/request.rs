//! The recorded side of the fake model: each [`RecordedRequest`] with the [`Api`] it was
//! addressed to, and [`echo_reply`], the default answer built from it.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use super::Reply;

/// Which API a request was addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    OpenAiChat,
    AnthropicMessages,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Value::Null` when it was not JSON (see `raw_body`).
    pub body: Value,
    pub raw_body: Bytes,
    /// Which API the path names, if any.
    pub api: Option<Api>,
    pub received_at: Instant,
    pub received_at_system: SystemTime,
}

impl RecordedRequest {
    /// A header's value, if present and valid UTF-8 (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Whether the body asked for an SSE stream (`"stream": true`).
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The `model` named in the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The text of the last user message that has text, in either API's shape (a string
    /// content, or the `text` parts of a content array; Anthropic tool results are skipped).
    pub fn last_user_text(&self) -> Option<String> {
        let messages = self.body.get("messages")?.as_array()?;
        messages
            .iter()
            .rev()
            .filter(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            .find_map(|message| message_text(message.get("content")?))
    }
}

fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                None
            } else {
                Some(texts.join("\n"))
            }
        }
        _ => None,
    }
}

/// The reply used when the queue is empty: `"echo: "` and the last user text.
pub fn echo_reply(request: &RecordedRequest) -> Reply {
    Reply::text(format!(
        "echo: {}",
        request.last_user_text().unwrap_or_default()
    ))
}
