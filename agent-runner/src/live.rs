//! Live drafts of the reply (DESIGN §4, Streaming): while the model writes the answer for the
//! origin chat, its text goes to the host as `POST /crabpot/v1/live` on the proxy socket
//! (`protocol::live`), so the person sees it grow. Drafts are best effort: a failed post is
//! logged at DEBUG and never fails or slows the turn; the final reply is still the normal
//! outbound row, which replaces the draft.
//!
//! Key types: [`LiveClient`] (one per runner) starts a [`LiveSender`] per turn, whose task
//! posts what the turn queues; [`Outbox`] is that task's state, a plain state machine that
//! decides what the next post carries: at most one post is in flight, text that arrives
//! meanwhile is coalesced into the next one, and the first text goes out at once. A `409`
//! with `{"have": n}` makes the next post resend from offset `n`; a `429` pauses posts for
//! [`RATE_LIMIT_PAUSE`]. [`ReplyDraft`] is the turn's side: it turns [`StreamNote`]s into
//! drafts, resets the draft when a tool call follows the text, and remembers what is shown.

use crate::http::{HttpError, ProxyClient};
use crate::model::StreamNote;
use protocol::MessageId;
use protocol::live::{LIVE_PATH, LiveEvent, MAX_DRAFT_APPEND_CHARS, MAX_DRAFT_CHARS};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest one live post may take, connect to answer.
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long drafts pause after the host answers `429`.
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_millis(250);
/// How long drafts pause after a post failed (no answer, or a 5xx).
const FAILURE_PAUSE: Duration = Duration::from_millis(250);
/// Failed posts in a row after which the turn stops drafting.
const MAX_FAILURES: u32 = 3;
/// Largest answer body read (the host answers `{"have": n}` at most).
const MAX_ANSWER_BYTES: usize = 4096;

/// Posts live events to the host's proxy socket.
#[derive(Clone, Debug)]
pub struct LiveClient {
    http: ProxyClient,
}

impl LiveClient {
    pub fn new(socket: PathBuf) -> Self {
        let mut http = ProxyClient::new(socket);
        http.connect_timeout = POST_TIMEOUT;
        http.idle_timeout = POST_TIMEOUT;
        Self { http }
    }

    /// Starts the drafts of one turn whose reply answers `in_reply_to`: announces the turn
    /// ([`LiveEvent::TurnStarted`]) and posts what the returned sender queues, in order.
    pub fn start_turn(&self, in_reply_to: MessageId) -> LiveSender {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(self.clone(), receiver, Outbox::new(in_reply_to)));
        LiveSender { commands }
    }

    /// Posts one event and classifies the answer; never fails.
    async fn post(&self, event: &LiveEvent) -> Answer {
        let body = match event.to_body() {
            Ok(body) => body,
            Err(error) => {
                tracing::debug!(%error, "cannot encode a live event");
                return Answer::Refused;
            }
        };
        let exchange = async {
            let response = self.http.post_json(LIVE_PATH, &[], body).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let bytes = self.http.read_body(&mut body, MAX_ANSWER_BYTES).await?;
            Ok::<_, HttpError>((status, bytes))
        };
        match tokio::time::timeout(POST_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => {
                let answer = Answer::classify(status, &body);
                if !matches!(answer, Answer::Accepted) {
                    tracing::debug!(status, ?answer, "the host did not take a live event");
                }
                answer
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "a live post failed");
                Answer::Failed
            }
            Err(_elapsed) => {
                tracing::debug!(timeout = ?POST_TIMEOUT, "a live post timed out");
                Answer::Failed
            }
        }
    }
}

/// What the host made of one live post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: taken (or ignored because the host is not showing this reply).
    Accepted,
    /// 409 `{"have": n}`: the host holds `n` characters of the draft; resend from there.
    Behind { have: u32 },
    /// 429: too many events; pause.
    RateLimited,
    /// Any other 4xx: the host will not take these drafts; stop drafting this turn.
    Refused,
    /// No answer in time, a broken connection, or a 5xx.
    Failed,
}

impl Answer {
    fn classify(status: u16, body: &[u8]) -> Answer {
        match status {
            200..=299 => Answer::Accepted,
            409 => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|value| value.get("have")?.as_u64())
                .and_then(|have| u32::try_from(have).ok())
                .map_or(Answer::Refused, |have| Answer::Behind { have }),
            429 => Answer::RateLimited,
            400..=499 => Answer::Refused,
            _ => Answer::Failed,
        }
    }
}

/// What the turn asks of its sender's task.
#[derive(Debug)]
enum Command {
    Append(String),
    Reset,
    Finish,
}

/// Queues one turn's live events; the posting happens on its own task, so nothing here
/// waits. Dropping it finishes the drafts (an owed reset still goes out).
#[derive(Debug)]
pub struct LiveSender {
    commands: mpsc::UnboundedSender<Command>,
}

impl LiveSender {
    /// Appends text to the draft.
    pub fn append(&self, text: &str) {
        self.send(Command::Append(text.to_owned()));
    }

    /// The draft so far is not the reply: it is emptied on the host too.
    pub fn reset(&self) {
        self.send(Command::Reset);
    }

    /// No more drafts this turn: the final reply is known.
    pub fn finish(&self) {
        self.send(Command::Finish);
    }

    fn send(&self, command: Command) {
        // The task ends only once this sender is gone (or it gave up): nothing to tell.
        let _ = self.commands.send(command);
    }
}

/// One post and the draft it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub event: LiveEvent,
    /// Which draft (counted by resets) a `Draft` post carries text of.
    generation: u64,
}

/// The state of one turn's drafts: what the host holds, what is left to send, and whether
/// posting is paused or over.
#[derive(Debug)]
pub struct Outbox {
    in_reply_to: MessageId,
    turn_started_owed: bool,
    /// The current draft, everything appended since the last reset.
    text: String,
    text_chars: usize,
    /// What the host is known to hold of `text` (characters, and the same in bytes).
    sent_chars: usize,
    sent_bytes: usize,
    generation: u64,
    /// A draft was posted since the last reset, so a reset must be posted too.
    host_may_have_text: bool,
    reset_owed: bool,
    /// The final reply is known: no more drafts, only an owed reset.
    finished: bool,
    /// The host refused, or kept failing: nothing more is posted.
    disabled: bool,
    paused_until: Option<Instant>,
    failures: u32,
}

impl Outbox {
    pub fn new(in_reply_to: MessageId) -> Self {
        Self {
            in_reply_to,
            turn_started_owed: true,
            text: String::new(),
            text_chars: 0,
            sent_chars: 0,
            sent_bytes: 0,
            generation: 0,
            host_may_have_text: false,
            reset_owed: false,
            finished: false,
            disabled: false,
            paused_until: None,
            failures: 0,
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Append(text) => self.append(&text),
            Command::Reset => self.reset(),
            Command::Finish => self.finish(),
        }
    }

    pub fn append(&mut self, text: &str) {
        if self.finished || self.disabled {
            return;
        }
        self.text.push_str(text);
        self.text_chars += text.chars().count();
    }

    pub fn reset(&mut self) {
        self.generation += 1;
        self.text.clear();
        self.text_chars = 0;
        self.sent_chars = 0;
        self.sent_bytes = 0;
        if self.host_may_have_text {
            self.reset_owed = true;
        }
    }

    pub fn finish(&mut self) {
        self.finished = true;
        self.turn_started_owed = false;
    }

    /// Until when posting is paused, if it is.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The characters of the draft that will be shown: the draft cap cuts the rest.
    fn showable_chars(&self) -> usize {
        self.text_chars.min(MAX_DRAFT_CHARS)
    }

    /// True while something is left to post (maybe after a pause).
    pub fn has_work(&self) -> bool {
        !self.disabled
            && (self.reset_owed
                || (!self.finished
                    && (self.turn_started_owed || self.sent_chars < self.showable_chars())))
    }

    /// The next post, if one is due at `now`: the turn's start, an owed reset, or all the
    /// unsent text (up to the per-event cap).
    pub fn next_post(&mut self, now: Instant) -> Option<Post> {
        if self.disabled || self.paused_until.is_some_and(|until| now < until) {
            return None;
        }
        self.paused_until = None;
        let generation = self.generation;
        let in_reply_to = self.in_reply_to.clone();
        if self.turn_started_owed {
            self.turn_started_owed = false;
            let event = LiveEvent::TurnStarted { in_reply_to };
            return Some(Post { event, generation });
        }
        if self.reset_owed {
            self.reset_owed = false;
            self.host_may_have_text = false;
            let event = LiveEvent::DraftReset { in_reply_to };
            return Some(Post { event, generation });
        }
        let room = self.showable_chars().saturating_sub(self.sent_chars);
        if self.finished || room == 0 {
            return None;
        }
        let unsent = &self.text[self.sent_bytes..];
        let text: String = unsent
            .chars()
            .take(room.min(MAX_DRAFT_APPEND_CHARS))
            .collect();
        self.host_may_have_text = true;
        let event = LiveEvent::Draft {
            in_reply_to,
            offset: u32::try_from(self.sent_chars).unwrap_or(u32::MAX),
            text,
        };
        Some(Post { event, generation })
    }

    /// Takes the host's answer to `post` (the one post in flight).
    pub fn answered(&mut self, post: &Post, answer: Answer, now: Instant) {
        let current = post.generation == self.generation;
        match answer {
            Answer::Accepted => {
                self.failures = 0;
                if let LiveEvent::Draft { offset, text, .. } = &post.event
                    && current
                {
                    self.set_sent(*offset as usize + text.chars().count());
                }
            }
            Answer::Behind { have } => {
                self.failures = 0;
                if matches!(post.event, LiveEvent::Draft { .. }) && current {
                    self.set_sent(have as usize);
                }
            }
            Answer::RateLimited => {
                self.paused_until = Some(now + RATE_LIMIT_PAUSE);
                self.owe_again(post);
            }
            Answer::Refused => self.disabled = true,
            Answer::Failed => {
                self.failures += 1;
                if self.failures >= MAX_FAILURES {
                    self.disabled = true;
                } else {
                    self.paused_until = Some(now + FAILURE_PAUSE);
                    self.owe_again(post);
                }
            }
        }
    }

    /// A reset that did not get through is owed again (a stale draft must not stay shown);
    /// a lost `TurnStarted` is not worth repeating, and unsent text is resent anyway.
    fn owe_again(&mut self, post: &Post) {
        if matches!(post.event, LiveEvent::DraftReset { .. }) {
            self.reset_owed = true;
            self.host_may_have_text = true;
        }
    }

    /// The host holds the first `chars` characters of the draft (at most what there is).
    fn set_sent(&mut self, chars: usize) {
        let chars = chars.min(self.text_chars);
        self.sent_chars = chars;
        self.sent_bytes = self
            .text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(index, _)| index);
    }
}

type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// The sender's task: posts what `outbox` says, one post at a time, until the sender is gone
/// and nothing is owed.
async fn run(
    client: LiveClient,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut outbox: Outbox,
) {
    let mut in_flight: Option<(Post, AnswerFuture)> = None;
    let mut open = true;
    loop {
        if in_flight.is_none() {
            if let Some(post) = outbox.next_post(Instant::now()) {
                let (client, event) = (client.clone(), post.event.clone());
                in_flight = Some((post, Box::pin(async move { client.post(&event).await })));
            } else if !open && !outbox.has_work() {
                return;
            }
        }
        let pause = outbox.paused_until().filter(|_| in_flight.is_none());
        tokio::select! {
            answer = answer_of(&mut in_flight) => {
                if let Some((post, _)) = in_flight.take() {
                    outbox.answered(&post, answer, Instant::now());
                }
            }
            command = commands.recv(), if open => match command {
                Some(command) => outbox.apply(command),
                None => {
                    open = false;
                    outbox.finish();
                }
            },
            () = sleep_until(pause), if pause.is_some() => {}
            else => return,
        }
    }
}

async fn answer_of(in_flight: &mut Option<(Post, AnswerFuture)>) -> Answer {
    match in_flight {
        Some((_, answer)) => answer.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The turn's side of the drafts: feeds the text of each model response to the
/// [`LiveSender`] while it may be the reply, and remembers what the person is shown.
#[derive(Debug)]
pub struct ReplyDraft {
    sender: LiveSender,
    /// The text drafted of the current response (what the host is being shown).
    shown: String,
    /// False once the final reply will not go to the origin, or is known.
    drafting: bool,
    /// The current response calls a tool: its text is not the reply.
    tool_call_seen: bool,
}

impl ReplyDraft {
    pub fn new(sender: LiveSender) -> Self {
        Self {
            sender,
            shown: String::new(),
            drafting: true,
            tool_call_seen: false,
        }
    }

    /// Takes one note of the response being streamed.
    pub fn note(&mut self, note: StreamNote<'_>) {
        match note {
            StreamNote::Text(text) => {
                if self.drafting && !self.tool_call_seen {
                    self.shown.push_str(text);
                    self.sender.append(text);
                }
            }
            StreamNote::ToolCall => {
                self.tool_call_seen = true;
                self.reset();
            }
            StreamNote::Retry => {
                self.tool_call_seen = false;
                self.reset();
            }
        }
    }

    /// The response is complete; with tool calls its text was not the reply, and the next
    /// response starts a new draft.
    pub fn end_response(&mut self, has_tool_calls: bool) {
        if has_tool_calls {
            self.reset();
        }
        self.tool_call_seen = false;
    }

    /// The final reply will not go to the origin (a tool already sent there): the draft is
    /// taken down and nothing more is drafted.
    pub fn stop_drafting(&mut self) {
        self.reset();
        self.drafting = false;
        self.sender.finish();
    }

    /// The final reply is known: nothing more is drafted. Returns the text shown so far.
    pub fn finish(&mut self) -> String {
        self.drafting = false;
        self.sender.finish();
        std::mem::take(&mut self.shown)
    }

    fn reset(&mut self) {
        if self.drafting {
            self.shown.clear();
            self.sender.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> MessageId {
        MessageId::new("m-1")
    }

    fn draft(offset: u32, text: &str) -> LiveEvent {
        LiveEvent::Draft {
            in_reply_to: id(),
            offset,
            text: text.into(),
        }
    }

    /// Takes the next post, answers it, and returns its event.
    fn exchange(outbox: &mut Outbox, answer: Answer, now: Instant) -> Option<LiveEvent> {
        let post = outbox.next_post(now)?;
        outbox.answered(&post, answer, now);
        Some(post.event)
    }

    #[test]
    fn text_is_coalesced_while_a_post_is_in_flight() {
        let now = Instant::now();
        let mut outbox = Outbox::new(id());
        outbox.append("Hel");
        let started = outbox.next_post(now).unwrap();
        assert_eq!(started.event, LiveEvent::TurnStarted { in_reply_to: id() });
        outbox.answered(&started, Answer::Accepted, now);
        assert_eq!(
            exchange(&mut outbox, Answer::Accepted, now),
            Some(draft(0, "Hel"))
        );
        // In flight: "lo" and " wörld" arrive and go out together.
        let in_flight = outbox.next_post(now);
        assert_eq!(in_flight, None, "nothing new yet");
        outbox.append("lo");
        let post = outbox.next_post(now).unwrap();
        outbox.append(" wörld");
        outbox.append("!");
        outbox.answered(&post, Answer::Accepted, now);
        assert_eq!(post.event, draft(3, "lo"));
        assert_eq!(
            exchange(&mut outbox, Answer::Accepted, now),
            Some(draft(5, " wörld!"))
        );
        assert!(!outbox.has_work());
        outbox.finish();
        outbox.append("ignored");
        assert_eq!(outbox.next_post(now), None);
    }

    #[test]
    fn resets_restart_at_zero_and_are_posted_only_after_a_draft() {
        let now = Instant::now();
        let mut outbox = Outbox::new(id());
        exchange(&mut outbox, Answer::Accepted, now);
        // Text reset before any of it was posted: the host never saw it.
        outbox.append("thinking");
        outbox.reset();
        assert_eq!(outbox.next_post(now), None, "nothing to reset or send");
        outbox.append("Let me");
        assert_eq!(
            exchange(&mut outbox, Answer::Accepted, now),
            Some(draft(0, "Let me"))
        );
        // A draft in flight when the reset comes: its answer no longer moves the offset.
        outbox.append(" look");
        let post = outbox.next_post(now).unwrap();
        outbox.reset();
        outbox.answered(&post, Answer::Accepted, now);
        outbox.append("Done");
        assert_eq!(
            exchange(&mut outbox, Answer::Accepted, now),
            Some(LiveEvent::DraftReset { in_reply_to: id() })
        );
        assert_eq!(
            exchange(&mut outbox, Answer::Accepted, now),
            Some(draft(0, "Done"))
        );
    }

    #[test]
    fn conflicts_rate_limits_and_failures() {
        let now = Instant::now();
        let mut outbox = Outbox::new(id());
        exchange(&mut outbox, Answer::Accepted, now);
        outbox.append("abcdef");
        // The host holds only "ab": the next post resends from there.
        assert_eq!(
            exchange(&mut outbox, Answer::Behind { have: 2 }, now),
            Some(draft(0, "abcdef"))
        );
        assert_eq!(
            exchange(&mut outbox, Answer::RateLimited, now),
            Some(draft(2, "cdef"))
        );
        assert_eq!(outbox.next_post(now), None, "paused");
        outbox.append("g");
        let later = now + RATE_LIMIT_PAUSE;
        assert_eq!(
            exchange(&mut outbox, Answer::Failed, later),
            Some(draft(2, "cdefg"))
        );
        let later = later + FAILURE_PAUSE;
        assert_eq!(
            exchange(&mut outbox, Answer::Failed, later),
            Some(draft(2, "cdefg"))
        );
        let later = later + FAILURE_PAUSE;
        assert_eq!(
            exchange(&mut outbox, Answer::Failed, later),
            Some(draft(2, "cdefg"))
        );
        assert!(!outbox.has_work(), "three failures in a row end the drafts");
        assert_eq!(outbox.next_post(later + FAILURE_PAUSE), None);

        let mut refused = Outbox::new(id());
        exchange(&mut refused, Answer::Refused, now);
        refused.append("x");
        assert_eq!(refused.next_post(now), None);
    }

    #[test]
    fn an_unsent_reset_is_owed_again_and_survives_finish() {
        let now = Instant::now();
        let mut outbox = Outbox::new(id());
        exchange(&mut outbox, Answer::Accepted, now);
        outbox.append("stale");
        exchange(&mut outbox, Answer::Accepted, now);
        outbox.reset();
        outbox.finish();
        let reset = Some(LiveEvent::DraftReset { in_reply_to: id() });
        assert_eq!(exchange(&mut outbox, Answer::RateLimited, now), reset);
        assert!(outbox.has_work());
        let later = now + RATE_LIMIT_PAUSE;
        assert_eq!(exchange(&mut outbox, Answer::Accepted, later), reset);
        assert!(!outbox.has_work());
    }

    #[test]
    fn appends_are_capped_per_event_and_per_draft() {
        let now = Instant::now();
        let mut outbox = Outbox::new(id());
        exchange(&mut outbox, Answer::Accepted, now);
        outbox.append(&"é".repeat(MAX_DRAFT_CHARS + 10));
        let mut total = 0;
        while let Some(LiveEvent::Draft { offset, text, .. }) =
            exchange(&mut outbox, Answer::Accepted, now)
        {
            assert_eq!(offset as usize, total);
            let chars = text.chars().count();
            assert!(chars <= MAX_DRAFT_APPEND_CHARS);
            total += chars;
        }
        assert_eq!(total, MAX_DRAFT_CHARS);
    }

    #[test]
    fn answers_are_classified() {
        let check = |status: u16, body: &str, expected: Answer| {
            assert_eq!(
                Answer::classify(status, body.as_bytes()),
                expected,
                "{status} {body}"
            );
        };
        check(204, "", Answer::Accepted);
        check(200, "{}", Answer::Accepted);
        check(409, r#"{"have":12}"#, Answer::Behind { have: 12 });
        check(409, r#"{"have":-1}"#, Answer::Refused);
        check(409, "", Answer::Refused);
        check(429, "", Answer::RateLimited);
        check(400, "{}", Answer::Refused);
        check(403, "{}", Answer::Refused);
        check(413, "{}", Answer::Refused);
        check(500, "", Answer::Failed);
        check(503, "", Answer::Failed);
    }
}
