//! An inbound message as crabpot reads it ([`Incoming`]): sender, subject, thread headers,
//! the text (the plain part, or the HTML part made text), attachments, and whether it is
//! automatic mail ([`super::loops`]). Parsing is `mail-parser`'s; this module only picks
//! and bounds what the rest of the adapter uses. Everything in a message is hostile: names
//! are cleaned by staging, ids by [`threads::clean_id`], sizes are capped.

use super::loops;
use super::threads;
use bytes::Bytes;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

/// The longest text taken from one message, in characters; the rest is cut with a note.
pub const MAX_TEXT_CHARS: usize = 100_000;

/// The most attachments taken from one message.
pub const MAX_ATTACHMENTS: usize = 20;

/// One file attached to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub bytes: Bytes,
}

/// A message, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Its `Message-ID` without brackets, or one made from its UID when it has none.
    pub message_id: String,
    /// The sender's address, lower-case.
    pub from_address: String,
    pub from_name: Option<String>,
    /// As written (with any `Re:`).
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// Attachments left out, with why (too large, too many).
    pub left_out: Vec<String>,
    /// Why it must not be answered, for automatic mail.
    pub automatic: Option<&'static str>,
}

impl Incoming {
    /// The root message id of its thread.
    pub fn thread_root(&self) -> String {
        threads::thread_root(&self.message_id, &self.in_reply_to, &self.references)
    }
}

/// Why a message cannot be taken at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not retryable.
    #[error("the message is not readable MIME")]
    NotMime,
    /// Not retryable.
    #[error("the message has no usable From address")]
    NoSender,
}

/// The ids of a `References` or `In-Reply-To` header, cleaned.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let mut out: Vec<String> = match value {
        HeaderValue::Text(text) => text
            .split_whitespace()
            .filter_map(threads::clean_id)
            .collect(),
        HeaderValue::TextList(list) => list.iter().filter_map(|id| threads::clean_id(id)).collect(),
        _ => Vec::new(),
    };
    out.dedup();
    out
}

/// Reads `raw`, the message with UID `uid` in a mailbox of UIDVALIDITY `validity`;
/// attachments over `max_attachment_bytes` are left out (and named in `left_out`).
pub fn parse(
    raw: &[u8],
    validity: u32,
    uid: u32,
    max_attachment_bytes: u64,
) -> Result<Incoming, ParseError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotMime)?;
    let automatic = loops::automatic(&message);
    let from = message
        .from()
        .and_then(|from| from.first())
        .ok_or(ParseError::NoSender)?;
    let from_address = from
        .address()
        .and_then(crate::config::email::plain_address)
        .ok_or(ParseError::NoSender)?;
    let from_name = from
        .name()
        .map(|name| {
            name.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty());
    let message_id = message
        .message_id()
        .and_then(threads::clean_id)
        .unwrap_or_else(|| format!("crabpot-uid-{validity}-{uid}"));
    let subject: String = message
        .subject()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    let mut references = ids(message.references());
    threads::trim_references(&mut references);
    let in_reply_to = ids(message.in_reply_to());
    let mut text = message
        .body_text(0)
        .map(|body| body.into_owned())
        .unwrap_or_default();
    if text.chars().count() > MAX_TEXT_CHARS {
        text = text.chars().take(MAX_TEXT_CHARS).collect();
        text.push_str("\n\n(the rest of this email was cut)");
    }
    let mut attachments = Vec::new();
    let mut left_out = Vec::new();
    for (index, part) in message.attachments().enumerate() {
        let name = part
            .attachment_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("attachment-{}", index + 1));
        let contents = part.contents();
        if attachments.len() >= MAX_ATTACHMENTS {
            left_out.push(format!("{name:?}: more than {MAX_ATTACHMENTS} attachments"));
        } else if contents.len() as u64 > max_attachment_bytes {
            left_out.push(format!(
                "{name:?}: {} bytes, more than the {max_attachment_bytes} allowed",
                contents.len()
            ));
        } else {
            attachments.push(Attachment {
                name,
                bytes: Bytes::copy_from_slice(contents),
            });
        }
    }
    Ok(Incoming {
        message_id,
        from_address,
        from_name,
        subject,
        in_reply_to,
        references,
        text: text.trim().to_owned(),
        attachments,
        left_out,
        automatic,
    })
}
