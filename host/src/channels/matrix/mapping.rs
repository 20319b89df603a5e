//! What a Matrix room event means to crabpot, with no I/O: an `m.room.message` as an
//! [`InboundEvent`] (chat `matrix/<room id>`, `m.thread` threads by their root's event id,
//! sender `matrix:<user id>`, mentions by `m.mentions` or by name) plus the media it carries
//! ([`WantedFile`]); reactions as keycap answers; and the small encodings the adapter owns
//! (transaction ids, `mxc://` URIs, the numbered options of a question).

use super::wire::RoomEvent;
use crate::edge::{InboundEvent, OutgoingMessage};
use protocol::Sender;
use serde_json::Value;

/// The channel type of Matrix chats.
pub const CHANNEL_TYPE: &str = "matrix";

/// The keycap emoji a question's options are answered with, 1 to 10.
pub const KEYCAPS: [&str; 10] = [
    "1\u{fe0f}\u{20e3}",
    "2\u{fe0f}\u{20e3}",
    "3\u{fe0f}\u{20e3}",
    "4\u{fe0f}\u{20e3}",
    "5\u{fe0f}\u{20e3}",
    "6\u{fe0f}\u{20e3}",
    "7\u{fe0f}\u{20e3}",
    "8\u{fe0f}\u{20e3}",
    "9\u{fe0f}\u{20e3}",
    "\u{1f51f}",
];

/// Who the bot is: what a mention must name, and whose events are its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotIdentity {
    /// `@crabpot:example.org`.
    pub user_id: String,
    pub display_name: Option<String>,
}

/// What the adapter knows of a room when one of its events is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomView {
    pub room_id: String,
    /// See [`is_group`].
    pub is_group: bool,
    /// `m.room.name`, when set.
    pub name: Option<String>,
    /// The sender's display name in the room, when known.
    pub sender_name: Option<String>,
}

/// A file an event carries, to download from the media repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedFile {
    pub server: String,
    pub media_id: String,
    /// Its name in the inbox (not yet made plain: staging does that).
    pub name: String,
    /// The size the sender's client declared, when it did.
    pub size: Option<u64>,
}

/// An inbound message and the files to fetch before it is pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub event: InboundEvent,
    pub files: Vec<WantedFile>,
}

/// A person's reaction to an event (`m.reaction` with `m.annotation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub target_event_id: String,
    pub key: String,
    pub sender: Sender,
    pub event_id: String,
}

/// The rule for direct chats: a room is a direct chat when the bot was invited to it as one
/// (`is_direct` on the invite, or it opened the room as a DM itself) and it has at most two
/// joined members (the bot and one person). Every other room is a group, where the bot
/// answers only when mentioned.
pub fn is_group(direct: bool, joined_members: u64) -> bool {
    !direct || joined_members > 2
}

/// The localpart of a user id (`alice` of `@alice:example.org`).
pub fn localpart(user_id: &str) -> &str {
    let trimmed = user_id.strip_prefix('@').unwrap_or(user_id);
    trimmed.split_once(':').map_or(trimmed, |(local, _)| local)
}

/// The crabpot sender of a Matrix user.
pub fn sender(user_id: &str, display_name: Option<&str>) -> Sender {
    let name = display_name
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| localpart(user_id));
    Sender {
        id: format!("{CHANNEL_TYPE}:{user_id}"),
        name: Some(name.chars().filter(|c| !c.is_control()).take(200).collect()),
    }
}

/// The thread of an event: the root event's id of its `m.thread` relation.
pub fn thread_id(event: &RoomEvent) -> Option<String> {
    if event.relation_type() != Some("m.thread") {
        return None;
    }
    event
        .relation()
        .and_then(|relation| relation.get("event_id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Whether the event addresses the bot: its `m.mentions.user_ids` names the bot, or its
/// body names the bot's user id or display name.
pub fn is_mention(event: &RoomEvent, body: &str, bot: &BotIdentity) -> bool {
    let listed = event
        .content
        .get("m.mentions")
        .and_then(|mentions| mentions.get("user_ids"))
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(&bot.user_id)));
    if listed || body.contains(&bot.user_id) {
        return true;
    }
    let lower = body.to_lowercase();
    bot.display_name
        .as_deref()
        .map(str::trim)
        .filter(|name| name.chars().count() >= 2)
        .is_some_and(|name| lower.contains(&name.to_lowercase()))
}

/// The event a reply answers (`m.relates_to.m.in_reply_to.event_id`), outside a thread's
/// fallback (where it only points at the thread).
pub fn reply_target(event: &RoomEvent) -> Option<&str> {
    let relation = event.relation()?;
    let falling_back = relation
        .get("is_falling_back")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if event.relation_type() == Some("m.thread") && falling_back {
        return None;
    }
    relation
        .get("m.in_reply_to")
        .and_then(|reply| reply.get("event_id"))
        .and_then(Value::as_str)
        .filter(|id| id.starts_with('$'))
}

/// The body of a reply without its quoted fallback (`> <@someone> ...` lines before the
/// first empty line), which older clients still put in front.
pub fn without_reply_fallback(event: &RoomEvent, body: &str) -> String {
    let is_reply = event
        .relation()
        .and_then(|relation| relation.get("m.in_reply_to"))
        .is_some();
    if !is_reply || !body.starts_with("> ") {
        return body.to_owned();
    }
    // Skip the quoted lines, then one empty line if there is one: a client that leaves the
    // empty line out loses none of the person's words.
    let mut lines = body
        .lines()
        .skip_while(|line| line.starts_with('>'))
        .peekable();
    if lines.peek().is_some_and(|line| line.trim().is_empty()) {
        lines.next();
    }
    lines.collect::<Vec<_>>().join("\n")
}

/// The server and media id of an `mxc://<server>/<media id>` URI; `None` unless both are
/// plain (the media id `[A-Za-z0-9_-]`, the server a host name with an optional port), so a
/// hostile URI cannot reach another path.
pub fn parse_mxc(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("mxc://")?;
    let (server, media_id) = rest.split_once('/')?;
    let server_ok = !server.is_empty()
        && server.len() <= 255
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    let media_ok = !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (server_ok && media_ok).then(|| (server.to_owned(), media_id.to_owned()))
}

/// The file of an `m.file`, `m.image`, `m.audio` or `m.video` message, and its caption (the
/// body, when a separate `filename` names the file).
fn wanted_file(event: &RoomEvent) -> Option<(WantedFile, Option<String>)> {
    let (server, media_id) = parse_mxc(event.text("url")?)?;
    let body = event.text("body").unwrap_or_default();
    let (name, caption) = match event
        .text("filename")
        .filter(|name| !name.trim().is_empty())
    {
        Some(filename) => (filename.to_owned(), Some(body.to_owned())),
        None if !body.trim().is_empty() => (body.to_owned(), None),
        None => (format!("file-{media_id}"), None),
    };
    let size = event
        .content
        .get("info")
        .and_then(|info| info.get("size"))
        .and_then(Value::as_u64);
    Some((
        WantedFile {
            server,
            media_id,
            name,
            size,
        },
        caption.filter(|caption| !caption.trim().is_empty()),
    ))
}

/// An `m.room.message` as an inbound event; `None` for what the host does not take: the bot's
/// own events, notices (other bots), edits, and messages with nothing in them.
pub fn message_event(event: &RoomEvent, room: &RoomView, bot: &BotIdentity) -> Option<Mapped> {
    if event.kind != "m.room.message" || event.sender == bot.user_id {
        return None;
    }
    if event.relation_type() == Some("m.replace") {
        return None;
    }
    let (text, files) = match event.text("msgtype")? {
        "m.text" => (event.text("body")?.to_owned(), Vec::new()),
        "m.emote" => (format!("* {}", event.text("body")?), Vec::new()),
        "m.file" | "m.image" | "m.audio" | "m.video" => {
            let (file, caption) = wanted_file(event)?;
            (caption.unwrap_or_default(), vec![file])
        }
        _ => return None,
    };
    let text = without_reply_fallback(event, &text);
    if text.trim().is_empty() && files.is_empty() {
        return None;
    }
    let sender = sender(&event.sender, room.sender_name.as_deref());
    let chat_name = if room.is_group {
        room.name.clone()
    } else {
        sender.name.clone()
    };
    Some(Mapped {
        event: InboundEvent {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: room.room_id.clone(),
            thread_id: thread_id(event),
            platform_message_id: event.event_id.clone(),
            is_mention: is_mention(event, &text, bot),
            sender,
            text,
            attachments: Vec::new(),
            is_group: room.is_group,
            chat_name,
            uploads: Vec::new(),
        },
        files,
    })
}

/// A person's `m.reaction` (an `m.annotation` with a key); `None` for the bot's own.
pub fn reaction(event: &RoomEvent, room: &RoomView, bot: &BotIdentity) -> Option<Reaction> {
    if event.kind != "m.reaction" || event.sender == bot.user_id {
        return None;
    }
    let relation = event.relation()?;
    if relation.get("rel_type").and_then(Value::as_str) != Some("m.annotation") {
        return None;
    }
    Some(Reaction {
        target_event_id: relation.get("event_id")?.as_str()?.to_owned(),
        key: relation.get("key")?.as_str()?.to_owned(),
        sender: sender(&event.sender, room.sender_name.as_deref()),
        event_id: event.event_id.clone(),
    })
}

/// The option number a keycap reaction stands for (1 to 10), with or without the emoji
/// variation selector.
pub fn keycap_number(key: &str) -> Option<usize> {
    let bare: String = key.chars().filter(|c| *c != '\u{fe0f}').collect();
    KEYCAPS
        .iter()
        .position(|keycap| {
            keycap
                .chars()
                .filter(|c| *c != '\u{fe0f}')
                .collect::<String>()
                == bare
        })
        .map(|index| index + 1)
}

/// How many numbered options (`1. red`, `2. green`, ...) a question's text lists, as the
/// bridge writes them for a platform without buttons.
pub fn numbered_options(text: &str) -> usize {
    let mut count = 0;
    for line in text.lines() {
        let next = count + 1;
        if line.trim_start().starts_with(&format!("{next}. ")) {
            count = next;
        }
    }
    count
}

/// A transaction id for one send of `message`: the same for a resend of the same piece (the
/// homeserver then answers with the event it made the first time, so a send cut off by a
/// crash shows once), different for every other send. `part` tells apart the events one
/// message makes (its text, each file, an edit).
pub fn txn_id(message: &OutgoingMessage, part: &str) -> String {
    let id: String = message
        .id
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(100)
        .collect();
    if id.is_empty() {
        // A host message of no row: nothing to be idempotent with.
        return format!("cp-host-{}-{part}", uuid::Uuid::new_v4().simple());
    }
    format!("cp-{id}-{}-{part}", message.piece)
}

/// A short, stable digest of `text` for transaction ids (FNV-1a, 64 bits): not a security
/// property, only "different text, different id".
pub fn digest(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
