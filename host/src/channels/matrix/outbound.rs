//! [`Outbound`]: what the bridge asks of Matrix, as client-server calls: messages
//! (`PUT /rooms/{room}/send/m.room.message/{txn}`, Markdown as a plain `body` and an HTML
//! `formatted_body`, `m.thread` relations), files (uploaded to the media repository, sent as
//! `m.file` or `m.image`), edits (`m.replace` with `m.new_content`), reactions
//! (`m.annotation`), redactions, typing, and direct chats opened by the bot.
//!
//! Every send is a `PUT` with a transaction id derived from the outbound row and its piece
//! ([`mapping::txn_id`]): the homeserver dedups them per device, so a resend after a crash
//! does not show twice. A platform message is known to crabpot by its event id.
//! A question's message gets the keycap reactions of its options (1️⃣ 2️⃣ …) and is written
//! down ([`StoredQuestion`]) so a person's keycap reaction answers it.

use super::api::{Api, ApiError};
use super::mapping::{self, KEYCAPS};
use super::rooms::RoomBook;
use super::state::{State, StoredQuestion, notice_key, question_key};
use crate::bridge::markup;
use crate::channels::http;
use crate::edge::{ChannelError, ChatAddress, Markup, OutgoingMessage};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest file the adapter uploads (Synapse's default `max_upload_size`; a homeserver
/// with a lower cap refuses with `M_TOO_LARGE`).
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;

/// How long a typing notification lasts unless renewed, in milliseconds.
pub const TYPING_TIMEOUT_MS: u64 = 30_000;

/// What the bot posts, once, in a room whose messages it cannot read.
pub const ENCRYPTED_NOTICE: &str = "This room is end-to-end encrypted; crabpot cannot read \
encrypted messages yet, so it will not answer here. Please talk to it in an unencrypted room.";

#[derive(Deserialize)]
struct Sent {
    event_id: String,
}

/// Sends for one logged-in bot.
pub struct Outbound {
    pub api: Arc<Api>,
    pub state: State,
    pub rooms: Arc<RoomBook>,
    pub user_id: String,
}

/// The `m.room.message` content of Markdown text: the plain text as `body`, safe HTML as
/// `formatted_body`, and no one pinged (`m.mentions` empty).
pub fn text_content(markdown: &str, msgtype: &str) -> serde_json::Map<String, Value> {
    let mut content = serde_json::Map::new();
    content.insert("msgtype".into(), json!(msgtype));
    content.insert(
        "body".into(),
        json!(markup::convert(markdown, Markup::Plain)),
    );
    content.insert("format".into(), json!("org.matrix.custom.html"));
    content.insert(
        "formatted_body".into(),
        json!(markup::convert(markdown, Markup::Html)),
    );
    content.insert("m.mentions".into(), json!({}));
    content
}

/// Puts the event in `thread` (an `m.thread` relation to its root, falling back to a reply
/// for clients without threads).
fn in_thread(content: &mut serde_json::Map<String, Value>, thread: Option<&str>) {
    if let Some(root) = thread.filter(|root| !root.is_empty()) {
        content.insert(
            "m.relates_to".into(),
            json!({
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": true,
                "m.in_reply_to": {"event_id": root},
            }),
        );
    }
}

/// A content type for a file name, for the upload and `info.mimetype`.
pub fn content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "md" | "log" | "csv" => "text/plain",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "html" => "text/html",
        _ => "application/octet-stream",
    }
}

/// The event id in a platform message id, or a refusal naming it.
fn event_id(platform_message_id: &str) -> Result<&str, ChannelError> {
    let id = platform_message_id.trim();
    if id.starts_with('$') && id.len() > 1 && !id.chars().any(char::is_control) {
        Ok(id)
    } else {
        Err(ChannelError::Rejected(format!(
            "{platform_message_id:?} is not a matrix event id"
        )))
    }
}

impl Outbound {
    /// Sends one event of `kind` with transaction id `txn`; returns its event id.
    pub async fn send_event(
        &self,
        room_id: &str,
        kind: &str,
        txn: &str,
        content: Value,
    ) -> Result<String, ChannelError> {
        let sent: Sent = self
            .api
            .send_json(
                &format!("send {kind}"),
                Method::PUT,
                &[
                    "_matrix", "client", "v3", "rooms", room_id, "send", kind, txn,
                ],
                content,
            )
            .await?;
        Ok(sent.event_id)
    }

    /// Refuses to write into an end-to-end-encrypted room: its members believe it private,
    /// and the bot can only write plain events. Known from the room's state this run, or
    /// from the notice told before (which outlives a restart).
    async fn refuse_if_encrypted(&self, room: &str) -> Result<(), ChannelError> {
        let told = self
            .state
            .get(notice_key(room))
            .await
            .map_err(|e| ChannelError::Unavailable(format!("reading the room's state: {e}")))?;
        if self.rooms.is_encrypted(room) || told.is_some() {
            return Err(ChannelError::Rejected(
                "the room is end-to-end encrypted, and crabpot does not write plain text into it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sends a message (and its files); returns the event id of the first event.
    pub async fn deliver(
        &self,
        to: &ChatAddress,
        message: &OutgoingMessage,
    ) -> Result<String, ChannelError> {
        let room = to.platform_id.as_str();
        self.refuse_if_encrypted(room).await?;
        let thread = to.thread_id.as_deref();
        let mut first = None;
        if !message.text.trim().is_empty() || message.files.is_empty() {
            let mut content = text_content(&message.text, "m.text");
            in_thread(&mut content, thread);
            let txn = mapping::txn_id(message, "text");
            let sent = self
                .send_event(room, "m.room.message", &txn, Value::Object(content))
                .await?;
            first = Some(sent);
        }
        for (index, path) in message.files.iter().enumerate() {
            let (name, bytes) = http::read_outgoing_file(path, MAX_UPLOAD_BYTES).await?;
            let size = bytes.len();
            let mime = content_type(&name);
            let uri = self
                .api
                .upload(&name, mime, bytes)
                .await
                .map_err(ChannelError::from)?;
            let msgtype = if mime.starts_with("image/") {
                "m.image"
            } else {
                "m.file"
            };
            let mut content = serde_json::Map::new();
            content.insert("msgtype".into(), json!(msgtype));
            content.insert("body".into(), json!(name));
            content.insert("filename".into(), json!(name));
            content.insert("url".into(), json!(uri));
            content.insert("info".into(), json!({"size": size, "mimetype": mime}));
            content.insert("m.mentions".into(), json!({}));
            in_thread(&mut content, thread);
            let txn = mapping::txn_id(message, &format!("file{index}"));
            let sent = self
                .send_event(room, "m.room.message", &txn, Value::Object(content))
                .await?;
            first.get_or_insert(sent);
        }
        let first = first.unwrap_or_default();
        if let Some(question_id) = &message.question_id
            && !first.is_empty()
        {
            self.offer_keycaps(to, &first, question_id, &message.text)
                .await;
        }
        Ok(first)
    }

    /// Writes the question down under its event and adds a keycap reaction per option. A
    /// failure here is logged, not returned: the message is out, and typing the number still
    /// answers.
    async fn offer_keycaps(&self, to: &ChatAddress, event_id: &str, question_id: &str, text: &str) {
        let options = mapping::numbered_options(text).min(KEYCAPS.len());
        if options == 0 {
            return;
        }
        let question = StoredQuestion {
            question_id: question_id.to_owned(),
            options,
            thread_id: to.thread_id.clone(),
        };
        let stored = match serde_json::to_string(&question) {
            Ok(json) => self.state.put(question_key(event_id), json).await,
            Err(e) => {
                tracing::warn!(error = %e, "a matrix question cannot be written down");
                return;
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "a matrix question was not written down");
            return;
        }
        for keycap in KEYCAPS.iter().take(options) {
            if let Err(e) = self.react(to, event_id, keycap).await {
                tracing::debug!(error = %e, "a matrix question's keycap was not added");
            }
        }
    }

    /// Replaces a sent message's text (`m.replace`); the fallback `body` for clients without
    /// edits is the new text after `* `.
    pub async fn edit(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        message: &OutgoingMessage,
    ) -> Result<(), ChannelError> {
        let target = event_id(platform_message_id)?;
        self.refuse_if_encrypted(&to.platform_id).await?;
        let new_content = text_content(&message.text, "m.text");
        let plain = new_content
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content = json!({
            "msgtype": "m.text",
            "body": format!("* {plain}"),
            "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
            "m.mentions": {},
        });
        let txn = mapping::txn_id(
            message,
            &format!(
                "edit{}",
                mapping::digest(&format!("{target}\n{}\n{}", message.seq.0, message.text))
            ),
        );
        self.send_event(&to.platform_id, "m.room.message", &txn, content)
            .await
            .map(|_| ())
    }

    /// Reacts to an event with `emoji` (an `m.annotation`); reacting twice is no change.
    pub async fn react(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
        emoji: &str,
    ) -> Result<(), ChannelError> {
        let target = event_id(platform_message_id)?;
        self.refuse_if_encrypted(&to.platform_id).await?;
        let content = json!({
            "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": emoji},
        });
        let txn = format!(
            "cp-react-{}",
            mapping::digest(&format!("{}\n{target}\n{emoji}", to.platform_id))
        );
        match self
            .send_event(&to.platform_id, "m.reaction", &txn, content)
            .await
        {
            Err(ChannelError::Rejected(why)) if why.contains("M_DUPLICATE_ANNOTATION") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Redacts (deletes) an event.
    pub async fn delete(
        &self,
        to: &ChatAddress,
        platform_message_id: &str,
    ) -> Result<(), ChannelError> {
        let target = event_id(platform_message_id)?;
        let txn = format!(
            "cp-redact-{}",
            mapping::digest(&format!("{}\n{target}", to.platform_id))
        );
        let _: Value = self
            .api
            .send_json(
                "redact",
                Method::PUT,
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    &to.platform_id,
                    "redact",
                    target,
                    &txn,
                ],
                json!({}),
            )
            .await?;
        Ok(())
    }

    /// Shows (or clears) the bot's typing notification in a room.
    pub async fn typing(&self, to: &ChatAddress, on: bool) -> Result<(), ChannelError> {
        let body = if on {
            json!({"typing": true, "timeout": TYPING_TIMEOUT_MS})
        } else {
            json!({"typing": false})
        };
        let _: Value = self
            .api
            .send_json(
                "typing",
                Method::PUT,
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    &to.platform_id,
                    "typing",
                    &self.user_id,
                ],
                body,
            )
            .await?;
        Ok(())
    }

    /// Posts the encrypted-room notice (once per room: its transaction id is the room's).
    pub async fn encrypted_notice(&self, room_id: &str) -> Result<(), ChannelError> {
        let mut content = text_content(ENCRYPTED_NOTICE, "m.notice");
        content.insert("m.mentions".into(), json!({}));
        let txn = format!("cp-e2ee-{}", mapping::digest(room_id));
        self.send_event(room_id, "m.room.message", &txn, Value::Object(content))
            .await
            .map(|_| ())
    }

    /// The direct chat with `user_id` (`@alice:example.org`): the one the bot opened before,
    /// or a new room with `is_direct` that invites them.
    pub async fn open_dm(&self, user_id: &str) -> Result<String, ChannelError> {
        let valid = user_id.starts_with('@')
            && user_id.contains(':')
            && user_id.len() <= 255
            && !user_id.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(ChannelError::Rejected(format!(
                "{user_id:?} is not a matrix user id"
            )));
        }
        let key = format!("dm:{user_id}");
        let stored = self
            .state
            .get(key.clone())
            .await
            .map_err(|e| ChannelError::Unavailable(format!("reading the direct chat: {e}")))?;
        if let Some(room) = stored {
            return Ok(room);
        }
        #[derive(Deserialize)]
        struct Created {
            room_id: String,
        }
        let created: Created = self
            .api
            .send_json(
                "createRoom",
                Method::POST,
                &["_matrix", "client", "v3", "createRoom"],
                json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [user_id]}),
            )
            .await
            .map_err(|e: ApiError| ChannelError::from(e))?;
        self.rooms
            .set_direct(&created.room_id, true)
            .await
            .map_err(ChannelError::Unavailable)?;
        self.state
            .put(key, created.room_id.clone())
            .await
            .map_err(|e| ChannelError::Unavailable(format!("storing the direct chat: {e}")))?;
        Ok(created.room_id)
    }
}
