//! [`Inbound`]: taking one fetched message in. It is parsed ([`super::parse`]); automatic
//! mail ([`super::loops`]) and our own mail coming back are dropped (logged and counted);
//! the thread's [`ThreadState`] is stored so the reply can be threaded; attachments are
//! staged; and the event is pushed to the router.
//!
//! [`Inbound::take`] returns `Ok` once the message is durable or was deliberately dropped,
//! so the caller may move the stored UID past it; `Err` means "take it again later".

use super::CHANNEL_TYPE;
use super::imap::Fetched;
use super::parse::{self, Incoming};
use super::threads::{self, ThreadState};
use crate::channels::staging::{MAX_STAGED_BYTES, Staging};
use crate::config::email::ChatMode;
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{ChannelContext, InboundEvent};
use crate::metrics::labels::DropStage;
use protocol::Sender;
use rusqlite::Connection;
use std::sync::Arc;

/// The metrics code of automatic mail left unanswered.
const AUTOMATIC_DROP: &str = "email_automatic";

/// Why a message must be taken again.
#[derive(Debug, thiserror::Error)]
#[error("message {uid} must be taken again: {reason}")]
pub struct TakeAgain {
    pub uid: u32,
    pub reason: String,
}

/// Takes messages in for one mailbox.
pub struct Inbound {
    pub address: String,
    pub chat_mode: ChatMode,
    pub context: ChannelContext,
    pub staging: Staging,
    pub central: Arc<DbThread<Connection>>,
}

impl Inbound {
    /// Takes message `uid` (of a mailbox of UIDVALIDITY `validity`) in; see the module docs.
    pub async fn take(&self, validity: u32, uid: u32, fetched: Fetched) -> Result<(), TakeAgain> {
        let (raw, too_large) = match fetched {
            Fetched::Gone => return Ok(()),
            Fetched::Whole(raw) => (raw, None),
            Fetched::HeaderOnly { header, size } => (header, Some(size)),
        };
        let mut incoming = match parse::parse(&raw, validity, uid, MAX_STAGED_BYTES) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::warn!(uid, error = %e, "an unreadable email was skipped");
                return Ok(());
            }
        };
        if let Some(reason) = incoming.automatic {
            tracing::info!(
                uid,
                reason,
                "automatic email (auto-reply, bounce or list) not answered"
            );
            crate::metrics::global().message_dropped(DropStage::Router, AUTOMATIC_DROP);
            return Ok(());
        }
        if incoming.from_address == self.address {
            tracing::debug!(uid, "our own email came back; not answered");
            return Ok(());
        }
        if let Some(size) = too_large {
            incoming.text = format!(
                "(this email is {size} bytes, too large to take in; only its subject is here)"
            );
        }
        let root = incoming.thread_root();
        self.remember_thread(uid, &root, &incoming).await?;
        let mut event = self.event(&incoming, root);
        for attachment in &incoming.attachments {
            match self
                .staging
                .stage(&attachment.name, attachment.bytes.clone())
                .await
            {
                Ok(upload) => event.uploads.push(upload),
                Err(e) => {
                    self.staging.discard(&event.uploads).await;
                    return Err(TakeAgain {
                        uid,
                        reason: format!("staging {:?} failed: {e}", attachment.name),
                    });
                }
            }
        }
        self.push(uid, event).await
    }

    /// The chat a message belongs to.
    fn platform_id(&self, incoming: &Incoming) -> String {
        match self.chat_mode {
            ChatMode::Sender => incoming.from_address.clone(),
            ChatMode::Mailbox => self.address.clone(),
        }
    }

    fn event(&self, incoming: &Incoming, root: String) -> InboundEvent {
        let mut text = String::new();
        if incoming.in_reply_to.is_empty() && !incoming.subject.trim().is_empty() {
            text.push_str(&format!("Subject: {}\n\n", incoming.subject.trim()));
        }
        text.push_str(&incoming.text);
        for note in &incoming.left_out {
            text.push_str(&format!("\n\n(an attachment was left out: {note})"));
        }
        let is_group = self.chat_mode == ChatMode::Mailbox;
        InboundEvent {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: self.platform_id(incoming),
            thread_id: Some(root),
            platform_message_id: incoming.message_id.clone(),
            sender: Sender {
                id: format!("{CHANNEL_TYPE}:{}", incoming.from_address),
                name: incoming.from_name.clone(),
            },
            text,
            attachments: Vec::new(),
            // Mail to the bot's mailbox is addressed to the bot.
            is_mention: true,
            is_group,
            chat_name: Some(if is_group {
                self.address.clone()
            } else {
                incoming
                    .from_name
                    .clone()
                    .unwrap_or_else(|| incoming.from_address.clone())
            }),
            uploads: Vec::new(),
        }
    }

    /// Stores what a reply in the message's thread needs, before the message is routed (so
    /// the reply, however fast, finds it).
    async fn remember_thread(
        &self,
        uid: u32,
        root: &str,
        incoming: &Incoming,
    ) -> Result<(), TakeAgain> {
        let key = threads::state_key(&self.platform_id(incoming), root);
        let mut state = load_thread(&self.central, &key)
            .await
            .map_err(|reason| TakeAgain { uid, reason })?
            .unwrap_or_default();
        if state.subject.is_empty() || incoming.in_reply_to.is_empty() {
            state.subject = threads::base_subject(&incoming.subject);
        }
        if state.references.is_empty() {
            state.references = incoming.references.clone();
        }
        state.push(&incoming.message_id);
        state.reply_to = incoming.from_address.clone();
        store_thread(&self.central, key, &state)
            .await
            .map_err(|reason| TakeAgain { uid, reason })
    }

    async fn push(&self, uid: u32, event: InboundEvent) -> Result<(), TakeAgain> {
        let uploads = event.uploads.clone();
        let result = self.context.push(event).await;
        self.staging.discard(&uploads).await;
        match result {
            Ok(outcome) => {
                tracing::debug!(
                    uid,
                    routed = outcome.routed.len(),
                    held = outcome.held.len(),
                    "email taken"
                );
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(TakeAgain {
                uid,
                reason: e.to_string(),
            }),
            Err(e) => {
                tracing::warn!(uid, error = %e, "email refused by the router; it is dropped");
                Ok(())
            }
        }
    }
}

/// The stored state of the thread under `key`; `Ok(None)` when there is none (or it is
/// unreadable, which is logged: the reply then starts from what the new message says).
pub async fn load_thread(
    central: &DbThread<Connection>,
    key: &str,
) -> Result<Option<ThreadState>, String> {
    let read_key = key.to_owned();
    let value = central
        .call(move |conn| channel_state::get(conn, CHANNEL_TYPE, &read_key))
        .await
        .map_err(|e| format!("reading the thread state failed: {e}"))?;
    Ok(value.and_then(|json| match serde_json::from_str(&json) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(key, error = %e, "an unreadable email thread state was replaced");
            None
        }
    }))
}

pub async fn store_thread(
    central: &DbThread<Connection>,
    key: String,
    state: &ThreadState,
) -> Result<(), String> {
    let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
    central
        .call(move |conn| channel_state::put(conn, CHANNEL_TYPE, &key, &json))
        .await
        .map_err(|e| format!("storing the thread state failed: {e}"))
}
