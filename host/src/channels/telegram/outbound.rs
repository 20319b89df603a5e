//! [`Outbound`]: what the bridge asks of Telegram, as Bot API calls: `sendMessage` (HTML,
//! an inline keyboard for buttons), `sendDocument` (multipart; the text is the caption of a
//! single file when it fits), `editMessageText`, `setMessageReaction`, `deleteMessage` and
//! `sendChatAction`.
//!
//! A message is known to crabpot as `<chat id>:<message id>` ([`mapping::platform_message_id`]).
//! Button presses too long for `callback_data` are stored under a short key
//! ([`buttons`]) before the message goes out.

use super::api::Api;
use super::buttons::{self, Press};
use super::mapping::{self, CHANNEL_TYPE};
use crate::channels::http;
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{ChannelError, ChatAddress, OutgoingMessage};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The longest caption of a file, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// The largest file a bot may upload.
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;

/// The part of a sent message the adapter keeps.
#[derive(Deserialize)]
struct Sent {
    message_id: i64,
}

/// Sends for one bot.
pub struct Outbound {
    pub api: Arc<Api>,
    pub central: Arc<DbThread<Connection>>,
}

/// A chat id as Telegram takes it: a number, or a public `@username`.
pub fn chat_id(to: &ChatAddress) -> Value {
    match to.platform_id.trim().parse::<i64>() {
        Ok(id) => json!(id),
        Err(_) => json!(to.platform_id),
    }
}

/// The message id in a platform message id, or a refusal naming it.
fn message_id(platform_message_id: &str) -> Result<i64, ChannelError> {
    mapping::message_id_of(platform_message_id).ok_or_else(|| {
        ChannelError::Rejected(format!(
            "{platform_message_id:?} is not a telegram message id"
        ))
    })
}

/// The fields every send to `to` has: the chat and its forum topic.
fn addressed(to: &ChatAddress) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("chat_id".into(), chat_id(to));
    if let Some(thread) = to.thread_id.as_deref().and_then(|t| t.parse::<i64>().ok()) {
        body.insert("message_thread_id".into(), json!(thread));
    }
    body
}

impl Outbound {
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: serde_json::Map<String, Value>,
    ) -> Result<T, ChannelError> {
        Ok(self
            .api
            .call(method, &Value::Object(body), http::CALL_TIMEOUT)
            .await?)
    }

    /// The inline keyboard of a message's buttons (one per row), storing presses whose data
    /// does not fit.
    async fn keyboard(&self, message: &OutgoingMessage) -> Result<Option<Value>, ChannelError> {
        if message.buttons.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::new();
        for button in &message.buttons {
            let press = Press::of(button, message.question_id.as_deref());
            let data = match press.inline_data() {
                Some(data) => data,
                None => {
                    let key = buttons::new_key();
                    let value = serde_json::to_string(&press).map_err(|e| {
                        ChannelError::Rejected(format!("a button cannot be stored: {e}"))
                    })?;
                    let state_key = buttons::state_key(&key);
                    self.central
                        .call(move |conn| {
                            channel_state::put(conn, CHANNEL_TYPE, &state_key, &value)
                        })
                        .await
                        .map_err(|e| {
                            ChannelError::Unavailable(format!("storing a button failed: {e}"))
                        })?;
                    buttons::stored_data(&key)
                }
            };
            rows.push(json!([{"text": button.label, "callback_data": data}]));
        }
        Ok(Some(json!({ "inline_keyboard": rows })))
    }

    /// Sends a message (and its files); returns `<chat id>:<message id>` of the first.
    pub async fn deliver(
        &self,
        to: &ChatAddress,
        message: &OutgoingMessage,
    ) -> Result<String, ChannelError> {
        let keyboard = self.keyboard(message).await?;
        let chat = chat_id(to);
        let id_of = |sent: Sent| match &chat {
            Value::Number(number) => format!("{number}:{}", sent.message_id),
            _ => sent.message_id.to_string(),
        };
        let caption_fits =
            message.files.len() == 1 && message.text.chars().count() <= MAX_CAPTION_CHARS;
        let mut first = None;
        if (!message.text.is_empty() && !caption_fits) || message.files.is_empty() {
            let mut body = addressed(to);
            body.insert("text".into(), json!(message.text));
            body.insert("parse_mode".into(), json!("HTML"));
            if let Some(keyboard) = &keyboard {
                body.insert("reply_markup".into(), keyboard.clone());
            }
            let sent: Sent = self.call("sendMessage", body).await?;
            first = Some(id_of(sent));
        }
        for path in &message.files {
            let (name, bytes) = http::read_outgoing_file(path, MAX_UPLOAD_BYTES).await?;
            let mut form = reqwest::multipart::Form::new();
            for (key, value) in addressed(to) {
                form = form.text(key, value_text(&value));
            }
            if caption_fits && !message.text.is_empty() {
                form = form
                    .text("caption", message.text.clone())
                    .text("parse_mode", "HTML");
                if let Some(keyboard) = &keyboard {
                    form = form.text("reply_markup", keyboard.to_string());
                }
            }
            let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(name)
                .mime_str("application/octet-stream")
                .map_err(|e| ChannelError::Rejected(format!("a file part: {e}")))?;
            form = form.part("document", part);
            let sent: Sent = self
                .api
                .call_multipart("sendDocument", form)
                .await
                .map_err(ChannelError::from)?;
            first.get_or_insert(id_of(sent));
        }
        Ok(first.unwrap_or_default())
    }

    /// Replaces a sent message's text (and buttons).
    pub async fn edit(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        message: &OutgoingMessage,
    ) -> Result<(), ChannelError> {
        let mut body = addressed(to);
        body.remove("message_thread_id");
        body.insert("message_id".into(), json!(message_id(platform_message_id)?));
        body.insert("text".into(), json!(message.text));
        body.insert("parse_mode".into(), json!("HTML"));
        if let Some(keyboard) = self.keyboard(message).await? {
            body.insert("reply_markup".into(), keyboard);
        }
        match self.call::<Value>("editMessageText", body).await {
            // The same text again (a final reply equal to the last draft) is no change.
            Err(ChannelError::Rejected(why)) if why.contains("message is not modified") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Sets the bot's reaction on a message (one emoji).
    pub async fn react(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        emoji: &str,
    ) -> Result<(), ChannelError> {
        let mut body = addressed(to);
        body.remove("message_thread_id");
        body.insert("message_id".into(), json!(message_id(platform_message_id)?));
        body.insert(
            "reaction".into(),
            json!([{"type": "emoji", "emoji": emoji}]),
        );
        self.call::<Value>("setMessageReaction", body)
            .await
            .map(|_| ())
    }

    /// Deletes a message.
    pub async fn delete(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
    ) -> Result<(), ChannelError> {
        let mut body = addressed(to);
        body.remove("message_thread_id");
        body.insert("message_id".into(), json!(message_id(platform_message_id)?));
        self.call::<Value>("deleteMessage", body).await.map(|_| ())
    }

    /// Shows "typing…" for five seconds (Telegram has no way to clear it early).
    pub async fn typing(&self, to: &ChatAddress) -> Result<(), ChannelError> {
        let mut body = addressed(to);
        body.insert("action".into(), json!("typing"));
        self.call::<Value>("sendChatAction", body).await.map(|_| ())
    }
}

/// A JSON value as a form field's text (strings without quotes).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
