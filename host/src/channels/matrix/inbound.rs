//! [`Inbound`]: taking one event of a joined room in.
//!
//! - State events update the [`RoomBook`]; `m.room.encryption` makes the room encrypted.
//! - `m.room.message` is mapped ([`mapping::message_event`]), its media downloaded and
//!   staged, and pushed to the router; in a group, a reply to one of the bot's messages is
//!   a mention.
//! - `m.reaction` with a keycap on a question the bot asked answers it
//!   (`ChannelContext::answer`).
//! - `m.room.encrypted` (and the room turning encryption on) gets the room a notice, once,
//!   that the bot cannot read it: never silently ignored.
//!
//! [`Inbound::take`] returns `Ok` once the event is durable (or was deliberately dropped), so
//! the sync loop may move past it; `Err` means "take it again later".

use super::api::{Api, ApiError};
use super::mapping::{self, BotIdentity, CHANNEL_TYPE, WantedFile};
use super::outbound::Outbound;
use super::rooms::RoomBook;
use super::state::{State, StoredQuestion, notice_key, question_key};
use super::wire::RoomEvent;
use crate::channels::staging::{MAX_STAGED_BYTES, Staging};
use crate::edge::{AnswerError, ChannelContext, ChannelError, InboundEvent, QuestionAnswer};
use std::sync::Arc;
use std::time::Duration;

/// Tries of one media download before the message goes on without it.
const DOWNLOAD_TRIES: u32 = 3;

/// Why an event must be taken again later.
#[derive(Debug, thiserror::Error)]
#[error("matrix event {event_id} must be taken again: {reason}")]
pub struct TakeAgain {
    pub event_id: String,
    pub reason: String,
}

/// Takes events in for one logged-in bot.
pub struct Inbound {
    pub api: Arc<Api>,
    pub bot: BotIdentity,
    pub context: ChannelContext,
    pub staging: Staging,
    pub state: State,
    pub rooms: Arc<RoomBook>,
    pub outbound: Arc<Outbound>,
}

impl Inbound {
    /// Takes one event of `room_id` in; see the module docs.
    pub async fn take(&self, room_id: &str, event: RoomEvent) -> Result<(), TakeAgain> {
        if event.state_key.is_some() {
            self.rooms.note_state(room_id, &event);
            if event.kind == "m.room.encryption" {
                return self.refuse_encrypted(room_id, &event.event_id).await;
            }
            return Ok(());
        }
        if event.sender == self.bot.user_id || event.event_id.is_empty() {
            return Ok(());
        }
        match event.kind.as_str() {
            "m.room.encrypted" => self.refuse_encrypted(room_id, &event.event_id).await,
            "m.room.message" => self.message(room_id, &event).await,
            "m.reaction" => self.reaction(room_id, &event).await,
            _ => Ok(()),
        }
    }

    async fn message(&self, room_id: &str, event: &RoomEvent) -> Result<(), TakeAgain> {
        let room = self.rooms.view(room_id, &event.sender).await;
        let Some(mapped) = mapping::message_event(event, &room, &self.bot) else {
            return Ok(());
        };
        let mut inbound = mapped.event;
        if inbound.is_group
            && !inbound.is_mention
            && let Some(target) = mapping::reply_target(event)
        {
            inbound.is_mention = self.is_bots(room_id, target).await;
        }
        for file in &mapped.files {
            match self.fetch(file).await {
                Ok(upload) => inbound.uploads.push(upload),
                Err(reason) => {
                    tracing::warn!(event_id = %event.event_id, file = %file.name, %reason, "matrix file not taken");
                    inbound.text.push_str(&format!(
                        "\n\n(the file {:?} could not be taken in: {reason})",
                        file.name
                    ));
                }
            }
        }
        self.push(&event.event_id, inbound).await
    }

    /// Whether `event_id` is one of the bot's own events (a reply to it is a mention); false
    /// when it cannot be read.
    async fn is_bots(&self, room_id: &str, event_id: &str) -> bool {
        let event: Result<RoomEvent, ApiError> = self
            .api
            .get(
                "event",
                &[
                    "_matrix", "client", "v3", "rooms", room_id, "event", event_id,
                ],
                &[],
                crate::channels::http::CALL_TIMEOUT,
            )
            .await;
        match event {
            Ok(event) => event.sender == self.bot.user_id,
            Err(e) => {
                tracing::debug!(room_id, error = %e, "the event a matrix reply answers was not read");
                false
            }
        }
    }

    async fn push(&self, event_id: &str, event: InboundEvent) -> Result<(), TakeAgain> {
        let uploads = event.uploads.clone();
        let result = self.context.push(event).await;
        self.staging.discard(&uploads).await;
        match result {
            Ok(outcome) => {
                tracing::debug!(
                    event_id,
                    routed = outcome.routed.len(),
                    held = outcome.held.len(),
                    "matrix event taken"
                );
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(TakeAgain {
                event_id: event_id.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) => {
                tracing::warn!(event_id, error = %e, "matrix message refused; it is dropped");
                Ok(())
            }
        }
    }

    /// Downloads and stages one file, trying a few times over a failing network.
    async fn fetch(&self, file: &WantedFile) -> Result<crate::edge::Upload, String> {
        let cap = MAX_STAGED_BYTES;
        if file.size.is_some_and(|size| size > cap) {
            return Err(format!("it is larger than {cap} bytes"));
        }
        let mut last = String::new();
        for attempt in 0..DOWNLOAD_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            match self.api.download(&file.server, &file.media_id, cap).await {
                Ok(bytes) => {
                    return self
                        .staging
                        .stage(&file.name, bytes)
                        .await
                        .map_err(|e| e.to_string());
                }
                Err(ApiError::Channel(e)) if e.is_retryable() => last = e.to_string(),
                Err(e) => return Err(ChannelError::from(e).to_string()),
            }
        }
        Err(last)
    }

    /// A keycap reaction on a question the bot asked answers it; any other reaction is
    /// nothing to take.
    async fn reaction(&self, room_id: &str, event: &RoomEvent) -> Result<(), TakeAgain> {
        let again = |reason: String| TakeAgain {
            event_id: event.event_id.clone(),
            reason,
        };
        let room = self.rooms.view(room_id, &event.sender).await;
        let Some(reaction) = mapping::reaction(event, &room, &self.bot) else {
            return Ok(());
        };
        let Some(number) = mapping::keycap_number(&reaction.key) else {
            return Ok(());
        };
        let stored = self
            .state
            .get(question_key(&reaction.target_event_id))
            .await
            .map_err(|e| again(e.to_string()))?;
        let Some(question) =
            stored.and_then(|json| serde_json::from_str::<StoredQuestion>(&json).ok())
        else {
            return Ok(());
        };
        if number > question.options {
            return Ok(());
        }
        let answer = QuestionAnswer {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: room_id.to_owned(),
            thread_id: question.thread_id,
            question_id: Some(question.question_id),
            answer: number.to_string(),
            sender: reaction.sender,
            platform_message_id: reaction.event_id,
        };
        match self.context.answer(answer).await {
            Ok(_) => Ok(()),
            Err(AnswerError::Db(e)) if e.is_retryable() => Err(again(e.to_string())),
            Err(e) => {
                tracing::info!(event_id = %event.event_id, error = %e, "matrix reaction answer not taken");
                Ok(())
            }
        }
    }

    /// Tells an encrypted room, once, that the bot cannot read it.
    async fn refuse_encrypted(&self, room_id: &str, event_id: &str) -> Result<(), TakeAgain> {
        let again = |reason: String| TakeAgain {
            event_id: event_id.to_owned(),
            reason,
        };
        let key = notice_key(room_id);
        let told = self
            .state
            .get(key.clone())
            .await
            .map_err(|e| again(e.to_string()))?;
        if told.is_some() {
            return Ok(());
        }
        tracing::warn!(
            room_id,
            "matrix room is end-to-end encrypted; it is told so"
        );
        match self.outbound.encrypted_notice(room_id).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => return Err(again(e.to_string())),
            Err(e) => {
                tracing::warn!(room_id, error = %e, "the matrix encrypted-room notice was refused");
            }
        }
        self.state
            .put(key, "1".into())
            .await
            .map_err(|e| again(e.to_string()))
    }
}
