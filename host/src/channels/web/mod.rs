//! The `web` channel: conversations in the browser's web chat and over the OpenAI-compatible
//! API, both served by the host's HTTP server (`crate::web::chat_api`, `crate::web::openai`).
//!
//! A conversation is a chat of channel type `web` owned by one user (`web:<name>`) and wired
//! to one agent group (shared session: the chat is the session; every message engages). Its
//! platform id names its owner: `<name>/<conversation id>` in the browser, `api/<name>/<user
//! field or default>` over the API. Only the owner reads or writes it; a user may start one
//! with a group only as a member, an admin of it, a global admin or an owner. No destination
//! is made for it: replies go to the session's own chat, and no other session of the group
//! can send into it.
//!
//! Everything the agent sends becomes an event ([`events`]): messages (with a question's
//! options), edits, deletions and completed turns go into the conversation's durable log in
//! the central DB (`db::central::web_chats`, ids growing by one per conversation) and to the
//! conversation's watchers ([`hub`]); drafts and typing only to the watchers. A watcher that
//! comes back after event N reads the rest of the log, then the live events, each durable
//! one once ([`Subscription`]). What the owner writes is pushed to the router through the
//! [`ChannelContext`] the channel got at start, and logged as a `message` with role `user`.
//!
//! Files the owner uploads are staged by [`uploads`] and travel with their message as the
//! [`InboundEvent`]'s `uploads`, which the router copies into the session's `in/inbox/`.

mod channel;
mod conversations;
mod error;
pub mod events;
pub mod hub;
pub mod uploads;

#[cfg(test)]
mod tests;

pub use conversations::Posted;
pub use error::{WebChatError, check_api_name, check_text, user_handle};
pub use events::{ConversationEvent, EventBody, Message, Question, QuestionOption, Role};
pub use hub::Subscription;

use crate::db::central::web_chats::{self, Appended};
use crate::db::{DbError, DbThread};
use crate::edge::ChannelContext;
use hub::{Hubs, LogReader};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// The channel type of web chats.
pub const CHANNEL_TYPE: &str = "web";

/// The longest message text the owner may send, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// The longest name of an API conversation (the request's `user` field), in characters.
pub const MAX_API_NAME_CHARS: usize = 128;

/// The web adapter.
pub struct WebChannel {
    central: Arc<DbThread<Connection>>,
    context: OnceLock<ChannelContext>,
    /// Cancelled when the host shuts down, so open event streams end.
    stopping: CancellationToken,
    hubs: Hubs,
    /// Conversation ids by platform id (a conversation never moves).
    by_platform_id: Mutex<HashMap<String, String>>,
    /// Files uploaded for messages not sent yet.
    pub uploads: uploads::Uploads,
}

impl WebChannel {
    /// `uploads_dir` holds uploaded files until their message is routed (`data/uploads`).
    pub fn new(
        central: Arc<DbThread<Connection>>,
        uploads_dir: std::path::PathBuf,
    ) -> Arc<WebChannel> {
        Arc::new(WebChannel {
            uploads: uploads::Uploads::new(uploads_dir),
            central,
            context: OnceLock::new(),
            stopping: CancellationToken::new(),
            hubs: Hubs::default(),
            by_platform_id: Mutex::new(HashMap::new()),
        })
    }

    /// Cancelled when the host shuts down.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// The durable events of a conversation after `after`, at most
    /// [`web_chats::MAX_EVENTS_PER_READ`].
    pub async fn events_after(&self, conversation_id: &str, after: i64) -> Vec<ConversationEvent> {
        self.read_after(conversation_id, after).await
    }

    /// Every durable event of a conversation, oldest first.
    pub async fn all_events(&self, conversation_id: &str) -> Vec<ConversationEvent> {
        let mut events: Vec<ConversationEvent> = Vec::new();
        loop {
            let after = events.last().and_then(|e| e.event_id).unwrap_or(0);
            let read = self.read_after(conversation_id, after).await;
            let full = read.len() >= web_chats::MAX_EVENTS_PER_READ;
            events.extend(read);
            if !full {
                return events;
            }
        }
    }

    /// The question the agent is waiting on in this conversation, if any (see
    /// [`events::open_question`]).
    pub async fn open_question(&self, conversation_id: &str) -> Option<String> {
        events::open_question(&self.all_events(conversation_id).await)
    }

    /// Watches a conversation from after event `after` (what the log holds past it first).
    pub async fn subscribe_after(&self, conversation_id: &str, after: i64) -> Subscription {
        let mut subscription = Subscription::new(&self.hubs, conversation_id, after);
        subscription.catch_up(self).await;
        subscription
    }

    /// Watches a conversation from now on: only events after the newest one stored.
    pub async fn subscribe_from_now(
        &self,
        conversation_id: &str,
    ) -> Result<Subscription, WebChatError> {
        // Subscribed first, so an event stored while the log's end is read is not lost.
        let subscription = Subscription::new(&self.hubs, conversation_id, i64::MAX);
        let lookup = conversation_id.to_owned();
        let newest = self
            .central
            .call(move |conn| web_chats::conversation(conn, &lookup))
            .await?
            .map_or(0, |c| c.last_event_id);
        Ok(subscription.starting_after(newest))
    }

    /// The next event of `subscription` (log first, then live); `None` once the host stops.
    pub async fn next_event(&self, subscription: &mut Subscription) -> Option<ConversationEvent> {
        tokio::select! {
            () = self.stopping.cancelled() => None,
            event = subscription.next(self) => event,
        }
    }

    fn context(&self) -> Result<&ChannelContext, WebChatError> {
        self.context.get().ok_or(WebChatError::NotRunning)
    }

    /// Records a durable event, logging a failure (the message itself already went through).
    async fn record_logged(
        &self,
        conversation_id: &str,
        body: EventBody,
        message_key: Option<String>,
    ) -> Option<i64> {
        match self
            .record(conversation_id, body, message_key, Vec::new())
            .await
        {
            Ok(appended) => Some(appended_id(appended)),
            Err(error) => {
                tracing::warn!(conversation = conversation_id, %error, "logging a web chat event failed");
                None
            }
        }
    }

    /// Stores a durable event in the conversation's log and sends it to the watchers; a
    /// repeat of a stored message (same `message_key`) is neither stored nor sent again.
    async fn record(
        &self,
        conversation_id: &str,
        body: EventBody,
        message_key: Option<String>,
        files: Vec<String>,
    ) -> Result<Appended, DbError> {
        let json = serde_json::to_string(&body)
            .map_err(|e| DbError::Invalid(format!("a web event cannot be written: {e}")))?;
        let kind = body.kind();
        let id = conversation_id.to_owned();
        let appended = self
            .central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let event = web_chats::NewEvent {
                    kind,
                    body: &json,
                    message_key: message_key.as_deref(),
                    files: &files,
                };
                let appended = web_chats::append_event(&tx, &id, &event)?;
                tx.commit()?;
                Ok(appended)
            })
            .await?;
        if let Appended::New(event_id) = appended {
            self.hubs.publish(
                conversation_id,
                ConversationEvent {
                    event_id: Some(event_id),
                    body,
                },
            );
        }
        Ok(appended)
    }

    /// Sends a live-only event (draft, typing) to the watchers.
    fn publish_live(&self, conversation_id: &str, body: EventBody) {
        self.hubs.publish(
            conversation_id,
            ConversationEvent {
                event_id: None,
                body,
            },
        );
    }

    /// The host path of file `index` of the message stored as event `event_id`.
    pub async fn file_path(
        &self,
        conversation_id: &str,
        event_id: i64,
        index: usize,
    ) -> Result<Option<std::path::PathBuf>, WebChatError> {
        let id = conversation_id.to_owned();
        Ok(self
            .central
            .call(move |conn| web_chats::event_file(conn, &id, event_id, index))
            .await?
            .map(std::path::PathBuf::from))
    }

    /// Drops a conversation from the cache of platform ids.
    fn forget(&self, platform_id: &str) {
        self.by_platform_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(platform_id);
    }

    /// The conversation id of a `web` chat, `None` for a chat no conversation owns.
    async fn conversation_at(&self, platform_id: &str) -> Result<Option<String>, DbError> {
        if let Some(id) = self
            .by_platform_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(platform_id)
        {
            return Ok(Some(id.clone()));
        }
        let lookup = platform_id.to_owned();
        let found = self
            .central
            .call(move |conn| web_chats::by_platform_id(conn, &lookup))
            .await?;
        if let Some(conversation) = &found {
            self.by_platform_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(platform_id.to_owned(), conversation.id.clone());
        }
        Ok(found.map(|c| c.id))
    }
}

fn appended_id(appended: Appended) -> i64 {
    match appended {
        Appended::New(id) | Appended::Repeat(id) => id,
    }
}

impl LogReader for WebChannel {
    fn read_after(
        &self,
        conversation_id: &str,
        after: i64,
    ) -> futures_util::future::BoxFuture<'_, Vec<ConversationEvent>> {
        let id = conversation_id.to_owned();
        Box::pin(async move {
            let lookup = id.clone();
            let stored = match self
                .central
                .call(move |conn| {
                    web_chats::events_after(conn, &lookup, after, web_chats::MAX_EVENTS_PER_READ)
                })
                .await
            {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(conversation = %id, %error, "reading a web chat's log failed");
                    return Vec::new();
                }
            };
            stored
                .into_iter()
                .filter_map(|event| {
                    let parsed = ConversationEvent::from_stored(event.event_id, &event.body);
                    if parsed.is_none() {
                        tracing::warn!(conversation = %id, event = event.event_id, "a web chat event does not parse; skipped");
                    }
                    parsed
                })
                .collect()
        })
    }
}
