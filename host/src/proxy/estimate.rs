//! Token estimates, for model servers that report no usage (some llama.cpp, vLLM and proxy
//! builds answer without a `usage` object even when asked). A request's prompt is measured
//! from the text it sends ([`request_chars`]) and a reply from the text it streams
//! ([`reply_chars`]); [`tokens_for`] turns characters into tokens at [`CHARS_PER_TOKEN`], the
//! usual rule of thumb for English text and code. Usage recorded from these is marked
//! estimated, so a total is never silently zero and never passed off as exact.
//!
//! Image data is not counted (a base64 picture is not text the model reads as tokens).

use protocol::ProviderKind;
use serde_json::{Map, Value};

/// Characters per token, the common estimate for English text and code.
pub const CHARS_PER_TOKEN: u64 = 4;

/// The tokens `chars` characters are estimated to take (rounded up).
pub fn tokens_for(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// The characters of text a request body sends the model: its system prompt, messages and
/// tool definitions (keys and values), without image data.
pub fn request_chars(body: &Map<String, Value>) -> u64 {
    ["system", "messages", "tools"]
        .iter()
        .filter_map(|key| body.get(*key))
        .map(text_chars)
        .sum()
}

/// Every string in `value` (object keys too), skipping image data: an Anthropic image
/// source's `data` and an OpenAI `data:` URL.
fn text_chars(value: &Value) -> u64 {
    match value {
        Value::String(text) if text.starts_with("data:") => 0,
        Value::String(text) => count(text),
        Value::Array(items) => items.iter().map(text_chars).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(key, _)| key.as_str() != "data")
            .map(|(key, value)| count(key) + text_chars(value))
            .sum(),
        Value::Number(_) | Value::Bool(_) | Value::Null => 0,
    }
}

/// The characters of reply text in one response document: a whole JSON response or one
/// streamed event (content, reasoning, tool names and arguments).
pub fn reply_chars(provider: ProviderKind, document: &Value) -> u64 {
    match provider {
        ProviderKind::OpenAi => document["choices"]
            .as_array()
            .map_or(0, |choices| choices.iter().map(openai_choice_chars).sum()),
        ProviderKind::Anthropic => {
            let delta = &document["delta"];
            let streamed = string_chars(&delta["text"])
                + string_chars(&delta["partial_json"])
                + string_chars(&delta["thinking"])
                + string_chars(&document["content_block"]["name"]);
            let whole: u64 = document["content"].as_array().map_or(0, |blocks| {
                blocks
                    .iter()
                    .map(|block| {
                        string_chars(&block["text"])
                            + string_chars(&block["thinking"])
                            + string_chars(&block["name"])
                            + if block["input"].is_null() {
                                0
                            } else {
                                count(&block["input"].to_string())
                            }
                    })
                    .sum()
            });
            streamed + whole
        }
    }
}

/// One OpenAI choice: a streamed `delta` or a whole `message`.
fn openai_choice_chars(choice: &Value) -> u64 {
    let part = if choice["delta"].is_object() {
        &choice["delta"]
    } else {
        &choice["message"]
    };
    let calls: u64 = part["tool_calls"].as_array().map_or(0, |calls| {
        calls
            .iter()
            .map(|call| {
                string_chars(&call["function"]["name"])
                    + string_chars(&call["function"]["arguments"])
            })
            .sum()
    });
    string_chars(&part["content"]) + string_chars(&part["reasoning_content"]) + calls
}

fn string_chars(value: &Value) -> u64 {
    value.as_str().map_or(0, count)
}

fn count(text: &str) -> u64 {
    u64::try_from(text.chars().count()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_up() {
        assert_eq!(tokens_for(0), 0);
        assert_eq!(tokens_for(1), 1);
        assert_eq!(tokens_for(8), 2);
        assert_eq!(tokens_for(9), 3);
    }

    #[test]
    fn request_text_is_counted_and_image_data_is_not() {
        let body = json!({
            "model": "ignored-model-name",
            "max_tokens": 100,
            "system": "abcd",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAAAAAAAAAA"}},
                    {"type": "image", "source": {"type": "base64", "data": "AAAAAAAAAAAAAAAA"}}
                ]}
            ]
        });
        let Value::Object(body) = body else {
            unreachable!()
        };
        // system 4; messages: "role" 4 + "user" 4 + "content" 7 + "type" 4 + "text" 4 +
        // "text" 4 + "hello" 5 + "type" 4 + "image_url" 9 + "image_url" 9 + "url" 3 +
        // "type" 4 + "image" 5 + "source" 6 + "type" 4 + "base64" 6 = 82.
        assert_eq!(request_chars(&body), 4 + 82);
    }

    #[test]
    fn reply_text_of_both_wire_formats() {
        use ProviderKind::{Anthropic, OpenAi};
        let delta = json!({"choices": [{"delta": {"content": "Hello", "tool_calls": [
            {"function": {"name": "bash", "arguments": "{\"c\":1}"}}]}}]});
        assert_eq!(reply_chars(OpenAi, &delta), 5 + 4 + 7);
        let whole = json!({"choices": [{"message": {"content": "Hi there"}}]});
        assert_eq!(reply_chars(OpenAi, &whole), 8);
        let usage_only = json!({"choices": [], "usage": {"prompt_tokens": 3}});
        assert_eq!(reply_chars(OpenAi, &usage_only), 0);
        let text =
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "abc"}});
        assert_eq!(reply_chars(Anthropic, &text), 3);
        let message = json!({"content": [{"type": "text", "text": "ok"},
            {"type": "tool_use", "name": "bash", "input": {"c": 1}}]});
        assert_eq!(reply_chars(Anthropic, &message), 2 + 4 + 7);
    }
}
