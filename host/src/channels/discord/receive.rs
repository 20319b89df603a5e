//! What the adapter does with a message or a button press the gateway brought
//! ([`Receiver`]): attachments fetched from Discord's CDN (or the configured API's own host)
//! and staged, the event pushed to the router; a press answered as the question it belongs
//! to, or pushed as the presser's text, then acknowledged to Discord (callback type 7, the
//! buttons removed). An `Err` means "not taken in": the gateway resumes and Discord replays.

use super::components::{ButtonAction, Pressed, parse_custom_id};
use super::inbound::{self, Attachment, Skip};
use super::rest::{Body, Rest};
use super::threads::ThreadParents;
use super::{CHANNEL_TYPE, button_key};
use crate::channels::http::read_capped;
use crate::channels::staging::{MAX_STAGED_BYTES, Staging};
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{AnswerError, ChannelContext, InboundEvent, QuestionAnswer, Upload};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long fetching one attachment may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Takes in what the gateway dispatches.
pub struct Receiver<'a> {
    pub rest: &'a Rest,
    pub staging: &'a Staging,
    pub central: &'a Arc<DbThread<Connection>>,
    pub threads: &'a ThreadParents,
    pub bot_id: String,
}

impl Receiver<'_> {
    /// A `MESSAGE_CREATE`.
    pub async fn message(&self, context: &ChannelContext, data: &Value) -> Result<(), String> {
        let received = match inbound::message_event(data, &self.bot_id) {
            Ok(received) => received,
            Err(Skip::Malformed(reason)) => {
                tracing::warn!(reason = %reason, "discord: a malformed message was skipped");
                return Ok(());
            }
            Err(Skip::Bot | Skip::System(_) | Skip::Empty) => return Ok(()),
        };
        let mut event = received.event;
        if event.is_group {
            let (platform_id, thread_id) = self.chat_of(&event.platform_id).await;
            event.platform_id = platform_id;
            event.thread_id = thread_id;
        }
        let mut uploads = Vec::new();
        for attachment in &received.attachments {
            match self.fetch(attachment).await {
                Ok(upload) => uploads.push(upload),
                Err(reason) => {
                    tracing::warn!(file = %attachment.filename, reason = %reason, "discord: an attachment was not taken in");
                }
            }
        }
        event.uploads = uploads.clone();
        let pushed = context.push(event).await;
        self.staging.discard(&uploads).await;
        match pushed {
            Ok(_) => Ok(()),
            Err(e) if e.is_retryable() => Err(format!("storing a message failed: {e}")),
            Err(e) => {
                tracing::warn!(error = %e, "discord: a message could not be routed");
                Ok(())
            }
        }
    }

    /// The chat (`platform_id`, `thread_id`) of a guild channel: a thread is a thread of
    /// its parent's chat.
    async fn chat_of(&self, channel_id: &str) -> (String, Option<String>) {
        match self.threads.parent(self.rest, channel_id).await {
            Some(parent) => (parent, Some(channel_id.to_owned())),
            None => (channel_id.to_owned(), None),
        }
    }

    /// Downloads one attachment, capped, and stages it.
    async fn fetch(&self, attachment: &Attachment) -> Result<Upload, String> {
        if !inbound::may_fetch(&attachment.url, self.rest.api_url()) {
            return Err("its URL is not on Discord's CDN".into());
        }
        if attachment.size > MAX_STAGED_BYTES {
            return Err(format!(
                "it is {} bytes, more than {MAX_STAGED_BYTES}",
                attachment.size
            ));
        }
        let response = self
            .rest
            .downloads()
            .get(&attachment.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("fetching it failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("fetching it failed with {}", response.status()));
        }
        let cap = usize::try_from(MAX_STAGED_BYTES).unwrap_or(usize::MAX);
        let bytes = read_capped(response, cap, "the attachment")
            .await
            .map_err(|e| e.to_string())?;
        self.staging
            .stage(&attachment.filename, bytes)
            .await
            .map_err(|e| e.to_string())
    }

    /// An `INTERACTION_CREATE`.
    pub async fn press(&self, context: &ChannelContext, data: &Value) -> Result<(), String> {
        let press = match inbound::press(data) {
            Ok(press) => press,
            Err(Skip::Malformed(reason)) => {
                tracing::warn!(reason = %reason, "discord: a malformed interaction was skipped");
                return Ok(());
            }
            Err(Skip::Bot | Skip::System(_) | Skip::Empty) => return Ok(()),
        };
        let action = match parse_custom_id(&press.custom_id) {
            Some(Pressed::Action(action)) => Some(action),
            Some(Pressed::Stored(key)) => self.stored(&key).await?,
            None => None,
        };
        if let Some(channel) = data.get("channel") {
            self.threads.learn(channel);
        }
        let (platform_id, thread_id) = if press.is_group {
            self.chat_of(&press.channel_id).await
        } else {
            (press.channel_id.clone(), None)
        };
        let sender = inbound::sender(&press.presser, press.member.as_ref());
        let platform_message_id = format!("interaction-{}", press.interaction_id);
        let done = match action {
            Some(ButtonAction::Answer {
                question_id,
                answer,
            }) => {
                let answered = context
                    .answer(QuestionAnswer {
                        channel_type: CHANNEL_TYPE.to_owned(),
                        platform_id: platform_id.clone(),
                        thread_id: thread_id.clone(),
                        question_id: Some(question_id),
                        answer,
                        sender,
                        platform_message_id,
                    })
                    .await;
                match answered {
                    Ok(_) => true,
                    Err(AnswerError::Db(e)) if e.is_retryable() => {
                        return Err(format!("storing an answer failed: {e}"));
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "discord: a button answer was not taken");
                        true
                    }
                }
            }
            Some(ButtonAction::Text { text }) => {
                let event = InboundEvent {
                    channel_type: CHANNEL_TYPE.to_owned(),
                    platform_id,
                    thread_id,
                    platform_message_id,
                    sender,
                    text,
                    attachments: Vec::new(),
                    is_mention: true,
                    is_group: press.is_group,
                    chat_name: None,
                    uploads: Vec::new(),
                };
                match context.push(event).await {
                    Ok(_) => true,
                    Err(e) if e.is_retryable() => {
                        return Err(format!("storing a button press failed: {e}"));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "discord: a button press could not be routed");
                        true
                    }
                }
            }
            None => false,
        };
        self.acknowledge(&press.interaction_id, &press.token, done)
            .await;
        Ok(())
    }

    /// The action stored for a long `custom_id`.
    async fn stored(&self, key: &str) -> Result<Option<ButtonAction>, String> {
        let key = button_key(key);
        let stored = self
            .central
            .call(move |conn| channel_state::get(conn, CHANNEL_TYPE, &key))
            .await
            .map_err(|e| format!("reading a button failed: {e}"))?;
        Ok(stored.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Answers the interaction within Discord's 3 s: the buttons go once a press was taken
    /// (type 7, UPDATE_MESSAGE); an unknown button only defers (type 6). A replayed press
    /// has an expired token, so a failure here is expected and only logged.
    async fn acknowledge(&self, interaction_id: &str, token: &str, done: bool) {
        let plain = |text: &str, max: usize| {
            !text.is_empty()
                && text.len() <= max
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !plain(interaction_id, 32) || !plain(token, 1000) {
            tracing::warn!("discord: an interaction with an odd id or token was not acknowledged");
            return;
        }
        let body = if done {
            json!({"type": 7, "data": {"components": []}})
        } else {
            json!({"type": 6})
        };
        let path = format!("/interactions/{interaction_id}/{token}/callback");
        if let Err(e) = self
            .rest
            .call(http::Method::POST, &path, Body::Json(body))
            .await
        {
            tracing::debug!(error = %e, "discord: acknowledging an interaction failed");
        }
    }
}
