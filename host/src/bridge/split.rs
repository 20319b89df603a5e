//! Cutting a long Markdown text into pieces a platform accepts, and rendering them.
//!
//! [`split`] cuts at the best boundary that fits: a paragraph break, else a line break, else a
//! sentence end, else a space, else anywhere. It never cuts inside a fenced code block unless
//! the block alone is too long; then the piece ends with a closing fence and the next piece
//! reopens the block with the same info string, so each piece renders on its own. Only
//! whitespace at the cuts is dropped; every other character of the input is in a piece.
//!
//! [`render_pieces`] splits and converts each piece to the platform's [`Markup`], cutting a
//! piece again where escaping made it too long.

use super::markup;
use crate::edge::Markup;
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};

/// The smallest piece length [`split`] works with: any less leaves a reopened code block no
/// room for its code.
pub const MIN_CHARS: usize = 16;

/// Cuts `markdown` into non-empty pieces of at most `max_chars` characters (not bytes),
/// `max_chars` being at least [`MIN_CHARS`].
pub fn split(markdown: &str, max_chars: usize) -> Vec<String> {
    pieces(markdown, max_chars.max(MIN_CHARS))
        .into_iter()
        .map(|piece| piece.text)
        .collect()
}

/// [`split`]s `markdown` and converts each piece to `markup`, so that every converted piece
/// has at most `max_chars` characters: a piece that escaping grew past it is split again with
/// a budget scaled down by how much it grew. Pieces that convert to nothing (a lone
/// link reference definition) are left out.
pub fn render_pieces(markdown: &str, markup: Markup, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(MIN_CHARS);
    let mut rendered = Vec::new();
    for piece in split(markdown, max_chars) {
        render_into(&piece, markup, max_chars, &mut rendered);
    }
    rendered
}

fn render_into(piece: &str, markup: Markup, max_chars: usize, rendered: &mut Vec<String>) {
    let converted = markup::convert(piece, markup);
    let converted_chars = converted.chars().count();
    let piece_chars = piece.chars().count();
    // A single character converts to a few at most (`&` to `&amp;`), well under
    // `MIN_CHARS`, so the second condition only stops a runaway, never a correct cut.
    if converted_chars <= max_chars || piece_chars <= 1 {
        if !converted.trim().is_empty() {
            rendered.push(converted);
        }
        return;
    }
    let scaled = piece_chars.saturating_mul(max_chars) / converted_chars;
    let budget = (scaled - scaled / 10).clamp(1, piece_chars - 1);
    for smaller in pieces(piece, budget) {
        render_into(&smaller.text, markup, max_chars, rendered);
    }
}

/// One piece, with how much of it [`split`] added to keep a cut code block whole.
#[derive(Debug)]
// The added lengths are what the tests take off to prove that no content was lost.
#[cfg_attr(not(test), allow(dead_code))]
struct Piece {
    text: String,
    /// Bytes at the start that reopen a code block (the fence line and its newline).
    added_head: usize,
    /// Bytes at the end that close a code block (a newline and the fence).
    added_tail: usize,
}

/// A fenced code block of the text being split, in byte offsets.
#[derive(Debug)]
struct Fence {
    /// The start of the opening fence's line: a cut may end just before it.
    start: usize,
    /// The first byte after the opening fence's line.
    content: usize,
    /// The start of the closing fence's line; `None` when the block runs to the end.
    close_line: Option<usize>,
    /// The end of the closing fence: a cut may start just after it.
    end: usize,
    /// The fence line that reopens the block in the next piece.
    reopen: String,
    /// The fence line that closes a cut piece.
    close: String,
}

impl Fence {
    /// Whether the block can be cut with fences at `budget`: its opening (or reopening) and
    /// closing lines must leave at least half of the budget for code. Otherwise (an absurd
    /// info string or fence, a tiny budget) the block is cut like plain text.
    fn can_cut(&self, text: &str, budget: usize) -> bool {
        let opening = text[self.start..self.content].chars().count();
        let head = opening.max(self.head().chars().count());
        (head + self.tail().chars().count()).saturating_mul(2) <= budget
    }

    fn head(&self) -> String {
        format!("{}\n", self.reopen)
    }

    fn tail(&self) -> String {
        format!("\n{}", self.close)
    }
}

/// The fenced code blocks of `text`, in order, as pulldown-cmark parses them (so fences in
/// quotes and list items count, and backticks in an indented block do not).
fn fences(text: &str) -> Vec<Fence> {
    let mut fences = Vec::new();
    for (event, range) in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH).into_offset_iter() {
        let Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) = event else {
            continue;
        };
        let start = text[..range.start].rfind('\n').map_or(0, |at| at + 1);
        // The container's prefix (`> `, or a list item's indentation) carried over to the
        // added fence lines, with list markers blanked so they do not start a new item.
        let prefix: String = text[start..range.start]
            .chars()
            .map(|c| {
                if c == '>' || c.is_whitespace() {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let opening = &text[range.start..];
        let fence_char = opening.chars().next().unwrap_or('`');
        let run_len = opening.len() - opening.trim_start_matches(fence_char).len();
        let run = &opening[..run_len];
        let content = opening
            .find('\n')
            .map_or(text.len(), |at| range.start + at + 1);
        let last_line = text[..range.end].rfind('\n').map_or(0, |at| at + 1);
        let closing = text[last_line..range.end]
            .trim_start_matches(|c: char| c == '>' || c.is_whitespace())
            .trim_end();
        let closed = last_line >= content
            && closing.starts_with(run)
            && closing.chars().all(|c| c == fence_char);
        fences.push(Fence {
            start,
            content,
            close_line: closed.then_some(last_line),
            end: range.end,
            reopen: format!("{prefix}{run}{}", info.trim()),
            close: format!("{prefix}{run}"),
        });
    }
    fences
}

/// The byte index `n` characters after `from`, or the end.
fn advance_chars(text: &str, from: usize, n: usize) -> usize {
    text[from..]
        .char_indices()
        .nth(n)
        .map_or(text.len(), |(at, _)| from + at)
}

fn skip_whitespace(text: &str, from: usize) -> usize {
    text.len() - text[from..].trim_start().len()
}

/// Cut priorities, best last.
#[derive(Clone, Copy)]
enum Cut {
    Space = 0,
    Sentence = 1,
    Line = 2,
    Paragraph = 3,
}

/// The best cut of the piece starting at `from` and ending at most at `limit`: the piece's end
/// and where the next piece starts. `None` when nothing but a hard cut is left.
fn best_cut(text: &str, from: usize, limit: usize, fences: &[Fence]) -> Option<(usize, usize)> {
    let mut best: [Option<usize>; 4] = [None; 4];
    let mut previous = '\0';
    let mut fence = 0;
    for (offset, c) in text[from..].char_indices() {
        let at = from + offset;
        if at > limit {
            break;
        }
        let last = std::mem::replace(&mut previous, c);
        if at == from {
            continue;
        }
        while fences.get(fence).is_some_and(|block| block.end <= at) {
            fence += 1;
        }
        if fences.get(fence).is_some_and(|block| block.start < at) {
            continue;
        }
        let cut = match c {
            '\n' => {
                let after = text[at + 1..].trim_start_matches([' ', '\t']);
                if after.starts_with('\n') {
                    Cut::Paragraph
                } else {
                    Cut::Line
                }
            }
            ' ' | '\t' if matches!(last, '.' | '!' | '?') => Cut::Sentence,
            ' ' | '\t' => Cut::Space,
            _ => continue,
        };
        if !text[from..at].trim().is_empty() {
            best[cut as usize] = Some(at);
        }
    }
    let end = best.iter().rev().find_map(|at| *at)?;
    Some((end, skip_whitespace(text, end)))
}

fn pieces(markdown: &str, budget: usize) -> Vec<Piece> {
    let budget = budget.max(1);
    let text = markdown.trim_end();
    let fences = fences(text);
    let mut pieces = Vec::new();
    // The first piece keeps its first line's indentation; it is only the blank lines before
    // that go.
    let mut from = text[..skip_whitespace(text, 0)]
        .rfind('\n')
        .map_or(0, |at| at + 1);
    // The code block the next piece continues, after a cut inside it.
    let mut inside: Option<&Fence> = None;
    while from < text.len() {
        let head = inside.map(Fence::head).unwrap_or_default();
        let room = budget.saturating_sub(head.chars().count());
        let limit = advance_chars(text, from, room);
        if limit == text.len() {
            push(&mut pieces, &head, text[from..].trim_end(), "");
            break;
        }
        if let Some((end, next)) = best_cut(text, from, limit, &fences) {
            push(&mut pieces, &head, text[from..end].trim_end(), "");
            from = next;
            inside = None;
            continue;
        }
        let fence = inside.or_else(|| {
            fences
                .iter()
                .find(|fence| fence.start <= from && from < fence.content)
        });
        match fence.filter(|fence| fence.can_cut(text, budget)) {
            Some(fence) => {
                let (end, next) = cut_code(text, from, budget, fence, inside.is_some());
                push(&mut pieces, &head, &text[from..end], &fence.tail());
                from = next;
                inside = Some(fence);
            }
            None => {
                // Nothing to cut at: cut anywhere, and give up reopening a code block.
                let end = limit.max(advance_chars(text, from, 1));
                push(&mut pieces, &head, &text[from..end], "");
                from = end;
                inside = None;
            }
        }
    }
    pieces
}

/// Where a piece starting at `from` inside (or at the opening of) `fence` ends, leaving room
/// for the fence lines: at the last line break that fits, else anywhere.
fn cut_code(
    text: &str,
    from: usize,
    budget: usize,
    fence: &Fence,
    reopened: bool,
) -> (usize, usize) {
    let head = if reopened {
        fence.head().chars().count()
    } else {
        0
    };
    let room = budget.saturating_sub(head + fence.tail().chars().count());
    // The piece holds code only: it ends before the closing fence's line.
    let code_end = fence
        .close_line
        .map_or(text.len(), |line| line.saturating_sub(1));
    let limit = advance_chars(text, from, room).min(code_end);
    // The piece takes at least the opening line, or one character of code.
    let first = if reopened {
        advance_chars(text, from, 1)
    } else {
        fence.content
    };
    let window_end = if text[limit..].starts_with('\n') {
        limit + 1
    } else {
        limit
    };
    match text
        .get(first..window_end)
        .and_then(|window| window.rfind('\n'))
    {
        Some(at) => (first + at, first + at + 1),
        None => {
            let end = limit.max(first);
            (end, end)
        }
    }
}

fn push(pieces: &mut Vec<Piece>, head: &str, body: &str, tail: &str) {
    let text = format!("{head}{body}{tail}");
    if text.trim().is_empty() {
        return;
    }
    pieces.push(Piece {
        text,
        added_head: head.len(),
        added_tail: tail.len(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks that `pieces` are what `split` may return for `input`: none empty, each within
    /// `max_chars`, and, with the fence lines it added taken off, the input again in order
    /// with only whitespace between them.
    fn assert_lossless(input: &str, max_chars: usize, pieces: &[Piece]) {
        let mut cursor = 0;
        for piece in pieces {
            assert!(!piece.text.trim().is_empty(), "empty piece in {pieces:?}");
            let chars = piece.text.chars().count();
            assert!(chars <= max_chars, "{chars} > {max_chars} chars: {piece:?}");
            let body = &piece.text[piece.added_head..piece.text.len() - piece.added_tail];
            let found = input[cursor..]
                .char_indices()
                .map(|(at, _)| cursor + at)
                .take_while(|at| input[cursor..*at].trim().is_empty())
                .find(|at| input[*at..].starts_with(body));
            let Some(at) = found else {
                panic!("piece {body:?} is not next in {:?}", &input[cursor..]);
            };
            cursor = at + body.len();
        }
        assert!(
            input[cursor..].trim().is_empty(),
            "lost {:?}",
            &input[cursor..]
        );
    }

    fn check(input: &str, max_chars: usize, expected: &[&str]) {
        let budget = max_chars.max(MIN_CHARS);
        let pieces = pieces(input, budget);
        assert_lossless(input, budget, &pieces);
        let texts: Vec<&str> = pieces.iter().map(|piece| piece.text.as_str()).collect();
        assert_eq!(texts, expected, "split({input:?}, {max_chars})");
    }

    #[test]
    fn cuts_at_the_best_boundary_that_fits() {
        let rows: &[(&str, usize, &[&str])] = &[
            ("hello", 100, &["hello"]),
            ("", 20, &[]),
            (" \n\n \t", 20, &[]),
            ("\n\n  indented start\n", 100, &["  indented start"]),
            // A paragraph break wins over a later line break.
            (
                "First para.\n\nSecond line\nthird line",
                30,
                &["First para.", "Second line\nthird line"],
            ),
            // A line break wins over a later sentence end.
            (
                "One. Two. Three\nfour five six",
                20,
                &["One. Two. Three", "four five six"],
            ),
            // A sentence end wins over a later space.
            (
                "One two. Three four five six",
                20,
                &["One two.", "Three four five six"],
            ),
            ("Really? Yes! Fine", 16, &["Really? Yes!", "Fine"]),
            (
                "alpha beta gamma delta epsilon",
                16,
                &["alpha beta gamma", "delta epsilon"],
            ),
            (
                "abcdefghijklmnopqrstuvwxyz",
                16,
                &["abcdefghijklmnop", "qrstuvwxyz"],
            ),
            // Characters, not bytes.
            ("éééééééééééééééééééé", 16, &["éééééééééééééééé", "éééé"]),
            // The budget is floored.
            (
                "abcdefghijklmnopqrstuvwxyz",
                3,
                &["abcdefghijklmnop", "qrstuvwxyz"],
            ),
            ("a.b.c.d.e.f.g.h.i.j k", 16, &["a.b.c.d.e.f.g.h.", "i.j k"]),
        ];
        for (input, max_chars, expected) in rows {
            check(input, *max_chars, expected);
        }
    }

    #[test]
    fn keeps_code_blocks_whole_and_reopens_those_too_long() {
        let rows: &[(&str, usize, &[&str])] = &[
            // The block fits with the text before it: the cut is after its closing fence.
            (
                "Intro.\n```\nab\ncd\n```\nOutro.",
                20,
                &["Intro.\n```\nab\ncd\n```", "Outro."],
            ),
            // It does not: the cut is before its opening fence, never inside.
            (
                "Intro.\n```\nab\ncd\n```\nOutro.",
                18,
                &["Intro.", "```\nab\ncd\n```", "Outro."],
            ),
            // Too long alone: cut at a line break, closed and reopened with its info string.
            (
                "```rust\nlet a = 1;\nlet b = 2;\nlet c = 3;\n```",
                33,
                &[
                    "```rust\nlet a = 1;\nlet b = 2;\n```",
                    "```rust\nlet c = 3;\n```",
                ],
            ),
            // A code line longer than the budget is cut anywhere, still fenced.
            (
                "~~~\nabcdefghijklmnopqrstuvwxyz0123\n~~~",
                24,
                &["~~~\nabcdefghijklmnop\n~~~", "~~~\nqrstuvwxyz0123\n~~~"],
            ),
            // An unclosed block runs to the end and is left unclosed there.
            (
                "```\none two\nthree four\nfive six",
                20,
                &["```\none two\n```", "```\nthree four\n```", "```\nfive six"],
            ),
            // A block in a quote keeps the quote's prefix on the added fences.
            (
                "> ```\n> 111111\n> 222222\n> ```",
                24,
                &["> ```\n> 111111\n> ```", "> ```\n> 222222\n> ```"],
            ),
            // A list item's marker is blanked on the added fences.
            (
                "- ```\n  111111\n  222222\n  ```",
                24,
                &["- ```\n  111111\n  ```", "  ```\n  222222\n  ```"],
            ),
            // Backticks in an indented code block are not a fence.
            (
                "    ```\n    aaaa bbbb\n    cccc",
                20,
                &["    ```", "aaaa bbbb\n    cccc"],
            ),
        ];
        for (input, max_chars, expected) in rows {
            check(input, *max_chars, expected);
        }
    }

    #[test]
    fn render_pieces_cuts_again_where_escaping_grows_the_text() {
        // 20 characters of `&` become 100 in Telegram's HTML.
        let input = "&&&&&&&&&&&&&&&&&&&&";
        let pieces = render_pieces(input, Markup::TelegramHtml, 40);
        assert_eq!(pieces.concat(), "&amp;".repeat(20));
        assert!(
            pieces.iter().all(|piece| piece.chars().count() <= 40),
            "{pieces:?}"
        );
        // Markdown passes through: the pieces are split's.
        let text = "one two three four five six seven eight nine ten";
        assert_eq!(render_pieces(text, Markup::Markdown, 20), split(text, 20));
        assert_eq!(
            render_pieces("**a** b", Markup::TelegramHtml, 100),
            ["<b>a</b> b"]
        );
        assert!(render_pieces("[x]: https://e.com", Markup::Plain, 100).is_empty());
    }

    #[test]
    fn every_single_character_renders_within_the_minimum() {
        // render_pieces relies on it to stop cutting.
        for byte in 1u8..128 {
            let piece = char::from(byte).to_string();
            for markup in ALL_MARKUPS {
                let rendered = markup::convert(&piece, markup);
                assert!(
                    rendered.chars().count() <= MIN_CHARS,
                    "{piece:?} as {markup:?}: {rendered:?}"
                );
            }
        }
    }

    const ALL_MARKUPS: [Markup; 7] = [
        Markup::Plain,
        Markup::Markdown,
        Markup::TelegramHtml,
        Markup::TelegramMarkdownV2,
        Markup::SlackMrkdwn,
        Markup::DiscordMarkdown,
        Markup::Html,
    ];

    /// Markdown-ish text: words, punctuation, breaks, fences, containers and characters that
    /// every dialect escapes.
    fn markdownish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            4 => "[a-zé]{1,12}",
            3 => Just(" ".to_owned()),
            2 => Just("\n".to_owned()),
            2 => Just("\n\n".to_owned()),
            1 => Just(". ".to_owned()),
            1 => Just("! ".to_owned()),
            1 => Just("\n```rust\n".to_owned()),
            1 => Just("\n```\n".to_owned()),
            1 => Just("\n~~~~\n".to_owned()),
            1 => Just("\n> ".to_owned()),
            1 => Just("\n- ".to_owned()),
            1 => Just("\n    ".to_owned()),
            1 => "[*_`<>&#\\\\\\[\\]()|.!~-]{1,4}",
            1 => "[a-z]{30,80}",
        ];
        prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #[test]
        fn split_pieces_fit_and_lose_nothing(input in markdownish(), max_chars in 1usize..120) {
            let budget = max_chars.max(MIN_CHARS);
            let pieces = pieces(&input, budget);
            assert_lossless(&input, budget, &pieces);
        }

        #[test]
        fn rendered_pieces_fit(input in markdownish(), max_chars in 1usize..120) {
            for markup in ALL_MARKUPS {
                for piece in render_pieces(&input, markup, max_chars) {
                    let chars = piece.chars().count();
                    prop_assert!(!piece.trim().is_empty());
                    prop_assert!(chars <= max_chars.max(MIN_CHARS), "{markup:?}: {chars} chars: {piece:?}");
                }
            }
        }

        #[test]
        fn rendered_plain_pieces_keep_every_word(input in markdownish(), max_chars in 1usize..120) {
            // Plain text drops markup but no letter. Without links (whose text and URL are
            // one when equal) and code (a code block too long for fences at a tiny budget is
            // cut like text, and a cut can then start with what reads as a fence and an info
            // string); fences are proven lossless at the split above.
            let letters = |text: &str| -> String {
                text.chars().filter(|c| c.is_alphanumeric()).collect()
            };
            let input = input.replace(['[', '`', '~'], "");
            let rendered = render_pieces(&input, Markup::Plain, max_chars).concat();
            prop_assert_eq!(letters(&rendered), letters(&input));
        }
    }
}
