//! Converting the CommonMark agents write into the markup dialect a platform renders
//! ([`Markup`]), with exactly the escaping that dialect needs.
//!
//! Agent output is hostile input: raw HTML in it is always shown as text and never passed on as
//! markup, and links are made only for `http`, `https` and `mailto` URLs (anything else, such
//! as `javascript:`, keeps its text and loses the link). Images become links, so a message
//! never makes a reader's client fetch a URL the agent chose.
//!
//! [`convert`] is the entry point, and the URL and escaping helpers every dialect shares live
//! here. The line-based dialects (plain text, Telegram's HTML and MarkdownV2, Slack's mrkdwn)
//! share one event walker (`text`); HTML reuses pulldown-cmark's renderer over filtered
//! events (`html`); Discord keeps the source as written and only patches raw HTML and mass
//! mentions (`discord`).

mod discord;
mod html;
#[cfg(test)]
mod tests;
mod text;

use crate::edge::Markup;
use discord::discord;
use html::html;
use pulldown_cmark::{CodeBlockKind, LinkType};
use text::{TextDialect, TextWriter};

/// Converts `markdown` (CommonMark with `~strike~`) to the dialect `to`.
pub fn convert(markdown: &str, to: Markup) -> String {
    match to {
        Markup::Markdown => markdown.to_owned(),
        Markup::DiscordMarkdown => discord(markdown),
        Markup::Html => html(markdown),
        Markup::Plain => TextWriter::render(markdown, TextDialect::Plain),
        Markup::TelegramHtml => TextWriter::render(markdown, TextDialect::TelegramHtml),
        Markup::TelegramMarkdownV2 => TextWriter::render(markdown, TextDialect::TelegramMarkdownV2),
        Markup::SlackMrkdwn => TextWriter::render(markdown, TextDialect::SlackMrkdwn),
    }
}

/// True for the URLs a link may point at: the web and e-mail. Everything else (`javascript:`,
/// `data:`, relative paths a chat cannot resolve) is shown as text.
fn is_safe_url(url: &str) -> bool {
    ["http://", "https://", "mailto:"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// The URL a link points at; pulldown-cmark reports `<me@example.com>` without its scheme.
fn link_url(link_type: LinkType, dest_url: &str) -> String {
    match link_type {
        LinkType::Email => format!("mailto:{dest_url}"),
        LinkType::Inline
        | LinkType::Reference
        | LinkType::ReferenceUnknown
        | LinkType::Collapsed
        | LinkType::CollapsedUnknown
        | LinkType::Shortcut
        | LinkType::ShortcutUnknown
        | LinkType::Autolink
        | LinkType::WikiLink { .. } => dest_url.to_owned(),
    }
}

/// The language of a fenced code block: the info string's first word, reduced to characters
/// that cannot break out of a `class` attribute or a MarkdownV2 fence line.
fn code_language(kind: &CodeBlockKind<'_>) -> Option<String> {
    let CodeBlockKind::Fenced(info) = kind else {
        return None;
    };
    let word = info.split([' ', '\t', ',']).next().unwrap_or_default();
    let language: String = word
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+#-_.".contains(*c))
        .collect();
    (!language.is_empty()).then_some(language)
}

fn escape_html(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn backslash_escape(text: &str, special: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
