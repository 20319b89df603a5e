//! Test support: a session folder in a tempdir where the test plays the host ([`Session`]),
//! and a fake model proxy on `in/proxy.sock` that answers canned responses and records what
//! it received ([`FakeModel`]).

// Test-only helpers: a failed setup step should fail the test on the spot.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use agent_runner::{RetryPolicy, RunnerOptions};
use protocol::rows::AckStatus;
use protocol::schema::{create_outbound, open_inbound_writer, open_outbound_reader};
use protocol::{
    Destination, DestinationType, InboundContent, MessageId, NewInboundRow, OutboundRow,
    ProviderKind, Sender, Seq, SessionConfig, SessionPaths, SessionRouting, inbound, outbound,
};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, oneshot};

/// A session folder with the test as its host.
pub struct Session {
    pub dir: tempfile::TempDir,
    pub paths: SessionPaths,
    pub group_dir: PathBuf,
    pub host: Connection,
}

pub fn config(provider: ProviderKind) -> SessionConfig {
    SessionConfig {
        provider,
        model: "test-model".into(),
        max_output_tokens: 512,
        max_tool_rounds: 4,
        heartbeat_interval_ms: 50,
        poll_interval_ms: 60_000,
        watch_files: true,
        ..SessionConfig::default()
    }
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = SessionPaths::at(dir.path().join("session"));
        for folder in [paths.in_dir(), paths.out_dir(), paths.work_dir()] {
            std::fs::create_dir_all(folder).unwrap();
        }
        let group_dir = dir.path().join("group");
        std::fs::create_dir_all(&group_dir).unwrap();
        std::fs::write(group_dir.join("AGENT.md"), "You are the test agent.").unwrap();
        let host = open_inbound_writer(&paths.inbound_db()).unwrap();
        create_outbound(&paths.outbound_db()).unwrap();
        inbound::set_config(&host, &config).unwrap();
        inbound::set_routing(
            &host,
            &SessionRouting {
                channel_type: "cli".into(),
                platform_id: "local".into(),
                thread_id: None,
            },
        )
        .unwrap();
        inbound::set_destinations(
            &host,
            &[Destination {
                name: "family".into(),
                display_name: "Family chat".into(),
                destination_type: DestinationType::Channel,
                channel_type: Some("telegram".into()),
                platform_id: Some("-100".into()),
                thread_id: None,
                agent_group_id: None,
            }],
        )
        .unwrap();
        Self {
            dir,
            paths,
            group_dir,
            host,
        }
    }

    pub fn options(&self) -> RunnerOptions {
        let mut options = RunnerOptions::at(self.paths.root(), &self.group_dir);
        options.model_retry = RetryPolicy {
            max_tries: 3,
            first_delay: Duration::from_millis(1),
        };
        options.open_deadline = Duration::from_millis(200);
        options
    }

    /// Inserts a row as the host does, above every outbound seq it has seen.
    pub fn insert(&self, row: &NewInboundRow) -> Seq {
        let outbound_max = outbound::max_seq(&self.reader()).unwrap();
        inbound::insert(&self.host, row, outbound_max).unwrap()
    }

    /// A chat message from Ann; returns its id and seq.
    pub fn chat(&self, text: &str) -> (MessageId, Seq) {
        let row = chat_row(text);
        let seq = self.insert(&row);
        (row.id, seq)
    }

    pub fn reader(&self) -> Connection {
        open_outbound_reader(&self.paths.outbound_db()).unwrap()
    }

    pub fn outbound_rows(&self) -> Vec<OutboundRow> {
        outbound::read_after(&self.reader(), Seq(-1), 1000, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|row| row.unwrap())
            .collect()
    }

    pub fn ack(&self, id: &MessageId) -> Option<AckStatus> {
        outbound::ack(&self.reader(), id).unwrap()
    }

    /// Text of an outbound row's message content.
    pub fn text(row: &OutboundRow) -> String {
        let content: serde_json::Value = serde_json::from_str(&row.content).unwrap();
        content["text"].as_str().unwrap().to_owned()
    }
}

pub fn chat_row(text: &str) -> NewInboundRow {
    NewInboundRow::chat(&InboundContent {
        text: text.into(),
        sender: Some(Sender {
            id: "u1".into(),
            name: Some("Ann".into()),
        }),
        attachments: vec![],
        ..InboundContent::default()
    })
}

/// One canned answer of the fake proxy.
pub enum Canned {
    /// 200 with `text/event-stream`, the body written in small pieces.
    Sse(String),
    /// Any status with a JSON body and extra headers.
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Waits until released before answering.
    Held(oneshot::Receiver<()>, Box<Canned>),
}

/// A request the fake proxy received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The fake proxy: answers `responses` in order, one per connection.
pub struct FakeModel {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub received: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeModel {
    /// Serves on `in/proxy.sock`, replacing the socket of an earlier fake.
    pub fn serve(session: &Session, responses: Vec<Canned>) -> Self {
        let _ = std::fs::remove_file(session.paths.proxy_socket());
        let listener = UnixListener::bind(session.paths.proxy_socket()).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Notify::new());
        let (recorded, notify) = (requests.clone(), received.clone());
        let task = tokio::spawn(async move {
            for response in responses {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut stream).await;
                recorded.lock().unwrap().push(request);
                notify.notify_waiters();
                write_response(&mut stream, response).await;
            }
        });
        Self {
            requests,
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut UnixStream) -> Recorded {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before sending a request");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap();
    let path = request_line.split(' ').nth(1).unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    Recorded {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap(),
    }
}

async fn write_response(stream: &mut UnixStream, response: Canned) {
    let mut response = response;
    while let Canned::Held(release, inner) = response {
        let _ = release.await;
        response = *inner;
    }
    match response {
        Canned::Sse(body) => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            for piece in body.as_bytes().chunks(7) {
                let _ = stream.write_all(piece).await;
                let _ = stream.flush().await;
            }
        }
        Canned::Json {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Canned::Held(..) => unreachable!("held responses are unwrapped above"),
    }
    let _ = stream.shutdown().await;
}

/// An OpenAI stream answering `text` and the given tool calls `(id, name, arguments)`, with
/// every argument string split in two chunks.
pub fn openai_stream(text: &str, calls: &[(&str, &str, &str)]) -> String {
    let mut body = String::new();
    let mut chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let event =
            serde_json::json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        body.push_str(&format!("data: {event}\n\n"));
    };
    if !text.is_empty() {
        let (a, b) = text.split_at(text.len() / 2);
        chunk(serde_json::json!({"role": "assistant", "content": a}), None);
        chunk(serde_json::json!({"content": b}), None);
    }
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        let (a, b) = arguments.split_at(arguments.len() / 2);
        chunk(
            serde_json::json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": a}}]}),
            None,
        );
        chunk(
            serde_json::json!({"tool_calls": [{"index": index, "function": {"arguments": b}}]}),
            None,
        );
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    chunk(serde_json::json!({}), Some(finish));
    body.push_str("data: [DONE]\n\n");
    body
}

/// An Anthropic stream answering `text` and the given tool uses `(id, name, input)`.
pub fn anthropic_stream(text: &str, calls: &[(&str, &str, &str)]) -> String {
    let mut body = String::new();
    let mut event = |data: serde_json::Value| {
        let kind = data["type"].as_str().unwrap().to_owned();
        body.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
    };
    event(
        serde_json::json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": []}}),
    );
    let mut index = 0;
    if !text.is_empty() {
        event(
            serde_json::json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        event(
            serde_json::json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
        event(serde_json::json!({"type": "content_block_stop", "index": index}));
        index += 1;
    }
    for (id, name, input) in calls {
        event(
            serde_json::json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        );
        let (a, b) = input.split_at(input.len() / 2);
        for part in [a, b] {
            event(
                serde_json::json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}),
            );
        }
        event(serde_json::json!({"type": "content_block_stop", "index": index}));
        index += 1;
    }
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    event(serde_json::json!({"type": "message_delta", "delta": {"stop_reason": stop}}));
    event(serde_json::json!({"type": "message_stop"}));
    body
}

/// Polls `condition` every few milliseconds until it holds, failing after 10 seconds.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
