//! Each dialect, table-driven, with hostile rows.

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
