//! The Bot API's objects the adapter reads, as the reference (core.telegram.org/bots/api)
//! defines them: [`Update`], [`Message`], [`Chat`], [`User`], [`MessageEntity`],
//! [`CallbackQuery`], [`Document`], [`PhotoSize`], [`File`], and the answer envelope
//! [`Envelope`]. Only the fields the adapter uses are declared; unknown fields are ignored,
//! and every field Telegram may omit is optional, so a payload missing one is read, not
//! refused.

use serde::Deserialize;

/// `{"ok": bool, "result": ..., "error_code": n, "description": "...", "parameters": {...}}`.
#[derive(Clone, Debug, Deserialize)]
pub struct Envelope {
    pub ok: bool,
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<ResponseParameters>,
}

/// Why a request failed, in more detail: `retry_after` on a 429.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResponseParameters {
    #[serde(default)]
    pub retry_after: Option<f64>,
    #[serde(default)]
    pub migrate_to_chat_id: Option<i64>,
}

/// One incoming update; the adapter asks only for `message` and `callback_query`.
#[derive(Clone, Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
}

/// A Telegram user or bot.
#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

impl User {
    /// First and last name, or the username when both are empty.
    pub fn display_name(&self) -> Option<String> {
        let full = match &self.last_name {
            Some(last) if !last.trim().is_empty() => {
                format!("{} {}", self.first_name.trim(), last.trim())
            }
            Some(_) | None => self.first_name.trim().to_owned(),
        };
        let full = full.trim().to_owned();
        if !full.is_empty() {
            return Some(full);
        }
        self.username
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    }
}

/// A private chat, group, supergroup or channel.
#[derive(Clone, Debug, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub is_forum: bool,
}

/// A message; text messages have `text` and `entities`, media `caption` and
/// `caption_entities`.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    pub message_id: i64,
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub is_topic_message: bool,
    #[serde(default)]
    pub reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub entities: Vec<MessageEntity>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub caption_entities: Vec<MessageEntity>,
    #[serde(default)]
    pub document: Option<Document>,
    #[serde(default)]
    pub photo: Vec<PhotoSize>,
}

/// A special part of a text; `offset` and `length` count UTF-16 code units.
#[derive(Clone, Debug, Deserialize)]
pub struct MessageEntity {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: i64,
    pub length: i64,
    /// For `text_mention`: the user mentioned (one without a username).
    #[serde(default)]
    pub user: Option<User>,
}

/// A press of an inline keyboard button.
#[derive(Clone, Debug, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    /// The message with the button; absent for inline-mode messages.
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub data: Option<String>,
}

/// A general file sent in a message.
#[derive(Clone, Debug, Deserialize)]
pub struct Document {
    pub file_id: String,
    #[serde(default)]
    pub file_unique_id: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// One size of a photo.
#[derive(Clone, Debug, Deserialize)]
pub struct PhotoSize {
    pub file_id: String,
    #[serde(default)]
    pub file_unique_id: Option<String>,
    #[serde(default)]
    pub width: i64,
    #[serde(default)]
    pub height: i64,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// What `getFile` answers: where to download the file from (valid for an hour).
#[derive(Clone, Debug, Deserialize)]
pub struct File {
    pub file_id: String,
    #[serde(default)]
    pub file_size: Option<u64>,
    #[serde(default)]
    pub file_path: Option<String>,
}
