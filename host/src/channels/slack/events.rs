//! What a Slack event (the `event` of an Events API `event_callback`, from either the HTTP
//! endpoint or Socket Mode) means for crabpot: [`map_event`] turns a `message` or
//! `app_mention` into a [`SlackMessage`], or says why it is ignored ([`Ignored`]): the bot's
//! own messages, edits and other subtypes that are not a person writing, events of other
//! types. Nothing here does I/O, so the whole mapping is unit-tested.
//!
//! A message in a channel that names the bot (`<@BOTID>`) arrives twice, as `message` and as
//! `app_mention`, with the same `ts`: both map to the same message with `is_mention` set,
//! and the router stores it once (its platform message id is the `ts`).

use super::api::str_field;
use serde_json::Value;

/// The most files taken from one message.
pub const MAX_FILES: usize = 10;

/// A person's message, as Slack reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackMessage {
    /// The conversation id (`C…`, `G…`, `D…`).
    pub channel: String,
    pub user: String,
    pub text: String,
    /// The message's timestamp: its id in the conversation.
    pub ts: String,
    /// The thread's parent `ts`, for a reply in a thread.
    pub thread_ts: Option<String>,
    pub is_mention: bool,
    /// False in a direct chat (`channel_type` `im`).
    pub is_group: bool,
    pub files: Vec<SlackFile>,
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackFile {
    pub id: String,
    pub name: String,
    /// The size Slack announces (checked again while downloading).
    pub size: Option<u64>,
    /// `url_private_download` (or `url_private`): needs the bot token.
    pub url: String,
}

/// Why an event is not a message for the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    NotAMessage,
    /// `message_changed`, `message_deleted`, `channel_join`, `bot_message`, ...
    Subtype,
    /// The bot's own message (`bot_id`, or the bot's user id).
    OwnMessage,
    /// A field every message has is missing.
    Incomplete,
}

impl Ignored {
    /// Why, in a few words for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Ignored::NotAMessage => "not a message event",
            Ignored::Subtype => "a message subtype that is not a person writing",
            Ignored::OwnMessage => "the bot's own message",
            Ignored::Incomplete => "the message lacks its channel, user or ts",
        }
    }
}

/// Subtypes that are still a person writing.
const PERSON_SUBTYPES: &[&str] = &["file_share", "thread_broadcast", "me_message"];

/// Maps one `event` object; `bot_user_id` is what `auth.test` named.
pub fn map_event(event: &Value, bot_user_id: &str) -> Result<SlackMessage, Ignored> {
    let kind = str_field(event, "type").unwrap_or_default();
    if kind != "message" && kind != "app_mention" {
        return Err(Ignored::NotAMessage);
    }
    if let Some(subtype) = str_field(event, "subtype")
        && !PERSON_SUBTYPES.contains(&subtype)
    {
        return Err(Ignored::Subtype);
    }
    if event.get("bot_id").is_some_and(|id| !id.is_null()) {
        return Err(Ignored::OwnMessage);
    }
    let (Some(channel), Some(user), Some(ts)) = (
        str_field(event, "channel"),
        str_field(event, "user"),
        str_field(event, "ts"),
    ) else {
        return Err(Ignored::Incomplete);
    };
    if !bot_user_id.is_empty() && user == bot_user_id {
        return Err(Ignored::OwnMessage);
    }
    let text = str_field(event, "text").unwrap_or_default().to_owned();
    let is_group = match str_field(event, "channel_type") {
        Some(channel_type) => channel_type != "im",
        // app_mention carries no channel_type; direct chats' ids start with D.
        None => !channel.starts_with('D'),
    };
    let is_mention = kind == "app_mention" || mentions(&text, bot_user_id);
    let thread_ts = str_field(event, "thread_ts")
        .filter(|thread| *thread != ts)
        .map(str::to_owned);
    Ok(SlackMessage {
        channel: channel.to_owned(),
        user: user.to_owned(),
        text,
        ts: ts.to_owned(),
        thread_ts,
        is_mention,
        is_group,
        files: files(event),
    })
}

/// Whether `text` mentions the bot: `<@BOTID>` or `<@BOTID|name>`.
pub fn mentions(text: &str, bot_user_id: &str) -> bool {
    if bot_user_id.is_empty() {
        return false;
    }
    text.match_indices("<@").any(|(at, _)| {
        let rest = &text[at + 2..];
        rest.strip_prefix(bot_user_id)
            .is_some_and(|after| after.starts_with('>') || after.starts_with('|'))
    })
}

fn files(event: &Value) -> Vec<SlackFile> {
    let Some(files) = event.get("files").and_then(Value::as_array) else {
        return Vec::new();
    };
    files
        .iter()
        .filter(|file| {
            !matches!(
                str_field(file, "mode"),
                Some("tombstone" | "hidden_by_limit" | "external")
            )
        })
        .filter_map(|file| {
            let url = str_field(file, "url_private_download")
                .or_else(|| str_field(file, "url_private"))?;
            let id = str_field(file, "id").unwrap_or("file");
            Some(SlackFile {
                id: id.chars().take(64).collect(),
                name: str_field(file, "name")
                    .or_else(|| str_field(file, "title"))
                    .unwrap_or(id)
                    .to_owned(),
                size: file.get("size").and_then(Value::as_u64),
                url: url.to_owned(),
            })
        })
        .take(MAX_FILES)
        .collect()
}

/// The outer Events API request (`event_callback`, `url_verification`), as far as the
/// adapter reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// Slack checks the endpoint: answer with the challenge.
    UrlVerification { challenge: String },
    /// One event; `event_id` is what Slack's retries share.
    Callback { event_id: String, event: Value },
    /// Anything else (`app_rate_limited`, ...): acknowledged, nothing done.
    Other,
}

/// Reads an Events API body.
pub fn envelope(body: &Value) -> Envelope {
    match str_field(body, "type") {
        Some("url_verification") => Envelope::UrlVerification {
            challenge: str_field(body, "challenge")
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        },
        Some("event_callback") => match (str_field(body, "event_id"), body.get("event")) {
            (Some(event_id), Some(event)) if event.is_object() => Envelope::Callback {
                event_id: event_id.chars().take(100).collect(),
                event: event.clone(),
            },
            _ => Envelope::Other,
        },
        _ => Envelope::Other,
    }
}
