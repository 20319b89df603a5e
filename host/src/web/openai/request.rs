//! The body of `POST /v1/chat/completions`, read as hostile input ([`parse_completion`]):
//! at most [`MAX_BODY_BYTES`], JSON, a `model`, a non-empty `messages` list with at least one
//! `user` message whose content is text. Only the last user message is kept: the agent has
//! its own history. Fields crabpot does not use (`temperature`, `tools`, ...) are ignored.

use super::error::OpenAiError;
use crate::channels::web::{MAX_MESSAGE_BYTES, check_api_name};
use serde::Deserialize;

/// The largest request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The most messages a request may carry.
pub const MAX_MESSAGES: usize = 10_000;

/// What a completion request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionRequest {
    /// The agent group.
    pub model: String,
    /// The text of the last user message.
    pub text: String,
    pub stream: bool,
    /// The conversation's name: the request's `user`, else `default`.
    pub conversation: String,
}

#[derive(Deserialize)]
struct RawRequest {
    model: Option<serde_json::Value>,
    messages: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    user: Option<serde_json::Value>,
}

/// The conversation name used when a request has no `user`.
pub const DEFAULT_CONVERSATION: &str = "default";

/// Validates a request body.
pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, OpenAiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(OpenAiError::invalid(
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            None,
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        OpenAiError::invalid(format!("the request body is not a JSON object: {e}"), None)
    })?;
    if !value.is_object() {
        return Err(OpenAiError::invalid(
            "the request body is not a JSON object",
            None,
        ));
    }
    let raw: RawRequest = serde_json::from_value(value).map_err(|e| {
        OpenAiError::invalid(format!("the request body is not a JSON object: {e}"), None)
    })?;
    let model = match raw.model {
        Some(serde_json::Value::String(model)) if !model.trim().is_empty() => model,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "`model` must be the name of an agent group",
                Some("model"),
            ));
        }
        None => {
            return Err(OpenAiError::invalid(
                "you must provide a model parameter (the agent group)",
                Some("model"),
            ));
        }
    };
    let stream = match raw.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(stream)) => stream,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "`stream` must be true or false",
                Some("stream"),
            ));
        }
    };
    let conversation = match raw.user {
        None | Some(serde_json::Value::Null) => DEFAULT_CONVERSATION.to_owned(),
        Some(serde_json::Value::String(user)) => {
            check_api_name(&user).map_err(|e| OpenAiError::invalid(e.to_string(), Some("user")))?;
            user
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "`user` must be a string",
                Some("user"),
            ));
        }
    };
    let messages = match raw.messages {
        Some(serde_json::Value::Array(messages)) => messages,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "`messages` must be a list of messages",
                Some("messages"),
            ));
        }
        None => {
            return Err(OpenAiError::invalid(
                "`messages` is required",
                Some("messages"),
            ));
        }
    };
    if messages.is_empty() {
        return Err(OpenAiError::invalid(
            "`messages` is empty: send at least one user message",
            Some("messages"),
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(OpenAiError::invalid(
            format!("`messages` holds more than {MAX_MESSAGES} messages"),
            Some("messages"),
        ));
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(|r| r.as_str()) == Some("user"))
        .ok_or_else(|| {
            OpenAiError::invalid(
                "`messages` has no message with role `user`",
                Some("messages"),
            )
        })?;
    let text = content_text(last_user.get("content"))?;
    if text.trim().is_empty() {
        return Err(OpenAiError::invalid(
            "the last user message is empty",
            Some("messages"),
        ));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(OpenAiError::invalid(
            format!("the last user message is longer than {MAX_MESSAGE_BYTES} bytes"),
            Some("messages"),
        ));
    }
    Ok(CompletionRequest {
        model,
        text,
        stream,
        conversation,
    })
}

/// A message's content as text: a string, or a list of `text` parts joined.
fn content_text(content: Option<&serde_json::Value>) -> Result<String, OpenAiError> {
    match content {
        Some(serde_json::Value::String(text)) => Ok(text.clone()),
        Some(serde_json::Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(|t| t.as_str()),
                    part.get("text").and_then(|t| t.as_str()),
                ) {
                    (Some("text"), Some(part_text)) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(part_text);
                    }
                    (kind, _) => {
                        return Err(OpenAiError::invalid(
                            format!(
                                "only text content is supported, not {}",
                                kind.unwrap_or("a part without a type")
                            ),
                            Some("messages"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) | None => Err(OpenAiError::invalid(
            "the last user message's `content` must be text",
            Some("messages"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(model, text, stream, conversation)`, or `(what the message says, param)`.
    type Expected<'a> = Result<(&'a str, &'a str, bool, &'a str), (&'a str, Option<&'a str>)>;

    fn check(body: &str, expected: Expected<'_>) {
        let got = parse_completion(body.as_bytes());
        match (got, expected) {
            (Ok(request), Ok((model, text, stream, conversation))) => {
                assert_eq!(
                    (
                        request.model.as_str(),
                        request.text.as_str(),
                        request.stream,
                        request.conversation.as_str()
                    ),
                    (model, text, stream, conversation),
                    "{body}"
                );
            }
            (Err(error), Err((needle, param))) => {
                assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
                assert!(error.message.contains(needle), "{body}: {}", error.message);
                assert_eq!(error.param, param, "{body}");
            }
            (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn requests_are_read_as_hostile_input() {
        check(
            r#"{"model":"main","messages":[{"role":"system","content":"be nice"},{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":"second"}]}"#,
            Ok(("main", "second", false, "default")),
        );
        check(
            r#"{"model":"main","stream":true,"user":"u1","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
            Ok(("main", "a\nb", true, "u1")),
        );
        check(r#"{"messages":[]}"#, Err(("model", Some("model"))));
        check(r#"{"model":"main"}"#, Err(("required", Some("messages"))));
        check(
            r#"{"model":"main","messages":[]}"#,
            Err(("empty", Some("messages"))),
        );
        check(
            r#"{"model":"main","messages":[{"role":"system","content":"x"}]}"#,
            Err(("no message with role `user`", Some("messages"))),
        );
        check(
            r#"{"model":"main","messages":[{"role":"user","content":"  "}]}"#,
            Err(("empty", Some("messages"))),
        );
        check(
            r#"{"model":"main","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
            Err(("only text", Some("messages"))),
        );
        check(
            r#"{"model":"main","messages":[{"role":"user","content":7}]}"#,
            Err(("must be text", Some("messages"))),
        );
        check(
            r#"{"model":"main","user":"a/b","messages":[{"role":"user","content":"x"}]}"#,
            Err(("without `/`", Some("user"))),
        );
        check(
            r#"{"model":"main","stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
            Err(("true or false", Some("stream"))),
        );
        check("not json", Err(("not a JSON object", None)));
        check("[1,2]", Err(("not a JSON object", None)));
    }

    #[test]
    fn oversized_bodies_and_messages_are_refused() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let error = parse_completion(&big).unwrap_err();
        assert!(error.message.contains("larger than"), "{}", error.message);
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let body =
            serde_json::json!({"model": "main", "messages": [{"role": "user", "content": long}]});
        let error = parse_completion(body.to_string().as_bytes()).unwrap_err();
        assert!(error.message.contains("longer than"), "{}", error.message);
    }
}
