//! Tests of the fake model server, driven over real TCP by the harness's own hyper client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;

use serde_json::{Value, json};

use super::*;
use crate::http_client::{HttpResponse, SseEvent, post_json_tcp};

const WAIT: Duration = Duration::from_secs(10);

async fn post(fake: &FakeModel, path: &str, headers: &[(&str, &str)], body: Value) -> HttpResponse {
    post_json_tcp(fake.addr(), path, headers, &body)
        .await
        .expect("request to the fake model")
}

fn openai_body(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}],
    })
}

/// An OpenAI stream put back together, the way a client accumulates it.
#[derive(Debug, Default)]
struct OpenAiStream {
    chunks: Vec<Value>,
    role: Option<String>,
    content: String,
    n_content_chunks: usize,
    /// index -> (id, name, arguments, number of argument fragments)
    tool_calls: BTreeMap<u64, (String, String, String, usize)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn assemble_openai(events: &[SseEvent]) -> OpenAiStream {
    let mut stream = OpenAiStream::default();
    for (position, event) in events.iter().enumerate() {
        assert!(event.event.is_none(), "OpenAI streams have no event names");
        if event.data == "[DONE]" {
            assert_eq!(position, events.len() - 1, "[DONE] must come last");
            stream.done = true;
            continue;
        }
        let chunk = event.json().unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            assert_eq!(
                chunk["choices"],
                json!([]),
                "the usage chunk has no choices"
            );
            stream.usage = Some(usage.clone());
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let delta = &choice["delta"];
            if let Some(role) = delta.get("role").and_then(Value::as_str) {
                assert!(stream.role.is_none(), "role comes once");
                stream.role = Some(role.to_string());
            } else if let Some(content) = delta.get("content").and_then(Value::as_str) {
                stream.content.push_str(content);
                stream.n_content_chunks += 1;
            }
            for fragment in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = fragment["index"]
                    .as_u64()
                    .expect("every fragment has an index");
                let entry = stream.tool_calls.entry(index).or_default();
                if let Some(id) = fragment.get("id").and_then(Value::as_str) {
                    assert!(entry.0.is_empty(), "id comes in the first fragment only");
                    assert_eq!(fragment["type"], "function");
                    entry.0 = id.to_string();
                    entry.1 = fragment["function"]["name"].as_str().unwrap().to_string();
                } else {
                    assert!(!entry.0.is_empty(), "the first fragment carries the id");
                    assert!(fragment["function"].get("name").is_none());
                    entry.3 += 1;
                }
                entry
                    .2
                    .push_str(fragment["function"]["arguments"].as_str().unwrap());
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                stream.finish_reason = Some(reason.to_string());
            }
        }
        stream.chunks.push(chunk);
    }
    stream
}

/// An Anthropic stream put back together, checking the event order on the way.
#[derive(Debug, Default)]
struct AnthropicStream {
    event_names: Vec<String>,
    input_tokens: Option<u64>,
    /// (type, text or accumulated partial JSON, id, name, number of deltas)
    blocks: Vec<(String, String, String, String, usize)>,
    stop_reason: Option<String>,
    output_tokens: Option<u64>,
}

fn assemble_anthropic(events: &[SseEvent]) -> AnthropicStream {
    let mut stream = AnthropicStream::default();
    let mut open_block: Option<usize> = None;
    for event in events {
        let name = event.event.clone().expect("every Anthropic event is named");
        let data = event.json().unwrap();
        assert_eq!(
            data["type"],
            name.as_str(),
            "the data type repeats the event name"
        );
        match name.as_str() {
            "message_start" => {
                assert!(stream.event_names.is_empty(), "message_start comes first");
                assert_eq!(data["message"]["content"], json!([]));
                assert_eq!(data["message"]["role"], "assistant");
                stream.input_tokens = data["message"]["usage"]["input_tokens"].as_u64();
            }
            "content_block_start" => {
                assert!(open_block.is_none(), "blocks do not nest");
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(index, stream.blocks.len(), "block indexes count up from 0");
                let block = &data["content_block"];
                let block_type = block["type"].as_str().unwrap().to_string();
                match block_type.as_str() {
                    "text" => assert_eq!(block["text"], ""),
                    "tool_use" => assert_eq!(block["input"], json!({})),
                    other => panic!("unexpected block type {other}"),
                }
                stream.blocks.push((
                    block_type,
                    String::new(),
                    block["id"].as_str().unwrap_or_default().to_string(),
                    block["name"].as_str().unwrap_or_default().to_string(),
                    0,
                ));
                open_block = Some(index);
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(open_block, Some(index), "deltas go to the open block");
                let block = &mut stream.blocks[index];
                let delta = &data["delta"];
                match (block.0.as_str(), delta["type"].as_str().unwrap()) {
                    ("text", "text_delta") => block.1.push_str(delta["text"].as_str().unwrap()),
                    ("tool_use", "input_json_delta") => {
                        block.1.push_str(delta["partial_json"].as_str().unwrap());
                    }
                    (block_type, delta_type) => panic!("{delta_type} in a {block_type} block"),
                }
                block.4 += 1;
            }
            "content_block_stop" => {
                assert_eq!(
                    open_block.take(),
                    data["index"].as_u64().map(|i| i as usize)
                );
            }
            "message_delta" => {
                assert!(open_block.is_none());
                stream.stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_string);
                stream.output_tokens = data["usage"]["output_tokens"].as_u64();
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
        stream.event_names.push(name);
    }
    assert_eq!(
        stream.event_names.last().map(String::as_str),
        Some("message_stop")
    );
    stream
}

#[tokio::test]
async fn openai_text_without_streaming() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("hello back").with_usage(12, 3));
    let response = post(
        &fake,
        OPENAI_CHAT_PATH,
        &[("authorization", "Bearer sk-canary")],
        openai_body(false, false),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json().unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-test");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello back");
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, OPENAI_CHAT_PATH);
    assert_eq!(request.api, Some(Api::OpenAiChat));
    assert_eq!(request.header("Authorization"), Some("Bearer sk-canary"));
    assert_eq!(request.body, openai_body(false, false));
    assert_eq!(request.last_user_text().as_deref(), Some("hello there"));
    assert!(!request.is_stream());
    assert!(request.received_at <= Instant::now());
    assert_eq!(fake.pending_replies(), 0);
}

#[tokio::test]
async fn openai_text_streaming_with_usage() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("a streamed answer").with_usage(7, 4));
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(true, true)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let stream = assemble_openai(&response.sse_events());
    assert!(stream.done, "ends with [DONE]");
    assert_eq!(stream.role.as_deref(), Some("assistant"));
    assert_eq!(stream.content, "a streamed answer");
    assert!(
        stream.n_content_chunks >= 2,
        "text split into several deltas"
    );
    assert_eq!(stream.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        stream.usage,
        Some(json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}))
    );
    assert!(stream.tool_calls.is_empty());
    // Every chunk but the usage chunk says `"usage": null` when usage was asked for.
    let n_null_usage = stream
        .chunks
        .iter()
        .filter(|chunk| chunk.get("usage") == Some(&Value::Null))
        .count();
    assert_eq!(n_null_usage, stream.chunks.len() - 1);
    // The finish chunk has an empty delta and comes just before the usage chunk.
    let finish_chunk = &stream.chunks[stream.chunks.len() - 2];
    assert_eq!(finish_chunk["choices"][0]["delta"], json!({}));
}

#[tokio::test]
async fn openai_tool_calls_streaming() {
    let fake = FakeModel::start().unwrap();
    let first_arguments = json!({"destination": "origin", "text": "working on it"});
    let second_arguments = json!({"path": "/session/work/notes.md"});
    fake.push(
        Reply::text("Let me do two things.")
            .with_tool_call("send_message", first_arguments.clone())
            .with_tool(ToolCall::new("read_file", second_arguments.clone()).with_id("call_fixed")),
    );
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(true, false)).await;
    let stream = assemble_openai(&response.sse_events());
    assert!(stream.done);
    assert_eq!(stream.content, "Let me do two things.");
    assert_eq!(stream.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(stream.usage, None, "no usage chunk unless asked for");
    assert!(
        stream
            .chunks
            .iter()
            .all(|chunk| chunk.get("usage").is_none())
    );
    assert_eq!(stream.tool_calls.len(), 2);
    let (id, name, arguments, n_argument_fragments) = &stream.tool_calls[&0];
    assert!(id.starts_with("call_"), "{id}");
    assert_eq!(name, "send_message");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        first_arguments
    );
    assert!(*n_argument_fragments >= 2, "arguments split across chunks");
    let (id, name, arguments, _) = &stream.tool_calls[&1];
    assert_eq!(id, "call_fixed");
    assert_eq!(name, "read_file");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        second_arguments
    );
}

#[tokio::test]
async fn openai_tool_call_without_streaming() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::tool_call("send_message", json!({"text": "hi"})));
    let body = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false))
        .await
        .json()
        .unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let tool_call = &message["tool_calls"][0];
    assert_eq!(tool_call["type"], "function");
    assert_eq!(tool_call["function"]["name"], "send_message");
    let arguments = tool_call["function"]["arguments"]
        .as_str()
        .expect("arguments are a string");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"text": "hi"})
    );
    assert!(tool_call["id"].as_str().unwrap().starts_with("call_"));
}

#[tokio::test]
async fn anthropic_text_and_tool_use_without_streaming() {
    let fake = FakeModel::start().unwrap();
    fake.push(
        Reply::text("Sending now.")
            .with_tool_call("send_message", json!({"text": "hi"}))
            .with_usage(30, 9),
    );
    let response = post(
        &fake,
        ANTHROPIC_MESSAGES_PATH,
        &[
            ("x-api-key", "sk-ant-canary"),
            ("anthropic-version", "2023-06-01"),
        ],
        anthropic_body(false),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    let body = response.json().unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        body["content"][0],
        json!({"type": "text", "text": "Sending now."})
    );
    let tool_use = &body["content"][1];
    assert_eq!(tool_use["type"], "tool_use");
    assert_eq!(tool_use["name"], "send_message");
    assert_eq!(tool_use["input"], json!({"text": "hi"}));
    assert!(tool_use["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 30, "output_tokens": 9})
    );

    let request = &fake.requests()[0];
    assert_eq!(request.api, Some(Api::AnthropicMessages));
    assert_eq!(request.header("x-api-key"), Some("sk-ant-canary"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.last_user_text().as_deref(), Some("hi claude"));
}

#[tokio::test]
async fn anthropic_text_streaming() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("streaming from claude").with_usage(21, 6));
    let response = post(&fake, ANTHROPIC_MESSAGES_PATH, &[], anthropic_body(true)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let stream = assemble_anthropic(&response.sse_events());
    assert_eq!(
        stream.event_names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(stream.input_tokens, Some(21));
    assert_eq!(stream.blocks.len(), 1);
    assert_eq!(stream.blocks[0].1, "streaming from claude");
    assert_eq!(stream.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(stream.output_tokens, Some(6));
}

#[tokio::test]
async fn anthropic_tool_use_streaming() {
    let fake = FakeModel::start().unwrap();
    let input = json!({"destination": "team", "text": "done"});
    fake.push(
        Reply::text("One moment.")
            .with_tool_call("send_message", input.clone())
            .with_tool_call("noop", json!({})),
    );
    let response = post(&fake, ANTHROPIC_MESSAGES_PATH, &[], anthropic_body(true)).await;
    let stream = assemble_anthropic(&response.sse_events());
    assert_eq!(stream.blocks.len(), 3);
    assert_eq!(stream.blocks[0].0, "text");
    assert_eq!(stream.blocks[0].1, "One moment.");
    let (block_type, partial_json, id, name, n_deltas) = &stream.blocks[1];
    assert_eq!(block_type, "tool_use");
    assert!(id.starts_with("toolu_"), "{id}");
    assert_eq!(name, "send_message");
    assert_eq!(serde_json::from_str::<Value>(partial_json).unwrap(), input);
    assert!(
        *n_deltas >= 3,
        "an empty fragment, then the input in pieces"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stream.blocks[2].1).unwrap(),
        json!({})
    );
    assert_ne!(
        stream.blocks[1].2, stream.blocks[2].2,
        "tool ids are unique"
    );
    assert_eq!(stream.stop_reason.as_deref(), Some("tool_use"));
}

#[tokio::test]
async fn error_replies_then_success() {
    let fake = FakeModel::start().unwrap();
    let rate_limited = json!({"error": {"message": "slow down", "type": "requests"}});
    fake.push(Reply::error(429, rate_limited.clone()).with_header("retry-after", "1"));
    fake.push(Reply::api_error(529, "overloaded"));
    fake.push(Reply::api_error(503, "try later"));
    fake.push(Reply::text("finally"));

    // An exact error body comes back as given, even when a stream was asked for.
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(true, false)).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(response.json().unwrap(), rate_limited);

    let response = post(&fake, ANTHROPIC_MESSAGES_PATH, &[], anthropic_body(true)).await;
    assert_eq!(response.status.as_u16(), 529);
    assert_eq!(
        response.json().unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}})
    );

    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false)).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = response.json().unwrap();
    assert_eq!(body["error"]["message"], "try later");
    assert_eq!(body["error"]["type"], "server_error");

    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json().unwrap()["choices"][0]["message"]["content"],
        "finally"
    );
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn default_reply_echoes_the_last_user_text() {
    let fake = FakeModel::start().unwrap();
    // OpenAI: content given as parts, and a tool result after the user message.
    let body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "tool output"},
        ],
    });
    let response = post(&fake, OPENAI_CHAT_PATH, &[], body)
        .await
        .json()
        .unwrap();
    assert_eq!(response["choices"][0]["message"]["content"], "echo: second");

    // Anthropic: the last user turn holds only a tool result, so the text before it counts.
    let body = json!({
        "model": "claude-test",
        "max_tokens": 10,
        "stream": true,
        "messages": [
            {"role": "user", "content": "what time is it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "noon"}]},
        ],
    });
    let events = post(&fake, ANTHROPIC_MESSAGES_PATH, &[], body)
        .await
        .sse_events();
    assert_eq!(
        assemble_anthropic(&events).blocks[0].1,
        "echo: what time is it"
    );

    fake.set_default_reply(Reply::text("fixed"));
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false))
        .await
        .json()
        .unwrap();
    assert_eq!(response["choices"][0]["message"]["content"], "fixed");

    fake.set_default_reply_fn(|request| Reply::text(format!("model was {:?}", request.model())));
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false))
        .await
        .json()
        .unwrap();
    assert_eq!(
        response["choices"][0]["message"]["content"],
        "model was Some(\"gpt-test\")"
    );
}

#[tokio::test]
async fn unknown_paths_and_bad_bodies_are_refused_and_recorded() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("kept for later"));
    let response = post(&fake, "/v1/embeddings", &[], json!({"input": "x"})).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);

    let request = http::Request::builder()
        .method(Method::POST)
        .uri(ANTHROPIC_MESSAGES_PATH)
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"not json")))
        .unwrap();
    let response = crate::http_client::send_tcp(fake.addr(), request)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json().unwrap()["type"], "error");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].api, None);
    assert_eq!(requests[0].path, "/v1/embeddings");
    assert_eq!(requests[1].body, Value::Null);
    assert_eq!(&requests[1].raw_body[..], b"not json");
    assert_eq!(
        fake.pending_replies(),
        1,
        "refused requests consume no reply"
    );
}

#[tokio::test]
async fn wait_for_requests_wakes_on_arrival_and_times_out() {
    let fake = FakeModel::start().unwrap();
    let error = fake
        .wait_for_requests(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("received 0 request(s)"),
        "{error}"
    );

    let addr = fake.addr();
    let sender = tokio::spawn(async move {
        for _ in 0..2 {
            post_json_tcp(addr, OPENAI_CHAT_PATH, &[], &openai_body(false, false))
                .await
                .unwrap();
        }
    });
    let requests = fake.wait_for_requests(2, WAIT).await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].received_at <= requests[1].received_at);
    sender.await.unwrap();
}

#[tokio::test]
async fn delayed_reply_still_answers() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("late").with_delay(Duration::from_millis(20)));
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false)).await;
    assert_eq!(
        response.json().unwrap()["choices"][0]["message"]["content"],
        "late"
    );
}

/// A slowly streamed reply sends its text in chunks of the asked size, one by one, and
/// records when each went out; both wire formats carry the same chunks.
#[tokio::test]
async fn slow_streams_send_and_record_each_chunk() {
    let fake = FakeModel::start().unwrap();
    let text = "héllo wörld, slowly";
    let delay = Duration::from_millis(10);
    fake.push(Reply::text(text).streamed_slowly(4, delay));
    fake.push(Reply::text(text).streamed_slowly(4, delay));
    let before = Instant::now();
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(true, false)).await;
    let stream = assemble_openai(&response.sse_events());
    assert_eq!(stream.content, text);
    assert_eq!(stream.n_content_chunks, 5, "20 chars in chunks of 4");
    let response = post(&fake, ANTHROPIC_MESSAGES_PATH, &[], anthropic_body(true)).await;
    let stream = assemble_anthropic(&response.sse_events());
    assert_eq!(stream.blocks[0].1, text);

    let chunks = fake.sent_chunks();
    for request_index in [0, 1] {
        let sent: Vec<&SentChunk> = chunks
            .iter()
            .filter(|chunk| chunk.request_index == request_index)
            .collect();
        let texts: Vec<&str> = sent.iter().map(|chunk| chunk.text.as_str()).collect();
        assert_eq!(texts, ["héll", "o wö", "rld,", " slo", "wly"]);
        assert!(
            sent.windows(2)
                .all(|pair| pair[0].sent_at <= pair[1].sent_at)
        );
    }
    // Each chunk waited its delay (sleeps never end early).
    assert!(chunks[4].sent_at.duration_since(before) >= delay * 5);
}

/// Without a pace, streamed text chunks are still recorded, and nothing waits.
#[tokio::test]
async fn plain_streams_record_their_chunks_too() {
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::text("abcdef"));
    fake.push(Reply::text("not streamed").streamed_slowly(2, Duration::from_secs(60)));
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(true, false)).await;
    assert_eq!(assemble_openai(&response.sse_events()).content, "abcdef");
    let texts: Vec<String> = fake
        .sent_chunks()
        .into_iter()
        .map(|chunk| chunk.text)
        .collect();
    assert_eq!(texts, ["ab", "cd", "ef"]);
    // A non-streaming request gets the whole reply at once, pace or not.
    let response = post(&fake, OPENAI_CHAT_PATH, &[], openai_body(false, false)).await;
    assert_eq!(
        response.json().unwrap()["choices"][0]["message"]["content"],
        "not streamed"
    );
    assert_eq!(fake.sent_chunks().len(), 3);
}

#[tokio::test]
async fn drop_stops_the_server() {
    let fake = FakeModel::start().unwrap();
    let addr = fake.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(fake.openai_base_url(), format!("http://{addr}/v1"));
    assert_eq!(fake.anthropic_base_url(), format!("http://{addr}"));
    drop(fake);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Image input is recorded in both wire formats, decoded, with the tool call it belongs to.
#[tokio::test]
async fn images_are_recorded_in_both_formats() {
    let fake = FakeModel::start().unwrap();
    // "PNG!" and "JPG!" in base64.
    let (png, jpg) = ("UE5HIQ==", "SlBHIQ==");
    let openai = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_7", "content": "saved"},
            {"role": "user", "content": [
                {"type": "text", "text": "[image: a.png, 1x1] from tool call call_7:"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "a photo"},
                {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{jpg}")}},
            ]},
        ],
    });
    post(&fake, OPENAI_CHAT_PATH, &[], openai).await;
    let anthropic = json!({
        "model": "claude-test",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "saved"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            ]}]},
            {"role": "user", "content": [
                {"type": "text", "text": "a photo"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": jpg}},
            ]},
        ],
    });
    post(&fake, ANTHROPIC_MESSAGES_PATH, &[], anthropic).await;
    let requests = fake.requests();
    for (request, tool_call) in requests.iter().zip(["call_7", "toolu_1"]) {
        let images = request.images();
        assert_eq!(images.len(), 2, "{:?}", request.api);
        assert_eq!(images[0].media_type, "image/png");
        assert_eq!(images[0].data, b"PNG!");
        assert_eq!(images[0].tool_call_id.as_deref(), Some(tool_call));
        assert_eq!(images[1].media_type, "image/jpeg");
        assert_eq!(images[1].data, b"JPG!");
        assert_eq!(images[1].tool_call_id, None);
    }
    assert!(
        post_and_record_plain(&fake).await.images().is_empty(),
        "text-only requests carry no images"
    );
}

async fn post_and_record_plain(fake: &FakeModel) -> RecordedRequest {
    post(fake, OPENAI_CHAT_PATH, &[], openai_body(false, false)).await;
    fake.requests().pop().unwrap()
}

#[test]
fn split_every_keeps_every_char() {
    fn check(text: &str, chars: usize, expected: &[&str]) {
        assert_eq!(split_every(text, chars), expected, "{text:?} by {chars}");
    }
    check("", 3, &[]);
    check("a", 3, &["a"]);
    check("abcdef", 3, &["abc", "def"]);
    check("abcdefg", 3, &["abc", "def", "g"]);
    check("héllo", 2, &["hé", "ll", "o"]);
    check("abc", 0, &["a", "b", "c"]);
}

#[test]
fn split_pieces_keeps_every_char() {
    fn check(text: &str, pieces: usize, expected: &[&str]) {
        assert_eq!(split_pieces(text, pieces), expected, "{text:?} in {pieces}");
    }
    check("", 3, &[]);
    check("a", 3, &["a"]);
    check("abcdef", 3, &["ab", "cd", "ef"]);
    check("abcdefg", 3, &["abc", "def", "g"]);
    check("héllo wörld", 2, &["héllo ", "wörld"]);
    check("abc", 0, &["abc"]);
}
