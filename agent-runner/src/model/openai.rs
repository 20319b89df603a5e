//! The OpenAI Chat Completions wire format (`POST /v1/chat/completions`), which OpenAI, vLLM,
//! Ollama, llama.cpp server, LM Studio and OpenRouter all speak: [`render_request`] turns a
//! [`ModelRequest`] into its JSON, [`StreamDecoder`] accumulates a streamed answer
//! (`choices[0].delta.content` and `delta.tool_calls[i]` fragments by index, until
//! `data: [DONE]`), [`parse_response`] reads a non-streaming one.
//!
//! Images: a user message with images becomes text and `image_url` parts (data URLs); tool
//! messages take text only, so the images of a run of tool results follow it in one user
//! message that names the tool call each belongs to.

use super::images::ImageInputs;
use super::{ModelError, ModelRequest, ModelResponse, StreamNote};
use crate::image::ImageRef;
use crate::sse::SseEvent;
use crate::transcript::{Entry, ToolCall};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const PATH: &str = "/v1/chat/completions";

/// How a failed tool result is marked for the model: OpenAI tool messages have no error flag.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// The request body.
pub fn render_request(request: &ModelRequest<'_>) -> Value {
    let mut messages = Vec::with_capacity(request.entries.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    // Tool messages take text only: the images of a run of tool results follow it in one
    // user message.
    let mut tool_images: Vec<Value> = Vec::new();
    for entry in request.entries {
        if !matches!(entry, Entry::ToolResult { .. }) {
            flush_tool_images(&mut messages, &mut tool_images);
        }
        match entry {
            Entry::User { text, images, .. } => {
                messages.push(user_message(text, images, request.images))
            }
            Entry::Summary { text, .. } => {
                messages.push(json!({"role": "user", "content": Entry::summary_text(text)}))
            }
            Entry::Assistant { text, tool_calls } => {
                if text.is_empty() && tool_calls.is_empty() {
                    continue;
                }
                let mut message = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { json!(text) },
                });
                if !tool_calls.is_empty() {
                    let calls: Vec<Value> = tool_calls.iter().map(render_tool_call).collect();
                    message["tool_calls"] = Value::Array(calls);
                }
                messages.push(message);
            }
            Entry::ToolResult {
                call_id,
                content,
                is_error,
                images,
            } => {
                let mut content = if *is_error {
                    format!("{TOOL_ERROR_PREFIX}{content}")
                } else {
                    content.clone()
                };
                for image in images {
                    match request.images.data(image) {
                        Some(data) => {
                            content.push_str(&format!(
                                "\n{} (attached in the next message)",
                                image.describe()
                            ));
                            tool_images.push(json!({
                                "type": "text",
                                "text": format!("{} from tool call {call_id}:", image.describe()),
                            }));
                            tool_images.push(image_part(image, data));
                        }
                        None => {
                            content.push('\n');
                            content.push_str(&request.images.placeholder(image));
                        }
                    }
                }
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            }
        }
    }
    flush_tool_images(&mut messages, &mut tool_images);
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        // The host proxy adds `stream_options.include_usage` where it counts usage.
        "stream": true,
        "max_tokens": request.max_output_tokens,
    });
    if !request.tools.is_empty() {
        body["tools"] = Value::Array(super::tool_schema::openai_tools(request.tools));
    }
    body
}

/// A user message: plain text, or text and image parts when it carries images that are sent.
fn user_message(text: &str, images: &[ImageRef], inputs: &ImageInputs) -> Value {
    let mut text = text.to_owned();
    let mut parts = Vec::new();
    for image in images {
        match inputs.data(image) {
            Some(data) => parts.push(image_part(image, data)),
            None => {
                text.push('\n');
                text.push_str(&inputs.placeholder(image));
            }
        }
    }
    if parts.is_empty() {
        return json!({"role": "user", "content": text});
    }
    parts.insert(0, json!({"type": "text", "text": text}));
    json!({"role": "user", "content": parts})
}

/// Adds the user message carrying the images of the tool results just rendered, if any.
fn flush_tool_images(messages: &mut Vec<Value>, parts: &mut Vec<Value>) {
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": std::mem::take(parts)}));
    }
}

fn image_part(image: &ImageRef, data: &str) -> Value {
    json!({
        "type": "image_url",
        "image_url": {"url": format!("data:{};base64,{data}", image.format.media_type())},
    })
}

fn render_tool_call(call: &ToolCall) -> Value {
    // Some servers parse earlier arguments again; send `{}` rather than the invalid JSON a
    // model once wrote (it got an error result for that call already).
    let arguments = if serde_json::from_str::<Value>(&call.arguments).is_ok() {
        call.arguments.clone()
    } else {
        "{}".to_owned()
    };
    json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    })
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Accumulates a streamed answer.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    text: String,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
}

impl StreamDecoder {
    /// Takes one event; true at `data: [DONE]`.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<bool, ModelError> {
        self.on_event_noting(event, &mut |_| {})
    }

    /// [`StreamDecoder::on_event`], telling `notes` about text deltas and the first tool call.
    pub fn on_event_noting(
        &mut self,
        event: &SseEvent,
        notes: &mut dyn FnMut(StreamNote<'_>),
    ) -> Result<bool, ModelError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|error| ModelError::Decode(format!("a stream chunk is not JSON: {error}")))?;
        if let Some(error) = chunk.get("error") {
            return Err(stream_error(error));
        }
        let Some(choice) = first_choice(&chunk) else {
            // The usage chunk at the end has no choices.
            return Ok(false);
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str()
            && !text.is_empty()
        {
            self.text.push_str(text);
            notes(StreamNote::Text(text));
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            if self.calls.is_empty() && !calls.is_empty() {
                notes(StreamNote::ToolCall);
            }
            for (position, call) in calls.iter().enumerate() {
                let index = call["index"].as_u64().unwrap_or(position as u64);
                let partial = self.calls.entry(index).or_default();
                if let Some(id) = call["id"].as_str().filter(|id| !id.is_empty()) {
                    partial.id = id.to_owned();
                }
                let function = &call["function"];
                if let Some(name) = function["name"].as_str() {
                    // Names normally come whole in one fragment; some servers repeat them.
                    if partial.name != name {
                        partial.name.push_str(name);
                    }
                }
                if let Some(arguments) = function["arguments"].as_str() {
                    partial.arguments.push_str(arguments);
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(false)
    }

    /// The answer. `complete` is false when the stream ended without `[DONE]`: that is
    /// accepted only if a finish reason was seen.
    pub fn finish(self, complete: bool) -> Result<ModelResponse, ModelError> {
        if !complete && self.finish_reason.is_none() {
            return Err(ModelError::Truncated);
        }
        let tool_calls = self
            .calls
            .into_iter()
            .map(|(index, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{index}")
                } else {
                    call.id
                },
                name: call.name,
                arguments: call.arguments,
            })
            .collect();
        Ok(ModelResponse {
            text: self.text,
            tool_calls,
            stop_reason: self.finish_reason,
        })
    }
}

fn first_choice(chunk: &Value) -> Option<&Value> {
    let choices = chunk["choices"].as_array()?;
    choices
        .iter()
        .find(|choice| choice["index"].as_u64().unwrap_or(0) == 0)
}

fn stream_error(error: &Value) -> ModelError {
    let text = |key: &str| error[key].as_str().map(str::to_owned);
    ModelError::Stream {
        error_type: text("type").or_else(|| text("code")),
        message: text("message")
            .or_else(|| error.as_str().map(str::to_owned))
            .unwrap_or_else(|| error.to_string()),
    }
}

/// Reads a non-streaming answer.
pub fn parse_response(body: &[u8]) -> Result<ModelResponse, ModelError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ModelError::Decode(format!("the response is not JSON: {error}")))?;
    if let Some(error) = value.get("error") {
        return Err(stream_error(error));
    }
    let choice = first_choice(&value)
        .ok_or_else(|| ModelError::Decode("the response has no choices".into()))?;
    let message = &choice["message"];
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(index, call)| ToolCall {
                    id: call["id"]
                        .as_str()
                        .map_or_else(|| format!("call_{index}"), str::to_owned),
                    name: call["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments: match &call["function"]["arguments"] {
                        Value::String(text) => text.clone(),
                        Value::Null => String::new(),
                        // A few servers send the arguments as an object.
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ModelResponse {
        text: message["content"].as_str().unwrap_or("").to_owned(),
        tool_calls,
        stop_reason: choice["finish_reason"].as_str().map(str::to_owned),
    })
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
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me \"}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tell them.\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"send_message\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"to\\\": \\\"fam\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"send_message\",\"arguments\":\"{\\\"text\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ily\\\", \\\"text\\\": \\\"hé\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"x\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
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
            let mut want: Vec<String> = ["Let me ", "tell them."].map(str::to_owned).to_vec();
            assert_eq!(want.concat(), text);
            want.push("<tool call>".to_owned());
            assert_eq!(notes, want, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn stream_with_split_tool_calls() {
        for chunk_size in [1, 2, 3, 7, 64, usize::MAX] {
            let response = decode(STREAM, chunk_size).unwrap();
            assert_eq!(
                response,
                ModelResponse {
                    text: "Let me tell them.".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "call_a".into(),
                            name: "send_message".into(),
                            arguments: r#"{"to": "family", "text": "hé"}"#.into(),
                        },
                        ToolCall {
                            id: "call_b".into(),
                            name: "send_message".into(),
                            arguments: r#"{"text":"x"}"#.into(),
                        },
                    ],
                    stop_reason: Some("tool_calls".into()),
                },
                "chunk size {chunk_size}"
            );
        }
    }

    #[test]
    fn stream_end_without_done() {
        let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n";
        assert!(matches!(decode(cut, 5), Err(ModelError::Truncated)));
        let finished = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n";
        assert_eq!(decode(finished, 5).unwrap().text, "ok");
    }

    #[test]
    fn stream_error_event() {
        let body =
            "data: {\"error\":{\"message\":\"upstream overloaded\",\"type\":\"server_error\"}}\n\n";
        let error = decode(body, 4).unwrap_err();
        assert_eq!(error.user_message(), "upstream overloaded");
        assert!(error.is_retryable());
    }

    #[test]
    fn non_streaming_response() {
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"send_message","arguments":"{\"text\":\"hi\"}"}}]},
            "finish_reason":"tool_calls"}]}"#;
        let response = parse_response(body).unwrap();
        assert_eq!(response.text, "");
        assert_eq!(response.tool_calls[0].arguments, r#"{"text":"hi"}"#);
        let plain = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_response(plain).unwrap().text, "Hello");
        assert!(matches!(parse_response(b"{}"), Err(ModelError::Decode(_))));
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
        assert!(!body.contains("image_url"), "{body}");
        assert!(body.contains("[image: cat.png, 800x600] (this model cannot see images"));
    }
}
