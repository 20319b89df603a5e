//! Test support: a session folder in a tempdir where the test plays the host ([`Session`]),
//! and a fake model proxy on `in/proxy.sock` that answers canned responses and records what
//! it received ([`FakeModel`]); it also takes the runner's live drafts
//! (`POST /crabpot/v1/live`), parsed as the host parses them, and answers them as scripted
//! ([`LiveScript`]), recording each with its arrival time ([`LivePost`]).

// Test-only helpers: a failed setup step should fail the test on the spot.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use agent_runner::{RetryPolicy, RunnerOptions};
use protocol::live::{LIVE_PATH, LiveEvent};
use protocol::rows::AckStatus;
use protocol::schema::{create_outbound, open_inbound_writer, open_outbound_reader};
use protocol::{
    Destination, DestinationType, InboundContent, MessageId, NewInboundRow, OutboundRow,
    ProviderKind, Sender, Seq, SessionConfig, SessionPaths, SessionRouting, inbound, outbound,
};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

    /// A read-only connection to `outbound.db`. The runner may be mid-write (DELETE journal):
    /// a busy open is tried again until a deadline, as the host's reader would next pass.
    pub fn reader(&self) -> Connection {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match open_outbound_reader(&self.paths.outbound_db()) {
                Ok(conn) => return conn,
                Err(e)
                    if std::time::Instant::now() < deadline && e.to_string().contains("locked") =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("opening outbound.db: {e}"),
            }
        }
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
    /// 200 with `text/event-stream`: each event written whole, `delay` after the one before.
    Paced(Vec<String>, Duration),
    /// 200 with `text/event-stream`: these events, then nothing more, ever (a model that
    /// stalls mid-answer).
    Stalled(Vec<String>),
}

/// How the fake answers live posts: each after `delay`, with the next scripted
/// `(status, body)`, then `204` once the script is used up.
#[derive(Clone, Debug, Default)]
pub struct LiveScript {
    pub delay: Duration,
    pub answers: Vec<(u16, String)>,
}

/// A live post the fake received.
#[derive(Clone, Debug)]
pub struct LivePost {
    pub event: LiveEvent,
    pub at: Instant,
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

/// The fake proxy: answers model requests with `responses` in order (a model request past
/// the last is closed unanswered), and live posts as its [`LiveScript`] says.
pub struct FakeModel {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub received: Arc<Notify>,
    live: Arc<Mutex<Vec<LivePost>>>,
    /// The most live posts that were ever in flight at once.
    max_live_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the connection tasks of one fake share.
struct Shared {
    responses: Mutex<VecDeque<Canned>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    received: Arc<Notify>,
    live: Arc<Mutex<Vec<LivePost>>>,
    live_answers: Mutex<VecDeque<(u16, String)>>,
    live_delay: Duration,
    live_in_flight: AtomicUsize,
    max_live_in_flight: Arc<AtomicUsize>,
}

impl FakeModel {
    /// Serves on `in/proxy.sock`, replacing the socket of an earlier fake; live posts are
    /// answered `204` at once.
    pub fn serve(session: &Session, responses: Vec<Canned>) -> Self {
        Self::serve_with(session, responses, LiveScript::default())
    }

    /// [`FakeModel::serve`], answering live posts as `live` says.
    pub fn serve_with(session: &Session, responses: Vec<Canned>, live: LiveScript) -> Self {
        let _ = std::fs::remove_file(session.paths.proxy_socket());
        let listener = UnixListener::bind(session.paths.proxy_socket()).unwrap();
        let shared = Arc::new(Shared {
            responses: Mutex::new(responses.into()),
            requests: Arc::new(Mutex::new(Vec::new())),
            received: Arc::new(Notify::new()),
            live: Arc::new(Mutex::new(Vec::new())),
            live_answers: Mutex::new(live.answers.into()),
            live_delay: live.delay,
            live_in_flight: AtomicUsize::new(0),
            max_live_in_flight: Arc::new(AtomicUsize::new(0)),
        });
        Self {
            requests: shared.requests.clone(),
            received: shared.received.clone(),
            live: shared.live.clone(),
            max_live_in_flight: shared.max_live_in_flight.clone(),
            task: tokio::spawn({
                let shared = shared.clone();
                async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve_connection(shared.clone(), stream));
                    }
                }
            }),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The live posts received so far, in arrival order.
    pub fn live(&self) -> Vec<LivePost> {
        self.live.lock().unwrap().clone()
    }

    /// The live events received so far, in arrival order.
    pub fn live_events(&self) -> Vec<LiveEvent> {
        self.live().into_iter().map(|post| post.event).collect()
    }

    /// The most live posts that were in flight at once.
    pub fn max_live_in_flight(&self) -> usize {
        self.max_live_in_flight.load(Ordering::SeqCst)
    }
}

async fn serve_connection(shared: Arc<Shared>, mut stream: UnixStream) {
    let Some((request, raw_body)) = read_request(&mut stream).await else {
        return;
    };
    if request.path == LIVE_PATH {
        let in_flight = shared.live_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .max_live_in_flight
            .fetch_max(in_flight, Ordering::SeqCst);
        // The host's own parser: whatever the runner sends must pass it.
        let event = protocol::live::parse(&raw_body).expect("a live body the host accepts");
        shared.live.lock().unwrap().push(LivePost {
            event,
            at: Instant::now(),
        });
        tokio::time::sleep(shared.live_delay).await;
        let (status, body) = shared
            .live_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((204, String::new()));
        shared.live_in_flight.fetch_sub(1, Ordering::SeqCst);
        let response = if status == 204 {
            Canned::Json {
                status,
                headers: Vec::new(),
                body: String::new(),
            }
        } else {
            Canned::Json {
                status,
                headers: Vec::new(),
                body,
            }
        };
        write_response(&mut stream, response).await;
        return;
    }
    let response = shared.responses.lock().unwrap().pop_front();
    shared.requests.lock().unwrap().push(request);
    shared.received.notify_waiters();
    if let Some(response) = response {
        write_response(&mut stream, response).await;
    }
}

/// Reads one request; `None` when the client hung up first (a live post given up).
async fn read_request(stream: &mut UnixStream) -> Option<(Recorded, Vec<u8>)> {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
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
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let recorded = Recorded {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap(),
    };
    Some((recorded, body))
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

async fn write_response(stream: &mut UnixStream, response: Canned) {
    let mut response = response;
    while let Canned::Held(release, inner) = response {
        let _ = release.await;
        response = *inner;
    }
    match response {
        Canned::Sse(body) => {
            let _ = stream.write_all(SSE_HEAD.as_bytes()).await;
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
        Canned::Paced(events, delay) => {
            let _ = stream.write_all(SSE_HEAD.as_bytes()).await;
            for event in events {
                let _ = stream.write_all(event.as_bytes()).await;
                let _ = stream.flush().await;
                tokio::time::sleep(delay).await;
            }
        }
        Canned::Stalled(events) => {
            let _ = stream.write_all(SSE_HEAD.as_bytes()).await;
            for event in events {
                let _ = stream.write_all(event.as_bytes()).await;
            }
            let _ = stream.flush().await;
            std::future::pending::<()>().await;
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

/// An OpenAI stream as separate events: one content delta per piece of `pieces`, then the
/// tool calls `(id, name, arguments)` and the end; for [`Canned::Paced`] and
/// [`Canned::Stalled`] (whose callers drop the end to stall).
pub fn openai_events(pieces: &[&str], calls: &[(&str, &str, &str)]) -> Vec<String> {
    let event = |delta: serde_json::Value, finish: Option<&str>| {
        let chunk =
            serde_json::json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![event(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in pieces {
        events.push(event(serde_json::json!({"content": piece}), None));
    }
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        events.push(event(
            serde_json::json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}),
            None,
        ));
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(event(serde_json::json!({}), Some(finish)));
    events.push("data: [DONE]\n\n".to_owned());
    events
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
