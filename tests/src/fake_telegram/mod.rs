//! A fake Telegram Bot API server ([`FakeTelegram`]) that follows the reference
//! (core.telegram.org/bots/api): methods at `/bot<token>/<method>` taking JSON, a form or
//! `multipart/form-data`, answers in `{"ok":true,"result":...}` envelopes, 401 for a wrong
//! token, `getUpdates` long polling where an `offset` confirms (drops) every earlier update,
//! files at `/file/bot<token>/<file_path>` after `getFile`, and 429 with
//! `parameters.retry_after` when a test asks for it. Every request is recorded
//! ([`crate::fake_platform::Recorder`]).
//!
//! A test plays the people: [`FakeTelegram::send`] injects a message (a DM, a group message,
//! with a mention entity, a reply, a document) as an update, [`FakeTelegram::press`] a
//! button press (`callback_query`), and [`FakeTelegram::sent`] lists what the bot sent, with
//! its edits applied.

mod multipart;
mod routes;

use crate::fake_platform::{FakeServer, Recorder};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// The fake bot's user id.
pub const BOT_ID: i64 = 7_000_000_001;
/// The fake bot's username (mentions are `@crab_bot`).
pub const BOT_USERNAME: &str = "crab_bot";

/// A person on the fake Telegram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
}

impl TgUser {
    /// A person with a username of their lower-cased first name.
    pub fn new(id: i64, first_name: &str, last_name: Option<&str>) -> Self {
        Self {
            id,
            first_name: first_name.to_owned(),
            last_name: last_name.map(str::to_owned),
        }
    }

    /// The `User` object.
    pub fn json(&self) -> Value {
        let mut user = json!({
            "id": self.id,
            "is_bot": false,
            "first_name": self.first_name,
            "username": self.first_name.to_lowercase(),
        });
        if let Some(last) = &self.last_name {
            user["last_name"] = json!(last);
        }
        user
    }

    /// The private chat with this user (its id is the user's).
    pub fn dm(&self) -> TgChat {
        TgChat {
            id: self.id,
            kind: "private".into(),
            title: None,
        }
    }
}

/// A chat on the fake Telegram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TgChat {
    pub id: i64,
    /// `private`, `group` or `supergroup`.
    pub kind: String,
    pub title: Option<String>,
}

impl TgChat {
    /// A supergroup (ids of supergroups are negative, e.g. `-100...`).
    pub fn supergroup(id: i64, title: &str) -> Self {
        Self {
            id,
            kind: "supergroup".into(),
            title: Some(title.into()),
        }
    }

    /// The `Chat` object.
    pub fn json(&self) -> Value {
        let mut chat = json!({"id": self.id, "type": self.kind});
        if let Some(title) = &self.title {
            chat["title"] = json!(title);
        }
        chat
    }
}

/// What a person sends: text, and optionally a mention of the bot, a reply, a document.
#[derive(Clone, Debug, Default)]
pub struct Say {
    pub text: String,
    /// Prefixes `@crab_bot ` with a `mention` entity.
    pub mention: bool,
    /// Replies to this message of the chat (one of the bot's, say).
    pub reply_to: Option<i64>,
    /// A document (file name, bytes), served for `getFile`; the text is its caption.
    pub document: Option<(String, Bytes)>,
}

impl Say {
    /// Plain text.
    pub fn text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    /// With `@crab_bot` in front, as a `mention` entity.
    pub fn mentioning(mut self) -> Self {
        self.mention = true;
        self
    }

    /// As a reply to `message_id` of the same chat.
    pub fn replying_to(mut self, message_id: i64) -> Self {
        self.reply_to = Some(message_id);
        self
    }

    /// With a document; the text becomes its caption.
    pub fn with_document(mut self, name: &str, bytes: &[u8]) -> Self {
        self.document = Some((name.to_owned(), Bytes::copy_from_slice(bytes)));
        self
    }
}

/// A message the bot sent, as it stands now (edits applied).
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub chat_id: i64,
    pub message_id: i64,
    /// `sendMessage` or `sendDocument`.
    pub method: String,
    /// The text, or a document's caption.
    pub text: String,
    pub parse_mode: Option<String>,
    /// `reply_markup` as sent (or as last edited).
    pub reply_markup: Option<Value>,
    /// A document's (file name, bytes).
    pub document: Option<(String, Bytes)>,
    /// How many times `editMessageText` changed it.
    pub edits: usize,
    /// Removed by `deleteMessage`.
    pub deleted: bool,
}

impl Sent {
    /// The `callback_data` of every inline button, in order.
    pub fn callback_data(&self) -> Vec<String> {
        self.reply_markup
            .as_ref()
            .and_then(|markup| markup["inline_keyboard"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .filter_map(|button| button["callback_data"].as_str().map(str::to_owned))
            .collect()
    }

    /// The labels of every inline button, in order.
    pub fn button_labels(&self) -> Vec<String> {
        self.reply_markup
            .as_ref()
            .and_then(|markup| markup["inline_keyboard"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .filter_map(|button| button["text"].as_str().map(str::to_owned))
            .collect()
    }
}

pub(crate) struct State {
    token: String,
    /// Every update not yet confirmed by an `offset`, oldest first.
    updates: Vec<Value>,
    next_update_id: i64,
    next_message_id: i64,
    /// Answers of 429 still to give, by method: (how many, retry_after seconds).
    rate_limited: HashMap<String, (usize, u64)>,
    /// Files by file_id: (file_path, bytes).
    files: HashMap<String, (String, Bytes)>,
    sent: Vec<Sent>,
    /// Every message seen in a chat (the people's and the bot's), by (chat, message id).
    messages: HashMap<(i64, i64), Value>,
    chats: HashMap<i64, TgChat>,
}

#[derive(Clone)]
pub(crate) struct Shared {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fake Telegram for one bot token.
pub struct FakeTelegram {
    server: FakeServer,
    shared: Shared,
}

impl FakeTelegram {
    /// Serves the Bot API for `token` on a free loopback port.
    pub fn start(token: &str) -> anyhow::Result<FakeTelegram> {
        let shared = Shared {
            state: Arc::new(Mutex::new(State {
                token: token.to_owned(),
                updates: Vec::new(),
                next_update_id: 100,
                next_message_id: 1,
                rate_limited: HashMap::new(),
                files: HashMap::new(),
                sent: Vec::new(),
                messages: HashMap::new(),
                chats: HashMap::new(),
            })),
            changed: Arc::new(Notify::new()),
        };
        let server = FakeServer::start(routes::routes(shared.clone()))?;
        Ok(FakeTelegram { server, shared })
    }

    /// `CRABPOT_TELEGRAM_API_URL`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request the fake received.
    pub fn recorder(&self) -> &Recorder {
        &self.server.recorder
    }

    /// Queues an update (its `update_id` is set here) and returns its id.
    pub fn inject(&self, mut update: Value) -> i64 {
        let id = {
            let mut state = self.shared.state();
            let id = state.next_update_id;
            state.next_update_id += 1;
            update["update_id"] = json!(id);
            state.updates.push(update);
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// `from` says `say` in `chat`; returns the message's id.
    pub fn send(&self, chat: &TgChat, from: &TgUser, say: Say) -> i64 {
        let (message, message_id) = self.message(chat, from, say);
        self.inject(json!({"message": message}));
        message_id
    }

    /// The update of `from` saying `say` in `chat`, with a fresh `update_id`, as Telegram
    /// would post it to a webhook (it is not queued for `getUpdates`).
    pub fn message_update(&self, chat: &TgChat, from: &TgUser, say: Say) -> Value {
        let (message, _) = self.message(chat, from, say);
        let mut state = self.shared.state();
        let id = state.next_update_id;
        state.next_update_id += 1;
        json!({"update_id": id, "message": message})
    }

    /// A new message of `from` in `chat` (its document served for `getFile`).
    fn message(&self, chat: &TgChat, from: &TgUser, say: Say) -> (Value, i64) {
        {
            let mut state = self.shared.state();
            state.chats.insert(chat.id, chat.clone());
            let message_id = state.next_message_id;
            state.next_message_id += 1;
            let mut message = json!({
                "message_id": message_id,
                "from": from.json(),
                "chat": chat.json(),
                "date": unix_now(),
            });
            let (text, entities) = if say.mention {
                let mention = format!("@{BOT_USERNAME}");
                let entity = json!([{"type": "mention", "offset": 0, "length": mention.encode_utf16().count()}]);
                (format!("{mention} {}", say.text), entity)
            } else {
                (say.text.clone(), json!([]))
            };
            match &say.document {
                Some((name, bytes)) => {
                    let file_id = format!("doc-{message_id}");
                    state.files.insert(
                        file_id.clone(),
                        (format!("documents/file_{message_id}.bin"), bytes.clone()),
                    );
                    message["document"] = json!({
                        "file_id": file_id,
                        "file_unique_id": format!("u{message_id}"),
                        "file_name": name,
                        "file_size": bytes.len(),
                    });
                    if !text.is_empty() {
                        message["caption"] = json!(text);
                        message["caption_entities"] = entities;
                    }
                }
                None => {
                    message["text"] = json!(text);
                    message["entities"] = entities;
                }
            }
            if let Some(original) = say
                .reply_to
                .and_then(|replied| state.messages.get(&(chat.id, replied)))
            {
                message["reply_to_message"] = original.clone();
            }
            state
                .messages
                .insert((chat.id, message_id), message.clone());
            (message, message_id)
        }
    }

    /// `from` presses the button with `callback_data` under the bot's message `message_id`.
    pub fn press(&self, from: &TgUser, chat_id: i64, message_id: i64, callback_data: &str) -> i64 {
        let message = self
            .shared
            .state()
            .messages
            .get(&(chat_id, message_id))
            .cloned()
            .unwrap_or_else(|| json!({"message_id": message_id, "chat": {"id": chat_id, "type": "private"}, "date": unix_now()}));
        self.inject(json!({
            "callback_query": {
                "id": format!("cbq-{}-{message_id}", from.id),
                "from": from.json(),
                "message": message,
                "chat_instance": format!("ci-{chat_id}"),
                "data": callback_data,
            }
        }))
    }

    /// The next `n` calls of `method` (such as `sendMessage`) answer 429 with
    /// `retry_after` seconds.
    pub fn rate_limit_next(&self, method: &str, n: usize, retry_after: u64) {
        self.shared
            .state()
            .rate_limited
            .insert(method.to_owned(), (n, retry_after));
    }

    /// The id of the newest update queued (0 before the first).
    pub fn last_update_id(&self) -> i64 {
        self.shared.state().next_update_id - 1
    }

    /// Updates not yet confirmed by an `offset`.
    pub fn unconfirmed(&self) -> usize {
        self.shared.state().updates.len()
    }

    /// Every message the bot sent, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.state().sent.clone()
    }

    /// The messages the bot sent to `chat_id` that are still there (not deleted).
    pub fn sent_to(&self, chat_id: i64) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|sent| sent.chat_id == chat_id && !sent.deleted)
            .collect()
    }

    /// Waits until `check` finds what it looks for among the sent messages.
    pub async fn wait_sent<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Sent]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let sent = self.sent();
            if let Some(found) = check(&sent) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                anyhow::bail!("waited {timeout:?} for {what}; the bot sent: {sent:#?}");
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}
