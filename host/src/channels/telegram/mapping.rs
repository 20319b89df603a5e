//! What a Telegram update means to crabpot, with no I/O: a [`Message`] as an
//! [`InboundEvent`] (chat `telegram/<chat id>`, forum topics as threads, sender
//! `telegram:<user id>` with a display name, mentions, group or not) plus the files it
//! carries ([`WantedFile`]), and the ids of platform messages (`<chat id>:<message id>`).

use super::wire::{Message, MessageEntity, User};
use crate::edge::InboundEvent;
use protocol::Sender;

/// The channel type of Telegram chats.
pub const CHANNEL_TYPE: &str = "telegram";

/// Who the bot is (from `getMe`): what a mention must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: i64,
    /// Without the `@`.
    pub username: Option<String>,
}

/// A file a message carries, to fetch with `getFile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedFile {
    pub file_id: String,
    /// Its name in the inbox (not yet made plain: staging does that).
    pub name: String,
    /// The size Telegram says it has, when it says.
    pub size: Option<u64>,
}

/// An inbound message and the files to fetch before it is pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub event: InboundEvent,
    pub files: Vec<WantedFile>,
}

/// The crabpot sender of a Telegram user.
pub fn sender(user: &User) -> Sender {
    Sender {
        id: format!("{CHANNEL_TYPE}:{}", user.id),
        name: user.display_name(),
    }
}

/// A platform message id as crabpot keeps it: `<chat id>:<message id>`, since message ids
/// are only unique within a chat and one agent group may be wired to several chats.
pub fn platform_message_id(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

/// The Telegram `message_id` in a platform message id (`<chat id>:<message id>`, or a bare
/// message id).
pub fn message_id_of(platform_message_id: &str) -> Option<i64> {
    platform_message_id
        .rsplit(':')
        .next()
        .and_then(|id| id.trim().parse::<i64>().ok())
}

/// The thread of a message: its forum topic. Replies outside forums stay in the chat, so a
/// conversation is not cut into one session per replied-to message.
pub fn thread_id(message: &Message) -> Option<String> {
    if message.is_topic_message || message.chat.is_forum {
        message.message_thread_id.map(|id| id.to_string())
    } else {
        None
    }
}

/// The part of `text` an entity covers (offsets count UTF-16 code units); `None` when the
/// entity does not fit the text.
pub fn entity_text(text: &str, entity: &MessageEntity) -> Option<String> {
    let start = usize::try_from(entity.offset).ok()?;
    let length = usize::try_from(entity.length).ok()?;
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = start.checked_add(length)?;
    if end > units.len() {
        return None;
    }
    String::from_utf16(&units[start..end]).ok()
}

/// Whether the message addresses the bot: an `@username` mention of it, a `text_mention` of
/// its id, or a reply to one of its messages.
pub fn is_mention(message: &Message, bot: &BotIdentity) -> bool {
    let replied_to_bot = message
        .reply_to_message
        .as_ref()
        .and_then(|replied| replied.from.as_ref())
        .is_some_and(|author| author.id == bot.id);
    if replied_to_bot {
        return true;
    }
    let (text, entities) = match (&message.text, &message.caption) {
        (Some(text), _) => (text.as_str(), &message.entities),
        (None, Some(caption)) => (caption.as_str(), &message.caption_entities),
        (None, None) => return false,
    };
    entities.iter().any(|entity| match entity.kind.as_str() {
        "mention" => match (&bot.username, entity_text(text, entity)) {
            (Some(username), Some(mentioned)) => mentioned
                .strip_prefix('@')
                .is_some_and(|name| name.eq_ignore_ascii_case(username)),
            (None, _) | (_, None) => false,
        },
        "text_mention" => entity.user.as_ref().is_some_and(|user| user.id == bot.id),
        _ => false,
    })
}

/// The files a message carries: its document, or the largest size of its photo.
pub fn wanted_files(message: &Message) -> Vec<WantedFile> {
    let mut files = Vec::new();
    if let Some(document) = &message.document {
        let name = document
            .file_name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| {
                format!(
                    "document-{}",
                    document
                        .file_unique_id
                        .as_deref()
                        .unwrap_or(&message.message_id.to_string())
                )
            });
        files.push(WantedFile {
            file_id: document.file_id.clone(),
            name,
            size: document.file_size,
        });
    }
    // Telegram lists a photo's sizes smallest first; the largest is the photo.
    if let Some(photo) = message
        .photo
        .iter()
        .max_by_key(|size| size.width.saturating_mul(size.height))
    {
        let unique = photo
            .file_unique_id
            .clone()
            .unwrap_or_else(|| message.message_id.to_string());
        files.push(WantedFile {
            file_id: photo.file_id.clone(),
            name: format!("photo-{unique}.jpg"),
            size: photo.file_size,
        });
    }
    files
}

/// A message as an inbound event; `None` for what the host does not take: a message with no
/// person behind it (a channel post, a message of a bot) or with nothing in it.
pub fn message_event(message: &Message, bot: &BotIdentity) -> Option<Mapped> {
    let from = message.from.as_ref()?;
    if from.is_bot || message.chat.kind == "channel" {
        return None;
    }
    let text = message
        .text
        .clone()
        .or_else(|| message.caption.clone())
        .unwrap_or_default();
    let files = wanted_files(message);
    if text.trim().is_empty() && files.is_empty() {
        return None;
    }
    let is_group = message.chat.kind != "private";
    let sender = sender(from);
    let chat_name = if is_group {
        message.chat.title.clone()
    } else {
        sender.name.clone()
    };
    Some(Mapped {
        event: InboundEvent {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: message.chat.id.to_string(),
            thread_id: thread_id(message),
            platform_message_id: platform_message_id(message.chat.id, message.message_id),
            sender,
            text,
            attachments: Vec::new(),
            is_mention: is_mention(message, bot),
            is_group,
            chat_name,
            uploads: Vec::new(),
        },
        files,
    })
}
