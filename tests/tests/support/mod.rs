//! Shared by the routing, agents, approvals and admin CLI suites: [`Platform`], a fake chat
//! platform speaking the `cli` channel's line protocol on `cli.sock` (any chat, thread,
//! sender, group chat or mention), plus helpers to run the admin CLI, read the host's
//! databases read-only, script the fake model per agent, and poll with deadlines.

#![allow(dead_code)]

use host::channels::cli::{ClientLine, ServerLine};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::fake_model::{FakeModel, RecordedRequest, Reply, echo_reply};
use tests::host_process::{CliOutput, HostProcess};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

/// How long one agent turn (container start included) may take.
pub const TURN: Duration = Duration::from_secs(90);

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `crabpot <args> --json` until `wanted` holds for its answer, and returns it; panics
/// with `what` and the last answer after [`TURN`]. For what reaches the central DB a moment
/// after the event a test saw (usage records, egress attempts).
pub async fn cli_json_until(
    host: &HostProcess,
    args: &[&str],
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let answer = cli_json(host, args).await;
        if wanted(&answer) {
            return answer;
        }
        assert!(
            start.elapsed() < TURN,
            "timed out waiting for {what}: {answer:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `crabpot egress log --json` until `wanted` holds for its entries (attempts reach the
/// central DB through a writer task, after they end), or panics with `what` and the log.
pub async fn egress_log_until(
    host: &HostProcess,
    what: &str,
    wanted: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let answer = cli_json_until(host, &["egress", "log", "--limit", "100"], what, |answer| {
        answer.as_array().is_some_and(|entries| wanted(entries))
    })
    .await;
    match answer {
        Value::Array(entries) => entries,
        other => panic!("egress log --json is not an array: {other}"),
    }
}

/// One message as a platform sends it.
#[derive(Clone, Debug)]
pub struct Say {
    pub user: String,
    pub chat: String,
    pub thread: Option<String>,
    pub is_group: bool,
    pub is_mention: bool,
}

impl Say {
    /// `user` in a direct chat `chat`.
    pub fn dm(user: &str, chat: &str) -> Self {
        Self {
            user: user.into(),
            chat: chat.into(),
            thread: None,
            is_group: false,
            is_mention: true,
        }
    }

    /// `user` in the group chat `chat`, mentioning the agent when `mention`.
    pub fn group(user: &str, chat: &str, mention: bool) -> Self {
        Self {
            user: user.into(),
            chat: chat.into(),
            thread: None,
            is_group: true,
            is_mention: mention,
        }
    }

    pub fn thread(mut self, thread: &str) -> Self {
        self.thread = Some(thread.into());
        self
    }
}

/// A fake chat platform on the host's `cli.sock`: sends messages into any chat and sees
/// every reply (each names its chat).
pub struct Platform {
    write: OwnedWriteHalf,
    lines: Arc<Mutex<Vec<ServerLine>>>,
    arrived: Arc<Notify>,
    answers_seen: usize,
}

impl Platform {
    pub async fn connect(host: &HostProcess) -> Platform {
        let stream = UnixStream::connect(host.cli_socket()).await.unwrap();
        let (read, mut write) = stream.into_split();
        // The host sends a chat's replies only to terminals subscribed to it; a platform
        // receives every chat (its `subscribed` answer is not counted by `say`).
        let subscribe = ClientLine::Subscribe {
            chat: None,
            all_chats: true,
        };
        let mut json = serde_json::to_string(&subscribe).unwrap();
        json.push('\n');
        write.write_all(json.as_bytes()).await.unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (sink, notify) = (Arc::clone(&lines), Arc::clone(&arrived));
        tokio::spawn(async move {
            let mut reader = BufReader::new(read).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(line) = serde_json::from_str::<ServerLine>(&line) {
                    sink.lock().unwrap().push(line);
                    notify.notify_waiters();
                }
            }
        });
        Platform {
            write,
            lines,
            arrived,
            answers_seen: 0,
        }
    }

    /// Sends a message and returns the host's answer to it (`accepted` or `error`).
    pub async fn say(&mut self, say: &Say, text: &str) -> ServerLine {
        let line = ClientLine::Message {
            text: text.into(),
            user: say.user.clone(),
            chat: Some(say.chat.clone()),
            thread: say.thread.clone(),
            is_group: say.is_group,
            is_mention: say.is_mention,
            message_id: None,
        };
        let mut json = serde_json::to_string(&line).unwrap();
        json.push('\n');
        self.write.write_all(json.as_bytes()).await.unwrap();
        let index = self.answers_seen;
        let answer = self
            .wait("the host's answer", Duration::from_secs(30), |lines| {
                lines
                    .iter()
                    .filter(|l| matches!(l, ServerLine::Accepted { .. } | ServerLine::Error { .. }))
                    .nth(index)
                    .cloned()
            })
            .await;
        self.answers_seen += 1;
        answer
    }

    /// The ids of the approvals an answer says hold the message.
    pub fn held(answer: &ServerLine) -> Vec<String> {
        match answer {
            ServerLine::Accepted { held, .. } => held.clone(),
            other => panic!("expected an accepted answer, got {other:?}"),
        }
    }

    /// Waits for a reply in `chat` whose text contains `fragment`; returns (text, thread).
    pub async fn reply_containing(&self, chat: &str, fragment: &str) -> (String, Option<String>) {
        self.wait(
            &format!("a reply in {chat} containing {fragment:?}"),
            TURN,
            |lines| {
                lines.iter().find_map(|line| match line {
                    ServerLine::Reply {
                        text,
                        platform_id,
                        thread_id,
                        ..
                    } if platform_id == chat && text.contains(fragment) => {
                        Some((text.clone(), thread_id.clone()))
                    }
                    _ => None,
                })
            },
        )
        .await
    }

    /// Waits for a question in `chat`; returns (question id, text, options).
    pub async fn question(&self, chat: &str) -> (String, String, Vec<String>) {
        self.wait(&format!("a question in {chat}"), TURN, |lines| {
            lines.iter().find_map(|line| match line {
                ServerLine::Reply {
                    text,
                    platform_id,
                    question_id: Some(question_id),
                    options,
                    ..
                } if platform_id == chat => {
                    Some((question_id.clone(), text.clone(), options.clone()))
                }
                _ => None,
            })
        })
        .await
    }

    /// Waits for a reply in `chat` containing `fragment`; returns (text, files).
    pub async fn reply_with_files(&self, chat: &str, fragment: &str) -> (String, Vec<String>) {
        self.wait(
            &format!("a reply in {chat} containing {fragment:?}"),
            TURN,
            |lines| {
                lines.iter().find_map(|line| match line {
                    ServerLine::Reply {
                        text,
                        platform_id,
                        files,
                        ..
                    } if platform_id == chat && text.contains(fragment) => {
                        Some((text.clone(), files.clone()))
                    }
                    _ => None,
                })
            },
        )
        .await
    }

    /// Every line the host sent so far.
    pub fn lines(&self) -> Vec<ServerLine> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `find` finds something in the lines so far.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&[ServerLine]) -> Option<T>,
    ) -> T {
        self.wait(what, timeout, find).await
    }

    /// Every reply text seen in `chat` so far.
    pub fn replies(&self, chat: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| match line {
                ServerLine::Reply {
                    text, platform_id, ..
                } if platform_id == chat => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&[ServerLine]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = find(&self.lines.lock().unwrap()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = self.lines.lock().unwrap().clone();
                panic!("timed out waiting for {what}; lines seen: {seen:#?}");
            }
        }
    }
}

/// Runs `crabpot <args>` and asserts it succeeded; returns stdout.
pub async fn cli_ok(host: &HostProcess, args: &[&str]) -> String {
    let output = host.run_cli(args).await.unwrap();
    assert!(
        output.success(),
        "`crabpot {}` failed: {:?}\nstdout: {}\nstderr: {}\nhost log:\n{}",
        args.join(" "),
        output.status,
        output.stdout,
        output.stderr,
        host.log_tail(40)
    );
    output.stdout
}

/// Runs `crabpot <args> --json` and parses stdout.
pub async fn cli_json(host: &HostProcess, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = cli_ok(host, &args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Runs `crabpot <args>`, expecting it to fail with `code`; returns stderr.
pub async fn cli_fails(host: &HostProcess, args: &[&str], code: i32) -> String {
    let output: CliOutput = host.run_cli(args).await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "`crabpot {}`: stdout {} stderr {}",
        args.join(" "),
        output.stdout,
        output.stderr
    );
    assert!(
        !output.stderr.trim().is_empty(),
        "an error says what is wrong"
    );
    output.stderr
}

/// Opens a database read-only (the host's central DB or a session file).
pub fn read_only(path: &Path) -> Connection {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// The host's central DB, read-only.
pub fn central(host: &HostProcess) -> Connection {
    read_only(&host.data_dir().join("crabpot.db"))
}

/// One column of every row of a query.
pub fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A groups dir holding a copy of the repo's `groups/main` and more groups, each with its
/// `AGENT.md`.
pub fn groups_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::copy(
        tests::repo_root().join("groups/main/AGENT.md"),
        main.join("AGENT.md"),
    )
    .unwrap();
    for (folder, instructions) in extra {
        let group = dir.path().join(folder);
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("AGENT.md"), instructions).unwrap();
    }
    dir
}

/// The system prompt of a model request (OpenAI or Anthropic shape).
pub fn system_prompt(request: &RecordedRequest) -> String {
    if let Some(system) = request.body.get("system") {
        return system.to_string();
    }
    request.body["messages"]
        .as_array()
        .and_then(|messages| messages.first())
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].to_string())
        .unwrap_or_default()
}

/// Whether a request follows a tool call (its last message is a tool result).
pub fn after_tool_call(request: &RecordedRequest) -> bool {
    let last = last_message(request);
    last["role"] == "tool"
        || last["content"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|p| p["type"] == "tool_result"))
}

/// The last message of a request, looking past the user message that carries tool images in
/// the OpenAI shape (tool messages take text only, so the runner sends a tool's images in a
/// `user` message right after them, each part naming its tool call).
fn last_message(request: &RecordedRequest) -> Value {
    let messages = request.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let carries_tool_images = |message: &Value| {
        message["role"] == "user"
            && message["content"].as_array().is_some_and(|parts| {
                parts.iter().any(|part| {
                    part["text"]
                        .as_str()
                        .is_some_and(|text| text.contains(" from tool call "))
                })
            })
    };
    let mut rest = messages.as_slice();
    while let Some((last, before)) = rest.split_last() {
        if carries_tool_images(last) && before.last().is_some_and(|m| m["role"] == "tool") {
            rest = before;
        } else {
            return last.clone();
        }
    }
    Value::Null
}

/// The content of the tool result a request ends with, if it follows a tool call (OpenAI
/// or Anthropic shape).
pub fn tool_result(request: &RecordedRequest) -> Option<String> {
    let last = last_message(request);
    if last["role"] == "tool" {
        return Some(match &last["content"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    }
    last["content"].as_array()?.iter().find_map(|part| {
        (part["type"] == "tool_result").then(|| match &part["content"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    })
}

/// Whether a request is the runner's summarisation call (compaction): its system prompt
/// starts with "You condense" and it offers no tools.
pub fn is_summary_request(request: &RecordedRequest) -> bool {
    let system = system_prompt(request);
    system.trim_start_matches('"').starts_with("You condense")
        && request.body["tools"]
            .as_array()
            .is_none_or(|tools| tools.is_empty())
}

/// The session folder of a session id.
pub fn session_path(host: &HostProcess, group: &str, session: &str) -> PathBuf {
    host.sessions_dir().join(group).join(session)
}

/// Scripts `fake` to say what a tool answered after a tool call (`tool said: ...`), and to
/// echo the person's text otherwise.
pub fn echo_or_tool_result(fake: &FakeModel) {
    fake.set_default_reply_fn(|request| {
        if after_tool_call(request) {
            Reply::text(format!(
                "tool said: {}",
                tool_result(request).unwrap_or_default()
            ))
        } else {
            echo_reply(request)
        }
    });
}

/// Every file called `name` under `dir`, at any depth.
pub fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|file| file == name) {
            found.push(path);
        }
    }
    found
}

/// The first file called `name` under `dir`, at any depth.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    find_files(dir, name).into_iter().next()
}

/// Polls `crabpot channels list` until the adapter of `channel` reports `state`
/// (`connected`, `failing`) and returns its health, or panics after `deadline`.
pub async fn wait_channel_health(
    host: &HostProcess,
    channel: &str,
    state: &str,
    deadline: Duration,
) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let listed = cli_json(host, &["channels", "list"]).await;
        let health = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["channel_type"] == channel)
            .map(|c| c["health"].clone());
        if let Some(health) = &health
            && health["state"] == state
        {
            return health.clone();
        }
        assert!(
            Instant::now() < until,
            "the {channel} adapter never became {state}: {listed}\n{}",
            host.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
