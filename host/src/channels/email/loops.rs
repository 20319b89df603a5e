//! Mail that must not be answered: auto-replies (vacation notices, our own replies coming
//! back), bounces and delivery reports, and mailing-list traffic. Answering any of them is how
//! two robots end up writing to each other forever (RFC 3834 §2).
//!
//! [`automatic`] reads only headers and the top-level content type, so it is cheap and runs
//! before anything else is done with a message.

use mail_parser::{HeaderValue, Message};

/// Why a message is not answered, when it is automatic; `None` for a person's mail.
pub fn automatic(message: &Message<'_>) -> Option<&'static str> {
    let header = |name: &str| raw_header(message, name);
    if let Some(value) = header("Auto-Submitted")
        && !value.trim().eq_ignore_ascii_case("no")
    {
        return Some("Auto-Submitted");
    }
    if let Some(value) = header("Precedence") {
        let value = value.trim().to_ascii_lowercase();
        if ["bulk", "junk", "list", "auto_reply"].contains(&value.as_str()) {
            return Some("Precedence");
        }
    }
    if header("List-Id").is_some() || header("List-Unsubscribe").is_some() {
        return Some("List-Id");
    }
    if header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress")
            .is_some_and(|v| v.to_ascii_lowercase().contains("all"))
    {
        return Some("X-Autoreply");
    }
    if bounce_return_path(message) {
        return Some("an empty Return-Path");
    }
    if let Some(from) = message
        .from()
        .and_then(|from| from.first())
        .and_then(|a| a.address())
    {
        let local = from
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if local == "mailer-daemon" || local == "postmaster" {
            return Some("a mailer daemon");
        }
    }
    if let Some(content_type) = message.root_part().headers.iter().find_map(|h| {
        match (h.name().eq_ignore_ascii_case("Content-Type"), h.value()) {
            (true, HeaderValue::ContentType(ct)) => Some(ct),
            _ => None,
        }
    }) && content_type.ctype().eq_ignore_ascii_case("multipart")
        && content_type
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return Some("a delivery or read report");
    }
    None
}

/// The raw text of the first header `name` (any case), without its line breaks.
fn raw_header<'m>(message: &'m Message<'_>, name: &str) -> Option<&'m str> {
    message
        .headers_raw()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// `Return-Path: <>`, the mark of a bounce (RFC 5321 §4.5.5).
fn bounce_return_path(message: &Message<'_>) -> bool {
    raw_header(message, "Return-Path").is_some_and(|value| {
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        value == "<>" || value.is_empty()
    })
}
