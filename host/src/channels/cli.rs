//! The `cli` channel: the local terminal over `data/cli.sock` (mode 0600), used by
//! `crabpot chat`. One chat, `cli/local`; every connected terminal sees its replies.
//!
//! Wire format: one JSON object per line. Client to host: [`ClientLine`]. Host to client:
//! [`ServerLine`] — `accepted` once the message is durable, `reply` for each delivered
//! message, `turn_complete` when the agent has finished with a message, `error`.

use super::{Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, OutgoingMessage};
use crate::router::InboundEvent;
use crate::runtime::BoxFuture;
use protocol::{MessageId, OutboundContent, Sender};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const CHANNEL_TYPE: &str = "cli";
/// The one chat of the terminal.
pub const PLATFORM_ID: &str = "local";

/// A line from `crabpot chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientLine {
    Message { text: String, user: String },
}

/// A line to `crabpot chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerLine {
    Accepted {
        message_ids: Vec<String>,
    },
    Reply {
        seq: i64,
        text: String,
        files: Vec<String>,
    },
    TurnComplete {
        message_id: String,
    },
    Error {
        message: String,
    },
}

/// The terminal adapter.
pub struct CliChannel {
    clients: Mutex<Vec<mpsc::UnboundedSender<ServerLine>>>,
    next_id: AtomicU64,
}

impl CliChannel {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            clients: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Binds `data/cli.sock` with mode 0600, replacing a stale socket file.
    pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    }

    fn broadcast(&self, line: &ServerLine) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients.retain(|client| client.send(line.clone()).is_ok());
    }

    /// Accepts terminals until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        context: ChannelContext,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cli accept failed");
                        continue;
                    }
                },
            };
            let this = Arc::clone(&self);
            let context = context.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { this.connection(stream, context, shutdown).await });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: UnixStream,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) {
        let (read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<ServerLine>();
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx.clone());
        let writer = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let Ok(mut json) = serde_json::to_string(&line) else {
                    continue;
                };
                json.push('\n');
                if write.write_all(json.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let mut lines = BufReader::new(read).lines();
        loop {
            let line = tokio::select! {
                _ = shutdown.cancelled() => break,
                line = lines.next_line() => match line {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => break,
                },
            };
            if line.trim().is_empty() {
                continue;
            }
            let answer = match serde_json::from_str::<ClientLine>(&line) {
                Err(e) => ServerLine::Error {
                    message: format!("not a valid cli message: {e}"),
                },
                Ok(ClientLine::Message { text, user }) => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let event = InboundEvent {
                        channel_type: CHANNEL_TYPE.into(),
                        platform_id: PLATFORM_ID.into(),
                        thread_id: None,
                        platform_message_id: format!(
                            "cli-in-{}-{id}",
                            uuid::Uuid::now_v7().simple()
                        ),
                        sender: Sender {
                            id: format!("cli:{user}"),
                            name: Some(user),
                        },
                        text,
                        attachments: Vec::new(),
                        is_mention: true,
                        is_group: false,
                        chat_name: Some("terminal".into()),
                    };
                    match context.push(event).await {
                        Ok(routed) if routed.is_empty() => ServerLine::Error {
                            message: "the message reached no agent (see `crabpot dropped list`)"
                                .into(),
                        },
                        Ok(routed) => ServerLine::Accepted {
                            message_ids: routed.iter().map(|r| r.message_id.to_string()).collect(),
                        },
                        Err(e) => ServerLine::Error {
                            message: e.to_string(),
                        },
                    }
                }
            };
            if tx.send(answer).is_err() {
                break;
            }
        }
        drop(tx);
        writer.abort();
    }
}

impl Channel for CliChannel {
    fn channel_type(&self) -> &'static str {
        CHANNEL_TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: false,
            edits: false,
            reactions: false,
            buttons: false,
            files: true,
            max_text_chars: 64 * 1024,
        }
    }

    fn deliver<'a>(
        &'a self,
        _to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let text = match &message.content {
                OutboundContent::Message(m) => m.text.clone(),
                OutboundContent::Edit { target_seq, text } => {
                    format!("(edit of {target_seq}) {text}")
                }
                OutboundContent::Reaction { target_seq, emoji } => {
                    format!("(reaction to {target_seq}) {emoji}")
                }
                OutboundContent::Question {
                    title,
                    question,
                    options,
                    ..
                } => {
                    let numbered: Vec<String> = options
                        .iter()
                        .enumerate()
                        .map(|(i, o)| format!("  {}. {o}", i + 1))
                        .collect();
                    format!("{title}\n{question}\n{}", numbered.join("\n"))
                }
                OutboundContent::Progress { items } => items
                    .iter()
                    .map(|i| format!("[{}] {}", i.status, i.text))
                    .collect::<Vec<_>>()
                    .join("\n"),
                OutboundContent::System { action, .. } => {
                    return Err(ChannelError::Rejected(format!(
                        "system action {action} is not a chat message"
                    )));
                }
            };
            let files = message
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            self.broadcast(&ServerLine::Reply {
                seq: message.seq.0,
                text,
                files,
            });
            Ok(format!(
                "cli-{}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ))
        })
    }

    fn turn_complete<'a>(
        &'a self,
        _to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.broadcast(&ServerLine::TurnComplete {
                message_id: message_id.to_string(),
            });
        })
    }
}
