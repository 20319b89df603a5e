//! A client of the host's `cli` channel (`data/cli.sock`, JSON lines; see
//! `host/src/channels/cli.rs`) that times what it sees. One connection stays open across a
//! whole run, as a chat platform's would, so no connect cost is measured.
//!
//! [`CliClient::turn`] sends one message and returns a [`TurnTiming`]: when the host said
//! `accepted` (the message is durable), when the first live draft and the first `reply`
//! arrived, and when the turn was complete. Replies are broadcast to every terminal, so callers that run several turns at
//! once match replies by a token in the text; [`CliClient::send`] and [`CliClient::next`]
//! give them the raw lines.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use host::channels::cli::ServerLine;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The user every benchmark message comes from.
pub const BENCH_USER: &str = "bench";

/// How one turn went, measured from just before the message was written.
#[derive(Clone, Debug)]
pub struct TurnTiming {
    pub sent_at: SystemTime,
    /// The same moment as an [`Instant`].
    pub started: Instant,
    pub accepted: Duration,
    pub first_reply: Duration,
    /// The first live draft of the reply, when the turn streamed one.
    pub first_draft: Option<Duration>,
    pub complete: Duration,
    pub replies: Vec<String>,
}

pub struct CliClient {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl CliClient {
    pub async fn connect(socket: &Path) -> anyhow::Result<CliClient> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let (read, write) = stream.into_split();
        Ok(CliClient {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    /// Writes one message line; `chat` names another cli chat than the default one.
    pub async fn send(&mut self, text: &str, chat: Option<&str>) -> anyhow::Result<()> {
        let mut line = json!({"type": "message", "text": text, "user": BENCH_USER});
        if let Some(chat) = chat {
            line["chat"] = json!(chat);
        }
        let mut line = line.to_string();
        line.push('\n');
        self.write
            .write_all(line.as_bytes())
            .await
            .context("writing to cli.sock")
    }

    /// The next line the host sends that this client understands; fails at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> anyhow::Result<ServerLine> {
        loop {
            let line = tokio::time::timeout_at(deadline.into(), self.lines.next_line())
                .await
                .context("no line from the host before the deadline")?
                .context("reading from cli.sock")?
                .context("the host closed cli.sock")?;
            // Lines of a newer protocol than this client knows are skipped.
            if let Ok(parsed) = serde_json::from_str::<ServerLine>(&line) {
                return Ok(parsed);
            }
        }
    }

    /// Sends `text` (to `chat`, or the default chat) and waits until every message it became
    /// has completed its turn.
    pub async fn turn(
        &mut self,
        text: &str,
        chat: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<TurnTiming> {
        let deadline = Instant::now() + timeout;
        let sent_at = SystemTime::now();
        let start = Instant::now();
        self.send(text, chat).await?;
        let mut accepted = None;
        let mut first_reply = None;
        let mut first_draft = None;
        let mut open: Vec<String> = Vec::new();
        let mut replies = Vec::new();
        loop {
            let line = self
                .next(deadline)
                .await
                .with_context(|| format!("waiting for the turn of {text:?}"))?;
            match line {
                ServerLine::Accepted { message_ids, .. } if accepted.is_none() => {
                    accepted = Some(start.elapsed());
                    open = message_ids;
                }
                ServerLine::Accepted { .. } => bail!("a second `accepted` for one message"),
                ServerLine::Reply { text, .. } => {
                    first_reply.get_or_insert_with(|| start.elapsed());
                    replies.push(text);
                }
                ServerLine::TurnComplete { message_id, .. } => {
                    open.retain(|id| *id != message_id);
                    if let (Some(accepted), true) = (accepted, open.is_empty()) {
                        let complete = start.elapsed();
                        return Ok(TurnTiming {
                            sent_at,
                            started: start,
                            accepted,
                            first_reply: first_reply.unwrap_or(complete),
                            first_draft,
                            complete,
                            replies,
                        });
                    }
                }
                ServerLine::Error { message, .. } => bail!("the host refused {text:?}: {message}"),
                // A draft with text (an empty one takes a draft away).
                ServerLine::Draft { text, .. } if !text.trim().is_empty() => {
                    first_draft.get_or_insert_with(|| start.elapsed());
                }
                ServerLine::Subscribed { .. }
                | ServerLine::Draft { .. }
                | ServerLine::Typing { .. } => {}
            }
        }
    }
}
