//! Renders a [`ResolvedMessage`] in the Anthropic Messages wire format: one `message` object,
//! or the SSE event sequence of a real stream (`message_start` with the input tokens, for each
//! content block `content_block_start` / `content_block_delta` (`text_delta` pieces, or
//! `input_json_delta` pieces of the tool input) / `content_block_stop`, a `ping`, then
//! `message_delta` with the stop reason and output tokens, and `message_stop`), and the
//! `{"type": "error", ...}` error object.

use http::StatusCode;
use serde_json::{Value, json};

use super::{ResolvedMessage, StreamEvent, split_pieces};

/// How many deltas streamed text and tool input are split into.
const STREAM_PIECES: usize = 3;

fn stop_reason(message: &ResolvedMessage) -> &'static str {
    if message.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

/// The content blocks of the finished message, text first.
fn content_blocks(message: &ResolvedMessage) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(text) = &message.text {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for (id, name, input) in &message.tool_calls {
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    blocks
}

/// The non-streaming `message` object.
pub(crate) fn message(message: &ResolvedMessage) -> Value {
    json!({
        "id": message.id,
        "type": "message",
        "role": "assistant",
        "model": message.model,
        "content": content_blocks(message),
        "stop_reason": stop_reason(message),
        "stop_sequence": null,
        "usage": {
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
        },
    })
}

fn event(name: &str, data: &Value) -> StreamEvent {
    StreamEvent {
        block: format!("event: {name}\ndata: {data}\n\n"),
        text: None,
    }
}

/// The SSE events of a streamed message, each a complete `event: ...\ndata: ...\n\n` block.
pub(crate) fn stream(message: &ResolvedMessage) -> Vec<StreamEvent> {
    let mut events = vec![event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": message.id,
                "type": "message",
                "role": "assistant",
                "model": message.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": message.usage.input_tokens, "output_tokens": 1},
            },
        }),
    )];
    let ping = event("ping", &json!({"type": "ping"}));
    let mut index = 0;
    if message.text.is_some() {
        events.push(event(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }),
        ));
        for piece in message.text_pieces(STREAM_PIECES) {
            let mut delta = event(
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }),
            );
            delta.text = Some(piece.to_owned());
            events.push(delta);
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (id, name, input) in &message.tool_calls {
        events.push(event(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
            }),
        ));
        // The real API opens a tool input with an empty fragment.
        let input = input.to_string();
        let pieces = std::iter::once("").chain(split_pieces(&input, STREAM_PIECES));
        for piece in pieces {
            events.push(event(
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    // The real API sends a ping right after the first block opens.
    let ping_at = if events.len() > 1 { 2 } else { 1 };
    events.insert(ping_at, ping);
    events.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(message), "stop_sequence": null},
            "usage": {"output_tokens": message.usage.output_tokens},
        }),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// The error object Anthropic returns with a non-2xx status.
pub(crate) fn error(status: StatusCode, message: &str) -> Value {
    let error_type = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
    })
}
