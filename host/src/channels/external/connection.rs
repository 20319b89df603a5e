//! One adapter connection: the handshake (a `hello` within the hello timeout, its version
//! and token checked against the central DB), then three parts until the connection ends —
//! the reader (results to the requests waiting for them, events and answers to the inbound
//! worker, health reports, an error line for each bad line and a disconnect after a few),
//! the writer (the link's queue into the socket, each line within the write timeout), and
//! the inbound worker (events and answers to the router one at a time, in order, each
//! answered with an `ack` once durable).
//!
//! A hello makes the adapter's channel take the link (closing an older connection) and
//! reports `channel_arrived`, so rows that waited for it are delivered. A call that failed
//! with `NoRecipient` just before the hello may have its row start waiting after that
//! report; then the report is made once more a second later.

use super::channel::ExternalChannel;
use super::link::Link;
use super::wire::{
    Ack, AdapterLine, AnswerWire, HostLine, InboundWire, PROTOCOL_VERSION, WireError,
    parse_adapter_line,
};
use super::{ExternalAdapters, token};
use crate::channels::cli::{LineRead, LineReader};
use crate::db::central::adapters::{self, Adapter};
use crate::edge::{Capabilities, ChannelContext};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How recent a `NoRecipient` must be for a hello to report the arrival a second time.
const MISSED_WINDOW: Duration = Duration::from_secs(2);
/// When the second report goes.
const SECOND_ARRIVAL: Duration = Duration::from_secs(1);
/// How long the farewell line may take before the socket is closed anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// An event or answer for the router.
enum Work {
    Inbound { id: String, event: InboundWire },
    Answer { id: String, answer: AnswerWire },
}

/// An adapter that said a good hello.
struct Welcomed {
    adapter: Adapter,
    channel: Arc<ExternalChannel>,
    capabilities: Capabilities,
}

impl ExternalAdapters {
    /// Serves one connection until it ends or the host shuts down.
    pub(super) async fn connection(
        self: Arc<Self>,
        stream: UnixStream,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) {
        let (read, mut write) = stream.into_split();
        let mut lines = LineReader::new(read, self.limits.max_line_bytes);
        let welcomed = match self.handshake(&mut lines).await {
            Ok(welcomed) => welcomed,
            Err(Some(message)) => {
                let line = HostLine::Error { id: None, message };
                // The connection ends either way: a failed write changes nothing.
                let _ = write_line(&mut write, &line, self.limits.write_timeout).await;
                return;
            }
            Err(None) => return,
        };
        let Welcomed {
            adapter,
            channel,
            capabilities,
        } = welcomed;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (link, queue) = Link::new(generation, &self.limits, shutdown.child_token());
        // The welcome is the first line of the queue, so it goes before any request.
        link.try_send(HostLine::Welcome {
            version: PROTOCOL_VERSION,
            adapter: adapter.name.clone(),
            capabilities,
        });
        let missed = channel.missed_since(MISSED_WINDOW);
        if let Some(old) = channel.attach(&adapter.name, capabilities, Arc::clone(&link)) {
            old.close(Some(
                "replaced by a newer connection of this adapter".into(),
            ));
        }
        tracing::info!(adapter = %adapter.name, channel = %adapter.channel_type, "adapter connected");
        self.touch(&adapter.name).await;
        context.channel_arrived(&adapter.channel_type);

        let (work_tx, work_rx) = mpsc::channel(self.limits.inbound_queue.max(1));
        let reading = async {
            let reason = self.read_lines(&mut lines, &link, &channel, &work_tx).await;
            link.close(None);
            reason
        };
        let second_arrival = async {
            if missed {
                tokio::select! {
                    () = link.closed.cancelled() => {}
                    () = tokio::time::sleep(SECOND_ARRIVAL) => context.channel_arrived(&adapter.channel_type),
                }
            }
        };
        let (reason, (), (), ()) = tokio::join!(
            reading,
            write_lines(write, queue, &link, self.limits.write_timeout),
            self.route(&adapter.channel_type, work_rx, &link, &context),
            second_arrival,
        );
        channel.detach(generation, &reason);
        tracing::info!(adapter = %adapter.name, %reason, "adapter disconnected");
        self.touch(&adapter.name).await;
    }

    /// Reads and checks the hello. `Err(Some(message))`: tell the adapter and close;
    /// `Err(None)`: close without a word (it went away).
    async fn handshake(
        &self,
        lines: &mut LineReader<OwnedReadHalf>,
    ) -> Result<Welcomed, Option<String>> {
        let read = tokio::time::timeout(self.limits.hello_timeout, lines.next_line()).await;
        let line = match read {
            Err(_elapsed) => {
                return Err(Some(format!(
                    "no hello within {} s",
                    self.limits.hello_timeout.as_secs_f32()
                )));
            }
            Ok(Ok(LineRead::Line)) => parse_adapter_line(lines.line(), self.limits.max_line_bytes),
            Ok(Ok(LineRead::TooLong)) => Err(WireError::TooLong {
                max: self.limits.max_line_bytes,
            }),
            Ok(Ok(LineRead::End) | Err(_)) => return Err(None),
        };
        let (version, presented, channel_type, declared) = match line {
            Ok(AdapterLine::Hello {
                version,
                token,
                channel_type,
                capabilities,
            }) => (version, token, channel_type, capabilities),
            Ok(_) | Err(WireError::Empty) => {
                return Err(Some("the first line must be a hello".into()));
            }
            Err(error) => return Err(Some(error.to_string())),
        };
        if version != PROTOCOL_VERSION {
            return Err(Some(format!(
                "protocol version {version} is not supported; this host speaks version {PROTOCOL_VERSION}"
            )));
        }
        let lookup = channel_type.clone();
        let found = self
            .central
            .call(move |conn| adapters::adapter_for_channel(conn, &lookup))
            .await;
        let refused = || {
            Some(format!(
                "the token is not valid for channel type {channel_type:?} (see crabpot adapters list)"
            ))
        };
        let adapter = match found {
            Ok(Some((adapter, hash))) if token::verify(&presented.0, &hash) => adapter,
            Ok(_) => {
                if self.log_gate.should_log("adapters.refused") {
                    tracing::warn!(channel = %channel_type, "an adapter's hello was refused: bad token or unknown channel type");
                }
                return Err(refused());
            }
            Err(error) => {
                tracing::warn!(%error, "checking an adapter's token failed");
                return Err(Some(format!(
                    "the host could not check the token ({error}); try again"
                )));
            }
        };
        if self.reserved(&adapter.channel_type) {
            return Err(Some(format!(
                "channel type {:?} is served by the host itself",
                adapter.channel_type
            )));
        }
        let channel = self.channel_for(&adapter);
        Ok(Welcomed {
            adapter,
            channel,
            capabilities: declared.effective(),
        })
    }

    /// Reads lines until the connection ends; returns why it did.
    async fn read_lines(
        &self,
        lines: &mut LineReader<OwnedReadHalf>,
        link: &Link,
        channel: &ExternalChannel,
        work: &mpsc::Sender<Work>,
    ) -> String {
        let mut bad_lines = 0;
        loop {
            let read = tokio::select! {
                () = link.closed.cancelled() => return "closed by the host".into(),
                read = lines.next_line() => read,
            };
            let parsed = match read {
                Ok(LineRead::Line) => parse_adapter_line(lines.line(), self.limits.max_line_bytes),
                Ok(LineRead::TooLong) => {
                    let error = WireError::TooLong {
                        max: self.limits.max_line_bytes,
                    };
                    link.close(Some(format!("{error}; closing the connection")));
                    return error.to_string();
                }
                Ok(LineRead::End) => return "the adapter closed the connection".into(),
                Err(error) => return format!("reading failed: {error}"),
            };
            let complaint = match parsed {
                Err(WireError::Empty) => continue,
                Err(error) => error.to_string(),
                Ok(AdapterLine::Result(result)) => {
                    if !link.answered(result) {
                        tracing::debug!("a result for no waiting request");
                    }
                    continue;
                }
                Ok(AdapterLine::Health { state, error }) => {
                    channel.reported(link.generation, state, error);
                    continue;
                }
                Ok(AdapterLine::Inbound { id, event }) => {
                    if !send_work(work, link, Work::Inbound { id, event }).await {
                        return "closed by the host".into();
                    }
                    continue;
                }
                Ok(AdapterLine::Answer { id, answer }) => {
                    if !send_work(work, link, Work::Answer { id, answer }).await {
                        return "closed by the host".into();
                    }
                    continue;
                }
                Ok(AdapterLine::Hello { .. }) => "hello was said already".to_owned(),
            };
            bad_lines += 1;
            if bad_lines >= self.limits.max_bad_lines {
                let why = format!("{bad_lines} bad lines, the last: {complaint}");
                link.close(Some(format!("{why}; closing the connection")));
                return why;
            }
            let line = HostLine::Error {
                id: None,
                message: complaint,
            };
            if !link.send(line).await {
                return "closed by the host".into();
            }
        }
    }

    /// The inbound worker: routes events and answers in order, acking each.
    async fn route(
        &self,
        channel_type: &str,
        mut work: mpsc::Receiver<Work>,
        link: &Link,
        context: &ChannelContext,
    ) {
        loop {
            let next = tokio::select! {
                () = link.closed.cancelled() => return,
                next = work.recv() => next,
            };
            let Some(next) = next else { return };
            let ack = match next {
                Work::Inbound { id, event } => inbound(channel_type, id, event, context).await,
                Work::Answer { id, answer } => self.answer(channel_type, id, answer, context).await,
            };
            if !link.send(HostLine::Ack(ack)).await {
                return;
            }
        }
    }

    async fn answer(
        &self,
        channel_type: &str,
        id: String,
        answer: AnswerWire,
        context: &ChannelContext,
    ) -> Ack {
        let fresh = || format!("{channel_type}-answer-{}", uuid::Uuid::now_v7().simple());
        let answer = match answer.into_answer(channel_type, fresh) {
            Ok(answer) => answer,
            Err(error) => return Ack::failed(id, error, false),
        };
        match context.answer(answer).await {
            Ok(answered) if answered.trigger => Ack {
                id,
                ok: true,
                message_ids: vec![answered.message_id.to_string()],
                ..Ack::default()
            },
            Ok(answered) => Ack {
                id,
                ok: true,
                context_ids: vec![answered.message_id.to_string()],
                ..Ack::default()
            },
            Err(error) => {
                let retryable = match &error {
                    crate::edge::AnswerError::Db(db) => db.is_retryable(),
                    crate::edge::AnswerError::NoQuestion(_)
                    | crate::edge::AnswerError::AlreadyAnswered(_)
                    | crate::edge::AnswerError::Empty => false,
                };
                Ack::failed(id, error, retryable)
            }
        }
    }

    /// Notes the adapter was seen; a failure only costs the timestamp.
    async fn touch(&self, name: &str) {
        let name = name.to_owned();
        let now = protocol::time::now_ms();
        if let Err(error) = self
            .central
            .call(move |conn| adapters::touch_adapter(conn, &name, now))
            .await
        {
            tracing::debug!(%error, "recording when an adapter was seen failed");
        }
    }
}

/// Hands work to the inbound worker, waiting while it is busy; false once the connection
/// has ended.
async fn send_work(work: &mpsc::Sender<Work>, link: &Link, item: Work) -> bool {
    tokio::select! {
        () = link.closed.cancelled() => false,
        sent = work.send(item) => sent.is_ok(),
    }
}

/// Routes one event and says what became of it.
async fn inbound(
    channel_type: &str,
    id: String,
    event: InboundWire,
    context: &ChannelContext,
) -> Ack {
    let event = match event.into_event(channel_type) {
        Ok(event) => event,
        Err(error) => return Ack::failed(id, error, false),
    };
    match context.push(event).await {
        Ok(outcome) => {
            let repeat = outcome.routed.is_empty()
                && outcome.held.is_empty()
                && outcome.dropped.is_empty()
                && outcome.decision.is_none();
            let (triggers, context_rows): (Vec<_>, Vec<_>) =
                outcome.routed.iter().partition(|row| row.trigger);
            Ack {
                id,
                ok: true,
                message_ids: triggers.iter().map(|r| r.message_id.to_string()).collect(),
                context_ids: context_rows
                    .iter()
                    .map(|r| r.message_id.to_string())
                    .collect(),
                held: outcome.held,
                dropped: outcome.dropped,
                repeat,
                decision: outcome.decision,
                ..Ack::default()
            }
        }
        Err(error) => {
            let retryable = error.is_retryable();
            Ack::failed(id, error, retryable)
        }
    }
}

/// Writes the link's queue into the socket, each line within `timeout`, until the link
/// closes (then its farewell line, if any) or a write fails or stalls (then it closes the
/// link).
async fn write_lines(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::Receiver<HostLine>,
    link: &Link,
    timeout: Duration,
) {
    loop {
        let line = tokio::select! {
            () = link.closed.cancelled() => break,
            line = queue.recv() => match line {
                Some(line) => line,
                None => break,
            },
        };
        if !write_line(&mut write, &line, timeout).await {
            link.close(None);
            return;
        }
    }
    if let Some(message) = link.take_farewell() {
        let line = HostLine::Error { id: None, message };
        // The connection is closing: a farewell that cannot be written is not missed.
        let _ = write_line(&mut write, &line, timeout.min(FAREWELL_TIMEOUT)).await;
    }
}

/// Writes one line; false when it failed or took longer than `timeout`.
async fn write_line(write: &mut OwnedWriteHalf, line: &HostLine, timeout: Duration) -> bool {
    let Ok(mut json) = serde_json::to_string(line) else {
        return false;
    };
    json.push('\n');
    matches!(
        tokio::time::timeout(timeout, write.write_all(json.as_bytes())).await,
        Ok(Ok(()))
    )
}
