//! What crosses the edge outbound: addresses, the messages the bridge hands an adapter, and
//! what a platform can do.

use protocol::{MessageId, Seq};
use std::path::PathBuf;
use std::time::Duration;

/// The largest file that crosses the edge either way: one the host takes from a session's
/// outbox, and one a person sends on a platform.
pub const MAX_ATTACHMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Where a message goes on a platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChatAddress {
    pub channel_type: String,
    pub platform_id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// A message from the host itself (an approval request, the answer to a decision, a notice)
/// to a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMessage {
    pub to: ChatAddress,
    pub text: String,
    /// Shortcuts for what the text asks the reader to type (`approve <id>`), shown as
    /// buttons where the platform has them; elsewhere the text alone says what to type.
    pub buttons: Vec<Button>,
}

/// One platform message, ready to send as it is: the bridge has already converted the text
/// to the platform's [`Markup`], cut it to the platform's length, and turned buttons into
/// numbered options where the platform has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The outbound row's id (or the host message's): the idempotency key for the platform
    /// call. The pieces of one long row share it, with `piece` telling them apart.
    pub id: MessageId,
    pub seq: Seq,
    /// Which piece of a row split for length this is (0 for the first or only one).
    pub piece: u32,
    /// In the platform's markup dialect, at most `max_text_chars` characters.
    pub text: String,
    /// Files to attach, as paths on the host: copies the host made of the agent's outbox
    /// files (under `data/files/`), which the adapter may read and keep.
    pub files: Vec<PathBuf>,
    /// Only where the platform has buttons (`Capabilities::buttons`).
    pub buttons: Vec<Button>,
    /// Set on a question: the id its answer names.
    pub question_id: Option<String>,
    /// Set on a reply that takes the place of a live draft (see [`Draft`]): the draft's key.
    pub replaces_draft: Option<String>,
    /// True when this is a resend after a host crash left the row `sending`: the platform
    /// may already have it, and an adapter with an idempotency key passes `id` as that key.
    pub resend: bool,
}

impl Default for OutgoingMessage {
    /// A message of the host's own (no outbound row): an empty id, seq -1, no text.
    fn default() -> Self {
        Self {
            id: MessageId::new(String::new()),
            seq: Seq(-1),
            piece: 0,
            text: String::new(),
            files: Vec::new(),
            buttons: Vec::new(),
            question_id: None,
            replaces_draft: None,
            resend: false,
        }
    }
}

/// One button: an answer of a question, or a host message's shortcut.
///
/// On a message with a `question_id`, pressing it answers that question with `answer` (the
/// option's number, from 1): the adapter calls `ChannelContext::answer`. On a message
/// without one (a host message), pressing it is the presser typing `answer` in that chat
/// (such as `approve <id>`): the adapter pushes it as the presser's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub answer: String,
}

/// The text so far of a reply being written, for platforms that show drafts natively
/// (`Capabilities::live_drafts`: the terminal, the web).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// Names the reply: the id of the inbound row the turn answers. The final reply carries
    /// the same key in `OutgoingMessage::replaces_draft`.
    pub key: String,
    /// The whole text so far, in the platform's dialect.
    pub text: String,
    /// When the text only grew since the last draft: what was added.
    pub appended: Option<String>,
}

/// The markup dialect a platform renders. Agents write Markdown; the bridge converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Markup {
    /// No markup: Markdown is reduced to readable text.
    Plain,
    /// Markdown passed through as the agent wrote it (CommonMark).
    Markdown,
    /// Telegram's HTML subset (`parse_mode=HTML`).
    TelegramHtml,
    /// Telegram's MarkdownV2 (`parse_mode=MarkdownV2`).
    TelegramMarkdownV2,
    /// Slack's mrkdwn.
    SlackMrkdwn,
    /// Discord's Markdown flavour.
    DiscordMarkdown,
    /// HTML (Matrix's `formatted_body`, e-mail, the web).
    Html,
}

/// A message rate: at most `burst` messages in any `per` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    pub burst: u32,
    #[serde(with = "duration_ms")]
    pub per: Duration,
}

/// The send rates a platform documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimits {
    /// Across the whole bot account.
    #[serde(default)]
    pub per_platform: Option<Rate>,
    /// In one chat.
    #[serde(default)]
    pub per_chat: Option<Rate>,
}

/// What a platform can do; the bridge degrades around what it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    pub threads: bool,
    /// Messages can be edited in place ([`crate::edge::Channel::edit`]).
    pub edits: bool,
    /// The shortest gap between two edits of one message the platform allows.
    #[serde(with = "duration_ms")]
    pub min_edit_interval: Duration,
    pub reactions: bool,
    pub buttons: bool,
    pub files: bool,
    /// The largest file the platform takes.
    pub max_file_bytes: u64,
    /// The longest text of one message, in characters.
    pub max_text_chars: usize,
    pub markup: Markup,
    /// How often a typing indicator must be renewed to stay visible; `None` when the
    /// platform has none.
    #[serde(with = "option_duration_ms")]
    pub typing_renew: Option<Duration>,
    /// The platform shows a reply as it is written through [`crate::edge::Channel::draft`].
    pub live_drafts: bool,
    /// Messages can be deleted ([`crate::edge::Channel::delete`]).
    pub deletes: bool,
    pub rate: RateLimits,
}

impl Capabilities {
    /// A platform that can only send text of up to `max_text_chars`, in `markup`.
    pub fn text_only(max_text_chars: usize, markup: Markup) -> Self {
        Self {
            threads: false,
            edits: false,
            min_edit_interval: Duration::ZERO,
            reactions: false,
            buttons: false,
            files: false,
            max_file_bytes: 0,
            max_text_chars,
            markup,
            typing_renew: None,
            live_drafts: false,
            deletes: false,
            rate: RateLimits::default(),
        }
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

mod option_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => {
                serializer.serialize_some(&u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
            }
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}
