//! The `cli` channel: the local terminal over `data/cli.sock` (mode 0600), used by
//! `crabpot chat`. Its default chat is `cli/local`, a direct chat; a client may name any other
//! chat of channel `cli` (a `platform_id`, a thread, a group chat with mentions, a sender),
//! which lets tests and scripts play a chat platform speaking this protocol.
//!
//! Wire format (`wire`): one JSON object per line, at most [`MAX_LINE_BYTES`]. Client to
//! host: [`ClientLine`] — a `message`, an `answer` to a question an agent asked, or
//! `subscribe` to a chat (or to every chat). Host to client: [`ServerLine`] — `accepted` once
//! the message is durable (or held for an approval, or a decision was taken), `subscribed`,
//! `reply` for each delivered message (with the outbound row's `id`, so a repeat can be
//! dropped; a question carries its `question_id` and numbered `options`; files are host paths
//! under `data/files/`), `turn_complete` when the agent has finished with a message, `error`.
//! A line over the cap gets one `error` naming it and the connection is closed.
//!
//! Replies go only to connections subscribed to their chat (`subscribers`: per chat, every
//! thread included); sending a `message` or `answer` in a chat subscribes to it. A reply is
//! delivered once a subscribed terminal has taken the line into its socket; with none, it
//! fails with [`ChannelError::NoRecipient`] and delivery keeps the row waiting until a
//! terminal of that chat subscribes, which the channel reports through
//! [`ChannelContext::recipient_arrived`].
//!
//! Bounds: at most [`CliLimits::max_clients`] connections, each holding a permit of the
//! host's [`FdBudget`] (the listener stops accepting when either runs out); a bounded queue
//! per connection, and a terminal that stops reading is closed after [`WRITE_TIMEOUT`].
//! Accept errors back off and are logged through a [`LogGate`].

mod channel;
mod subscribers;
mod wire;

#[cfg(test)]
mod tests;

pub use wire::{
    CliLineError, ClientLine, MAX_LINE_BYTES, PLATFORM_ID, ServerLine, parse_client_line,
};

use crate::edge::BoxFuture;
use crate::edge::{
    AnswerError, Answered, ChannelContext, ChannelError, ChatAddress, InboundEvent, QuestionAnswer,
    RouteError, RouteOutcome,
};
use crate::fd_budget::{AcceptBackoff, BudgetedListener, FdBudget};
use crate::log_gate::LogGate;
use protocol::Sender;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use subscribers::{Recipient, SubscribeError, Subscribers, Subscription};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
/// The bounded line reader, shared with the out-of-process adapters' socket.
pub(crate) use wire::{LineRead, LineReader};

pub const CHANNEL_TYPE: &str = "cli";

/// The name `crabpot chat` speaks as when `--user` is not given: `$USER`, else `$LOGNAME`,
/// else the name `/etc/passwd` gives the process's uid, else `you`. On first start the host
/// makes `cli:<this name>` (of its own process) an owner, so the person who started it can
/// use `/clear` and decide approvals from the terminal at once.
pub fn terminal_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .or_else(passwd_name)
        .unwrap_or_else(|| "you".to_owned())
}

/// The user id of a terminal user: `cli:<name>`.
pub fn user_id(name: &str) -> String {
    format!("{CHANNEL_TYPE}:{name}")
}

/// The login name of this process's uid in `/etc/passwd` (`name:x:uid:...`).
fn passwd_name() -> Option<String> {
    let uid = rustix::process::getuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// How long one line may take to go into a terminal's socket. A terminal that does not read
/// for that long is closed, so it cannot hold up delivery (which waits for the line).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines queued for one terminal; a terminal this far behind is closed.
const CLIENT_QUEUE: usize = 256;

/// How long repeated identical cli warnings are coalesced.
const LOG_WINDOW: Duration = Duration::from_secs(30);

/// What local clients may hold of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliLimits {
    /// Connections open at once; past it the socket stops accepting until one closes.
    pub max_clients: usize,
    /// The longest line a client may send (at most [`MAX_LINE_BYTES`], which
    /// [`parse_client_line`] enforces too).
    pub max_line_bytes: usize,
}

impl Default for CliLimits {
    fn default() -> Self {
        Self {
            max_clients: 64,
            max_line_bytes: MAX_LINE_BYTES,
        }
    }
}

/// A line for one terminal; `written` is told once it is in the socket.
pub(crate) struct Outgoing {
    line: ServerLine,
    written: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    fn line(line: ServerLine) -> Self {
        Self {
            line,
            written: None,
        }
    }
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

/// The host side the connections talk to: the router and delivery, through a
/// [`ChannelContext`] in the daemon, a fake in the tests.
trait Inbox: Send + Sync {
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>>;
    fn answer(&self, answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>>;
    fn recipient_arrived(&self, address: ChatAddress);
}

impl Inbox for ChannelContext {
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>> {
        Box::pin(ChannelContext::push(self, event))
    }

    fn answer(&self, answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>> {
        Box::pin(ChannelContext::answer(self, answer))
    }

    fn recipient_arrived(&self, address: ChatAddress) {
        ChannelContext::recipient_arrived(self, address);
    }
}

/// The terminal adapter.
pub struct CliChannel {
    subscribers: Subscribers,
    next_id: AtomicU64,
    /// The socket [`crate::edge::Channel::start`] serves, until it starts.
    listener: std::sync::Mutex<Option<UnixListener>>,
    serving: std::sync::atomic::AtomicBool,
    limits: CliLimits,
    fd_budget: Arc<FdBudget>,
    log_gate: Arc<LogGate>,
}

impl CliChannel {
    /// The gate its repeated warnings go through (`serve` runs its flusher, so the count of
    /// a warning that stopped repeating is logged too).
    pub fn log_gate(&self) -> Arc<crate::log_gate::LogGate> {
        Arc::clone(&self.log_gate)
    }

    /// A channel with the default [`CliLimits`] and no descriptor budget.
    pub fn new() -> Arc<Self> {
        Self::new_with(CliLimits::default(), FdBudget::unlimited())
    }

    /// A channel with these limits, taking a permit of `fd_budget` per connection (share one
    /// budget with the proxies). A `max_line_bytes` above [`MAX_LINE_BYTES`] is lowered to it.
    pub fn new_with(limits: CliLimits, fd_budget: Arc<FdBudget>) -> Arc<Self> {
        let limits = CliLimits {
            max_clients: limits.max_clients.max(1),
            max_line_bytes: limits.max_line_bytes.clamp(1, MAX_LINE_BYTES),
        };
        Arc::new(Self {
            subscribers: Subscribers::default(),
            next_id: AtomicU64::new(1),
            listener: std::sync::Mutex::new(None),
            serving: std::sync::atomic::AtomicBool::new(false),
            limits,
            fd_budget,
            log_gate: Arc::new(LogGate::new(LOG_WINDOW)),
        })
    }

    /// Binds `data/cli.sock` with mode 0600, replacing a stale socket file.
    pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
        // One binder for every private socket of the host: a stale socket is replaced, any
        // other file there is refused, the mode is 0600.
        crate::proxy::bind_session_socket(path, None).map_err(std::io::Error::other)
    }

    /// Gives the channel the socket its [`crate::edge::Channel::start`] serves.
    pub fn listen(&self, listener: UnixListener) {
        *self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener);
    }

    /// The socket given to [`CliChannel::listen`], once.
    fn take_listener(&self) -> Option<UnixListener> {
        self.listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Accepts terminals until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        context: ChannelContext,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        self.serve_inbox(listener, Arc::new(context), tasks, shutdown)
            .await;
    }

    async fn serve_inbox(
        self: Arc<Self>,
        listener: UnixListener,
        inbox: Arc<dyn Inbox>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let listener = BudgetedListener::new(
            listener,
            Arc::clone(&self.fd_budget),
            self.limits.max_clients,
        );
        let mut backoff = AcceptBackoff::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, permit)) => {
                    backoff.succeeded();
                    let this = Arc::clone(&self);
                    let inbox = Arc::clone(&inbox);
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        this.connection(stream, inbox, shutdown).await;
                        // Freed only once the connection (and so its descriptor) is gone.
                        drop(permit);
                    });
                }
                Err(error) => {
                    let pause = backoff.failed();
                    if self.log_gate.should_log("cli.accept") {
                        tracing::warn!(%error, pause_ms = pause.as_millis(), "cli accept failed");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// One terminal: reads its lines and answers each, while its queue is written out.
    async fn connection(
        self: Arc<Self>,
        stream: UnixStream,
        inbox: Arc<dyn Inbox>,
        shutdown: CancellationToken,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (read, write) = stream.into_split();
        let (sender, queue) = mpsc::channel::<Outgoing>(CLIENT_QUEUE);
        let closed = shutdown.child_token();
        self.subscribers.register(
            id,
            Recipient {
                id,
                sender: sender.clone(),
                closed: closed.clone(),
            },
        );
        let reading = async {
            self.read_lines(id, read, &sender, inbox.as_ref(), &closed)
                .await;
            // Nothing new is queued for it from now on; what is queued is still written
            // (the error that explains why the connection ends, for one).
            self.subscribers.unregister(id);
            drop(sender);
        };
        let writing = write_lines(write, queue, &closed);
        tokio::join!(reading, writing);
    }

    async fn read_lines(
        &self,
        id: u64,
        read: tokio::net::unix::OwnedReadHalf,
        sender: &mpsc::Sender<Outgoing>,
        inbox: &dyn Inbox,
        closed: &CancellationToken,
    ) {
        let mut lines = LineReader::new(read, self.limits.max_line_bytes);
        loop {
            let read = tokio::select! {
                () = closed.cancelled() => return,
                read = lines.next_line() => read,
            };
            let answer = match read {
                Ok(LineRead::Line) => match parse_client_line(lines.line()) {
                    Err(CliLineError::Empty) => continue,
                    Err(error) => ServerLine::Error {
                        message: error.to_string(),
                    },
                    Ok(line) => self.accept(id, line, inbox).await,
                },
                Ok(LineRead::TooLong) => {
                    let error = CliLineError::TooLong {
                        max: self.limits.max_line_bytes,
                    };
                    let message = format!("{error}; closing the connection");
                    // The connection ends either way; a closed queue means it already has.
                    let _ = sender
                        .send(Outgoing::line(ServerLine::Error { message }))
                        .await;
                    return;
                }
                Ok(LineRead::End) | Err(_) => return,
            };
            if sender.send(Outgoing::line(answer)).await.is_err() {
                return;
            }
        }
    }

    /// Subscribes connection `id` and reports the waiting chats it now receives.
    fn subscribe(
        &self,
        id: u64,
        subscription: &Subscription,
        inbox: &dyn Inbox,
    ) -> Result<(), SubscribeError> {
        for address in self.subscribers.subscribe(id, subscription)? {
            inbox.recipient_arrived(address);
        }
        Ok(())
    }

    /// A `message` or `answer` in a chat subscribes its connection to that chat, so the
    /// replies find it. Past the per-connection cap the line is still taken, and only the
    /// subscription is skipped (the client can subscribe to every chat instead).
    fn subscribe_implicitly(&self, id: u64, chat: Option<&str>, inbox: &dyn Inbox) {
        let chat = chat.unwrap_or(PLATFORM_ID).to_owned();
        if let Err(error) = self.subscribe(id, &Subscription::Chat(chat), inbox) {
            tracing::debug!(%error, "cli message without a subscription");
        }
    }

    /// Routes one client line and says what became of it.
    async fn accept(&self, id: u64, line: ClientLine, inbox: &dyn Inbox) -> ServerLine {
        match line {
            ClientLine::Subscribe { chat, all_chats } => {
                let subscription = if all_chats {
                    Subscription::AllChats
                } else {
                    Subscription::Chat(chat.unwrap_or_else(|| PLATFORM_ID.into()))
                };
                match self.subscribe(id, &subscription, inbox) {
                    Ok(()) => match subscription {
                        Subscription::AllChats => ServerLine::Subscribed {
                            platform_id: None,
                            all_chats: true,
                        },
                        Subscription::Chat(platform_id) => ServerLine::Subscribed {
                            platform_id: Some(platform_id),
                            all_chats: false,
                        },
                    },
                    Err(error) => ServerLine::Error {
                        message: error.to_string(),
                    },
                }
            }
            ClientLine::Message {
                text,
                user,
                chat,
                thread,
                is_group,
                is_mention,
                message_id,
            } => {
                self.subscribe_implicitly(id, chat.as_deref(), inbox);
                let message = IncomingMessage {
                    text,
                    user,
                    chat,
                    thread,
                    is_group,
                    is_mention,
                    message_id,
                };
                self.accept_message(message, inbox).await
            }
            ClientLine::Answer {
                question_id,
                answer,
                user,
                chat,
                thread,
            } => {
                self.subscribe_implicitly(id, chat.as_deref(), inbox);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let answer = QuestionAnswer {
                    channel_type: CHANNEL_TYPE.into(),
                    platform_id: chat.unwrap_or_else(|| PLATFORM_ID.into()),
                    thread_id: thread,
                    question_id,
                    answer,
                    sender: Sender {
                        id: user_id(&user),
                        name: Some(user),
                    },
                    platform_message_id: format!("cli-in-{}-{id}", uuid::Uuid::now_v7().simple()),
                };
                match inbox.answer(answer).await {
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

    async fn accept_message(&self, message: IncomingMessage, inbox: &dyn Inbox) -> ServerLine {
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
                id: user_id(&user),
                name: Some(user),
            },
            text,
            attachments: Vec::new(),
            is_mention,
            is_group,
            chat_name,
            uploads: Vec::new(),
        };
        match inbox.push(event).await {
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

    /// Queues `line` for `recipient` without waiting; a terminal whose queue is full is not
    /// reading, and is closed. Returns whether the line was queued.
    fn queue(&self, recipient: &Recipient, outgoing: Outgoing) -> bool {
        match recipient.sender.try_send(outgoing) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.log_gate.should_log("cli.slow_terminal") {
                    tracing::warn!("a cli terminal is not reading its replies; closing it");
                }
                recipient.closed.cancel();
                self.subscribers.unregister(recipient.id);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.subscribers.unregister(recipient.id);
                false
            }
        }
    }

    /// Sends a reply to every terminal of its chat and waits until at least one has it in
    /// its socket. Terminals that fail are dropped and the others tried again, a few rounds
    /// at most; after that the chat is noted as waiting.
    async fn send_reply(&self, to: &ChatAddress, line: ServerLine) -> Result<(), ChannelError> {
        const ROUNDS: usize = 3;
        for _round in 0..ROUNDS {
            let recipients = self.subscribers.recipients_or_wait(to);
            if recipients.is_empty() {
                return Err(ChannelError::NoRecipient(format!(
                    "no terminal of cli/{} is connected",
                    to.platform_id
                )));
            }
            if self.send_to(&recipients, &line).await {
                return Ok(());
            }
            // Every one failed and is unregistered now: try whoever else is there.
        }
        self.subscribers.wait(to);
        Err(ChannelError::NoRecipient(format!(
            "no terminal of cli/{} took the reply",
            to.platform_id
        )))
    }

    /// Queues `line` for each recipient and waits for the writes; false when none was
    /// written. The ones that failed are unregistered.
    async fn send_to(&self, recipients: &[Recipient], line: &ServerLine) -> bool {
        let mut written = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let (tell, told) = oneshot::channel();
            let outgoing = Outgoing {
                line: line.clone(),
                written: Some(tell),
            };
            if self.queue(recipient, outgoing) {
                written.push(async move { (recipient.id, told.await.is_ok()) });
            }
        }
        // Every writer gives up on a line after WRITE_TIMEOUT (and drops its `tell`); the
        // outer bound only guards against a writer stuck behind a long queue.
        let outcomes =
            tokio::time::timeout(WRITE_TIMEOUT * 2, futures_util::future::join_all(written))
                .await
                .unwrap_or_default();
        let mut any_written = false;
        for (id, ok) in outcomes {
            if ok {
                any_written = true;
            } else {
                self.subscribers.unregister(id);
            }
        }
        any_written
    }
}

/// Writes a terminal's queue into its socket, each line within [`WRITE_TIMEOUT`]; telling
/// each line's sender once it is written. Ends when the queue ends, or closes the connection
/// when a write fails or stalls.
async fn write_lines(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
    closed: &CancellationToken,
) {
    loop {
        let outgoing = tokio::select! {
            () = closed.cancelled() => return,
            outgoing = queue.recv() => match outgoing {
                Some(outgoing) => outgoing,
                None => return,
            },
        };
        let Ok(mut json) = serde_json::to_string(&outgoing.line) else {
            continue;
        };
        json.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(json.as_bytes())).await {
            Ok(Ok(())) => {
                if let Some(written) = outgoing.written {
                    // The deliverer may have given up waiting; the line is out either way.
                    let _ = written.send(());
                }
            }
            Ok(Err(_)) | Err(_) => {
                closed.cancel();
                return;
            }
        }
    }
}
