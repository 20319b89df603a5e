//! A fetched page as the model reads it: [`render`] turns a response body into text by its
//! content type — HTML into Markdown (title, headings, links, lists; scripts, styles and
//! other non-content dropped) with `htmd`, text and JSON as they are — and caps it at the
//! characters the call asked for, saying so when it cut ([`Rendered::truncated`]).
//!
//! The HTML is hostile. html5ever's scope checks walk its stack of open elements, so a page
//! nesting a million `<div>`s takes quadratic time to parse: a linear pre-scan estimates
//! the nesting, and past [`MAX_PARSE_DEPTH`] the page is shown as plain text with its tags
//! stripped instead. htmd walks the tree recursively, so the tree is pruned below
//! [`MAX_DEPTH`] elements, and the conversion runs on its own thread with a generous stack
//! ([`render_blocking`]).

use std::rc::Rc;

/// Elements nested deeper than this are left out of the Markdown (real pages stay far
/// below it; it is what keeps htmd's recursive walk bounded).
pub const MAX_DEPTH: usize = 200;

/// Past this estimated nesting the page is not parsed as HTML but stripped to text (parsing
/// it would take quadratic time).
pub const MAX_PARSE_DEPTH: usize = 1000;

/// Elements that never take content, so they do not nest.
const VOID_TAGS: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// The stack of the thread that converts one page: far more than `MAX_DEPTH` frames need.
const CONVERT_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Tags whose content is never text for a reader.
const SKIPPED_TAGS: &[&str] = &[
    "head", "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object",
    "embed", "form", "button", "select", "input", "textarea",
];

/// What kind of body a content type names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Html,
    /// `text/*` other than HTML, JSON, XML: returned as is.
    Text,
}

/// Why a body cannot be shown to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error(
        "the page is {content_type}, which web_fetch does not return (it returns HTML as Markdown, and text and JSON as they are); download it with bash and curl if egress allows it"
    )]
    Unsupported { content_type: String },
    #[error("converting the page failed: {0}")]
    Convert(String),
}

/// The text of a page, capped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Characters of the whole text before the cap.
    pub total_chars: usize,
    pub truncated: bool,
    /// The page nests too deeply: deep parts were left out, or it was stripped to text.
    pub pruned: bool,
}

/// The kind of a `Content-Type` value; `None` (no header) is taken as HTML when the body
/// looks like it, else text.
pub fn classify(content_type: Option<&str>, body: &[u8]) -> Result<PageKind, PageError> {
    let Some(value) = content_type else {
        let head = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
        return Ok(
            if head.contains("<html") || head.contains("<!doctype html") {
                PageKind::Html
            } else {
                PageKind::Text
            },
        );
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/html" | "application/xhtml+xml" => Ok(PageKind::Html),
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/x-ndjson"
        | "application/yaml"
        | "application/toml" => Ok(PageKind::Text),
        other if other.starts_with("text/") => Ok(PageKind::Text),
        other if other.ends_with("+json") || other.ends_with("+xml") => Ok(PageKind::Text),
        _ => Err(PageError::Unsupported {
            content_type: if essence.is_empty() {
                "of an empty content type".to_owned()
            } else {
                essence
            },
        }),
    }
}

/// [`render`] on a thread of its own with a large stack, so that a hostile page cannot
/// overflow the stack of a runtime worker.
pub async fn render_blocking(
    kind: PageKind,
    body: Vec<u8>,
    max_chars: usize,
) -> Result<Rendered, PageError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("web-page".into())
        .stack_size(CONVERT_STACK_BYTES)
        .spawn(move || {
            let _ = sender.send(render(kind, &body, max_chars));
        })
        .map_err(|error| PageError::Convert(format!("no thread to convert on: {error}")))?;
    receiver
        .await
        .map_err(|_| PageError::Convert("the converting thread ended early".into()))?
}

/// The body as text for the model, at most `max_chars` characters plus a note when cut.
pub fn render(kind: PageKind, body: &[u8], max_chars: usize) -> Result<Rendered, PageError> {
    let text = String::from_utf8_lossy(body);
    let (full, pruned) = match kind {
        PageKind::Html => html_to_markdown(&text)?,
        PageKind::Text => (text.into_owned(), false),
    };
    let total_chars = full.chars().count();
    let (text, truncated) = truncate_chars(&full, max_chars);
    let mut text = text.to_owned();
    if pruned {
        text.push_str(&format!(
            "\n\n[the page nests elements more than {MAX_DEPTH} deep: deep parts were left out, or it is shown as plain text]"
        ));
    }
    if truncated {
        text.push_str(&format!(
            "\n\n[truncated: showing {max_chars} of {total_chars} characters; call web_fetch with a larger max_chars (up to {}) for more]",
            protocol::web::MAX_FETCH_CHARS
        ));
    }
    Ok(Rendered {
        text,
        total_chars,
        truncated,
        pruned,
    })
}

/// `text` cut to at most `max` characters (at a character boundary), and whether it was cut.
pub fn truncate_chars(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// The page's title (as a `# ` heading) and its body as Markdown; true when deep parts were
/// pruned.
fn html_to_markdown(html: &str) -> Result<(String, bool), PageError> {
    if nesting_estimate(html) > MAX_PARSE_DEPTH {
        return Ok((strip_tags(html), true));
    }
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIPPED_TAGS.to_vec())
        .build();
    let tree = converter
        .html_to_tree(html)
        .map_err(|error| PageError::Convert(error.to_string()))?;
    let pruned = prune(&tree, MAX_DEPTH);
    let body = converter.tree_to_markdown(&tree);
    let title = title(html)
        .and_then(|raw| converter.convert(&format!("<p>{raw}</p>")).ok())
        .map(|title| title.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|title| !title.is_empty());
    let text = match title {
        Some(title) if !body.starts_with(&format!("# {title}")) => format!("# {title}\n\n{body}"),
        _ => body,
    };
    Ok((text, pruned))
}

/// Drops the children of every node at `max_depth`, walking without recursion; true when
/// something was dropped. (rcdom drops a subtree without recursion too.)
fn prune(root: &Rc<htmd::Node>, max_depth: usize) -> bool {
    let mut pruned = false;
    let mut stack = vec![(Rc::clone(root), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth >= max_depth {
            let mut children = node.children.borrow_mut();
            if !children.is_empty() {
                children.clear();
                pruned = true;
            }
            continue;
        }
        for child in node.children.borrow().iter() {
            stack.push((Rc::clone(child), depth + 1));
        }
    }
    pruned
}

/// How deep the elements of `html` nest, estimated in one pass from start and end tags
/// (void elements and self-closing tags do not count).
fn nesting_estimate(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0usize);
    while let Some(offset) = bytes[at..].iter().position(|byte| *byte == b'<') {
        let start = at + offset + 1;
        at = start;
        let closing = bytes.get(start) == Some(&b'/');
        let name_start = if closing { start + 1 } else { start };
        let name_len = bytes
            .get(name_start..)
            .unwrap_or_default()
            .iter()
            .take_while(|byte| byte.is_ascii_alphanumeric())
            .count();
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let self_closing = bytes[name_start..]
            .iter()
            .position(|byte| *byte == b'>')
            .is_some_and(|p| bytes[name_start + p - 1] == b'/');
        if !VOID_TAGS.contains(&name.as_str()) && !self_closing {
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

/// `html` as plain text without parsing it: scripts and styles dropped, tags replaced by
/// spaces, the common entities decoded, whitespace collapsed. Linear in the input.
fn strip_tags(html: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len() / 2);
    let mut at = 0;
    while at < html.len() {
        let Some(offset) = lower[at..].find('<') else {
            out.push_str(&html[at..]);
            break;
        };
        out.push_str(&html[at..at + offset]);
        let tag = at + offset;
        // A script or style is skipped to its end tag, content included.
        let from = ["script", "style"]
            .iter()
            .find(|name| lower[tag + 1..].starts_with(*name))
            .and_then(|name| lower[tag..].find(&format!("</{name}")))
            .map_or(tag, |end| tag + end);
        at = match lower[from..].find('>') {
            Some(end) => from + end + 1,
            None => html.len(),
        };
        out.push(' ');
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The raw inner HTML of the first `<title>`, if any (entities are decoded by the caller).
fn title(html: &str) -> Option<&str> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(html[start..end].trim()).filter(|title| title.len() <= 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html><head><title>The &amp; Page</title>
        <style>body { color: red }</style><script>alert("no")</script></head>
        <body><h1>Main heading</h1><p>Some <b>bold</b> text and a
        <a href="https://example.com/docs">link to docs</a>.</p>
        <h2>Second</h2><ul><li>one</li><li>two</li></ul>
        <noscript>enable js</noscript></body></html>"#;

    #[test]
    fn html_becomes_markdown_without_scripts_or_styles() {
        let rendered = render(PageKind::Html, PAGE.as_bytes(), 10_000).unwrap();
        let text = &rendered.text;
        assert!(text.starts_with("# The & Page\n"), "{text}");
        assert!(text.contains("# Main heading"), "{text}");
        assert!(text.contains("## Second"), "{text}");
        assert!(
            text.contains("[link to docs](https://example.com/docs)"),
            "{text}"
        );
        assert!(text.contains("**bold**"), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
        for absent in ["alert", "color: red", "enable js"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        assert!(!rendered.truncated && !rendered.pruned);
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_a_note() {
        let body = "é".repeat(50);
        let rendered = render(PageKind::Text, body.as_bytes(), 10).unwrap();
        assert!(rendered.truncated);
        assert_eq!(rendered.total_chars, 50);
        assert!(rendered.text.starts_with(&"é".repeat(10)));
        assert!(!rendered.text.starts_with(&"é".repeat(11)));
        assert!(
            rendered.text.contains("showing 10 of 50 characters"),
            "{}",
            rendered.text
        );
        let short = render(PageKind::Text, b"{\"a\": 1}", 10).unwrap();
        assert_eq!(short.text, "{\"a\": 1}");
        assert!(!short.truncated);
        assert_eq!(truncate_chars("abc", 3), ("abc", false));
        assert_eq!(truncate_chars("abcd", 3), ("abc", true));
    }

    #[test]
    fn deep_nesting_is_pruned_not_a_stack_overflow() {
        // Deeper than htmd's walk may go, shallow enough to parse: the deep part is cut.
        let depth = MAX_PARSE_DEPTH - 10;
        let html = format!(
            "{}deep text{}",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        );
        let html = format!("<p>shallow text</p>{html}");
        let rendered = render(PageKind::Html, html.as_bytes(), 1000).unwrap();
        assert!(rendered.pruned);
        assert!(rendered.text.contains("shallow text"), "{}", rendered.text);
        assert!(!rendered.text.contains("deep text"));
        assert!(rendered.text.contains("more than 200 deep"));
    }

    #[test]
    fn very_deep_pages_are_stripped_to_text_without_parsing() {
        // A million open elements would take html5ever quadratic time.
        let depth = 1_000_000;
        let html = format!(
            "<title>T</title><script>var x = 1;</script><p>shallow &amp; text</p>{}deep text",
            "<div>".repeat(depth)
        );
        assert!(nesting_estimate(&html) > MAX_PARSE_DEPTH);
        let rendered = render(PageKind::Html, html.as_bytes(), 1000).unwrap();
        assert!(rendered.pruned);
        assert!(
            rendered.text.starts_with("T shallow & text deep text"),
            "{}",
            rendered.text
        );
        assert!(!rendered.text.contains("var x"));
        // Ordinary pages are well below the limit.
        assert!(nesting_estimate(PAGE) < 10, "{}", nesting_estimate(PAGE));
        assert_eq!(nesting_estimate("<br><img src=x/><p>a</p><hr/>"), 1);
    }

    #[test]
    fn content_types_are_classified() {
        let kind = |value: &str| classify(Some(value), b"");
        assert_eq!(kind("text/html; charset=utf-8"), Ok(PageKind::Html));
        assert_eq!(kind("application/xhtml+xml"), Ok(PageKind::Html));
        assert_eq!(kind("text/plain"), Ok(PageKind::Text));
        assert_eq!(kind("application/json"), Ok(PageKind::Text));
        assert_eq!(kind("application/vnd.api+json"), Ok(PageKind::Text));
        let refused = kind("image/png").unwrap_err();
        assert!(refused.to_string().contains("image/png"), "{refused}");
        assert_eq!(classify(None, b"<!DOCTYPE html><html>"), Ok(PageKind::Html));
        assert_eq!(classify(None, b"plain words"), Ok(PageKind::Text));
    }
}
