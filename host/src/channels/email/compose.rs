//! A reply as MIME ([`compose`]): `multipart/alternative` with a plain-text part and an HTML
//! part rendered from the agent's Markdown (inside `multipart/mixed` when files are
//! attached), threading headers (`In-Reply-To`, `References`, `Re:` subject), our own
//! `Message-ID` derived from the outbound row (so a resend after a crash is recognisable)
//! and `Auto-Submitted: auto-replied`, so other robots do not answer us (RFC 3834).

use super::threads::ThreadState;
use crate::bridge::markup;
use crate::edge::{ChannelError, Markup, OutgoingMessage};
use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

/// `Auto-Submitted: auto-replied` (RFC 3834 §5).
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".to_owned())
    }
}

/// One file to attach.
pub struct File {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What one reply is made of.
pub struct Reply<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// The thread answered; `None` starts a new one.
    pub thread: Option<&'a ThreadState>,
    pub message: &'a OutgoingMessage,
    pub files: Vec<File>,
}

/// The `Message-ID` (without brackets) of one piece of an outbound row, at `domain`.
pub fn message_id(message: &OutgoingMessage, domain: &str) -> String {
    let id: String = message
        .id
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = if id.is_empty() {
        format!("host-{}", uuid::Uuid::new_v4().simple())
    } else {
        id
    };
    format!("crabpot.{id}.{}@{domain}", message.piece)
}

/// The subject of a message that starts a thread: its first line, shortened.
fn new_subject(text: &str) -> String {
    let line = markup::convert(text, Markup::Plain);
    let line = line
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("A message");
    let mut subject: String = line.chars().take(78).collect();
    if line.chars().count() > 78 {
        subject.push('…');
    }
    subject
}

fn mailbox(address: &str) -> Result<Mailbox, ChannelError> {
    address
        .parse::<Mailbox>()
        .map_err(|e| ChannelError::Rejected(format!("{address:?} is not an email address: {e}")))
}

/// A content type from a file name's extension, for the few kinds mail clients preview.
fn content_type(name: &str) -> ContentType {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let mime = match extension.as_deref() {
        Some("txt" | "log" | "md" | "csv") => "text/plain; charset=utf-8",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    };
    ContentType::parse(mime).unwrap_or(ContentType::TEXT_PLAIN)
}

/// The reply as a message ready to send, with its `Message-ID` (without brackets).
pub fn compose(reply: Reply<'_>) -> Result<(Message, String), ChannelError> {
    let domain = reply
        .from
        .rsplit_once('@')
        .map_or("crabpot.invalid", |(_, d)| d);
    let id = message_id(reply.message, domain);
    let subject = match reply.thread {
        Some(thread) => super::threads::reply_subject(&thread.subject),
        None => new_subject(&reply.message.text),
    };
    let mut builder = Message::builder()
        .from(mailbox(reply.from)?)
        .to(mailbox(reply.to)?)
        .subject(subject)
        .message_id(Some(format!("<{id}>")))
        .header(AutoSubmitted);
    if let Some(thread) = reply.thread {
        if !thread.last_message_id.is_empty() {
            builder = builder.in_reply_to(format!("<{}>", thread.last_message_id));
        }
        if !thread.references.is_empty() {
            let references: Vec<String> =
                thread.references.iter().map(|r| format!("<{r}>")).collect();
            builder = builder.references(references.join(" "));
        }
    }
    let plain = markup::convert(&reply.message.text, Markup::Plain);
    let html = format!(
        "<!DOCTYPE html><html><body>{}</body></html>",
        markup::convert(&reply.message.text, Markup::Html)
    );
    let alternative = MultiPart::alternative_plain_html(plain, html);
    let body = if reply.files.is_empty() {
        alternative
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for file in reply.files {
            let kind = content_type(&file.name);
            let part: SinglePart = Attachment::new(file.name).body(file.bytes, kind);
            mixed = mixed.singlepart(part);
        }
        mixed
    };
    let message = builder
        .multipart(body)
        .map_err(|e| ChannelError::Rejected(format!("the email cannot be built: {e}")))?;
    Ok((message, id))
}
