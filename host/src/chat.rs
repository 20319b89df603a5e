//! `crabpot chat`: the terminal side of the `cli` channel. Interactive (a prompt; replies are
//! printed as they arrive) or one-shot with `--message` (prints the replies of that turn and
//! exits when the agent has finished it, or with exit code 4 after `--timeout`). By default it
//! talks in the terminal's chat `cli/local`; [`ChatTarget`] can name another chat of channel
//! `cli`, a thread, or a group chat.
//!
//! Questions: an agent's question arrives as a reply with numbered options. Interactively,
//! the next line typed answers it (a number picks that option). One-shot, `--answer
//! QUESTION_ID --message TEXT` sends TEXT as the answer and prints the rest of the agent's
//! turn. Files the agent sent are printed as `[file] <path>` (a copy under `data/files/`).
//!
//! The host sends a chat's replies only to terminals subscribed to it: interactively the
//! chat subscribes at connect (so replies that waited for a terminal arrive at once), one-shot
//! the message itself subscribes. A reply whose id was already shown is dropped
//! ([`SeenReplies`]): after a host restart the same reply may be sent again.

use crate::channels::cli::{ClientLine, ServerLine};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How a chat ended, mapped to the exit codes documented in `crabpot --help`.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The host is not running. Retryable once it is started.
    #[error("cannot reach the crabpot host at {path}: {source} (is `crabpot serve` running?)")]
    NotRunning {
        path: String,
        source: std::io::Error,
    },
    /// No reply in time. Retryable.
    #[error("no reply within {0} s")]
    Timeout(u64),
    /// The host refused the message. Not retryable as is.
    #[error("the host refused the message: {0}")]
    Refused(String),
    /// The connection broke. Retryable.
    #[error("lost the connection to the host: {0}")]
    Io(#[from] std::io::Error),
}

impl ChatError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ChatError::NotRunning { .. } => 3,
            ChatError::Timeout(_) => 4,
            ChatError::Refused(_) | ChatError::Io(_) => 1,
        }
    }
}

async fn connect(socket: &Path) -> Result<UnixStream, ChatError> {
    UnixStream::connect(socket)
        .await
        .map_err(|source| ChatError::NotRunning {
            path: socket.display().to_string(),
            source,
        })
}

async fn send(
    stream: &mut tokio::net::unix::OwnedWriteHalf,
    line: &ClientLine,
) -> Result<(), ChatError> {
    let mut json = serde_json::to_string(line).map_err(|e| ChatError::Refused(e.to_string()))?;
    json.push('\n');
    stream.write_all(json.as_bytes()).await?;
    Ok(())
}

/// Who is talking, and where.
#[derive(Clone, Debug)]
pub struct ChatTarget {
    pub user: String,
    /// The chat's platform id under channel `cli` (default `local`).
    pub chat: Option<String>,
    pub thread: Option<String>,
    /// A group chat: only mentions engage `mention` wirings.
    pub is_group: bool,
    pub is_mention: bool,
}

impl ChatTarget {
    /// The terminal's own chat, as `user`.
    pub fn terminal(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            chat: None,
            thread: None,
            is_group: false,
            is_mention: true,
        }
    }

    fn line(&self, text: &str) -> ClientLine {
        ClientLine::Message {
            text: text.to_owned(),
            user: self.user.clone(),
            chat: self.chat.clone(),
            thread: self.thread.clone(),
            is_group: self.is_group,
            is_mention: self.is_mention,
            message_id: None,
        }
    }

    fn answer_line(&self, question_id: Option<&str>, text: &str) -> ClientLine {
        ClientLine::Answer {
            question_id: question_id.map(str::to_owned),
            answer: text.to_owned(),
            user: self.user.clone(),
            chat: self.chat.clone(),
            thread: self.thread.clone(),
        }
    }

    fn subscribe_line(&self) -> ClientLine {
        ClientLine::Subscribe {
            chat: self.chat.clone(),
            all_chats: false,
        }
    }

    fn platform_id(&self) -> &str {
        self.chat
            .as_deref()
            .unwrap_or(crate::channels::cli::PLATFORM_ID)
    }
}

/// The ids of the replies shown, to drop a repeat. Bounded: only the newest ids are kept,
/// which is where a repeat comes from (a reply sent again after a restart).
#[derive(Debug, Default)]
pub struct SeenReplies {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenReplies {
    const MAX: usize = 4096;

    /// True the first time `id` is seen; false for a repeat. An empty id (from an older host)
    /// is never a repeat.
    pub fn first_time(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

/// The replies of one turn.
#[derive(Debug, serde::Serialize)]
pub struct TurnReplies {
    pub message_ids: Vec<String>,
    pub replies: Vec<String>,
    /// Approvals holding the message (an unknown sender, an unwired chat): no turn yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// Sends one message and collects the replies until every message it became has finished.
pub async fn one_shot(
    socket: &Path,
    target: &ChatTarget,
    text: &str,
    timeout: Duration,
) -> Result<TurnReplies, ChatError> {
    exchange(socket, target, &target.line(text), timeout).await
}

/// Answers an agent's question (`question_id`, or the chat's newest open one) and collects
/// the replies until the agent has finished with the answer. An answer that came after the
/// agent stopped waiting is stored for its next turn, and this returns at once.
pub async fn answer(
    socket: &Path,
    target: &ChatTarget,
    question_id: Option<&str>,
    text: &str,
    timeout: Duration,
) -> Result<TurnReplies, ChatError> {
    exchange(
        socket,
        target,
        &target.answer_line(question_id, text),
        timeout,
    )
    .await
}

async fn exchange(
    socket: &Path,
    target: &ChatTarget,
    line: &ClientLine,
    timeout: Duration,
) -> Result<TurnReplies, ChatError> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    send(&mut write, line).await?;
    let mut lines = BufReader::new(read).lines();
    let mut result = TurnReplies {
        message_ids: Vec::new(),
        replies: Vec::new(),
        held: Vec::new(),
    };
    let mut open: Vec<String> = Vec::new();
    let mut seen = SeenReplies::default();
    let collect = async {
        while let Some(line) = lines.next_line().await? {
            let Ok(line) = serde_json::from_str::<ServerLine>(&line) else {
                continue;
            };
            match line {
                ServerLine::Accepted {
                    message_ids,
                    held,
                    decision,
                    ..
                } => {
                    if let Some(decision) = decision {
                        result.replies.push(decision);
                        return Ok(());
                    }
                    if message_ids.is_empty() {
                        // Held for an approval, or stored as context only: no turn to wait for.
                        result.held = held;
                        return Ok(());
                    }
                    result.message_ids = message_ids.clone();
                    open = message_ids;
                }
                ServerLine::Reply {
                    id,
                    text,
                    platform_id,
                    files,
                    ..
                } if platform_id == target.platform_id() && seen.first_time(&id) => {
                    result.replies.push(text);
                    result
                        .replies
                        .extend(files.into_iter().map(|file| format!("[file] {file}")));
                }
                ServerLine::Reply { .. }
                | ServerLine::Subscribed { .. }
                | ServerLine::Draft { .. }
                | ServerLine::Typing { .. } => {}
                ServerLine::TurnComplete { message_id, .. } => {
                    open.retain(|id| *id != message_id);
                    if open.is_empty() && !result.message_ids.is_empty() {
                        return Ok(());
                    }
                }
                ServerLine::Error { message } => return Err(ChatError::Refused(message)),
            }
        }
        Err(ChatError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the host closed the connection",
        )))
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(())) => Ok(result),
        Ok(Err(e)) => Err(e),
        Err(_) if !result.replies.is_empty() => Ok(result),
        Err(_) => Err(ChatError::Timeout(timeout.as_secs())),
    }
}

/// The interactive chat: a prompt on stdin, replies printed as they arrive. While an agent's
/// question is open, the next line typed answers it. Ends on EOF (Ctrl-D) or `/quit`.
pub async fn interactive(socket: &Path, target: &ChatTarget) -> Result<(), ChatError> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    // Subscribe before anything is typed: replies that waited for a terminal come now.
    send(&mut write, &target.subscribe_line()).await?;
    let mut from_host = BufReader::new(read).lines();
    let mut seen = SeenReplies::default();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    eprintln!(
        "crabpot chat: talking in cli/{}. /quit or Ctrl-D to leave.",
        target.platform_id()
    );
    prompt();
    let mut open_question: Option<String> = None;
    let mut live = LiveReply::default();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Some(line) = line? else { break };
                let text = line.trim();
                if text == "/quit" { break; }
                if text.is_empty() { prompt(); continue; }
                match open_question.take() {
                    Some(question_id) => {
                        send(&mut write, &target.answer_line(Some(&question_id), text)).await?;
                    }
                    None => send(&mut write, &target.line(text)).await?,
                }
            }
            line = from_host.next_line() => {
                let Some(line) = line? else {
                    eprintln!("\nthe host closed the connection");
                    break;
                };
                let Ok(line) = serde_json::from_str::<ServerLine>(&line) else { continue };
                if !shows(&line, target) { continue; }
                match line {
                    ServerLine::Reply { id, text, files, question_id, replaces_draft, .. } if seen.first_time(&id) => {
                        live.finish(replaces_draft.as_deref(), &text);
                        for file in files { println!("  [file] {file}"); }
                        if let Some(question_id) = question_id {
                            eprintln!("(your next line answers question {question_id})");
                            open_question = Some(question_id);
                        }
                        prompt();
                    }
                    ServerLine::Draft { key, text, .. } => live.show(&key, &text),
                    ServerLine::Typing { on: true, .. } if !live.is_open() => eprint!("\n(the agent is working…)"),
                    ServerLine::Error { message } => { eprintln!("\nerror: {message}"); prompt(); }
                    ServerLine::Accepted { held, .. } if !held.is_empty() => {
                        eprintln!("\n(your message awaits approval {})", held.join(", "));
                        prompt();
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Whether a line from the host is for the chat this terminal talks in.
fn shows(line: &ServerLine, target: &ChatTarget) -> bool {
    match line {
        ServerLine::Reply { platform_id, .. }
        | ServerLine::Draft { platform_id, .. }
        | ServerLine::Typing { platform_id, .. } => platform_id == target.platform_id(),
        _ => true,
    }
}

/// The reply being written, as the terminal printed it: drafts print what they add, and
/// the final reply prints only what the drafts had not shown.
#[derive(Default)]
struct LiveReply {
    /// The draft's key and the text printed of it.
    open: Option<(String, String)>,
}

impl LiveReply {
    fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn show(&mut self, key: &str, text: &str) {
        let printed = match &mut self.open {
            Some((open_key, printed)) if open_key == key => printed,
            _ => {
                if text.is_empty() {
                    return;
                }
                print!("\nagent: ");
                &mut self.open.insert((key.to_owned(), String::new())).1
            }
        };
        match text.strip_prefix(printed.as_str()) {
            Some(added) => print!("{added}"),
            // Rewritten (the text so far was not the reply): start the line again.
            None if text.is_empty() => print!(" (…)"),
            None => print!("\nagent: {text}"),
        }
        *printed = text.to_owned();
        let _ = std::io::stdout().flush();
    }

    fn finish(&mut self, replaces: Option<&str>, text: &str) {
        match self.open.take() {
            Some((key, printed)) if replaces == Some(key.as_str()) => {
                match text.strip_prefix(printed.as_str()) {
                    Some(rest) => println!("{rest}"),
                    None => println!("\nagent: {text}"),
                }
            }
            open => {
                self.open = open;
                println!("\nagent: {text}");
            }
        }
    }
}

fn prompt() {
    print!("> ");
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_shown_once_is_dropped_when_repeated() {
        let mut seen = SeenReplies::default();
        assert!(seen.first_time("m-1"));
        assert!(seen.first_time("m-2"));
        assert!(!seen.first_time("m-1"));
        assert!(seen.first_time(""));
        assert!(seen.first_time(""));
    }

    #[test]
    fn only_the_newest_ids_are_kept() {
        let mut seen = SeenReplies::default();
        for n in 0..=SeenReplies::MAX {
            assert!(seen.first_time(&format!("m-{n}")));
        }
        assert_eq!(seen.ids.len(), SeenReplies::MAX);
        assert!(seen.first_time("m-0"), "the oldest id was forgotten");
        assert!(!seen.first_time(&format!("m-{}", SeenReplies::MAX)));
    }
}
