//! The names the model sees for MCP tools: `<server>__<tool>`, with every character outside
//! `[A-Za-z0-9_-]` replaced by `_` and cut to 64 characters (OpenAI's rule for function
//! names; Anthropic's is the same set). [`NameTable`] hands out names in a fixed order
//! (servers by name, then each server's tools in the order it lists them) and refuses a name
//! already taken — by a built-in tool or an earlier MCP tool, e.g. `a.b` and `a_b`, or two
//! long names cut to the same prefix — so the later tool is left out and reported, never
//! silently shadowing another.

use std::collections::HashSet;

/// The longest tool name both providers accept.
pub const MAX_TOOL_NAME: usize = 64;
/// Between the server's name and the tool's.
pub const SEPARATOR: &str = "__";

/// `<server>__<tool>`, sanitised and cut to [`MAX_TOOL_NAME`].
pub fn tool_name(server: &str, tool: &str) -> String {
    let mut name: String = format!("{server}{SEPARATOR}{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Only ASCII is left, so any byte index is a character boundary.
    name.truncate(MAX_TOOL_NAME);
    name
}

/// The names given out so far.
pub struct NameTable {
    taken: HashSet<String>,
}

impl NameTable {
    /// A table where `reserved` (the built-in tools) are already taken.
    pub fn new<'a>(reserved: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            taken: reserved.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The name for `server`'s `tool`, or `Err(name)` when that name is already taken.
    pub fn claim(&mut self, server: &str, tool: &str) -> Result<String, String> {
        let name = tool_name(server, tool);
        if self.taken.insert(name.clone()) {
            Ok(name)
        } else {
            Err(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let long = "x".repeat(80);
        let cases: &[(&str, &str, &str)] = &[
            ("notes", "add", "notes__add"),
            ("docs", "fetch_page", "docs__fetch_page"),
            ("docs", "fetch.page", "docs__fetch_page"),
            ("d-1", "a b/c:d", "d-1__a_b_c_d"),
            ("s", "café", "s__caf_"),
            ("s", "", "s__"),
        ];
        for (server, tool, want) in cases {
            assert_eq!(tool_name(server, tool), *want, "{server} {tool}");
        }
        let cut = tool_name("srv", &long);
        assert_eq!(cut.len(), MAX_TOOL_NAME);
        assert!(cut.starts_with("srv__xxx"));
        // Multi-byte characters become one `_` each, so the cut never splits one.
        assert_eq!(tool_name("s", &"é".repeat(100)).len(), MAX_TOOL_NAME);
    }

    #[test]
    fn collisions_keep_the_first_and_report_the_later() {
        let mut table = NameTable::new(["bash", "send_message"]);
        assert_eq!(table.claim("a", "b.c"), Ok("a__b_c".into()));
        assert_eq!(table.claim("a", "b_c"), Err("a__b_c".into()));
        let long = "y".repeat(70);
        assert!(table.claim("a", &format!("{long}1")).is_ok());
        assert!(table.claim("a", &format!("{long}2")).is_err());
        // A built-in name cannot be produced (the separator is in every MCP name), but the
        // reserved set is checked all the same.
        let mut table = NameTable::new(["x__y"]);
        assert_eq!(table.claim("x", "y"), Err("x__y".into()));
    }
}
