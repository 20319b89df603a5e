//! The recorded side of the fake model: each [`RecordedRequest`] with the [`Api`] it was
//! addressed to, and [`echo_reply`], the default answer built from it.
//! [`RecordedRequest::images`] lists the image input a request carried, in either wire
//! format ([`RecordedImage`]: Anthropic `image` blocks, also inside a `tool_result`; OpenAI
//! `image_url` parts with a base64 data URL), decoded.

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

/// One image a request carried, decoded from base64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedImage {
    pub media_type: String,
    pub data: Vec<u8>,
    /// The message it came in (index into `messages`).
    pub message: usize,
    /// The tool call it belongs to: the `tool_use_id` of the Anthropic `tool_result` it is
    /// inside, or for OpenAI the call named by the text part before it ("... from tool call
    /// ID:"); `None` for an image a person sent.
    pub tool_call_id: Option<String>,
}

impl RecordedRequest {
    /// Every image in the request, in message order. An image whose data does not decode
    /// is recorded with empty `data`, so a test sees it was there.
    pub fn images(&self) -> Vec<RecordedImage> {
        let mut images = Vec::new();
        let Some(messages) = self.body.get("messages").and_then(Value::as_array) else {
            return images;
        };
        for (index, message) in messages.iter().enumerate() {
            let Some(parts) = message.get("content").and_then(Value::as_array) else {
                continue;
            };
            let mut tool_call_id: Option<String> = None;
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("image") => images.extend(anthropic_image(part, index, None)),
                    Some("tool_result") => {
                        let id = part.get("tool_use_id").and_then(Value::as_str);
                        for inner in part
                            .get("content")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            images.extend(anthropic_image(inner, index, id.map(str::to_owned)));
                        }
                    }
                    Some("text") => {
                        // The runner names the tool call before its images.
                        tool_call_id = part
                            .get("text")
                            .and_then(Value::as_str)
                            .and_then(|text| text.split_once("from tool call "))
                            .map(|(_, id)| id.trim_end_matches(':').trim().to_owned());
                    }
                    Some("image_url") => {
                        let url = part["image_url"]["url"].as_str().unwrap_or_default();
                        let (media_type, data) = url
                            .strip_prefix("data:")
                            .and_then(|rest| rest.split_once(";base64,"))
                            .unwrap_or(("", ""));
                        images.push(RecordedImage {
                            media_type: media_type.to_owned(),
                            data: decode(data),
                            message: index,
                            tool_call_id: tool_call_id.clone(),
                        });
                    }
                    _ => {}
                }
            }
        }
        images
    }
}

fn anthropic_image(
    part: &Value,
    message: usize,
    tool_call_id: Option<String>,
) -> Option<RecordedImage> {
    if part.get("type").and_then(Value::as_str) != Some("image") {
        return None;
    }
    let source = part.get("source")?;
    Some(RecordedImage {
        media_type: source["media_type"].as_str().unwrap_or_default().to_owned(),
        data: decode(source["data"].as_str().unwrap_or_default()),
        message,
        tool_call_id,
    })
}

fn decode(data: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default()
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
