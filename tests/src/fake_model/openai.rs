//! Renders a [`ResolvedMessage`] in the OpenAI Chat Completions wire format: one
//! `chat.completion` object, or the `chat.completion.chunk` SSE sequence (role delta, content
//! deltas, tool-call deltas keyed by `index` with the arguments split across chunks, the
//! `finish_reason` chunk, the usage chunk when `stream_options.include_usage` is set, then
//! `data: [DONE]`), and the `{"error": {...}}` error object.

use http::StatusCode;
use serde_json::{Value, json};

use super::{ResolvedMessage, StreamEvent, split_pieces};

/// How many deltas streamed text and tool arguments are split into.
const STREAM_PIECES: usize = 3;

fn finish_reason(message: &ResolvedMessage) -> &'static str {
    if message.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn usage(message: &ResolvedMessage) -> Value {
    json!({
        "prompt_tokens": message.usage.input_tokens,
        "completion_tokens": message.usage.output_tokens,
        "total_tokens": message.usage.input_tokens + message.usage.output_tokens,
    })
}

/// The non-streaming `chat.completion` object.
pub(crate) fn completion(message: &ResolvedMessage) -> Value {
    let mut assistant = json!({
        "role": "assistant",
        "content": message.text,
        "refusal": null,
    });
    if !message.tool_calls.is_empty() {
        assistant["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()},
                })
            })
            .collect();
    }
    let mut completion = json!({
        "id": message.id,
        "object": "chat.completion",
        "created": message.created,
        "model": message.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": assistant,
            "logprobs": null,
            "finish_reason": finish_reason(message),
        }],
        "usage": usage(message),
    });
    if !message.usage.reported
        && let Some(fields) = completion.as_object_mut()
    {
        fields.remove("usage");
    }
    completion
}

/// The SSE events of a streamed completion, each a complete `data: ...\n\n` block.
pub(crate) fn stream(message: &ResolvedMessage, include_usage: bool) -> Vec<StreamEvent> {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": message.id,
            "object": "chat.completion.chunk",
            "created": message.created,
            "model": message.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish,
            }],
        });
        if include_usage && message.usage.reported {
            // With include_usage, every chunk but the last carries `"usage": null`.
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    // Each chunk with the text it carries, if any.
    let mut chunks: Vec<(Value, Option<&str>)> = Vec::new();
    let first_content = if message.text.is_some() {
        json!("")
    } else {
        Value::Null
    };
    chunks.push((
        chunk(json!({"role": "assistant", "content": first_content}), None),
        None,
    ));
    for piece in message.text_pieces(STREAM_PIECES) {
        chunks.push((chunk(json!({"content": piece}), None), Some(piece)));
    }
    for (index, (id, name, arguments)) in message.tool_calls.iter().enumerate() {
        chunks.push((
            chunk(
                json!({"tool_calls": [{
                    "index": index,
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                None,
            ),
            None,
        ));
        let arguments = arguments.to_string();
        for piece in split_pieces(&arguments, STREAM_PIECES) {
            chunks.push((
                chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    None,
                ),
                None,
            ));
        }
    }
    chunks.push((chunk(json!({}), Some(finish_reason(message))), None));
    if include_usage && message.usage.reported {
        chunks.push((
            json!({
                "id": message.id,
                "object": "chat.completion.chunk",
                "created": message.created,
                "model": message.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage(message),
            }),
            None,
        ));
    }
    let mut events: Vec<StreamEvent> = chunks
        .into_iter()
        .map(|(chunk, text)| StreamEvent {
            block: format!("data: {chunk}\n\n"),
            text: text.map(str::to_owned),
        })
        .collect();
    events.push(StreamEvent {
        block: "data: [DONE]\n\n".to_string(),
        text: None,
    });
    events
}

/// The error object OpenAI returns with a non-2xx status.
pub(crate) fn error(status: StatusCode, message: &str) -> Value {
    let (error_type, code) = match status.as_u16() {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({
        "error": {
            "message": message,
            "type": error_type,
            "param": null,
            "code": code,
        }
    })
}
