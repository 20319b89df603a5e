//! Converting the CommonMark agents write into the markup dialect a platform renders
//! ([`Markup`]), with exactly the escaping that dialect needs.
//!
//! Agent output is hostile input: raw HTML in it is always shown as text and never passed on as
//! markup, and links are made only for `http`, `https` and `mailto` URLs (anything else, such
//! as `javascript:`, keeps its text and loses the link). Images become links, so a message
//! never makes a reader's client fetch a URL the agent chose.
//!
//! [`convert`] is the entry point. The line-based dialects (plain text, Telegram's HTML and
//! MarkdownV2, Slack's mrkdwn) share one event walker, [`TextWriter`], told apart by a
//! [`TextDialect`]; HTML reuses pulldown-cmark's renderer over filtered events; Discord keeps
//! the source as written and only patches raw HTML and mass mentions.

use crate::edge::Markup;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

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

/// Every character MarkdownV2 reserves outside code, plus the backslash itself: Telegram
/// rejects a message with any of them unescaped, and reads `\x` as an escaped `x`.
const MARKDOWN_V2_SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";

/// The dialects written by [`TextWriter`]: text with line-oriented structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextDialect {
    Plain,
    TelegramHtml,
    TelegramMarkdownV2,
    SlackMrkdwn,
}

/// An inline style; its value indexes [`TextWriter::styles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Strong,
    Emphasis,
    Strikethrough,
}

impl TextDialect {
    fn escape_text(self, text: &str) -> String {
        match self {
            TextDialect::Plain => text.to_owned(),
            TextDialect::TelegramHtml | TextDialect::SlackMrkdwn => escape_html(text, false),
            TextDialect::TelegramMarkdownV2 => backslash_escape(text, MARKDOWN_V2_SPECIAL),
        }
    }

    fn escape_code(self, code: &str) -> String {
        match self {
            TextDialect::Plain => code.to_owned(),
            TextDialect::TelegramHtml | TextDialect::SlackMrkdwn => escape_html(code, false),
            TextDialect::TelegramMarkdownV2 => backslash_escape(code, "`\\"),
        }
    }

    /// The opening and closing marker of `style`.
    fn markers(self, style: Style) -> [&'static str; 2] {
        match (self, style) {
            (Self::Plain, _) => ["", ""],
            (Self::TelegramHtml, Style::Strong) => ["<b>", "</b>"],
            (Self::TelegramHtml, Style::Emphasis) => ["<i>", "</i>"],
            (Self::TelegramHtml, Style::Strikethrough) => ["<s>", "</s>"],
            (Self::TelegramMarkdownV2 | Self::SlackMrkdwn, Style::Strong) => ["*", "*"],
            (Self::TelegramMarkdownV2 | Self::SlackMrkdwn, Style::Emphasis) => ["_", "_"],
            (Self::TelegramMarkdownV2 | Self::SlackMrkdwn, Style::Strikethrough) => ["~", "~"],
        }
    }

    fn bullet(self) -> &'static str {
        match self {
            TextDialect::Plain => "- ",
            TextDialect::TelegramHtml
            | TextDialect::TelegramMarkdownV2
            | TextDialect::SlackMrkdwn => "• ",
        }
    }

    fn rule(self) -> &'static str {
        match self {
            TextDialect::Plain => "---",
            TextDialect::TelegramHtml
            | TextDialect::TelegramMarkdownV2
            | TextDialect::SlackMrkdwn => "———",
        }
    }
}

/// What starts each line inside a container.
#[derive(Clone, Copy, Debug)]
enum Prefix {
    Quote,
    /// A list item's continuation lines, as wide as its bullet.
    Indent(usize),
}

/// A link or image being written.
struct OpenLink {
    url: String,
    /// Written as a link: false for an unsafe URL and inside another link, where only the
    /// text is written.
    active: bool,
    /// Where the link's text starts in the output.
    text_start: usize,
}

/// A fenced or indented code block, collected whole because its escaping and fences wrap it.
struct CodeBlock {
    language: Option<String>,
    code: String,
}

/// Walks pulldown-cmark's events and writes one [`TextDialect`].
struct TextWriter {
    dialect: TextDialect,
    out: String,
    /// The open blockquotes and list items, outermost first.
    prefixes: Vec<Prefix>,
    at_line_start: bool,
    /// The next block continues the current line: right after a bullet, or at the start of a
    /// container, which has already separated itself from what came before.
    glue: bool,
    /// The next number of each open list; `None` for a bullet list.
    lists: Vec<Option<u64>>,
    /// How deeply each [`Style`] is nested: markers are written only at depth 0 <-> 1, so
    /// `**a **b** c**` does not close the bold early.
    styles: [u32; 3],
    links: Vec<OpenLink>,
    code_block: Option<CodeBlock>,
    /// The last thing written was MarkdownV2's `_`: another one right after it would read as
    /// underline `__`, so Telegram's ignored `\r` goes between them.
    after_underscore: bool,
    first_cell: bool,
}

impl TextWriter {
    fn render(markdown: &str, dialect: TextDialect) -> String {
        let mut writer = TextWriter {
            dialect,
            out: String::with_capacity(markdown.len() + markdown.len() / 4),
            prefixes: Vec::new(),
            at_line_start: true,
            glue: false,
            lists: Vec::new(),
            styles: [0; 3],
            links: Vec::new(),
            code_block: None,
            after_underscore: false,
            first_cell: true,
        };
        for event in Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH) {
            writer.event(event);
        }
        let len = writer.out.trim_end_matches('\n').len();
        writer.out.truncate(len);
        writer.out
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => match &mut self.code_block {
                Some(block) => block.code.push_str(&text),
                None => self.text(&text),
            },
            Event::Code(code) | Event::InlineMath(code) | Event::DisplayMath(code) => {
                self.inline_code(&code);
            }
            // Raw HTML from an agent is shown, never obeyed.
            Event::Html(html) | Event::InlineHtml(html) => self.text(&html),
            Event::FootnoteReference(label) => self.text(&format!("[^{label}]")),
            Event::SoftBreak | Event::HardBreak => self.newline(),
            Event::Rule => {
                self.start_block();
                self.write(self.dialect.rule());
            }
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock | Tag::MetadataBlock(_) => self.start_block(),
            Tag::Heading { .. } => {
                self.start_block();
                self.open_style(Style::Strong);
            }
            Tag::BlockQuote(_) => {
                self.start_block();
                self.prefixes.push(Prefix::Quote);
                if self.dialect == TextDialect::TelegramHtml {
                    self.write("<blockquote>");
                }
                self.glue = true;
            }
            Tag::CodeBlock(kind) => {
                self.code_block = Some(CodeBlock {
                    language: code_language(&kind),
                    code: String::new(),
                });
            }
            Tag::List(first) => {
                if self.lists.is_empty() {
                    self.start_block();
                } else {
                    self.start_line();
                }
                self.lists.push(first);
                self.glue = true;
            }
            Tag::Item => self.start_item(),
            Tag::FootnoteDefinition(label) => {
                self.start_block();
                self.text(&format!("[^{label}]: "));
                self.glue = true;
            }
            Tag::DefinitionList | Tag::Table(_) => {
                self.start_block();
                self.glue = true;
            }
            Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::TableHead
            | Tag::TableRow => {
                self.start_line();
                self.first_cell = true;
            }
            Tag::TableCell => {
                if !std::mem::take(&mut self.first_cell) {
                    self.write(" | ");
                }
            }
            Tag::Emphasis => self.open_style(Style::Emphasis),
            Tag::Strong => self.open_style(Style::Strong),
            Tag::Strikethrough => self.open_style(Style::Strikethrough),
            Tag::Superscript | Tag::Subscript => {}
            Tag::Link {
                link_type,
                dest_url,
                ..
            }
            | Tag::Image {
                link_type,
                dest_url,
                ..
            } => self.open_link(link_url(link_type, &dest_url)),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph
            | TagEnd::HtmlBlock
            | TagEnd::MetadataBlock(_)
            | TagEnd::FootnoteDefinition
            | TagEnd::DefinitionList
            | TagEnd::DefinitionListTitle
            | TagEnd::DefinitionListDefinition
            | TagEnd::Table
            | TagEnd::TableHead
            | TagEnd::TableRow
            | TagEnd::TableCell
            | TagEnd::Superscript
            | TagEnd::Subscript => {}
            TagEnd::Heading(_) => self.close_style(Style::Strong),
            TagEnd::BlockQuote(_) => {
                self.prefixes.pop();
                if self.dialect == TextDialect::TelegramHtml {
                    // An empty quote is left out rather than sent as empty tags.
                    match self.out.strip_suffix("<blockquote>") {
                        Some(rest) => self.out.truncate(rest.len()),
                        None => self.write("</blockquote>"),
                    }
                }
                self.glue = false;
            }
            TagEnd::CodeBlock => {
                if let Some(block) = self.code_block.take() {
                    self.write_code_block(block);
                }
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::Item => {
                self.prefixes.pop();
                self.glue = false;
            }
            TagEnd::Emphasis => self.close_style(Style::Emphasis),
            TagEnd::Strong => self.close_style(Style::Strong),
            TagEnd::Strikethrough => self.close_style(Style::Strikethrough),
            TagEnd::Link | TagEnd::Image => self.close_link(),
        }
    }

    fn line_prefix(&self) -> String {
        let mut prefix = String::new();
        let quote = match self.dialect {
            TextDialect::Plain => "> ",
            TextDialect::TelegramHtml => "",
            TextDialect::TelegramMarkdownV2 => ">",
            TextDialect::SlackMrkdwn => "> ",
        };
        match self.dialect {
            TextDialect::Plain | TextDialect::TelegramHtml => {
                for item in &self.prefixes {
                    match item {
                        Prefix::Quote => prefix.push_str(quote),
                        Prefix::Indent(width) => prefix.extend(std::iter::repeat_n(' ', *width)),
                    }
                }
            }
            // These dialects have one level of quote, marked only at the very start of a
            // line: a `>` anywhere else is text (and, in MarkdownV2, a rejected one).
            TextDialect::TelegramMarkdownV2 | TextDialect::SlackMrkdwn => {
                if self
                    .prefixes
                    .iter()
                    .any(|item| matches!(item, Prefix::Quote))
                {
                    prefix.push_str(quote);
                }
                for item in &self.prefixes {
                    if let Prefix::Indent(width) = item {
                        prefix.extend(std::iter::repeat_n(' ', *width));
                    }
                }
            }
        }
        prefix
    }

    /// Writes the line prefix if nothing is on the current line yet.
    fn begin_line_content(&mut self) {
        if self.at_line_start {
            let prefix = self.line_prefix();
            self.out.push_str(&prefix);
            self.at_line_start = false;
        }
    }

    /// Writes already escaped text or markup, prefixing each new line.
    fn write(&mut self, text: &str) {
        for (index, line) in text.split('\n').enumerate() {
            if index > 0 {
                self.newline();
            }
            if !line.is_empty() {
                self.begin_line_content();
                self.out.push_str(line);
                self.after_underscore = false;
                self.glue = false;
            }
        }
    }

    fn newline(&mut self) {
        if self.at_line_start {
            let prefix = self.line_prefix();
            self.out.push_str(prefix.trim_end());
        }
        self.out.push('\n');
        self.at_line_start = true;
        self.after_underscore = false;
    }

    fn text(&mut self, text: &str) {
        let escaped = self.dialect.escape_text(text);
        self.write(&escaped);
    }

    /// Ends the current line, so a list item or table row starts on its own.
    fn start_line(&mut self) {
        if std::mem::take(&mut self.glue) || self.out.is_empty() {
            return;
        }
        if !self.at_line_start {
            self.newline();
        }
    }

    /// Leaves a blank line before a new block.
    fn start_block(&mut self) {
        if std::mem::take(&mut self.glue) || self.out.is_empty() {
            return;
        }
        if !self.at_line_start {
            self.newline();
        }
        self.newline();
    }

    fn start_item(&mut self) {
        self.start_line();
        let bullet = match self.lists.last_mut() {
            Some(Some(number)) => {
                let bullet = format!("{number}. ");
                *number = number.saturating_add(1);
                bullet
            }
            Some(None) | None => self.dialect.bullet().to_owned(),
        };
        self.text(&bullet);
        self.prefixes.push(Prefix::Indent(bullet.chars().count()));
        self.glue = true;
    }

    /// Slack shows a link's label as it is, so markers inside one would be literal asterisks.
    fn markers_suppressed(&self) -> bool {
        self.dialect == TextDialect::SlackMrkdwn && self.links.iter().any(|link| link.active)
    }

    fn open_style(&mut self, style: Style) {
        self.styles[style as usize] += 1;
        if self.styles[style as usize] == 1 && !self.markers_suppressed() {
            self.marker(style, true);
        }
    }

    fn close_style(&mut self, style: Style) {
        let depth = &mut self.styles[style as usize];
        *depth = depth.saturating_sub(1);
        if *depth == 0 && !self.markers_suppressed() {
            self.marker(style, false);
        }
    }

    fn marker(&mut self, style: Style, open: bool) {
        let marker = self.dialect.markers(style)[usize::from(!open)];
        let underscore = self.dialect == TextDialect::TelegramMarkdownV2 && marker == "_";
        if underscore && self.after_underscore {
            self.out.push('\r');
        }
        self.write(marker);
        self.after_underscore = underscore;
    }

    fn inline_code(&mut self, code: &str) {
        let escaped = self.dialect.escape_code(code);
        let rendered = match self.dialect {
            TextDialect::Plain => escaped,
            TextDialect::TelegramHtml => format!("<code>{escaped}</code>"),
            TextDialect::TelegramMarkdownV2 | TextDialect::SlackMrkdwn => format!("`{escaped}`"),
        };
        self.write(&rendered);
    }

    fn write_code_block(&mut self, block: CodeBlock) {
        self.start_block();
        let code = block.code.strip_suffix('\n').unwrap_or(&block.code);
        let escaped = self.dialect.escape_code(code);
        let rendered = match (self.dialect, block.language) {
            // Plain text keeps the container's indentation, so the code reads in place.
            (TextDialect::Plain, _) => return self.write(&escaped),
            (TextDialect::TelegramHtml, Some(language)) => format!(
                "<pre><code class=\"language-{}\">{escaped}</code></pre>",
                escape_html(&language, true)
            ),
            (TextDialect::TelegramHtml, None) => format!("<pre>{escaped}</pre>"),
            (TextDialect::TelegramMarkdownV2, language) => {
                format!("```{}\n{escaped}\n```", language.unwrap_or_default())
            }
            (TextDialect::SlackMrkdwn, _) => format!("```\n{escaped}\n```"),
        };
        // Preformatted text is written without line prefixes, which would become part of
        // the code.
        self.at_line_start = false;
        self.out.push_str(&rendered);
        self.after_underscore = false;
        self.glue = false;
    }

    fn open_link(&mut self, url: String) {
        let active = !self.links.iter().any(|link| link.active)
            && (self.dialect == TextDialect::Plain || is_safe_url(&url));
        self.begin_line_content();
        if active {
            match self.dialect {
                TextDialect::Plain => {}
                TextDialect::TelegramHtml => {
                    self.write(&format!("<a href=\"{}\">", escape_html(&url, true)));
                }
                TextDialect::TelegramMarkdownV2 => self.write("["),
                TextDialect::SlackMrkdwn => {
                    // `|` ends a Slack URL, so it is percent-encoded.
                    let url = escape_html(&url, false).replace('|', "%7C");
                    self.write(&format!("<{url}|"));
                }
            }
        }
        let text_start = self.out.len();
        self.links.push(OpenLink {
            url,
            active,
            text_start,
        });
    }

    fn close_link(&mut self) {
        let Some(link) = self.links.pop() else {
            return;
        };
        if !link.active {
            return;
        }
        if self.out.len() == link.text_start {
            self.text(&link.url);
        }
        let close = match self.dialect {
            TextDialect::Plain => {
                let text = self.out.get(link.text_start..).unwrap_or_default();
                let same = text == link.url || link.url.strip_prefix("mailto:") == Some(text);
                if same {
                    String::new()
                } else {
                    format!(" ({})", link.url)
                }
            }
            TextDialect::TelegramHtml => "</a>".to_owned(),
            TextDialect::TelegramMarkdownV2 => {
                format!("]({})", backslash_escape(&link.url, ")\\"))
            }
            TextDialect::SlackMrkdwn => ">".to_owned(),
        };
        self.write(&close);
    }
}

/// Safe HTML: pulldown-cmark's renderer, with raw HTML turned into text, links kept only for
/// safe URLs, images turned into links, and single line breaks kept as `<br />` as chats
/// show them.
fn html(markdown: &str) -> String {
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

/// Discord renders Markdown itself, so the source is kept as written except where it could
/// do harm: raw HTML gets its `<` escaped (Discord reads `<@id>`, `<#id>` and `<t:…>` as
/// mentions and widgets), and `@everyone` / `@here` outside code get a zero-width space so
/// they cannot ping a whole server. Code is left alone, as Discord never parses mentions in it.
fn discord(markdown: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts every row's input to `to` and reports all rows that differ.
    fn check(to: Markup, rows: &[(&str, &str)]) {
        let mut failures = Vec::new();
        for (input, expected) in rows {
            let actual = convert(input, to);
            if actual != *expected {
                failures.push(format!(
                    "input:    {input:?}\nexpected: {expected:?}\nactual:   {actual:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{to:?}: {} of {} rows differ:\n\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n\n")
        );
    }

    #[test]
    fn plain_drops_markup_and_keeps_text() {
        check(
            Markup::Plain,
            &[
                ("Hello *world*", "Hello world"),
                ("**bold**, _it_ and ~~gone~~", "bold, it and gone"),
                ("# Title\n\nBody", "Title\n\nBody"),
                ("Title\n===\nBody", "Title\n\nBody"),
                ("[site](https://example.com)", "site (https://example.com)"),
                ("<https://example.com>", "https://example.com"),
                ("<me@example.com>", "me@example.com"),
                ("[](https://example.com)", "https://example.com"),
                (
                    "![a cat](https://example.com/cat.png)",
                    "a cat (https://example.com/cat.png)",
                ),
                ("[x](javascript:alert(1))", "x (javascript:alert(1))"),
                ("- a\n- b", "- a\n- b"),
                ("* a\n+ b", "- a\n\n- b"),
                ("1. one\n2. two", "1. one\n2. two"),
                ("3. three\n4. four", "3. three\n4. four"),
                ("- a\n  - nested\n- b", "- a\n  - nested\n- b"),
                (
                    "- a\n\n  second paragraph\n- b",
                    "- a\n\n  second paragraph\n- b",
                ),
                ("```rust\nfn main() { *x* }\n```", "fn main() { *x* }"),
                ("- item\n\n  ```\n  code\n  ```", "- item\n\n  code"),
                ("    indented *code*", "indented *code*"),
                ("`a*b*`", "a*b*"),
                ("> quoted\n> more", "> quoted\n> more"),
                ("> a\n>\n> b", "> a\n>\n> b"),
                ("line one\nline two", "line one\nline two"),
                ("hard  \nbreak", "hard\nbreak"),
                ("<script>alert(1)</script>", "<script>alert(1)</script>"),
                ("a <b>bold</b> c", "a <b>bold</b> c"),
                ("a\\*b", "a*b"),
                ("&amp; &lt; &#65;", "& < A"),
                ("a\n\n***\n\nb", "a\n\n---\n\nb"),
                ("**unclosed", "**unclosed"),
                ("", ""),
                ("\n\n", ""),
            ],
        );
    }

    #[test]
    fn markdown_is_passed_through() {
        check(
            Markup::Markdown,
            &[
                ("**bold** <script>x</script>", "**bold** <script>x</script>"),
                ("  keeps\n\n\nspacing  ", "  keeps\n\n\nspacing  "),
            ],
        );
    }

    #[test]
    fn telegram_html_uses_only_allowed_tags_and_escapes_the_rest() {
        check(
            Markup::TelegramHtml,
            &[
                ("*a* **b** ~~c~~", "<i>a</i> <b>b</b> <s>c</s>"),
                ("***both***", "<i><b>both</b></i>"),
                ("**a **b** c**", "<b>a b c</b>"),
                ("# Title", "<b>Title</b>"),
                ("# **Bold** title\ntext", "<b>Bold title</b>\n\ntext"),
                ("a < b && c > d \"q\"", "a &lt; b &amp;&amp; c &gt; d \"q\""),
                (
                    "<script>alert(1)</script>",
                    "&lt;script&gt;alert(1)&lt;/script&gt;",
                ),
                (
                    "x <b>not bold</b> <i onclick=\"y\">",
                    "x &lt;b&gt;not bold&lt;/b&gt; &lt;i onclick=\"y\"&gt;",
                ),
                ("<!-- hidden -->", "&lt;!-- hidden --&gt;"),
                (
                    "[x](https://e.com/?a=1&b=\"2\")",
                    "<a href=\"https://e.com/?a=1&amp;b=&quot;2&quot;\">x</a>",
                ),
                ("[x](javascript:alert(1))", "x"),
                ("[x](JaVaScRiPt:alert(1))", "x"),
                ("[x](data:text/html,hi)", "x"),
                ("[x](/relative)", "x"),
                (
                    "[*em* link](http://e.com)",
                    "<a href=\"http://e.com\"><i>em</i> link</a>",
                ),
                ("<me@e.com>", "<a href=\"mailto:me@e.com\">me@e.com</a>"),
                (
                    "![cat](https://i.com/c.png)",
                    "<a href=\"https://i.com/c.png\">cat</a>",
                ),
                (
                    "![](https://i.com/c.png)",
                    "<a href=\"https://i.com/c.png\">https://i.com/c.png</a>",
                ),
                (
                    "[![img](https://i.com)](https://l.com)",
                    "<a href=\"https://l.com\">img</a>",
                ),
                ("`<b>&`", "<code>&lt;b&gt;&amp;</code>"),
                (
                    "```rust\nif a < b && c {}\n```",
                    "<pre><code class=\"language-rust\">if a &lt; b &amp;&amp; c {}</code></pre>",
                ),
                ("```\nplain\n```", "<pre>plain</pre>"),
                (
                    "```\"><script>\nx\n```",
                    "<pre><code class=\"language-script\">x</code></pre>",
                ),
                ("- a\n- b", "• a\n• b"),
                ("1. a\n1. b", "1. a\n2. b"),
                ("- a\n  1. x\n  2. y", "• a\n  1. x\n  2. y"),
                ("> quote", "<blockquote>quote</blockquote>"),
                ("> a\n>\n> b", "<blockquote>a\n\nb</blockquote>"),
                (">", ""),
                (
                    "before\n> quote\n\nafter",
                    "before\n\n<blockquote>quote</blockquote>\n\nafter",
                ),
                ("**unclosed <b", "**unclosed &lt;b"),
                ("a\nb", "a\nb"),
            ],
        );
    }

    #[test]
    fn telegram_markdown_v2_escapes_every_reserved_character() {
        check(
            Markup::TelegramMarkdownV2,
            &[
                ("Hello. World!", "Hello\\. World\\!"),
                (
                    "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\",
                    "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\",
                ),
                ("C:\\Users\\me", "C:\\\\Users\\\\me"),
                ("1 + 1 = 2 (really)", "1 \\+ 1 \\= 2 \\(really\\)"),
                ("*a* **b** ~~c~~", "_a_ *b* ~c~"),
                ("***a***", "_*a*_"),
                ("*a*_b_", "_a_\r_b_"),
                ("`a.b`", "`a.b`"),
                ("`` a`b ``", "`a\\`b`"),
                ("`a\\b`", "`a\\\\b`"),
                (
                    "```python\nprint(\"a.b\") # `x` \\n\n```",
                    "```python\nprint(\"a.b\") # \\`x\\` \\\\n\n```",
                ),
                ("```\n*not bold*\n```", "```\n*not bold*\n```"),
                (
                    "[a.b](https://e.com/a_(b))",
                    "[a\\.b](https://e.com/a_(b\\))",
                ),
                ("[x](https://e.com/\\\\)", "[x](https://e.com/\\\\)"),
                ("[x](javascript:alert(1))", "x"),
                (
                    "<https://e.com/a.b>",
                    "[https://e\\.com/a\\.b](https://e.com/a.b)",
                ),
                ("# Title!", "*Title\\!*"),
                ("- a\n- b", "• a\n• b"),
                ("1. a\n2. b", "1\\. a\n2\\. b"),
                ("> q.\n> r", ">q\\.\n>r"),
                ("- item\n\n  > quoted", "• item\n\n>  quoted"),
                ("<b>x</b>", "<b\\>x</b\\>"),
                ("**unclosed", "\\*\\*unclosed"),
                ("a_b_c", "a\\_b\\_c"),
            ],
        );
    }

    #[test]
    fn slack_mrkdwn_marks_links_and_escapes_control_characters() {
        check(
            Markup::SlackMrkdwn,
            &[
                ("*a* **b** ~~c~~", "_a_ *b* ~c~"),
                ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
                ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
                ("<@U123> <!channel> hi", "&lt;@U123&gt; &lt;!channel&gt; hi"),
                (
                    "[site](https://e.com/?a=1&b=2)",
                    "<https://e.com/?a=1&amp;b=2|site>",
                ),
                ("[a|b](https://e.com/x|y)", "<https://e.com/x%7Cy|a|b>"),
                (
                    "[**bold** link](https://e.com)",
                    "<https://e.com|bold link>",
                ),
                ("<https://e.com>", "<https://e.com|https://e.com>"),
                ("[x](javascript:alert(1))", "x"),
                ("# Head", "*Head*"),
                ("- a\n- b", "• a\n• b"),
                ("`a<b`", "`a&lt;b`"),
                ("```js\nif (a < b) {}\n```", "```\nif (a &lt; b) {}\n```"),
                ("> quote\n> two", "> quote\n> two"),
                ("**unclosed", "**unclosed"),
            ],
        );
    }

    #[test]
    fn discord_keeps_markdown_but_defuses_html_and_mass_mentions() {
        check(
            Markup::DiscordMarkdown,
            &[
                ("**bold** _it_ `code` ~~s~~", "**bold** _it_ `code` ~~s~~"),
                ("@everyone look", "@\u{200B}everyone look"),
                (
                    "@here and @Everyone.",
                    "@\u{200B}here and @\u{200B}Everyone.",
                ),
                ("@heretic @everyones", "@heretic @everyones"),
                ("`@everyone`", "`@everyone`"),
                ("```\n@here\n```", "```\n@here\n```"),
                ("<script>alert(1)</script>", "\\<script>alert(1)\\</script>"),
                ("a <b>x</b> c", "a \\<b>x\\</b> c"),
                ("<div>@here</div>", "\\<div>@\u{200B}here\\</div>"),
                ("[x](https://e.com)", "[x](https://e.com)"),
                ("<https://e.com>", "<https://e.com>"),
            ],
        );
    }

    #[test]
    fn html_is_rendered_safely() {
        check(
            Markup::Html,
            &[
                (
                    "*a* **b** ~~c~~",
                    "<p><em>a</em> <strong>b</strong> <del>c</del></p>\n",
                ),
                (
                    "<script>alert(1)</script>",
                    "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n",
                ),
                (
                    "a <img src=x onerror=alert(1)>",
                    "<p>a &lt;img src=x onerror=alert(1)&gt;</p>\n",
                ),
                ("[x](javascript:alert(1))", "<p>x</p>\n"),
                ("[x](vbscript:y)", "<p>x</p>\n"),
                (
                    "[x](https://e.com/?a=1&b=2)",
                    "<p><a href=\"https://e.com/?a=1&amp;b=2\">x</a></p>\n",
                ),
                (
                    "[x](https://e.com \"t\")",
                    "<p><a href=\"https://e.com\" title=\"t\">x</a></p>\n",
                ),
                (
                    "<me@e.com>",
                    "<p><a href=\"mailto:me@e.com\">me@e.com</a></p>\n",
                ),
                (
                    "![cat](https://i.com/c.png)",
                    "<p><a href=\"https://i.com/c.png\">cat</a></p>\n",
                ),
                (
                    "![](https://i.com/c.png)",
                    "<p><a href=\"https://i.com/c.png\">https://i.com/c.png</a></p>\n",
                ),
                ("![cat](javascript:x)", "<p>cat</p>\n"),
                (
                    "```rust\n<b>&\n```",
                    "<pre><code class=\"language-rust\">&lt;b&gt;&amp;\n</code></pre>\n",
                ),
                ("a\nb", "<p>a<br />\nb</p>\n"),
                (
                    "| a |\n|---|\n| 1 |",
                    "<table><thead><tr><th>a</th></tr></thead><tbody>\n<tr><td>1</td></tr>\n</tbody></table>\n",
                ),
            ],
        );
    }
}
