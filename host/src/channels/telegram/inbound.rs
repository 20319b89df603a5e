//! [`Inbound`]: taking one [`Update`] in, from the long poll or the webhook alike.
//!
//! A message is mapped ([`mapping::message_event`]), its files are fetched with `getFile`
//! and staged, and it is pushed to the router; a button press ([`CallbackQuery`]) is
//! answered with `answerCallbackQuery`, then becomes an answer to the question
//! (`context.answer`) or the presser's typed text (`context.push`), and the keyboard is
//! removed. [`Inbound::take`] returns `Ok` once the update is durable (or was deliberately
//! dropped), so the caller may then confirm it to Telegram; `Err` means "take it again
//! later".

use super::api::{Api, ApiError};
use super::buttons::{self, CallbackData, Press};
use super::mapping::{self, BotIdentity, CHANNEL_TYPE, WantedFile};
use super::wire::{CallbackQuery, File, Update};
use crate::channels::http;
use crate::channels::staging::{MAX_STAGED_BYTES, Staging};
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{AnswerError, ChannelContext, ChannelError, InboundEvent, QuestionAnswer};
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Duration;

/// The largest file the Bot API lets a bot download (`getFile`).
pub const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// Tries of one file download before the message goes on without it.
const DOWNLOAD_TRIES: u32 = 3;

/// Why an update must be taken again later.
#[derive(Debug, thiserror::Error)]
#[error("update {update_id} must be taken again: {reason}")]
pub struct TakeAgain {
    pub update_id: i64,
    pub reason: String,
}

/// Takes updates in for one bot.
pub struct Inbound {
    pub api: Arc<Api>,
    pub bot: BotIdentity,
    pub context: ChannelContext,
    pub staging: Staging,
    pub central: Arc<DbThread<Connection>>,
}

impl Inbound {
    /// Takes one update in; see the module docs.
    pub async fn take(&self, update: Update) -> Result<(), TakeAgain> {
        let update_id = update.update_id;
        if let Some(query) = update.callback_query {
            return self.press(update_id, query).await;
        }
        let Some(message) = update.message else {
            return Ok(());
        };
        let Some(mapped) = mapping::message_event(&message, &self.bot) else {
            tracing::debug!(update_id, "telegram update with nothing to take");
            return Ok(());
        };
        let mut event = mapped.event;
        for file in &mapped.files {
            match self.fetch(file).await {
                Ok(upload) => event.uploads.push(upload),
                Err(reason) => {
                    tracing::warn!(update_id, file = %file.name, %reason, "telegram file not taken");
                    event.text.push_str(&format!(
                        "\n\n(the file {:?} could not be taken in: {reason})",
                        file.name
                    ));
                }
            }
        }
        self.push(update_id, event).await
    }

    async fn push(&self, update_id: i64, event: InboundEvent) -> Result<(), TakeAgain> {
        let uploads = event.uploads.clone();
        let result = self.context.push(event).await;
        self.staging.discard(&uploads).await;
        match result {
            Ok(outcome) => {
                tracing::debug!(
                    update_id,
                    routed = outcome.routed.len(),
                    held = outcome.held.len(),
                    "telegram update taken"
                );
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(TakeAgain {
                update_id,
                reason: e.to_string(),
            }),
            Err(e) => {
                tracing::warn!(update_id, error = %e, "telegram message refused; it is dropped");
                Ok(())
            }
        }
    }

    /// Downloads and stages one file, trying a few times over a failing network.
    async fn fetch(&self, file: &WantedFile) -> Result<crate::edge::Upload, String> {
        let cap = MAX_STAGED_BYTES.min(MAX_DOWNLOAD_BYTES);
        if file.size.is_some_and(|size| size > cap) {
            return Err(format!("it is larger than {cap} bytes"));
        }
        let mut last = String::new();
        for attempt in 0..DOWNLOAD_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            match self.download(file, cap).await {
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

    async fn download(&self, file: &WantedFile, cap: u64) -> Result<bytes::Bytes, ApiError> {
        let found: File = self
            .api
            .call(
                "getFile",
                &serde_json::json!({"file_id": file.file_id}),
                http::CALL_TIMEOUT,
            )
            .await?;
        if found.file_size.is_some_and(|size| size > cap) {
            return Err(ChannelError::Rejected(format!("it is larger than {cap} bytes")).into());
        }
        let Some(path) = found.file_path else {
            return Err(ChannelError::Rejected("telegram gave no file_path".into()).into());
        };
        self.api.download(&path, cap).await
    }

    /// A button press: acknowledged, then routed; the keyboard goes once it was taken.
    async fn press(&self, update_id: i64, query: CallbackQuery) -> Result<(), TakeAgain> {
        let acknowledged: Result<bool, ApiError> = self
            .api
            .call(
                "answerCallbackQuery",
                &serde_json::json!({"callback_query_id": query.id}),
                http::CALL_TIMEOUT,
            )
            .await;
        if let Err(e) = acknowledged {
            // An old query (after a restart) cannot be answered any more; the press counts.
            tracing::debug!(update_id, error = %e, "answerCallbackQuery failed");
        }
        let Some(message) = &query.message else {
            return Ok(());
        };
        let press = match query.data.as_deref().and_then(buttons::parse) {
            Some(CallbackData::Inline(press)) => press,
            Some(CallbackData::Stored(key)) => match self.stored(&key).await {
                Ok(Some(press)) => press,
                Ok(None) => {
                    tracing::warn!(update_id, "telegram button press of an unknown key");
                    return Ok(());
                }
                Err(reason) => return Err(TakeAgain { update_id, reason }),
            },
            None => {
                tracing::warn!(update_id, "telegram button press with unreadable data");
                return Ok(());
            }
        };
        let chat = message.chat.id;
        let sender = mapping::sender(&query.from);
        let thread_id = mapping::thread_id(message);
        let press_id = format!("cb:{}", query.id);
        let taken = match press {
            Press::Answer {
                question_id,
                answer,
            } => {
                let answer = QuestionAnswer {
                    channel_type: CHANNEL_TYPE.to_owned(),
                    platform_id: chat.to_string(),
                    thread_id,
                    question_id: Some(question_id),
                    answer,
                    sender,
                    platform_message_id: press_id,
                };
                match self.context.answer(answer).await {
                    Ok(_) => true,
                    Err(AnswerError::Db(e)) if e.is_retryable() => {
                        return Err(TakeAgain {
                            update_id,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => {
                        tracing::info!(update_id, error = %e, "telegram button answer not taken");
                        matches!(e, AnswerError::AlreadyAnswered(_))
                    }
                }
            }
            Press::Say { text } => {
                let event = InboundEvent {
                    channel_type: CHANNEL_TYPE.to_owned(),
                    platform_id: chat.to_string(),
                    thread_id,
                    platform_message_id: press_id,
                    sender,
                    text,
                    attachments: Vec::new(),
                    is_mention: true,
                    is_group: message.chat.kind != "private",
                    chat_name: message.chat.title.clone(),
                    uploads: Vec::new(),
                };
                self.push(update_id, event).await?;
                true
            }
        };
        if taken {
            self.remove_keyboard(chat, message.message_id).await;
        }
        Ok(())
    }

    async fn stored(&self, key: &str) -> Result<Option<Press>, String> {
        let state_key = buttons::state_key(key);
        let value = self
            .central
            .call(move |conn| channel_state::get(conn, CHANNEL_TYPE, &state_key))
            .await
            .map_err(|e| e.to_string())?;
        Ok(value.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Takes the buttons off a message whose question was answered.
    async fn remove_keyboard(&self, chat: i64, message_id: i64) {
        let removed: Result<serde_json::Value, ApiError> = self
            .api
            .call(
                "editMessageReplyMarkup",
                &serde_json::json!({
                    "chat_id": chat,
                    "message_id": message_id,
                    "reply_markup": {"inline_keyboard": []},
                }),
                http::CALL_TIMEOUT,
            )
            .await;
        if let Err(e) = removed {
            tracing::debug!(error = %e, "telegram keyboard not removed");
        }
    }
}
