//! Live replies ([`Streams`]): the drafts of a reply being written, shown as they grow.
//!
//! The runner reports a turn's start and the text of its reply as it streams from the model
//! (over the session's proxy socket, `protocol::live`); each session has at most one
//! [`Stream`], driven by a task of its own, so a slow platform delays only that chat:
//! - from the turn's start until its first visible text, the typing indicator shows,
//!   renewed every `Capabilities::typing_renew`;
//! - where the platform shows drafts natively (`live_drafts`: the terminal, the web), each
//!   new text goes out as a [`Draft`] at once;
//! - where it can edit, the first text is sent as a message and later text edits that
//!   message in place, no more often than `min_edit_interval`;
//! - elsewhere nothing shows until the final reply.
//!
//! The final reply [`Streams::take`]s the stream: no draft goes out after it, an edit in
//! flight is waited for, and the reply replaces the draft in place (an edit of the draft's
//! message, or a native reply naming the draft). A turn that ends without a reply to take
//! its place ([`Streams::finish`]) has its draft removed. Drafts are latest-wins, so a fast
//! writer costs the platform its edit rate and no more. A draft shown as a platform message is
//! written down ([`super::remembered`]), so after a host restart the turn's next draft or its
//! reply edits that same message.

mod removal;

use super::markup;
use super::rate::{RateLimiter, Scope};
use super::remembered::{DraftLog, Remembered, ShownDraft};
use crate::channels::Channels;
use crate::edge::{Channel, ChannelError, ChatAddress, Draft, OutgoingMessage};
use protocol::{MessageId, Seq, SessionId};
use removal::clear_typing;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a platform shows while a draft is removed or reset and no text replaced it.
pub const PLACEHOLDER: &str = "…";

/// Why a live event was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The sender's offset is not where the draft is: resend from `have` characters.
    OffsetMismatch { have: u32 },
    /// No draft of that reply is open (no turn started, or its reply was sent already).
    NotStreaming,
}

/// What the final reply finds of its draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The draft is the platform message with this id: edit it into the reply, not before
    /// `not_before` (the platform's edit rate).
    Edited {
        platform_id: String,
        not_before: Instant,
    },
    /// The draft was shown natively under this key: the reply names it.
    Live { key: String },
}

/// The drafts of every session.
pub struct Streams {
    channels: Arc<Channels>,
    limiter: Arc<RateLimiter>,
    by_session: Mutex<HashMap<SessionId, Arc<Stream>>>,
    remembered: Remembered,
}

/// One reply being written.
pub struct Stream {
    session: SessionId,
    key: String,
    state: Mutex<State>,
    wake: Notify,
    /// Held for each platform call of the stream, so the final reply can wait for one in
    /// flight before it takes the draft's place.
    io: tokio::sync::Mutex<Shown>,
}

#[derive(Default)]
struct State {
    text: String,
    chars: u32,
    /// Bumped on every change, so the driver knows whether it showed the latest.
    version: u64,
    /// The final reply took it, or the turn ended.
    done: bool,
}

/// What the platform shows of the draft (only touched under `Stream::io`).
#[derive(Default)]
struct Shown {
    version: u64,
    text: String,
    /// The draft's platform message, where the platform edits.
    platform_id: Option<String>,
    last_edit: Option<Instant>,
    /// Something of the draft is visible (typing is over).
    visible: bool,
    typing: bool,
    /// Where the driver sends, once the origin is known.
    target: Option<(ChatAddress, Arc<dyn Channel>)>,
    /// Where the draft's message of an earlier run of the host shows (`platform_id` is
    /// that message), until the driver knows the origin is the same chat.
    found_in: Option<ChatAddress>,
}

impl Streams {
    pub fn new(channels: Arc<Channels>, limiter: Arc<RateLimiter>) -> Arc<Self> {
        Arc::new(Self {
            channels,
            limiter,
            by_session: Mutex::new(HashMap::new()),
            remembered: Remembered::default(),
        })
    }

    /// Writes drafts shown as platform messages down in `log` from now on, and takes up
    /// `found`, the drafts an earlier run of the host left.
    pub fn remember(&self, log: Arc<dyn DraftLog>, found: Vec<ShownDraft>) {
        self.remembered.adopt(log, found);
    }

    fn get(&self, session: &SessionId) -> Option<Arc<Stream>> {
        self.by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .cloned()
    }

    /// Opens the draft of the reply to `key` and starts its driver, which shows it once
    /// `origin` says where the reply goes (`None`: nowhere a draft can show, e.g. another
    /// agent). A stream of an older reply of the session is finished first.
    pub fn begin<F>(self: &Arc<Self>, session: &SessionId, key: &str, origin: F)
    where
        F: Future<Output = Option<ChatAddress>> + Send + 'static,
    {
        if self.get(session).is_some_and(|stream| stream.key == key) {
            return;
        }
        let stream = Arc::new(Stream {
            session: session.clone(),
            key: key.to_owned(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            io: tokio::sync::Mutex::new(Shown::default()),
        });
        let old = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session.clone(), Arc::clone(&stream));
        let (found, over) = self.remembered.take_session(session, key);
        let streams = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(old) = old {
                streams.remove_draft(&old).await;
            }
            for draft in over {
                streams.remove_found(draft).await;
            }
            if let Some(found) = found {
                let mut shown = stream.io.lock().await;
                shown.platform_id = Some(found.platform_id);
                shown.visible = true;
                shown.found_in = Some(found.address);
            }
            streams.drive(stream, origin).await;
        });
    }

    /// Appends `text` to the draft of `key`, which the sender had sent `offset` characters
    /// of so far.
    pub fn append(
        &self,
        session: &SessionId,
        key: &str,
        offset: u32,
        text: &str,
    ) -> Result<(), Refusal> {
        let stream = self
            .get(session)
            .filter(|stream| stream.key == key)
            .ok_or(Refusal::NotStreaming)?;
        let mut state = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.done {
            return Err(Refusal::NotStreaming);
        }
        if offset != state.chars {
            return Err(Refusal::OffsetMismatch { have: state.chars });
        }
        state.text.push_str(text);
        state.chars = state
            .chars
            .saturating_add(u32::try_from(text.chars().count()).unwrap_or(u32::MAX));
        state.version += 1;
        drop(state);
        stream.wake.notify_one();
        Ok(())
    }

    /// The text so far was not the reply (a tool call followed it): the draft is empty again.
    pub fn reset(&self, session: &SessionId, key: &str) -> Result<(), Refusal> {
        let stream = self
            .get(session)
            .filter(|stream| stream.key == key)
            .ok_or(Refusal::NotStreaming)?;
        let mut state = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.text.clear();
        state.chars = 0;
        state.version += 1;
        drop(state);
        stream.wake.notify_one();
        Ok(())
    }

    /// The final reply to `key`, going to `to`, is about to be sent: stops the draft, waits
    /// for a platform call of it in flight, and says what the reply replaces.
    pub async fn take(&self, session: &SessionId, key: &str, to: &ChatAddress) -> Option<Taken> {
        let stream = {
            let mut by_session = self
                .by_session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match by_session.get(session) {
                Some(stream) if stream.key == key => by_session.remove(session),
                _ => None,
            }
        };
        let Some(stream) = stream else {
            // A draft an earlier run of the host showed in this chat: the reply edits it.
            let found = self.remembered.take(session, key)?;
            if found.address != *to {
                self.remove_found(found).await;
                return None;
            }
            self.remembered.gone(session, key).await;
            return Some(Taken::Edited {
                platform_id: found.platform_id,
                not_before: Instant::now(),
            });
        };
        stream.stop();
        let mut shown = stream.io.lock().await;
        if shown.platform_id.is_some() {
            self.remembered.gone(session, key).await;
        }
        let taken = match (&shown.platform_id, &shown.target) {
            (Some(platform_id), Some((_, channel))) => Some(Taken::Edited {
                platform_id: platform_id.clone(),
                not_before: shown.last_edit.map_or_else(Instant::now, |at| {
                    at + channel.capabilities().min_edit_interval
                }),
            }),
            (None, Some((_, channel))) if shown.visible && channel.capabilities().live_drafts => {
                Some(Taken::Live {
                    key: stream.key.clone(),
                })
            }
            _ => None,
        };
        clear_typing(&mut shown).await;
        taken
    }

    /// The turns of `finished` are over: a draft of one of them that no reply took is
    /// removed from the chat.
    pub async fn finish(&self, session: &SessionId, finished: &[MessageId]) {
        let stream = {
            let mut by_session = self
                .by_session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match by_session.get(session) {
                Some(stream) if finished.iter().any(|id| id.as_str() == stream.key) => {
                    by_session.remove(session)
                }
                _ => None,
            }
        };
        if let Some(stream) = stream {
            self.remove_draft(&stream).await;
        }
        for id in finished {
            if let Some(found) = self.remembered.take(session, id.as_str()) {
                self.remove_found(found).await;
            }
        }
    }

    /// Shows the stream's draft as it grows, until it is taken or finished.
    async fn drive<F>(&self, stream: Arc<Stream>, origin: F)
    where
        F: Future<Output = Option<ChatAddress>>,
    {
        let target = match origin.await {
            Some(address) => self
                .channels
                .get(&address.channel_type)
                .map(|channel| (address, channel)),
            None => None,
        };
        let Some((address, channel)) = target else {
            return;
        };
        let capabilities = channel.capabilities();
        let mut renew_at = None;
        {
            let mut shown = stream.io.lock().await;
            if stream.is_done() {
                return;
            }
            shown.target = Some((address.clone(), Arc::clone(&channel)));
            if let Some(found_in) = shown.found_in.take()
                && found_in != address
            {
                // The turn's reply goes elsewhere now: its old draft is removed, not reused.
                if let Some(platform_id) = shown.platform_id.take() {
                    shown.visible = false;
                    let found = ShownDraft {
                        session: stream.session.clone(),
                        key: stream.key.clone(),
                        address: found_in,
                        platform_id,
                    };
                    self.remove_found(found).await;
                }
            }
            if let Some(every) = capabilities.typing_renew {
                if channel.set_typing(&address, true).await.is_ok() {
                    shown.typing = true;
                }
                renew_at = Some(Instant::now() + every);
            }
        }
        if !capabilities.live_drafts && !capabilities.edits && renew_at.is_none() {
            return;
        }
        loop {
            let mut edit_at = None;
            {
                let mut shown = stream.io.lock().await;
                let (version, text, done) = stream.snapshot();
                if done {
                    return;
                }
                if version != shown.version {
                    if capabilities.live_drafts {
                        let converted = markup::convert(&text, capabilities.markup);
                        let appended = converted
                            .strip_prefix(shown.text.as_str())
                            .filter(|_| !shown.text.is_empty() || !converted.is_empty())
                            .map(str::to_owned);
                        let draft = Draft {
                            key: stream.key.clone(),
                            text: converted.clone(),
                            appended,
                        };
                        if channel.draft(&address, &draft).await.is_ok() {
                            shown.visible |= !converted.is_empty();
                        }
                        shown.text = converted;
                        shown.version = version;
                    } else if capabilities.edits {
                        let wait = shown
                            .last_edit
                            .map(|at| at + capabilities.min_edit_interval)
                            .filter(|at| *at > Instant::now());
                        if let Some(at) = wait {
                            edit_at = Some(at);
                        } else {
                            self.show_by_edit(
                                &stream, &mut shown, &address, &channel, version, &text,
                            )
                            .await;
                        }
                    }
                }
                if shown.visible {
                    renew_at = None;
                    shown.typing = false;
                }
            }
            let deadline = match (renew_at, edit_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = stream.wake.notified() => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => stream.wake.notified().await,
            }
            if let (Some(at), Some(every)) = (renew_at, capabilities.typing_renew)
                && Instant::now() >= at
            {
                let shown = stream.io.lock().await;
                if !shown.visible && !stream.is_done() {
                    let _ = channel.set_typing(&address, true).await;
                }
                renew_at = Some(Instant::now() + every);
            }
        }
    }

    /// Shows `text` in the draft's platform message: sent the first time, edited after.
    async fn show_by_edit(
        &self,
        stream: &Stream,
        shown: &mut Shown,
        address: &ChatAddress,
        channel: &Arc<dyn Channel>,
        version: u64,
        text: &str,
    ) {
        let capabilities = channel.capabilities();
        let mut converted = markup::convert(text, capabilities.markup);
        if converted.trim().is_empty() {
            if shown.platform_id.is_none() {
                shown.version = version;
                return;
            }
            converted = PLACEHOLDER.to_owned();
        }
        let converted = super::truncate(&converted, capabilities.max_text_chars);
        let message = OutgoingMessage {
            id: MessageId::new(format!("draft-{}", stream.key)),
            seq: Seq(-1),
            text: converted.clone(),
            ..OutgoingMessage::default()
        };
        self.limiter.acquire(address, &capabilities.rate).await;
        let result = match &shown.platform_id {
            Some(platform_id) => channel.edit(address, platform_id, &message).await,
            None => match channel.deliver(address, &message).await {
                Ok(platform_id) => {
                    shown.platform_id = Some(platform_id.clone());
                    self.remembered
                        .shown(ShownDraft {
                            session: stream.session.clone(),
                            key: stream.key.clone(),
                            address: address.clone(),
                            platform_id,
                        })
                        .await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                shown.visible = true;
                shown.text = converted;
            }
            Err(ChannelError::RateLimited { retry_after }) => {
                // The next draft, and the reply itself, wait as long as the platform asked.
                tracing::debug!(?retry_after, "showing a draft was rate-limited");
                self.limiter
                    .retry_after(address, Scope::of(&capabilities.rate), retry_after);
            }
            Err(e) => tracing::debug!(error = %e, "showing a draft failed"),
        }
        shown.version = version;
        shown.last_edit = Some(Instant::now());
    }
}

impl Stream {
    fn stop(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done = true;
        self.wake.notify_one();
    }

    fn is_done(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done
    }

    fn snapshot(&self) -> (u64, String, bool) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.version, state.text.clone(), state.done)
    }
}

/// How long a driver waits for its origin before it gives up showing drafts.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);
