//! Discord's Markdown: the source as written, defused.

use pulldown_cmark::{Event, Options, Parser, Tag};

/// Discord renders Markdown itself, so the source is kept as written except where it could
/// do harm: raw HTML gets its `<` escaped (Discord reads `<@id>`, `<#id>` and `<t:…>` as
/// mentions and widgets), and `@everyone` / `@here` outside code get a zero-width space so
/// they cannot ping a whole server. Code is left alone, as Discord never parses mentions in it.
pub(super) fn discord(markdown: &str) -> String {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Span {
        Code,
        Html,
    }
    let mut spans = Vec::new();
    for (event, range) in
        Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH).into_offset_iter()
    {
        match event {
            Event::Code(_) | Event::Start(Tag::CodeBlock(_)) => spans.push((range, Span::Code)),
            Event::Html(_) | Event::InlineHtml(_) => spans.push((range, Span::Html)),
            _ => {}
        }
    }
    spans.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(markdown.len() + 16);
    let mut cursor = 0;
    for (range, span) in spans {
        if range.start < cursor {
            continue;
        }
        push_defused(
            &mut out,
            markdown.get(cursor..range.start).unwrap_or_default(),
        );
        let inner = markdown.get(range.clone()).unwrap_or_default();
        match span {
            Span::Code => out.push_str(inner),
            Span::Html => push_defused(&mut out, &inner.replace('<', "\\<")),
        }
        cursor = range.end;
    }
    push_defused(&mut out, markdown.get(cursor..).unwrap_or_default());
    out
}

/// Appends `text` with every `@everyone` and `@here` (in any case) broken by a zero-width
/// space after the `@`.
fn push_defused(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        // A mention is the whole word: `@heretic` pings nobody.
        let mass = ["everyone", "here"].iter().any(|word| {
            rest.get(..word.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(word))
                && !rest[word.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        });
        if mass {
            out.push('\u{200B}');
        }
    }
    out.push_str(rest);
}
