//! Finding things in the workspace: `list_files` ([`ListFiles`], files matching a glob) and
//! `grep` ([`Grep`], lines matching a regular expression). Both walk the folder tree without
//! following symlinked folders, skip `.git`, and cap what they return.
//!
//! Globs ([`Glob`]) follow the usual rules: `*` and `?` stay within one path segment, `**`
//! spans segments, `[abc]` and `{a,b}` work; a pattern without `/` matches file names at any
//! depth (`*.md` finds every Markdown file).

use super::files::{io_error, is_binary};
use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, blocking, parse_arguments};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const LIST_FILES: &str = "list_files";
pub const GREP: &str = "grep";

/// Most folder entries one walk visits, so a huge tree cannot stall a call.
const MAX_VISITED: usize = 200_000;
/// Longest matching line `grep` shows, in characters.
const MAX_MATCH_CHARS: usize = 300;

/// Lists files matching a glob.
pub struct ListFiles;
/// Searches file contents with a regular expression.
pub struct Grep;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArguments {
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepArguments {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    ignore_case: bool,
}

impl Tool for ListFiles {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: LIST_FILES.into(),
            description: "List the files in your workspace /session/work (or a folder of it) \
                whose path matches a glob: `*` and `?` stay within a folder, `**` crosses \
                folders, `{a,b}` and `[abc]` work, and a pattern without `/` matches file names \
                at any depth (`*.md`). Paths come back relative to /session/work, sorted. \
                Symbolic links and .git are skipped."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "The glob (default: every file)."},
                    "path": {"type": "string", "description": "The folder to search, relative to /session/work (default: all of it)."}
                },
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: ListArguments = parse_arguments(LIST_FILES, arguments)?;
            let pattern = arguments.pattern.unwrap_or_else(|| "**".to_owned());
            let glob = Glob::new(LIST_FILES, &pattern)?;
            let base = context
                .workspace
                .resolve(arguments.path.as_deref().unwrap_or("."))?;
            let workspace = context.workspace.clone();
            let limits = context.tool_limits.clone();
            blocking(move || {
                let shown_base = workspace.display(&base);
                if !base.is_dir() {
                    return Err(ToolError::Refused(format!("{shown_base} is not a folder")));
                }
                let mut found = Vec::new();
                let mut n_more = 0usize;
                walk(&base, &mut |path, relative| {
                    if glob.matches(relative) {
                        if found.len() < limits.list_max_entries {
                            found.push(workspace.display(path));
                        } else {
                            n_more += 1;
                        }
                    }
                })?;
                if found.is_empty() {
                    return Ok(format!("no files under {shown_base} match {pattern:?}"));
                }
                let mut out = String::new();
                for path in &found {
                    if out.len() + path.len() + 1 > limits.output_bytes {
                        n_more += 1;
                        continue;
                    }
                    out.push_str(path);
                    out.push('\n');
                }
                if n_more > 0 {
                    out.push_str(&format!(
                        "({n_more} more not shown; narrow the pattern or the folder)\n"
                    ));
                }
                Ok(out)
            })
            .await
        })
    }
}

impl Tool for Grep {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: GREP.into(),
            description: "Search the files of your workspace /session/work for lines matching \
                a regular expression (Rust regex syntax). Returns `path:line: text` for each \
                match, at most 200. Narrow it with `path` (a file or folder) and `glob` (a \
                file pattern such as `*.py`). Binary files are skipped."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "The regular expression."},
                    "path": {"type": "string", "description": "A file or folder relative to /session/work (default: all of it)."},
                    "glob": {"type": "string", "description": "Only search files whose path matches this glob."},
                    "ignore_case": {"type": "boolean", "description": "Match regardless of case (default false).", "default": false}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: GrepArguments = parse_arguments(GREP, arguments)?;
            let regex = RegexBuilder::new(&arguments.pattern)
                .case_insensitive(arguments.ignore_case)
                .size_limit(1 << 20)
                .build()
                .map_err(|error| ToolError::BadArguments {
                    tool: GREP.to_owned(),
                    reason: format!("`pattern` is not a valid regular expression: {error}"),
                })?;
            let glob = arguments
                .glob
                .as_deref()
                .map(|pattern| Glob::new(GREP, pattern))
                .transpose()?;
            let target = context
                .workspace
                .resolve(arguments.path.as_deref().unwrap_or("."))?;
            let workspace = context.workspace.clone();
            let limits = context.tool_limits.clone();
            blocking(move || {
                let mut files = Vec::new();
                if target.is_dir() {
                    walk(&target, &mut |path, relative| {
                        if glob.as_ref().is_none_or(|glob| glob.matches(relative)) {
                            files.push(path.to_path_buf());
                        }
                    })?;
                } else {
                    files.push(target.clone());
                }
                let mut search = Search {
                    regex: &regex,
                    out: String::new(),
                    n_matches: 0,
                    max_matches: limits.grep_max_matches,
                    max_bytes: limits.output_bytes,
                    stopped: false,
                };
                for file in &files {
                    if search.stopped {
                        break;
                    }
                    let shown = workspace.display(file);
                    match read_searchable(file, limits.max_file_bytes) {
                        Ok(Some(text)) => search.file(&shown, &text),
                        Ok(None) => {}
                        Err(error) if files.len() == 1 => return Err(io_error(&shown, &error)),
                        Err(_) => {}
                    }
                }
                if search.n_matches == 0 {
                    return Ok(format!(
                        "no matches for {:?} in {}",
                        arguments.pattern,
                        workspace.display(&target)
                    ));
                }
                if search.stopped {
                    search.out.push_str(&format!(
                        "(stopped after {} matches; narrow the pattern, path or glob)\n",
                        search.n_matches
                    ));
                }
                Ok(search.out)
            })
            .await
        })
    }
}

/// The matches found so far and the caps that stop the search.
struct Search<'a> {
    regex: &'a Regex,
    out: String,
    n_matches: usize,
    max_matches: usize,
    max_bytes: usize,
    stopped: bool,
}

impl Search<'_> {
    fn file(&mut self, shown: &str, text: &str) {
        for (index, line) in text.lines().enumerate() {
            if !self.regex.is_match(line) {
                continue;
            }
            if self.n_matches >= self.max_matches {
                self.stopped = true;
                return;
            }
            let mut excerpt: String = line.chars().take(MAX_MATCH_CHARS).collect();
            if excerpt.len() < line.len() {
                excerpt.push_str(" [cut]");
            }
            let entry = format!("{shown}:{}: {excerpt}\n", index + 1);
            if self.out.len() + entry.len() > self.max_bytes {
                self.stopped = true;
                return;
            }
            self.out.push_str(&entry);
            self.n_matches += 1;
        }
    }
}

/// A file's text for searching: `None` for binary files and files over `max` bytes.
fn read_searchable(path: &Path, max: u64) -> std::io::Result<Option<String>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > max {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    if is_binary(&bytes) {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Calls `visit(path, relative)` for every regular file under `base` (relative uses `/`), in
/// sorted order, files of a folder before its subfolders. Symlinks are skipped (they could
/// lead out of the workspace), `.git` is not entered, unreadable folders are passed over.
fn walk(base: &Path, visit: &mut dyn FnMut(&Path, &str)) -> Result<(), ToolError> {
    let mut stack: Vec<(PathBuf, String)> = vec![(base.to_path_buf(), String::new())];
    let mut visited = 0usize;
    while let Some((folder, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        let mut subfolders = Vec::new();
        for entry in entries {
            visited += 1;
            if visited > MAX_VISITED {
                return Err(ToolError::Refused(format!(
                    "the folder holds more than {MAX_VISITED} entries; search a smaller folder"
                )));
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != ".git" {
                    subfolders.push((entry.path(), relative));
                }
            } else if kind.is_file() {
                visit(&entry.path(), &relative);
            }
        }
        // Reversed, so the stack yields folders in sorted order.
        stack.extend(subfolders.into_iter().rev());
    }
    Ok(())
}

/// A compiled glob pattern.
#[derive(Debug)]
pub struct Glob {
    regex: Regex,
    /// A pattern without `/` matches the file name alone.
    name_only: bool,
}

impl Glob {
    /// Compiles `pattern`; errors name `tool`, whose argument it was.
    pub fn new(tool: &'static str, pattern: &str) -> Result<Self, ToolError> {
        let bad = |reason: &str| ToolError::BadArguments {
            tool: tool.to_owned(),
            reason: format!("glob {pattern:?}: {reason}"),
        };
        let trimmed = pattern.trim().trim_start_matches("./");
        if trimmed.is_empty() {
            return Err(bad("is empty"));
        }
        let source = glob_to_regex(trimmed).map_err(|reason| bad(&reason))?;
        let regex = Regex::new(&source).map_err(|error| bad(&error.to_string()))?;
        Ok(Self {
            regex,
            name_only: !trimmed.contains('/'),
        })
    }

    /// True when `relative` (a `/`-separated path) matches.
    pub fn matches(&self, relative: &str) -> bool {
        if self.name_only {
            let name = relative.rsplit('/').next().unwrap_or(relative);
            self.regex.is_match(name)
        } else {
            self.regex.is_match(relative)
        }
    }
}

/// Translates a glob into an anchored regular expression.
fn glob_to_regex(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("^");
    let mut index = 0;
    let mut brace_depth = 0usize;
    while index < chars.len() {
        let c = chars[index];
        match c {
            '*' if chars.get(index + 1) == Some(&'*') => {
                index += 1;
                if chars.get(index + 1) == Some(&'/') {
                    index += 1;
                    out.push_str("(?:[^/]*/)*");
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let Some(length) = chars[index + 1..].iter().skip(1).position(|c| *c == ']') else {
                    return Err("has a `[` without its `]`".into());
                };
                let class: String = chars[index + 1..index + 2 + length].iter().collect();
                let class = class
                    .strip_prefix('!')
                    .map_or_else(|| class.clone(), |rest| format!("^{rest}"));
                out.push('[');
                out.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                out.push(']');
                index += length + 2;
            }
            '{' => {
                brace_depth += 1;
                out.push_str("(?:");
            }
            '}' if brace_depth > 0 => {
                brace_depth -= 1;
                out.push(')');
            }
            ',' if brace_depth > 0 => out.push('|'),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        index += 1;
    }
    if brace_depth > 0 {
        return Err("has a `{` without its `}`".into());
    }
    out.push('$');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use serde_json::json;

    #[test]
    fn glob_table() {
        let check = |pattern: &str, path: &str, expected: bool| {
            let glob = Glob::new(LIST_FILES, pattern).unwrap();
            assert_eq!(glob.matches(path), expected, "{pattern} vs {path}");
        };
        check("*.md", "README.md", true);
        check("*.md", "docs/guide.md", true);
        check("*.md", "docs/guide.mdx", false);
        check("docs/*.md", "docs/guide.md", true);
        check("docs/*.md", "docs/a/guide.md", false);
        check("docs/**/*.md", "docs/guide.md", true);
        check("docs/**/*.md", "docs/a/b/guide.md", true);
        check("**", "a/b/c", true);
        check("src/**", "src/a/b.rs", true);
        check("*.{rs,toml}", "Cargo.toml", true);
        check("*.{rs,toml}", "x.py", false);
        check("file?.txt", "file1.txt", true);
        check("file[0-9].txt", "file7.txt", true);
        check("file[!0-9].txt", "file7.txt", false);
        check("a+b(c).txt", "a+b(c).txt", true);
        check("./src/*.rs", "src/main.rs", true);
        for bad in ["{a,b", "[abc", " "] {
            assert!(Glob::new(LIST_FILES, bad).is_err(), "{bad}");
        }
    }

    async fn tree() -> Fixture {
        let fixture = Fixture::new().await;
        for (path, content) in [
            ("README.md", "# Title\nhello world\n"),
            ("src/main.rs", "fn main() {\n    println!(\"Hello\");\n}\n"),
            ("src/lib/util.rs", "pub fn hello() {}\n"),
            ("docs/guide.md", "say HELLO\n"),
            (".git/config", "hello from git\n"),
        ] {
            let file = fixture.work(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        std::fs::write(fixture.work("image.bin"), b"hello\0world").unwrap();
        let outside = fixture.dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("hello.md"), "hello").unwrap();
        std::os::unix::fs::symlink(&outside, fixture.work("linked")).unwrap();
        fixture
    }

    #[tokio::test]
    async fn list_files_table() {
        let mut fixture = tree().await;
        assert_eq!(
            fixture.ok(ListFiles, json!({})).await,
            "README.md\nimage.bin\ndocs/guide.md\nsrc/main.rs\nsrc/lib/util.rs\n"
        );
        assert_eq!(
            fixture.ok(ListFiles, json!({"pattern": "*.md"})).await,
            "README.md\ndocs/guide.md\n"
        );
        assert_eq!(
            fixture
                .ok(ListFiles, json!({"pattern": "*.rs", "path": "src/lib"}))
                .await,
            "src/lib/util.rs\n"
        );
        assert_eq!(
            fixture.ok(ListFiles, json!({"pattern": "*.py"})).await,
            "no files under . match \"*.py\""
        );
        let outside = fixture.error(ListFiles, json!({"path": ".."})).await;
        assert!(outside.contains("is outside the workspace"), "{outside}");
        let escape = fixture.error(ListFiles, json!({"path": "linked"})).await;
        assert!(escape.contains("symbolic link"), "{escape}");
        fixture.tool_limits.list_max_entries = 2;
        assert_eq!(
            fixture.ok(ListFiles, json!({})).await,
            "README.md\nimage.bin\n(3 more not shown; narrow the pattern or the folder)\n"
        );
    }

    #[tokio::test]
    async fn grep_table() {
        let mut fixture = tree().await;
        assert_eq!(
            fixture.ok(Grep, json!({"pattern": "hello"})).await,
            "README.md:2: hello world\nsrc/lib/util.rs:1: pub fn hello() {}\n"
        );
        assert_eq!(
            fixture
                .ok(
                    Grep,
                    json!({"pattern": "hello", "ignore_case": true, "glob": "*.md"})
                )
                .await,
            "README.md:2: hello world\ndocs/guide.md:1: say HELLO\n"
        );
        assert_eq!(
            fixture
                .ok(Grep, json!({"pattern": "Hel+o", "path": "src/main.rs"}))
                .await,
            "src/main.rs:2:     println!(\"Hello\");\n"
        );
        assert_eq!(
            fixture.ok(Grep, json!({"pattern": "absent"})).await,
            "no matches for \"absent\" in ."
        );
        let bad = fixture.error(Grep, json!({"pattern": "(unclosed"})).await;
        assert!(bad.contains("not a valid regular expression"), "{bad}");
        let missing = fixture
            .error(Grep, json!({"pattern": "x", "path": "nope.txt"}))
            .await;
        assert!(missing.contains("nope.txt does not exist"), "{missing}");
        fixture.tool_limits.grep_max_matches = 1;
        assert_eq!(
            fixture
                .ok(Grep, json!({"pattern": "hello", "ignore_case": true}))
                .await,
            "README.md:2: hello world\n(stopped after 1 matches; narrow the pattern, path or glob)\n"
        );
    }
}
