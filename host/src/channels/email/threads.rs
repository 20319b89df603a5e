//! Email threads as crabpot threads: a thread is named by its root `Message-ID` (the first
//! of `References`, else `In-Reply-To`, else the message's own id), and [`ThreadState`] is
//! what a reply in it needs (subject, the message answered, the references so far, who to
//! write to), kept in `channel_state` under `thread:<chat>:<root>`.
//!
//! Message ids are kept without their angle brackets, as `mail-parser` gives them.

use serde::{Deserialize, Serialize};

/// The most `References` a reply carries: the root and the newest ones (RFC 5322 §3.6.4
/// allows trimming the middle).
pub const MAX_REFERENCES: usize = 20;

/// The longest message id kept; longer ones are hostile or broken.
pub const MAX_MESSAGE_ID_CHARS: usize = 500;

/// What a reply in one thread needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    /// The subject of the thread, without `Re:` prefixes.
    pub subject: String,
    /// The newest message of the thread: what a reply's `In-Reply-To` names.
    pub last_message_id: String,
    /// The thread's message ids, oldest first, at most [`MAX_REFERENCES`].
    pub references: Vec<String>,
    /// Who the last person to write was (the address a reply goes to).
    pub reply_to: String,
}

impl ThreadState {
    /// Adds `message_id` as the newest message of the thread.
    pub fn push(&mut self, message_id: &str) {
        if !self.references.iter().any(|id| id == message_id) {
            self.references.push(message_id.to_owned());
        }
        trim_references(&mut self.references);
        self.last_message_id = message_id.to_owned();
    }
}

/// The `channel_state` key of a thread's state in the chat `platform_id`. A thread is kept
/// per chat: a sender who names another chat's thread in `References` (a forward, a reply-all,
/// or on purpose) starts a thread of their own chat, and never redirects that chat's replies.
pub fn state_key(platform_id: &str, root: &str) -> String {
    format!("thread:{platform_id}:{root}")
}

/// A message id as kept: trimmed of spaces and brackets; `None` when empty, too long or made
/// of characters no message id has.
pub fn clean_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '<' && c != '>'))
    .then(|| id.to_owned())
}

/// The root of the thread a message belongs to.
pub fn thread_root(message_id: &str, in_reply_to: &[String], references: &[String]) -> String {
    references
        .first()
        .or(in_reply_to.first())
        .cloned()
        .unwrap_or_else(|| message_id.to_owned())
}

/// Keeps the root and the newest references, at most [`MAX_REFERENCES`] in all.
pub fn trim_references(references: &mut Vec<String>) {
    if references.len() > MAX_REFERENCES {
        let cut = references.len() - (MAX_REFERENCES - 1);
        references.drain(1..cut);
    }
}

/// `subject` without its `Re:`/`Fwd:`-style prefixes (any case, repeated, `Re[2]:` too).
pub fn base_subject(subject: &str) -> String {
    let mut rest = subject.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        let prefix = ["re:", "aw:", "fwd:", "fw:", "sv:"]
            .iter()
            .find(|p| lower.starts_with(**p))
            .map(|p| p.len())
            .or_else(|| {
                let bracket = lower.strip_prefix("re[")?;
                let close = bracket.find("]:")?;
                bracket[..close]
                    .chars()
                    .all(|c| c.is_ascii_digit())
                    .then_some(3 + close + 2)
            });
        match prefix {
            Some(len) => rest = rest[len..].trim_start(),
            None => return rest.to_owned(),
        }
    }
}

/// The subject of a reply: `Re: <subject>`.
pub fn reply_subject(subject: &str) -> String {
    let base = base_subject(subject);
    if base.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {base}")
    }
}
