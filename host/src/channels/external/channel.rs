//! [`ExternalChannel`]: one registered out-of-process adapter as a [`Channel`], calling it
//! over the [`Link`] of its live connection.
//!
//! Every platform call becomes a request line with a fresh id (`h<n>`) on the link's bounded
//! queue, and waits for the adapter's `result` with that id. Whatever goes wrong on the
//! adapter's side ends as [`ChannelError::NoRecipient`], which delivery counts as no attempt
//! and keeps the row waiting until the adapter says hello again (`channel_arrived`):
//! - no connection (never connected, gone, removed): at once;
//! - the connection dropped with the request outstanding: tried once more on a newer
//!   connection if one took over, else `NoRecipient`;
//! - no result within [`ExternalLimits::request_timeout`], or the queue full (the adapter is
//!   not reading): the adapter is stalled, so its connection is closed (it must reconnect,
//!   and its hello brings the rows back) and the call fails at once, without holding up
//!   anything else.
//!
//! An adapter's answer of failure maps to `Unavailable`, `RateLimited`, `Rejected` or
//! `Unsupported` ([`super::wire::ResultLine::outcome`]).

use super::ExternalLimits;
use super::link::{CallError, Link};
use super::wire::{AdapterHealth, DraftWire, HostLine, MessageWire, ResultLine};
use crate::edge::{
    BoxFuture, Capabilities, Channel, ChannelError, ChatAddress, Draft, Health, HealthState,
    Markup, OutgoingMessage,
};
use protocol::MessageId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest platform message id an adapter may return; it is stored with the row.
const MAX_PLATFORM_ID_CHARS: usize = 1024;

/// The capabilities of an adapter that has not said hello yet: a plain-text platform. Calls
/// fail with `NoRecipient` until it connects, so they matter little.
fn placeholder_capabilities() -> Capabilities {
    Capabilities::text_only(4_000, Markup::Plain)
}

struct State {
    /// The adapter's name (`crabpot adapters add NAME`).
    adapter: String,
    /// Removed by `crabpot adapters remove`: refused until added again.
    revoked: bool,
    capabilities: Capabilities,
    health: Health,
    link: Option<Arc<Link>>,
    /// When a call last failed with `NoRecipient` (see [`ExternalChannel::missed_since`]).
    last_no_recipient: Option<Instant>,
}

/// One registered out-of-process adapter, registered in `Channels` under its channel type
/// from the host's start (or its `adapters add`) whether or not it is connected.
pub struct ExternalChannel {
    channel_type: String,
    request_timeout: Duration,
    next_request: AtomicU64,
    state: Mutex<State>,
}

impl ExternalChannel {
    pub fn new(channel_type: &str, adapter: &str, limits: &ExternalLimits) -> Arc<Self> {
        Arc::new(Self {
            channel_type: channel_type.to_owned(),
            request_timeout: limits.request_timeout,
            next_request: AtomicU64::new(1),
            state: Mutex::new(State {
                adapter: adapter.to_owned(),
                revoked: false,
                capabilities: placeholder_capabilities(),
                health: Health {
                    state: HealthState::Starting,
                    last_error: Some("the adapter has not connected yet".into()),
                },
                link: None,
                last_no_recipient: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The adapter's name.
    pub fn adapter(&self) -> String {
        self.state().adapter.clone()
    }

    /// (Re-)registered by `crabpot adapters add`: no longer revoked, waiting for a hello.
    pub fn restore(&self, adapter: &str) {
        let mut state = self.state();
        state.adapter = adapter.to_owned();
        if state.revoked {
            state.revoked = false;
            state.health = Health {
                state: HealthState::Starting,
                last_error: Some("the adapter has not connected yet".into()),
            };
        }
    }

    /// The adapter said hello on `link`: it takes over from the previous connection, which
    /// is returned for the caller to close.
    pub fn attach(
        &self,
        adapter: &str,
        capabilities: Capabilities,
        link: Arc<Link>,
    ) -> Option<Arc<Link>> {
        let mut state = self.state();
        state.adapter = adapter.to_owned();
        state.revoked = false;
        state.capabilities = capabilities;
        state.health = Health::connected();
        state.link.replace(link)
    }

    /// Connection `generation` ended for `reason`. Nothing if a newer one took over.
    pub fn detach(&self, generation: u64, reason: &str) {
        let mut state = self.state();
        if state
            .link
            .as_ref()
            .is_some_and(|link| link.generation == generation)
        {
            state.link = None;
            if !state.revoked {
                state.health = Health::failing(format!("disconnected: {reason}"));
            }
        }
    }

    /// Removed: its connection is returned for the caller to close, and calls wait.
    pub fn revoke(&self) -> Option<Arc<Link>> {
        let mut state = self.state();
        state.revoked = true;
        state.health = Health {
            state: HealthState::Stopped,
            last_error: Some("the adapter was removed (crabpot adapters remove)".into()),
        };
        state.link.take()
    }

    /// The adapter's own word on its platform, over connection `generation`.
    pub fn reported(&self, generation: u64, health: AdapterHealth, error: Option<String>) {
        let mut state = self.state();
        if state
            .link
            .as_ref()
            .is_some_and(|link| link.generation == generation)
        {
            state.health = Health {
                state: match health {
                    AdapterHealth::Connected => HealthState::Connected,
                    AdapterHealth::Degraded => HealthState::Degraded,
                    AdapterHealth::Failing => HealthState::Failing,
                },
                last_error: error.map(|e| e.chars().take(500).collect()),
            };
        }
    }

    /// Whether a call failed with `NoRecipient` within `window` before now: its row may have
    /// started waiting after the arrival a hello announced, and needs another one.
    pub fn missed_since(&self, window: Duration) -> bool {
        self.state()
            .last_no_recipient
            .is_some_and(|at| at.elapsed() <= window)
    }

    fn no_recipient(&self, why: String) -> ChannelError {
        self.state().last_no_recipient = Some(Instant::now());
        ChannelError::NoRecipient(why)
    }

    /// The live link, unless it is `not` (the one a call just lost).
    fn live_link(&self, not: Option<u64>) -> Result<Arc<Link>, ChannelError> {
        let (adapter, link) = {
            let state = self.state();
            if state.revoked {
                drop(state);
                return Err(self.no_recipient(format!(
                    "the adapter of channel {} was removed",
                    self.channel_type
                )));
            }
            (state.adapter.clone(), state.link.clone())
        };
        match link {
            Some(link) if Some(link.generation) != not && !link.closed.is_cancelled() => Ok(link),
            Some(_) | None => Err(self.no_recipient(format!("adapter {adapter} is not connected"))),
        }
    }

    fn next_id(&self) -> String {
        format!("h{}", self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// One request and its result; see the module docs for what becomes of failures.
    async fn request(
        &self,
        what: &'static str,
        make: impl Fn(String) -> HostLine,
    ) -> Result<ResultLine, ChannelError> {
        let mut lost = None;
        // A second try only after the connection dropped under the first, on a newer one.
        for _try in 0..2 {
            let link = self.live_link(lost)?;
            let id = self.next_id();
            match link
                .call(id.clone(), make(id.clone()), self.request_timeout)
                .await
            {
                Ok(result) => return result.outcome(what),
                Err(CallError::Dropped) => lost = Some(link.generation),
                Err(CallError::QueueFull) => {
                    return Err(self.stalled(&link, "it is not reading: its queue is full".into()));
                }
                Err(CallError::TimedOut) => {
                    let why = format!(
                        "no result for request {id} ({what}) within {} s",
                        self.request_timeout.as_secs_f32()
                    );
                    return Err(self.stalled(&link, why));
                }
            }
        }
        Err(self.no_recipient(format!(
            "the connection of adapter {} dropped during the call",
            self.adapter()
        )))
    }

    /// The adapter stopped answering on `link`: close it, so it reconnects.
    fn stalled(&self, link: &Link, why: String) -> ChannelError {
        tracing::warn!(channel = %self.channel_type, %why, "closing a stalled adapter's connection");
        link.close(Some(format!("{why}; closing the connection")));
        self.detach(link.generation, &why);
        self.no_recipient(why)
    }

    /// Queues a line that needs no result, if connected.
    fn notify(&self, make: impl FnOnce(String) -> HostLine) {
        if let Ok(link) = self.live_link(None) {
            let line = make(self.next_id());
            if !link.try_send(line) {
                tracing::debug!(channel = %self.channel_type, "adapter queue full; a notice was dropped");
            }
        }
    }
}

/// A platform id returned by the adapter, or the idempotency key when it gave none.
fn platform_id(result: ResultLine, message: &OutgoingMessage) -> Result<String, ChannelError> {
    let id = result
        .platform_message_id
        .unwrap_or_else(|| format!("{}:{}", message.id, message.piece));
    if id.chars().count() > MAX_PLATFORM_ID_CHARS {
        return Err(ChannelError::Rejected(format!(
            "the adapter returned a platform_message_id longer than {MAX_PLATFORM_ID_CHARS} characters"
        )));
    }
    Ok(id)
}

impl Channel for ExternalChannel {
    fn channel_type(&self) -> &str {
        &self.channel_type
    }

    fn capabilities(&self) -> Capabilities {
        self.state().capabilities
    }

    fn health(&self) -> Health {
        self.state().health.clone()
    }

    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let result = self
                .request("send a message", |id| HostLine::Deliver {
                    id,
                    to: to.clone(),
                    message: MessageWire::from(message),
                })
                .await?;
            platform_id(result, message)
        })
    }

    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.capabilities().edits {
                return Err(ChannelError::Unsupported("edit a message"));
            }
            self.request("edit a message", |id| HostLine::Edit {
                id,
                to: to.clone(),
                platform_message_id: platform_message_id.to_owned(),
                message: MessageWire::from(message),
            })
            .await
            .map(drop)
        })
    }

    fn react<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.capabilities().reactions {
                return Err(ChannelError::Unsupported("react to a message"));
            }
            self.request("react to a message", |id| HostLine::React {
                id,
                to: to.clone(),
                platform_message_id: platform_message_id.to_owned(),
                emoji: emoji.to_owned(),
            })
            .await
            .map(drop)
        })
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.capabilities().deletes {
                return Err(ChannelError::Unsupported("delete a message"));
            }
            self.request("delete a message", |id| HostLine::Delete {
                id,
                to: to.clone(),
                platform_message_id: platform_message_id.to_owned(),
            })
            .await
            .map(drop)
        })
    }

    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            // A platform without an indicator (no `typing_renew`) is never asked.
            if self.capabilities().typing_renew.is_none() {
                return Ok(());
            }
            self.request("show typing", |id| HostLine::Typing {
                id,
                to: to.clone(),
                on,
            })
            .await
            .map(drop)
        })
    }

    fn draft<'a>(
        &'a self,
        to: &'a ChatAddress,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.capabilities().live_drafts {
                return Err(ChannelError::Unsupported("show drafts"));
            }
            self.request("show drafts", |id| HostLine::Draft {
                id,
                to: to.clone(),
                draft: DraftWire::from(draft),
            })
            .await
            .map(drop)
        })
    }

    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        Box::pin(async move {
            let result = self
                .request("open a direct chat", |id| HostLine::OpenDm {
                    id,
                    user_id: user_id.to_owned(),
                })
                .await?;
            match result.address {
                Some(address)
                    if address.channel_type == self.channel_type
                        && !address.platform_id.is_empty()
                        && address.platform_id.chars().count() <= super::wire::MAX_ID_CHARS =>
                {
                    Ok(address)
                }
                Some(_) | None => Err(ChannelError::Rejected(format!(
                    "the adapter answered open_dm without a valid address of channel {}",
                    self.channel_type
                ))),
            }
        })
    }

    fn turn_complete<'a>(
        &'a self,
        to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A notice: delivery does not wait for it, and an adapter away misses it.
            self.notify(|id| HostLine::TurnComplete {
                id,
                to: to.clone(),
                message_id: message_id.to_string(),
            });
        })
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
