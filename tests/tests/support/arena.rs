//! The hostile-session suite's arena: one host with the fake model, a fake chat platform on
//! `cli.sock`, and any number of chats, each wired to `main` and so each with its own
//! session and container ([`Arena`], [`ArenaChat`]). One chat plays the attacker, another the
//! victim whose replies must keep arriving.
//!
//! The attacker acts from inside its container with [`Arena::exec`] (`docker exec` as the
//! container's user), through the agent's own `bash` tool ([`run_command`]: the fake model
//! turns `RUN[<hex>]RUN` in a message into a `bash` call), or from the host side as the
//! container would, with [`OutboundWriter`] (rows written into `out/outbound.db`). Whether
//! the host gave up on a session is read by [`Arena::failure_of`].
//!
//! Included by the `hostile_*` suites with `#[path = "support/arena.rs"] mod arena;` next to
//! `mod support;`.

#![allow(dead_code)]

use crate::support::{Platform, Say, TURN, central, cli_ok, session_path, tool_result};
use ::tests::docker;
use ::tests::fake_model::{FakeModel, RecordedRequest, Reply, echo_reply};
use ::tests::host_process::{HostOptions, HostProcess, ModelConfig};
use bollard::Docker;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the host may take to notice a hostile file and give up on its session.
pub const NOTICE: Duration = Duration::from_secs(60);

/// How often the arena polls.
const POLL: Duration = Duration::from_millis(100);

/// One chat of the arena with its session.
#[derive(Clone, Debug)]
pub struct ArenaChat {
    /// The chat's platform id under channel `cli`.
    pub chat: String,
    pub session_id: String,
    /// `sessions/main/<session id>/` on the host.
    pub dir: PathBuf,
}

impl ArenaChat {
    pub fn outbound_db(&self) -> PathBuf {
        self.dir.join("out/outbound.db")
    }
    pub fn inbound_db(&self) -> PathBuf {
        self.dir.join("in/inbound.db")
    }
    pub fn proxy_socket(&self) -> PathBuf {
        self.dir.join("in/proxy.sock")
    }
    pub fn say(&self) -> Say {
        Say::dm("ann", &self.chat)
    }
}

/// A host, the fake model, a platform on `cli.sock` and Docker.
pub struct Arena {
    pub fake: FakeModel,
    pub host: HostProcess,
    pub platform: Platform,
    pub docker: Docker,
}

/// The fake model's answers in the arena: `RUN[<hex>]RUN` in the user's text becomes a `bash`
/// call running the decoded command, a tool result is answered with `tool said: <result>`,
/// anything else is echoed.
pub fn arena_reply(request: &RecordedRequest) -> Reply {
    if let Some(result) = tool_result(request) {
        return Reply::text(format!("tool said: {result}"));
    }
    let text = request.last_user_text().unwrap_or_default();
    match decode_command(&text) {
        Some(command) => {
            Reply::tool_call("bash", json!({"command": command, "timeout_seconds": 300}))
        }
        None => echo_reply(request),
    }
}

/// The message that makes the agent run `command` with its `bash` tool (hex-encoded, so no
/// quoting or escaping on the way changes it).
pub fn run_command(command: &str) -> String {
    let hex: String = command.bytes().map(|b| format!("{b:02x}")).collect();
    format!("please RUN[{hex}]RUN")
}

fn decode_command(text: &str) -> Option<String> {
    let start = text.find("RUN[")? + 4;
    let end = start + text[start..].find("]RUN")?;
    let hex = &text.as_bytes()[start..end];
    let bytes: Option<Vec<u8>> = hex
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Arena {
    /// Starts a host answered by [`arena_reply`]; `configure` adds settings.
    pub async fn start(configure: impl FnOnce(HostOptions) -> HostOptions) -> Arena {
        let fake = FakeModel::start().unwrap();
        fake.set_default_reply_fn(arena_reply);
        let options = configure(HostOptions::with_model(ModelConfig::openai(&fake)));
        let host = HostProcess::start(options).await.unwrap();
        let platform = Platform::connect(&host).await;
        let docker = docker::connect().await.unwrap();
        Arena {
            fake,
            host,
            platform,
            docker,
        }
    }

    pub fn pid(&self) -> u32 {
        self.host.pid().expect("the host runs")
    }

    /// Registers the direct chat `cli/<chat>`, wires it to `main`, and has one round trip in
    /// it, so its session and container exist.
    pub async fn open_chat(&mut self, chat: &str) -> ArenaChat {
        cli_ok(&self.host, &["chats", "create", "cli", chat]).await;
        cli_ok(
            &self.host,
            &["wirings", "create", &format!("cli/{chat}"), "main"],
        )
        .await;
        let mut opened = ArenaChat {
            chat: chat.to_owned(),
            session_id: String::new(),
            dir: PathBuf::new(),
        };
        self.round_trip(&opened).await;
        opened.session_id = self.session_of(chat);
        opened.dir = session_path(&self.host, "main", &opened.session_id);
        opened
    }

    /// The session of `main` for `cli/<chat>`.
    pub fn session_of(&self, chat: &str) -> String {
        central(&self.host)
            .query_row(
                "SELECT s.id FROM sessions s JOIN messaging_groups m ON m.id = s.messaging_group_id \
                 WHERE m.channel_type = 'cli' AND m.platform_id = ?1 AND s.agent_group_id = 'main'",
                [chat],
                |row| row.get(0),
            )
            .unwrap_or_else(|e| panic!("no session for cli/{chat}: {e}"))
    }

    /// Sends a fresh message in `chat` and waits (one turn's worth) for its echo: the chat is
    /// served.
    pub async fn round_trip(&mut self, chat: &ArenaChat) -> String {
        let marker = format!("ping-{}", uuid::Uuid::new_v4().simple());
        self.platform.say(&chat.say(), &marker).await;
        let (reply, _) = self.platform.reply_containing(&chat.chat, &marker).await;
        reply
    }

    /// Sends `text` in `chat` without waiting for a reply.
    pub async fn send(&mut self, chat: &ArenaChat, text: &str) {
        self.platform.say(&chat.say(), text).await;
    }

    /// Has the agent of `chat` run `command` with its `bash` tool and returns the reply
    /// carrying the tool's output.
    pub async fn agent_runs(&mut self, chat: &ArenaChat, command: &str) -> String {
        let message = run_command(command);
        let seen = self.platform.replies(&chat.chat).len();
        self.platform.say(&chat.say(), &message).await;
        crate::support::eventually("the agent's bash result", TURN + TURN, || {
            self.platform
                .replies(&chat.chat)
                .into_iter()
                .skip(seen)
                .find(|reply| reply.starts_with("tool said:"))
        })
        .await
    }

    /// The running container of a session.
    pub async fn container_of(&self, chat: &ArenaChat) -> String {
        let deadline = Instant::now() + TURN;
        loop {
            let containers =
                docker::list_containers_by_label(&self.docker, "crabpot.session", &chat.session_id)
                    .await
                    .unwrap();
            let running = containers.into_iter().find(|container| {
                container.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
            });
            if let Some(id) = running.and_then(|container| container.id) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "session {} has no running container",
                chat.session_id
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs a shell command inside the chat's container as its user (`docker exec`).
    pub async fn exec(&self, chat: &ArenaChat, script: &str) -> docker::ExecOutput {
        let container = self.container_of(chat).await;
        docker::exec(&self.docker, &container, &["sh", "-c", script])
            .await
            .unwrap()
    }

    /// [`Arena::exec`], asserting the command succeeded.
    pub async fn exec_ok(&self, chat: &ArenaChat, script: &str) -> String {
        let output = self.exec(chat, script).await;
        assert!(output.success(), "{script:?} in the container: {output:?}");
        output.stdout
    }

    /// Why the host gave up on a session, once it has: the session's failure as
    /// `crabpot sessions show --json` reports it.
    pub async fn failure_of(&self, chat: &ArenaChat) -> Option<String> {
        let output = self
            .host
            .run_cli(&["sessions", "show", &chat.session_id, "--json"])
            .await
            .ok()?;
        let shown: Value = serde_json::from_str(&output.stdout).ok()?;
        failure_in(&shown)
    }

    /// Waits until the host has marked the session failed; returns the reason.
    pub async fn wait_for_failure(&self, chat: &ArenaChat) -> String {
        let deadline = Instant::now() + NOTICE;
        loop {
            if let Some(reason) = self.failure_of(chat).await {
                return reason;
            }
            assert!(
                Instant::now() < deadline,
                "session {} (cli/{}) was not marked failed within {NOTICE:?}; host log:\n{}",
                chat.session_id,
                chat.chat,
                self.host.log_tail(60)
            );
            tokio::time::sleep(POLL * 3).await;
        }
    }

    /// How many log lines report the session failed: a hostile file is reported once, not
    /// on every pass.
    pub fn failure_log_lines(&self, chat: &ArenaChat) -> usize {
        self.host
            .log()
            .lines()
            .filter(|line| line.contains(&chat.session_id) && is_failure_line(line))
            .count()
    }

    /// Asserts the session was reported failed exactly once in the log, and that the reason
    /// names the problem (`expected` is a fragment of it, lower case).
    pub async fn assert_failed_once(&self, chat: &ArenaChat, expected: &[&str]) -> String {
        let reason = self.wait_for_failure(chat).await;
        let lower = reason.to_lowercase();
        assert!(
            expected.iter().any(|fragment| lower.contains(fragment)),
            "the failure of {} names the problem (one of {expected:?}): {reason}",
            chat.session_id
        );
        // More wake-ups of the broken session must not log it again.
        for _ in 0..5 {
            let _ = std::fs::File::open(chat.dir.join("out"));
            touch(&chat.dir.join("out/heartbeat"));
            tokio::time::sleep(POLL).await;
        }
        let lines = self.failure_log_lines(chat);
        assert!(
            lines <= 1,
            "session {} was reported failed {lines} times:\n{}",
            chat.session_id,
            self.host.log_tail(40)
        );
        reason
    }
}

/// Whether a log line is a session-failure report.
fn is_failure_line(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.contains("session failed") || lower.contains("marked failed")
}

/// The failure recorded in a `sessions show --json` document, if any.
pub fn failure_in(shown: &Value) -> Option<String> {
    let session = &shown["session"];
    for key in ["failure", "failure_reason", "failed_reason", "error"] {
        for holder in [shown, session, &shown["container"]] {
            match &holder[key] {
                Value::String(reason) if !reason.is_empty() => return Some(reason.clone()),
                Value::Object(_) => return Some(holder[key].to_string()),
                _ => {}
            }
        }
    }
    (session["status"] == "failed").then(|| shown.to_string())
}

/// Updates an existing file's times, as a container touching `out/` does (a missing file is
/// not created: a root-owned file in `out/` would lock the container's user out of it).
pub fn touch(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
}

/// Writes rows into a session's `out/outbound.db` from the host side, as the container would
/// (the host only ever reads that file).
pub struct OutboundWriter {
    conn: Connection,
    inbound: PathBuf,
}

impl OutboundWriter {
    pub fn open(chat: &ArenaChat) -> OutboundWriter {
        let conn = Connection::open_with_flags(
            chat.outbound_db(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        OutboundWriter {
            conn,
            inbound: chat.inbound_db(),
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// An odd seq well above every seq of both files (room for `gap` more below it).
    pub fn seq_above_all(&self, gap: i64) -> i64 {
        let out: i64 = self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM messages_out", [], |r| {
                r.get(0)
            })
            .unwrap();
        let inbound = crate::support::read_only(&self.inbound);
        let in_max: i64 = inbound
            .query_row("SELECT coalesce(max(seq), 0) FROM messages_in", [], |r| {
                r.get(0)
            })
            .unwrap();
        let above = out.max(in_max) + 2 * gap + 1;
        above | 1
    }

    /// Inserts a chat row to the origin chat.
    pub fn insert_chat(&self, seq: i64, id: &str, text: &str) {
        insert_row(&self.conn, seq, id, text);
    }

    /// Inserts many chat rows in one transaction.
    pub fn insert_many(&mut self, rows: &[(i64, String, String)]) {
        let tx = self.conn.transaction().unwrap();
        for (seq, id, text) in rows {
            insert_row(&tx, *seq, id, text);
        }
        tx.commit().unwrap();
    }
}

fn insert_row(conn: &Connection, seq: i64, id: &str, text: &str) {
    conn.execute(
        "INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES (?1, ?2, ?3, 'chat', ?4)",
        params![id, seq, protocol::time::now_ms(), json!({"text": text}).to_string()],
    )
    .unwrap();
}

/// What the host recorded about an outbound row in the session's `delivered` table.
pub fn delivered_status(
    chat: &ArenaChat,
    message_out_id: &str,
) -> Option<(String, Option<String>)> {
    let conn = crate::support::read_only(&chat.inbound_db());
    conn.query_row(
        "SELECT status, error FROM delivered WHERE message_out_id = ?1",
        [message_out_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .unwrap()
}

/// How many rows of the session's `delivered` table have each status.
pub fn delivered_counts(chat: &ArenaChat) -> Vec<(String, i64)> {
    let conn = crate::support::read_only(&chat.inbound_db());
    conn.prepare("SELECT status, count(*) FROM delivered GROUP BY status ORDER BY status")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_survive_the_trip() {
        let command = "dd if=/dev/zero of=/session/work/x bs=1M count=5 2>&1; echo \"$?\" > /tmp/a";
        let message = run_command(command);
        assert_eq!(
            decode_command(&format!("[ann]: {message} ok")),
            Some(command.into())
        );
        assert_eq!(decode_command("no command here"), None);
    }

    #[test]
    fn failures_are_found_where_sessions_show_puts_them() {
        assert_eq!(failure_in(&json!({"session": {"status": "active"}})), None);
        assert_eq!(
            failure_in(
                &json!({"session": {"status": "failed", "failure": "outbound.db is a FIFO"}})
            ),
            Some("outbound.db is a FIFO".into())
        );
        assert!(failure_in(&json!({"session": {"status": "failed"}})).is_some());
    }
}
