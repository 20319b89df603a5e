//! The Anthropic Messages wire format (`POST /v1/messages`): [`render_request`] turns a
//! [`ModelRequest`] into its JSON (strictly alternating user/assistant messages of content
//! blocks), [`StreamDecoder`] follows the event stream (`message_start`,
//! `content_block_start|delta|stop`, `message_delta`, `message_stop`, `error`),
//! [`parse_response`] reads a non-streaming answer. Images go as `image` blocks (base64
//! source) in the user message or inside the `tool_result` they belong to.

use super::images::ImageInputs;
use super::{ModelError, ModelRequest, ModelResponse, StreamNote};
use crate::image::ImageRef;
use crate::sse::SseEvent;
use crate::transcript::{Entry, ToolCall};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const PATH: &str = "/v1/messages";
/// The API version header; the proxy adds the key, never the runner.
pub const HEADERS: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];

/// The request body.
pub fn render_request(request: &ModelRequest<'_>) -> Value {
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for entry in request.entries {
        let (role, blocks) = match entry {
            Entry::User { text, images, .. } => {
                let text = if text.trim().is_empty() {
                    "(empty message)"
                } else {
                    text.as_str()
                };
                let mut blocks = vec![json!({"type": "text", "text": text})];
                blocks.extend(image_blocks(images, request.images));
                ("user", blocks)
            }
            Entry::Summary { text, .. } => (
                "user",
                vec![json!({"type": "text", "text": Entry::summary_text(text)})],
            ),
            Entry::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.trim().is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": input_object(&call.arguments),
                    }));
                }
                if blocks.is_empty() {
                    continue;
                }
                ("assistant", blocks)
            }
            Entry::ToolResult {
                call_id,
                content,
                is_error,
                images,
            } => {
                let text = if content.is_empty() {
                    "(no output)"
                } else {
                    content.as_str()
                };
                // A result with images is a list of blocks; one without stays a string.
                let content = if images.is_empty() {
                    json!(text)
                } else {
                    let mut blocks = vec![json!({"type": "text", "text": text})];
                    blocks.extend(image_blocks(images, request.images));
                    Value::Array(blocks)
                };
                let mut block =
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
                if *is_error {
                    block["is_error"] = Value::Bool(true);
                }
                ("user", vec![block])
            }
        };
        // Roles must alternate: consecutive entries of one role become one message.
        match messages.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    if messages
        .first()
        .is_some_and(|(role, _)| *role == "assistant")
    {
        messages.insert(
            0,
            (
                "user",
                vec![json!({"type": "text", "text": "(conversation resumed)"})],
            ),
        );
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_output_tokens,
        "stream": true,
    });
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = Value::Array(super::tool_schema::anthropic_tools(request.tools));
    }
    body
}

/// An `image` block for each image sent, a text block for each one described instead.
fn image_blocks(images: &[ImageRef], inputs: &ImageInputs) -> Vec<Value> {
    images
        .iter()
        .map(|image| match inputs.data(image) {
            Some(data) => json!({
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": image.format.media_type(),
                    "data": data,
                },
            }),
            None => json!({"type": "text", "text": inputs.placeholder(image)}),
        })
        .collect()
}

/// `tool_use.input` must be an object; arguments that were not one (the model got an error
/// result for that call) are sent as `{}`.
fn input_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({}),
    }
}

#[derive(Debug)]
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        /// The `input` of `content_block_start`, used when no `input_json_delta` follows.
        initial_input: Value,
        partial_json: String,
    },
    /// Thinking and other blocks the runner does not use.
    Other,
}

/// Accumulates a streamed answer.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
}

impl StreamDecoder {
    /// Takes one event; true at `message_stop`.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<bool, ModelError> {
        self.on_event_noting(event, &mut |_| {})
    }

    /// [`StreamDecoder::on_event`], telling `notes` about text deltas and the first tool use.
    pub fn on_event_noting(
        &mut self,
        event: &SseEvent,
        notes: &mut dyn FnMut(StreamNote<'_>),
    ) -> Result<bool, ModelError> {
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|error| ModelError::Decode(format!("a stream event is not JSON: {error}")))?;
        let kind = data["type"]
            .as_str()
            .or(event.event.as_deref())
            .unwrap_or("");
        let index = data["index"].as_u64().unwrap_or(0);
        match kind {
            "content_block_start" => {
                let block = &data["content_block"];
                let block = match block["type"].as_str() {
                    Some("text") => {
                        let text = block["text"].as_str().unwrap_or("");
                        if !text.is_empty() {
                            notes(StreamNote::Text(text));
                        }
                        Block::Text(text.to_owned())
                    }
                    Some("tool_use") => {
                        if !self.has_tool_use() {
                            notes(StreamNote::ToolCall);
                        }
                        Block::ToolUse {
                            id: block["id"].as_str().unwrap_or("").to_owned(),
                            name: block["name"].as_str().unwrap_or("").to_owned(),
                            initial_input: block["input"].clone(),
                            partial_json: String::new(),
                        }
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (delta["type"].as_str(), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), Some(Block::Text(text))) => {
                        let delta = delta["text"].as_str().unwrap_or("");
                        text.push_str(delta);
                        if !delta.is_empty() {
                            notes(StreamNote::Text(delta));
                        }
                    }
                    (Some("text_delta"), None) => {
                        let text = delta["text"].as_str().unwrap_or("");
                        if !text.is_empty() {
                            notes(StreamNote::Text(text));
                        }
                        self.blocks.insert(index, Block::Text(text.to_owned()));
                    }
                    (Some("input_json_delta"), Some(Block::ToolUse { partial_json, .. })) => {
                        partial_json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
            }
            "message_stop" => return Ok(true),
            "error" => return Err(error_event(&data)),
            // message_start, content_block_stop, ping, and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn has_tool_use(&self) -> bool {
        self.blocks
            .values()
            .any(|block| matches!(block, Block::ToolUse { .. }))
    }

    /// The answer; `complete` is false when the stream ended before `message_stop`.
    pub fn finish(self, complete: bool) -> Result<ModelResponse, ModelError> {
        if !complete {
            return Err(ModelError::Truncated);
        }
        let mut response = ModelResponse {
            stop_reason: self.stop_reason,
            ..ModelResponse::default()
        };
        for (index, block) in self.blocks {
            match block {
                Block::Text(text) => response.text.push_str(&text),
                Block::ToolUse {
                    id,
                    name,
                    initial_input,
                    partial_json,
                } => response.tool_calls.push(ToolCall {
                    id: if id.is_empty() {
                        format!("toolu_{index}")
                    } else {
                        id
                    },
                    name,
                    arguments: if !partial_json.trim().is_empty() {
                        partial_json
                    } else if initial_input.is_object() {
                        initial_input.to_string()
                    } else {
                        "{}".to_owned()
                    },
                }),
                Block::Other => {}
            }
        }
        Ok(response)
    }
}

fn error_event(data: &Value) -> ModelError {
    let error = &data["error"];
    ModelError::Stream {
        error_type: error["type"].as_str().map(str::to_owned),
        message: error["message"]
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned),
    }
}

/// Reads a non-streaming answer.
pub fn parse_response(body: &[u8]) -> Result<ModelResponse, ModelError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ModelError::Decode(format!("the response is not JSON: {error}")))?;
    if value["type"].as_str() == Some("error") {
        return Err(error_event(&value));
    }
    let blocks = value["content"]
        .as_array()
        .ok_or_else(|| ModelError::Decode("the response has no content".into()))?;
    let mut response = ModelResponse {
        stop_reason: value["stop_reason"].as_str().map(str::to_owned),
        ..ModelResponse::default()
    };
    for (index, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("text") => response.text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => response.tool_calls.push(ToolCall {
                id: block["id"]
                    .as_str()
                    .map_or_else(|| format!("toolu_{index}"), str::to_owned),
                name: block["name"].as_str().unwrap_or("").to_owned(),
                arguments: if block["input"].is_object() {
                    block["input"].to_string()
                } else {
                    "{}".to_owned()
                },
            }),
            _ => {}
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn decode(body: &str, chunk_size: usize) -> Result<ModelResponse, ModelError> {
        fixtures::decode_stream(body, chunk_size, |event, decoder: &mut StreamDecoder| {
            decoder.on_event(event)
        })
        .and_then(|(decoder, complete)| decoder.finish(complete))
    }

    const STREAM: &str = concat!(
        "event: message_start\r\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[]}}\r\n\r\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
        "event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Telling \"}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"them ✓\"}}\r\n\r\n",
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"send_message\",\"input\":{}}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"to\\\": \\\"fa\"}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"mily\\\", \\\"text\\\": \\\"late\\\"}\"}}\r\n\r\n",
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":1}\r\n\r\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"send_message\",\"input\":{}}}\r\n\r\n",
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":2}\r\n\r\n",
        "event: message_delta\r\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":20}}\r\n\r\n",
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
    );

    /// Text deltas are noted as decoded, then the first tool call once; the notes agree
    /// with the final text however the stream is cut.
    #[test]
    fn stream_notes_text_then_one_tool_call() {
        for chunk_size in [1, 3, 64, usize::MAX] {
            let mut notes: Vec<String> = Vec::new();
            let (decoder, complete) = fixtures::decode_stream(
                STREAM,
                chunk_size,
                |event, decoder: &mut StreamDecoder| {
                    decoder.on_event_noting(event, &mut |note| {
                        notes.push(match note {
                            StreamNote::Text(text) => text.to_owned(),
                            StreamNote::ToolCall => "<tool call>".to_owned(),
                            StreamNote::Retry => "<retry>".to_owned(),
                        })
                    })
                },
            )
            .unwrap();
            let text = decoder.finish(complete).unwrap().text;
            let mut want: Vec<String> = ["Telling ", "them ✓"].map(str::to_owned).to_vec();
            assert_eq!(want.concat(), text);
            want.push("<tool call>".to_owned());
            assert_eq!(notes, want, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn stream_with_split_tool_input() {
        for chunk_size in [1, 2, 5, 13, 100, usize::MAX] {
            let response = decode(STREAM, chunk_size).unwrap();
            assert_eq!(
                response,
                ModelResponse {
                    text: "Telling them ✓".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "toolu_a".into(),
                            name: "send_message".into(),
                            arguments: r#"{"to": "family", "text": "late"}"#.into(),
                        },
                        ToolCall {
                            id: "toolu_b".into(),
                            name: "send_message".into(),
                            arguments: "{}".into(),
                        },
                    ],
                    stop_reason: Some("tool_use".into()),
                },
                "chunk size {chunk_size}"
            );
        }
    }

    #[test]
    fn error_event_and_truncation() {
        let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let error = decode(overloaded, 3).unwrap_err();
        assert_eq!(error.user_message(), "Overloaded");
        assert!(error.is_retryable());
        let invalid = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"}}\n\n";
        assert!(!decode(invalid, 3).unwrap_err().is_retryable());
        let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
        assert!(matches!(decode(cut, 7), Err(ModelError::Truncated)));
    }

    #[test]
    fn non_streaming_response() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","stop_reason":"tool_use","content":[
            {"type":"text","text":"On it."},
            {"type":"tool_use","id":"toolu_1","name":"send_message","input":{"text":"hi"}}]}"#;
        let response = parse_response(body).unwrap();
        assert_eq!(response.text, "On it.");
        assert_eq!(response.tool_calls[0].id, "toolu_1");
        assert_eq!(response.tool_calls[0].arguments, r#"{"text":"hi"}"#);
        let error =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(parse_response(error).unwrap_err().is_retryable());
    }

    #[test]
    fn request_rendering() {
        let (entries, tools) = fixtures::conversation();
        let request = fixtures::request(&entries, &tools);
        insta::assert_json_snapshot!(render_request(&request));
    }

    #[test]
    fn request_rendering_with_images() {
        let (_dir, entries, images) = fixtures::conversation_with_images();
        let request = ModelRequest {
            images: &images,
            ..fixtures::request(&entries, &[])
        };
        insta::assert_json_snapshot!(render_request(&request));
        let blind = ImageInputs::none();
        let request = ModelRequest {
            images: &blind,
            ..fixtures::request(&entries, &[])
        };
        let body = render_request(&request).to_string();
        assert!(!body.contains(r#""type":"image""#), "{body}");
        assert!(body.contains("[image: cat.png, 800x600] (this model cannot see images"));
    }

    #[test]
    fn leading_assistant_gets_a_user_message_first() {
        let entries = vec![Entry::Assistant {
            text: "hello".into(),
            tool_calls: vec![],
        }];
        let request = fixtures::request(&entries, &[]);
        let body = render_request(&request);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][1]["role"], "assistant");
        assert!(body.get("tools").is_none());
    }
}
