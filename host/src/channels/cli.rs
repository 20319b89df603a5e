//! The `cli` channel: the local terminal over `data/cli.sock` (mode 0600), used by
//! `crabpot chat`. Its default chat is `cli/local`, a direct chat; a client may name any other
//! chat of channel `cli` (a `platform_id`, a thread, a group chat with mentions, a sender),
//! which lets tests and scripts play a chat platform speaking this protocol. Every connected
//! client sees every reply, each line naming its chat.
//!
//! Wire format: one JSON object per line. Client to host: [`ClientLine`] — a `message`, or an
//! `answer` to a question an agent asked. Host to client: [`ServerLine`] — `accepted` once the
//! message is durable (or held for an approval, or a decision was taken), `reply` for each
//! delivered message (a question carries its `question_id` and numbered `options`; files are
//! host paths under `data/files/`), `turn_complete` when the agent has finished with a
//! message, `error`.
//!
//! The terminal cannot edit or react: an edit or a reaction arrives as a new line saying so,
//! and each update of a progress list is sent again in full.

use super::{Capabilities, Channel, ChannelContext, ChannelError, ChatAddress, OutgoingMessage};
use crate::router::{InboundEvent, QuestionAnswer};
use crate::runtime::BoxFuture;
use protocol::{MessageId, OutboundContent, Sender};
use serde::{Deserialize, Serialize};
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

/// A line from `crabpot chat` (or a script playing a platform).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientLine {
    Message {
        text: String,
        /// The sender's handle; the sender id is `cli:<user>`.
        user: String,
        /// The chat's platform id (default `local`, the terminal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
        /// A group chat (default: a direct chat).
        #[serde(default, skip_serializing_if = "is_false")]
        is_group: bool,
        /// Whether the message mentions the agent (default: true).
        #[serde(default = "default_true")]
        is_mention: bool,
        /// The platform's id for this message (default: a fresh one); a repeat is stored once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// The answer to a question an agent asked in this chat: an option's number, an option's
    /// text, or a free answer.
    Answer {
        /// The question's id from its `reply` line; absent = the chat's newest open question.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<String>,
        answer: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
    },
}

fn default_true() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A line to `crabpot chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerLine {
    Accepted {
        /// Rows that wake an agent: each gets a `turn_complete`.
        message_ids: Vec<String>,
        /// Rows stored as context only (they ride along with the agent's next turn).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        context_ids: Vec<String>,
        /// Approvals holding the message.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held: Vec<String>,
        /// The answer to an approval decision typed in a DM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<String>,
    },
    Reply {
        seq: i64,
        text: String,
        files: Vec<String>,
        #[serde(default = "default_platform_id")]
        platform_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
        /// Set on a question: answer it with an `answer` line naming this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<String>,
        /// A question's options, in order (answer with a number from 1).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
    TurnComplete {
        message_id: String,
        #[serde(default = "default_platform_id")]
        platform_id: String,
    },
    Error {
        message: String,
    },
}

fn default_platform_id() -> String {
    PLATFORM_ID.to_owned()
}

/// A `message` line, unpacked.
struct IncomingMessage {
    text: String,
    user: String,
    chat: Option<String>,
    thread: Option<String>,
    is_group: bool,
    is_mention: bool,
    message_id: Option<String>,
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
        // One binder for every private socket of the host: a stale socket is replaced, any
        // other file there is refused, the mode is 0600.
        crate::proxy::bind_session_socket(path, None).map_err(std::io::Error::other)
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
                Ok(line) => self.accept(line, &context).await,
            };
            if tx.send(answer).is_err() {
                break;
            }
        }
        drop(tx);
        writer.abort();
    }

    /// Routes one client line and says what became of it.
    async fn accept(&self, line: ClientLine, context: &ChannelContext) -> ServerLine {
        match line {
            ClientLine::Message {
                text,
                user,
                chat,
                thread,
                is_group,
                is_mention,
                message_id,
            } => {
                let message = IncomingMessage {
                    text,
                    user,
                    chat,
                    thread,
                    is_group,
                    is_mention,
                    message_id,
                };
                self.accept_message(message, context).await
            }
            ClientLine::Answer {
                question_id,
                answer,
                user,
                chat,
                thread,
            } => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let answer = QuestionAnswer {
                    channel_type: CHANNEL_TYPE.into(),
                    platform_id: chat.unwrap_or_else(|| PLATFORM_ID.into()),
                    thread_id: thread,
                    question_id,
                    answer,
                    sender: Sender {
                        id: format!("cli:{user}"),
                        name: Some(user),
                    },
                    platform_message_id: format!("cli-in-{}-{id}", uuid::Uuid::now_v7().simple()),
                };
                match context.answer(answer).await {
                    Ok(answered) if answered.trigger => ServerLine::Accepted {
                        message_ids: vec![answered.message_id.to_string()],
                        context_ids: Vec::new(),
                        held: Vec::new(),
                        decision: None,
                    },
                    // The agent stopped waiting: the answer rides along with its next turn.
                    Ok(answered) => ServerLine::Accepted {
                        message_ids: Vec::new(),
                        context_ids: vec![answered.message_id.to_string()],
                        held: Vec::new(),
                        decision: None,
                    },
                    Err(e) => ServerLine::Error {
                        message: e.to_string(),
                    },
                }
            }
        }
    }

    async fn accept_message(
        &self,
        message: IncomingMessage,
        context: &ChannelContext,
    ) -> ServerLine {
        let IncomingMessage {
            text,
            user,
            chat,
            thread,
            is_group,
            is_mention,
            message_id,
        } = message;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let platform_id = chat.unwrap_or_else(|| PLATFORM_ID.into());
        let chat_name = (platform_id == PLATFORM_ID).then(|| "terminal".to_owned());
        let event = InboundEvent {
            channel_type: CHANNEL_TYPE.into(),
            platform_id,
            thread_id: thread,
            platform_message_id: message_id
                .unwrap_or_else(|| format!("cli-in-{}-{id}", uuid::Uuid::now_v7().simple())),
            sender: Sender {
                id: format!("cli:{user}"),
                name: Some(user),
            },
            text,
            attachments: Vec::new(),
            is_mention,
            is_group,
            chat_name,
        };
        match context.push(event).await {
            Ok(outcome)
                if outcome.routed.is_empty()
                    && outcome.held.is_empty()
                    && outcome.decision.is_none() =>
            {
                let why = if outcome.dropped.is_empty() {
                    "a repeat of a message already stored".to_owned()
                } else {
                    outcome.dropped.join("; ")
                };
                ServerLine::Error {
                    message: format!(
                        "the message reached no agent: {why} (see `crabpot dropped list`)"
                    ),
                }
            }
            Ok(outcome) => {
                let (triggers, context_rows): (Vec<_>, Vec<_>) =
                    outcome.routed.iter().partition(|r| r.trigger);
                ServerLine::Accepted {
                    message_ids: triggers.iter().map(|r| r.message_id.to_string()).collect(),
                    context_ids: context_rows
                        .iter()
                        .map(|r| r.message_id.to_string())
                        .collect(),
                    held: outcome.held,
                    decision: outcome.decision,
                }
            }
            Err(e) => ServerLine::Error {
                message: e.to_string(),
            },
        }
    }
}

/// The text a terminal shows for a message: edits and reactions as lines saying so, a
/// question with its numbered options, a progress list item by item.
fn render(content: &OutboundContent) -> Result<String, ChannelError> {
    Ok(match content {
        OutboundContent::Message(m) => m.text.clone(),
        OutboundContent::Edit { target_seq, text } => format!("(edit of {target_seq}) {text}"),
        OutboundContent::Reaction { target_seq, emoji } => {
            format!("(reaction to {target_seq}) {emoji}")
        }
        OutboundContent::Question {
            title,
            question,
            options,
            question_id,
            ..
        } => {
            let numbered: Vec<String> = options
                .iter()
                .enumerate()
                .map(|(i, o)| format!("  {}. {o}", i + 1))
                .collect();
            let how = if options.is_empty() {
                "answer in your own words".to_owned()
            } else {
                "answer with a number or your own words".to_owned()
            };
            format!(
                "{title} [{question_id}]\n{question}\n{}{}({how})",
                numbered.join("\n"),
                if numbered.is_empty() { "" } else { "\n" }
            )
        }
        OutboundContent::Progress { items, target_seq } => {
            let heading = match target_seq {
                Some(seq) => format!("plan (update of {seq}):"),
                None => "plan:".to_owned(),
            };
            let lines: Vec<String> = items
                .iter()
                .map(|i| format!("[{}] {}", i.status, i.text))
                .collect();
            format!("{heading}\n{}", lines.join("\n"))
        }
        OutboundContent::System { action, .. } => {
            return Err(ChannelError::Rejected(format!(
                "system action {action} is not a chat message"
            )));
        }
    })
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
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let (question_id, options) = match &message.content {
                OutboundContent::Question {
                    question_id,
                    options,
                    ..
                } => (Some(question_id.clone()), options.clone()),
                OutboundContent::Message(_)
                | OutboundContent::Edit { .. }
                | OutboundContent::Reaction { .. }
                | OutboundContent::Progress { .. }
                | OutboundContent::System { .. } => (None, Vec::new()),
            };
            let text = render(&message.content)?;
            let files = message
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            self.broadcast(&ServerLine::Reply {
                seq: message.seq.0,
                text,
                files,
                platform_id: to.platform_id.clone(),
                thread_id: to.thread_id.clone(),
                question_id,
                options,
            });
            Ok(format!(
                "cli-{}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ))
        })
    }

    fn turn_complete<'a>(
        &'a self,
        to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.broadcast(&ServerLine::TurnComplete {
                message_id: message_id.to_string(),
                platform_id: to.platform_id.clone(),
            });
        })
    }
}
