//! The line-based dialects (plain text, Telegram's HTML and MarkdownV2, Slack's mrkdwn):
//! one walker over pulldown-cmark's events, [`TextWriter`], told apart by a [`TextDialect`].

use super::{backslash_escape, code_language, escape_html, is_safe_url, link_url};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Every character MarkdownV2 reserves outside code, plus the backslash itself: Telegram
/// rejects a message with any of them unescaped, and reads `\x` as an escaped `x`.
const MARKDOWN_V2_SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";

/// The dialects written by [`TextWriter`]: text with line-oriented structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextDialect {
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
pub(super) struct TextWriter {
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
    pub(super) fn render(markdown: &str, dialect: TextDialect) -> String {
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
