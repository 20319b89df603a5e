//! The crash suite's chat platform: one client of `data/cli.sock` that stays connected, sends
//! the message stream one line at a time, and reconnects after every host restart, as a real
//! platform adapter would.
//!
//! On every connection it first subscribes to each of its chats (`{"type":"subscribe"}`;
//! a host that predates subscriptions answers each with an `error`, and then broadcasts every
//! reply anyway). A message counts as stored once the host answers `accepted`, or answers a
//! resend with "a repeat of a message already stored"; a message whose answer was cut off by a
//! kill is sent again with the same platform message id. Replies are keyed by the outbound
//! row id of their `reply` line (`id`; `<chat>#<seq>` from a host that does not send it), and
//! matched to messages by the tokens they name ([`super::tokens`]). Everything seen goes into
//! the shared [`Tally`].

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::rng::Rng;
use super::tokens::tokens_in;

/// The sender of every message.
pub const USER: &str = "crash";

/// How long a message may wait for its answer before the connection is given up as broken.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a refused connection is tried again while the host restarts.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(20);

/// One message of the stream.
#[derive(Clone, Debug)]
pub struct PlannedMessage {
    pub token: String,
    pub chat: String,
}

/// What became of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    Unsent,
    /// Written at least once; no answer yet.
    Sent,
    Accepted,
    Refused(String),
}

/// A reply line as the client saw it.
#[derive(Clone, Debug)]
pub struct SeenReply {
    pub chat: String,
    pub tokens: Vec<String>,
    /// How many times this outbound id arrived.
    pub times: usize,
}

/// Everything the client saw, shared with the run.
#[derive(Debug)]
pub struct Tally {
    pub messages: Vec<(PlannedMessage, MessageStatus)>,
    /// By reply key (the outbound row id).
    pub replies: BTreeMap<String, SeenReply>,
    pub connections: usize,
    pub send_attempts: usize,
    /// `subscribed` answers (zero from a host without subscriptions).
    pub subscribed: usize,
    /// Answers that did not fit the line they answered (a protocol surprise).
    pub surprises: Vec<String>,
}

impl Tally {
    pub fn new(plan: Vec<PlannedMessage>) -> Self {
        Self {
            messages: plan
                .into_iter()
                .map(|message| (message, MessageStatus::Unsent))
                .collect(),
            replies: BTreeMap::new(),
            connections: 0,
            send_attempts: 0,
            subscribed: 0,
            surprises: Vec::new(),
        }
    }

    /// How many messages have each status: (unsent, sent, accepted, refused).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for (_, status) in &self.messages {
            match status {
                MessageStatus::Unsent => counts.0 += 1,
                MessageStatus::Sent => counts.1 += 1,
                MessageStatus::Accepted => counts.2 += 1,
                MessageStatus::Refused(_) => counts.3 += 1,
            }
        }
        counts
    }

    /// The number of distinct replies that named each token.
    pub fn answers_by_token(&self) -> BTreeMap<String, usize> {
        let mut answers = BTreeMap::new();
        for reply in self.replies.values() {
            for token in &reply.tokens {
                *answers.entry(token.clone()).or_insert(0) += 1;
            }
        }
        answers
    }

    /// Every message has been answered by the host and every accepted one by a reply.
    pub fn settled(&self) -> bool {
        let answers = self.answers_by_token();
        self.messages.iter().all(|(message, status)| match status {
            MessageStatus::Unsent | MessageStatus::Sent => false,
            MessageStatus::Accepted => answers.contains_key(&message.token),
            MessageStatus::Refused(_) => true,
        })
    }
}

/// A tally shared between the client task and the run.
#[derive(Clone, Debug)]
pub struct SharedTally(Arc<Mutex<Tally>>);

impl SharedTally {
    pub fn new(tally: Tally) -> Self {
        Self(Arc::new(Mutex::new(tally)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Tally> {
        // Updates are single assignments; a panic elsewhere leaves nothing half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an answer line answers.
#[derive(Clone, Copy, Debug)]
enum Expected {
    Subscribe,
    Message(usize),
}

/// Runs the client until `stop`: sends the plan in order with gaps drawn from `gaps` within
/// `gap_range`, and records everything in `tally`.
pub async fn run(
    socket: PathBuf,
    chats: Vec<String>,
    mut gaps: Rng,
    gap_range: (Duration, Duration),
    tally: SharedTally,
    stop: CancellationToken,
) {
    let total = tally.lock().messages.len();
    let mut next = 0;
    let mut next_send_at = Instant::now();
    // The message sent whose answer has not come: resent on the next connection.
    let mut awaiting: Option<usize> = None;
    'connections: loop {
        let Some(stream) = connect(&socket, &stop).await else {
            return;
        };
        tally.lock().connections += 1;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut expected: VecDeque<Expected> = VecDeque::new();
        let mut answer_deadline = None;
        let mut broken = false;
        for chat in &chats {
            let line = json!({"type": "subscribe", "chat": chat});
            broken |= write_line(&mut write, &line).await.is_err();
            expected.push_back(Expected::Subscribe);
        }
        if let Some(index) = awaiting {
            broken |= send_message(&mut write, &tally, index).await.is_err();
            expected.push_back(Expected::Message(index));
            answer_deadline = Some(Instant::now() + ANSWER_TIMEOUT);
        }
        while !broken {
            let send_due = awaiting.is_none() && next < total;
            tokio::select! {
                () = stop.cancelled() => break 'connections,
                () = tokio::time::sleep_until(next_send_at), if send_due => {
                    broken = send_message(&mut write, &tally, next).await.is_err();
                    expected.push_back(Expected::Message(next));
                    awaiting = Some(next);
                    answer_deadline = Some(Instant::now() + ANSWER_TIMEOUT);
                    next += 1;
                    next_send_at = Instant::now() + gaps.duration(gap_range.0, gap_range.1);
                }
                () = sleep_until_some(answer_deadline) => {
                    tally.lock().surprises.push(format!(
                        "no answer to a message within {ANSWER_TIMEOUT:?}; reconnecting"
                    ));
                    broken = true;
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        let answered = handle_line(&line, &mut expected, &tally);
                        if answered.is_some() && answered == awaiting {
                            awaiting = None;
                            answer_deadline = None;
                        }
                    }
                    // The host went away (killed): reconnect and resend what is unanswered.
                    Ok(None) | Err(_) => broken = true,
                },
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Connects, retrying while the host restarts; `None` once `stop` is cancelled.
async fn connect(socket: &Path, stop: &CancellationToken) -> Option<UnixStream> {
    loop {
        if let Ok(stream) = UnixStream::connect(socket).await {
            return Some(stream);
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(RECONNECT_INTERVAL) => {}
        }
    }
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    line: &Value,
) -> std::io::Result<()> {
    let mut text = line.to_string();
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

async fn send_message(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    tally: &SharedTally,
    index: usize,
) -> std::io::Result<()> {
    let message = {
        let mut tally = tally.lock();
        tally.send_attempts += 1;
        let (message, status) = &mut tally.messages[index];
        if *status == MessageStatus::Unsent {
            *status = MessageStatus::Sent;
        }
        message.clone()
    };
    let line = json!({
        "type": "message",
        "text": format!("crash message {} in {}", message.token, message.chat),
        "user": USER,
        "chat": message.chat,
        // The platform's message id: a resend after a kill is stored once.
        "message_id": message.token,
    });
    write_line(write, &line).await
}

/// Records one line from the host; returns the message index an answer line answered.
fn handle_line(
    line: &str,
    expected: &mut VecDeque<Expected>,
    tally: &SharedTally,
) -> Option<usize> {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        tally
            .lock()
            .surprises
            .push(format!("not JSON: {line:.200}"));
        return None;
    };
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "reply" => {
            record_reply(&value, tally);
            None
        }
        "accepted" | "error" | "subscribed" => answer(kind, &value, expected, tally),
        // `turn_complete` and lines of a newer protocol carry nothing the tally needs.
        _ => None,
    }
}

fn answer(
    kind: &str,
    value: &Value,
    expected: &mut VecDeque<Expected>,
    tally: &SharedTally,
) -> Option<usize> {
    let mut tally = tally.lock();
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (expected.pop_front(), kind) {
        (Some(Expected::Subscribe), "subscribed") => {
            tally.subscribed += 1;
            None
        }
        // A host without subscriptions refuses the line; it broadcasts replies instead.
        (Some(Expected::Subscribe), "error") => None,
        (Some(Expected::Message(index)), "accepted") => {
            let held = value
                .get("held")
                .and_then(Value::as_array)
                .is_some_and(|held| !held.is_empty());
            tally.messages[index].1 = if held {
                MessageStatus::Refused("held for an approval".into())
            } else {
                MessageStatus::Accepted
            };
            Some(index)
        }
        (Some(Expected::Message(index)), "error") if message.contains("repeat of a message") => {
            // Stored before the kill cut the first answer off.
            tally.messages[index].1 = MessageStatus::Accepted;
            Some(index)
        }
        (Some(Expected::Message(index)), _) => {
            tally.messages[index].1 = MessageStatus::Refused(format!("{kind}: {message}"));
            Some(index)
        }
        (other, _) => {
            tally
                .surprises
                .push(format!("`{kind}` {message:.200} answered {other:?}"));
            None
        }
    }
}

fn record_reply(value: &Value, tally: &SharedTally) {
    let chat = value
        .get("platform_id")
        .and_then(Value::as_str)
        .unwrap_or("local")
        .to_owned();
    let key = match value.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => format!(
            "{chat}#{}",
            value.get("seq").map(Value::to_string).unwrap_or_default()
        ),
    };
    let text = value
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tokens = tokens_in(text);
    let mut tally = tally.lock();
    tally
        .replies
        .entry(key)
        .and_modify(|reply| reply.times += 1)
        .or_insert(SeenReply {
            chat,
            tokens,
            times: 1,
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(n: usize) -> SharedTally {
        let plan = (0..n)
            .map(|i| PlannedMessage {
                token: super::super::tokens::token(i),
                chat: "c".into(),
            })
            .collect();
        SharedTally::new(Tally::new(plan))
    }

    #[test]
    fn answers_are_matched_in_order_and_repeats_count_as_stored() {
        let tally = tally_of(2);
        let mut expected: VecDeque<Expected> = [Expected::Subscribe, Expected::Message(0)].into();
        assert_eq!(
            handle_line(
                r#"{"type":"error","message":"not a valid cli message"}"#,
                &mut expected,
                &tally
            ),
            None
        );
        assert_eq!(
            handle_line(
                r#"{"type":"error","message":"the message reached no agent: a repeat of a message already stored"}"#,
                &mut expected,
                &tally
            ),
            Some(0)
        );
        expected.push_back(Expected::Message(1));
        assert_eq!(
            handle_line(
                r#"{"type":"accepted","message_ids":["x"]}"#,
                &mut expected,
                &tally
            ),
            Some(1)
        );
        let tally = tally.lock();
        assert_eq!(tally.counts(), (0, 0, 2, 0));
        assert!(tally.surprises.is_empty());
        assert!(!tally.settled(), "accepted but unanswered");
    }

    #[test]
    fn replies_are_keyed_by_id_and_counted() {
        let tally = tally_of(1);
        let mut expected = VecDeque::new();
        let reply = r#"{"type":"reply","id":"out-1","seq":3,"text":"re: cm0","files":[],"platform_id":"c"}"#;
        handle_line(reply, &mut expected, &tally);
        handle_line(reply, &mut expected, &tally);
        handle_line(
            r#"{"type":"reply","seq":5,"text":"re: cm0","files":[],"platform_id":"c"}"#,
            &mut expected,
            &tally,
        );
        let mut tally = tally.lock();
        assert_eq!(tally.replies["out-1"].times, 2);
        assert_eq!(tally.replies["c#5"].times, 1);
        assert_eq!(tally.answers_by_token()["cm0"], 2);
        tally.messages[0].1 = MessageStatus::Accepted;
        assert!(tally.settled());
    }
}
