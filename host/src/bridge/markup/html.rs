//! Safe HTML (Matrix's `formatted_body`, e-mail, the web).

use super::{is_safe_url, link_url};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Safe HTML: pulldown-cmark's renderer, with raw HTML turned into text, links kept only for
/// safe URLs, images turned into links, and single line breaks kept as `<br />` as chats
/// show them.
pub(super) fn html(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    let mut events: Vec<Event<'_>> = Vec::new();
    // For each open link or image: whether its tags are written.
    let mut links: Vec<bool> = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Html(html) | Event::InlineHtml(html) => events.push(Event::Text(html)),
            Event::Start(Tag::HtmlBlock) => events.push(Event::Start(Tag::Paragraph)),
            Event::End(TagEnd::HtmlBlock) => events.push(Event::End(TagEnd::Paragraph)),
            Event::SoftBreak => events.push(Event::HardBreak),
            Event::Start(
                Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }
                | Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                },
            ) => {
                let kept = !links.contains(&true) && is_safe_url(&link_url(link_type, &dest_url));
                links.push(kept);
                if kept {
                    events.push(Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }));
                }
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if links.pop() == Some(true) {
                    if let Some(Event::Start(Tag::Link { dest_url, .. })) = events.last() {
                        let text = CowStr::from(dest_url.to_string());
                        events.push(Event::Text(text));
                    }
                    events.push(Event::End(TagEnd::Link));
                }
            }
            // An element left empty (a lone `>`, `-` or fence) is dropped rather than
            // written as empty tags.
            Event::End(end) => match events.last() {
                Some(Event::Start(start)) if start.to_end() == end && is_container(&end) => {
                    events.pop();
                }
                _ => events.push(Event::End(end)),
            },
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    out
}

/// The block elements [`html`] drops when they are empty.
fn is_container(end: &TagEnd) -> bool {
    matches!(
        end,
        TagEnd::BlockQuote(_) | TagEnd::List(_) | TagEnd::Item | TagEnd::CodeBlock
    )
}
