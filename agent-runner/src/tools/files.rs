//! The file tools of the workspace: `read_file` ([`ReadFile`], numbered lines with a line
//! range), `write_file` ([`WriteFile`], creates parent folders) and `edit_file`
//! ([`EditFile`], exact-string replacement that fails when the string is absent, or present
//! more than once without `replace_all`). Paths go through [`super::workspace::Workspace`];
//! the disk work runs on the blocking pool.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, blocking, parse_arguments};
use serde::Deserialize;
use std::path::Path;

pub const READ_FILE: &str = "read_file";
pub const WRITE_FILE: &str = "write_file";
pub const EDIT_FILE: &str = "edit_file";

/// Longest line `read_file` shows, in characters; longer lines are cut with a note.
const MAX_LINE_CHARS: usize = 2000;
/// How much of a file is checked for NUL bytes to call it binary.
const BINARY_SNIFF_BYTES: usize = 8192;

/// Reads a text file, or part of one.
pub struct ReadFile;
/// Writes a whole file.
pub struct WriteFile;
/// Replaces an exact string in a file.
pub struct EditFile;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArguments {
    path: String,
    #[serde(default)]
    start_line: Option<u64>,
    #[serde(default)]
    end_line: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArguments {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArguments {
    path: String,
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: bool,
}

impl Tool for ReadFile {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: READ_FILE.into(),
            description: "Read a text file from your workspace /session/work. Lines come \
                numbered (number, tab, text); the numbers are not part of the file. At most \
                2000 lines per call: use start_line and end_line to read a range or to go on \
                where the last call stopped."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "The file, relative to /session/work."},
                    "start_line": {"type": "integer", "minimum": 1, "description": "First line to read (1-based, default 1)."},
                    "end_line": {"type": "integer", "minimum": 1, "description": "Last line to read, inclusive."}
                },
                "required": ["path"],
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
            let arguments: ReadArguments = parse_arguments(READ_FILE, arguments)?;
            let path = context.workspace.resolve(&arguments.path)?;
            let shown = context.workspace.display(&path);
            let limits = context.tool_limits.clone();
            blocking(move || {
                let text = read_text(&path, &shown, limits.max_file_bytes)?;
                render_lines(
                    &text,
                    arguments.start_line,
                    arguments.end_line,
                    limits.read_max_lines,
                    limits.output_bytes,
                )
            })
            .await
        })
    }
}

impl Tool for WriteFile {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: WRITE_FILE.into(),
            description: "Write a text file in your workspace /session/work, replacing it if \
                it exists and creating missing parent folders. To change part of a file, \
                prefer edit_file."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "The file, relative to /session/work."},
                    "content": {"type": "string", "description": "The whole new content of the file."}
                },
                "required": ["path", "content"],
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
            let arguments: WriteArguments = parse_arguments(WRITE_FILE, arguments)?;
            let path = context.workspace.resolve(&arguments.path)?;
            let shown = context.workspace.display(&path);
            let max = context.tool_limits.max_file_bytes;
            let quota_mb = context.limits.config.disk_quota_mb;
            blocking(move || {
                let size = arguments.content.len();
                if u64::try_from(size).unwrap_or(u64::MAX) > max {
                    return Err(ToolError::Refused(format!(
                        "the content is {size} bytes; files are capped at {max} bytes"
                    )));
                }
                if path.is_dir() {
                    return Err(ToolError::Refused(format!("{shown} is a folder")));
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|error| io_error(&shown, &error))?;
                }
                std::fs::write(&path, arguments.content.as_bytes())
                    .map_err(|error| write_error(&shown, &error, quota_mb))?;
                Ok(format!("wrote {size} bytes to {shown}"))
            })
            .await
        })
    }
}

impl Tool for EditFile {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: EDIT_FILE.into(),
            description: "Replace an exact piece of text in a file of your workspace. \
                `old_string` must match the file exactly (whitespace included, without the \
                line numbers read_file shows) and occur exactly once, unless `replace_all` is \
                true. Include enough surrounding lines to make it unique."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "The file, relative to /session/work."},
                    "old_string": {"type": "string", "description": "The exact text to replace."},
                    "new_string": {"type": "string", "description": "The text to put in its place."},
                    "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false).", "default": false}
                },
                "required": ["path", "old_string", "new_string"],
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
            let arguments: EditArguments = parse_arguments(EDIT_FILE, arguments)?;
            let path = context.workspace.resolve(&arguments.path)?;
            let shown = context.workspace.display(&path);
            let max = context.tool_limits.max_file_bytes;
            let quota_mb = context.limits.config.disk_quota_mb;
            blocking(move || {
                let text = read_text(&path, &shown, max)?;
                let edited = edit(&text, &arguments, &shown)?;
                std::fs::write(&path, edited.text.as_bytes())
                    .map_err(|error| write_error(&shown, &error, quota_mb))?;
                Ok(format!(
                    "replaced {} occurrence{} in {shown}",
                    edited.count,
                    if edited.count == 1 { "" } else { "s" }
                ))
            })
            .await
        })
    }
}

struct Edited {
    text: String,
    count: usize,
}

/// The edit rule: refuses an empty, absent or (without `replace_all`) ambiguous
/// `old_string`, naming the lines where it occurs.
fn edit(text: &str, arguments: &EditArguments, shown: &str) -> Result<Edited, ToolError> {
    let old = arguments.old_string.as_str();
    if old.is_empty() {
        return Err(ToolError::Refused(
            "`old_string` is empty: to write a whole file use write_file".into(),
        ));
    }
    if old == arguments.new_string {
        return Err(ToolError::Refused(
            "`old_string` and `new_string` are the same: nothing to change".into(),
        ));
    }
    let lines: Vec<usize> = text
        .match_indices(old)
        .map(|(index, _)| text[..index].matches('\n').count() + 1)
        .collect();
    match lines.len() {
        0 => Err(ToolError::Refused(format!(
            "`old_string` was not found in {shown}; read the file again and copy the text exactly, whitespace included and without line numbers"
        ))),
        1 => Ok(Edited {
            text: text.replacen(old, &arguments.new_string, 1),
            count: 1,
        }),
        count if arguments.replace_all => Ok(Edited {
            text: text.replace(old, &arguments.new_string),
            count,
        }),
        count => {
            let shown_lines: Vec<String> = lines.iter().take(20).map(usize::to_string).collect();
            Err(ToolError::Refused(format!(
                "`old_string` occurs {count} times in {shown} (lines {}); include more surrounding text to make it unique, or set replace_all to true",
                shown_lines.join(", ")
            )))
        }
    }
}

/// Reads a file as text, refusing folders, missing files, binary files and files over `max`.
pub fn read_text(path: &Path, shown: &str, max: u64) -> Result<String, ToolError> {
    let metadata = std::fs::metadata(path).map_err(|error| io_error(shown, &error))?;
    if metadata.is_dir() {
        return Err(ToolError::Refused(format!(
            "{shown} is a folder: use list_files to see what is in it"
        )));
    }
    if metadata.len() > max {
        return Err(ToolError::Refused(format!(
            "{shown} is {} bytes, over the cap of {max}; use bash (head, tail, sed -n) to look at parts of it",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|error| io_error(shown, &error))?;
    if is_binary(&bytes) {
        return Err(ToolError::Refused(format!(
            "{shown} looks binary (it holds NUL bytes); use bash (od, hexdump) to inspect it"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// True when the start of the content holds a NUL byte.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0)
}

/// The lines `start..=end` numbered, within `max_lines` and `max_bytes`, with a note saying
/// where to go on when the file has more.
fn render_lines(
    text: &str,
    start_line: Option<u64>,
    end_line: Option<u64>,
    max_lines: usize,
    max_bytes: usize,
) -> Result<String, ToolError> {
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    if total == 0 {
        return Ok("(empty file)".into());
    }
    let start = usize::try_from(start_line.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
    if start > total {
        return Err(ToolError::Refused(format!(
            "start_line {start} is past the end: the file has {total} lines"
        )));
    }
    let requested_end = end_line.map_or(total, |end| usize::try_from(end).unwrap_or(usize::MAX));
    if requested_end < start {
        return Err(ToolError::Refused(format!(
            "end_line {requested_end} is before start_line {start}"
        )));
    }
    let end = requested_end
        .min(total)
        .min(start.saturating_add(max_lines.max(1) - 1));
    let mut out = String::new();
    let mut last = start - 1;
    for (index, line) in lines[start - 1..end].iter().enumerate() {
        let number = start + index;
        let mut shown: String = line.chars().take(MAX_LINE_CHARS).collect();
        if shown.len() < line.len() {
            shown.push_str(" [line cut]");
        }
        let entry = format!("{number:>6}\t{shown}\n");
        if out.len() + entry.len() > max_bytes && number > start {
            break;
        }
        out.push_str(&entry);
        last = number;
    }
    if last < total && last < requested_end {
        out.push_str(&format!(
            "(lines {start}-{last} of {total}; call read_file with start_line={} to read on)\n",
            last + 1
        ));
    }
    Ok(out)
}

/// A failed write in words the model can act on; a full disk names the session's quota.
fn write_error(shown: &str, error: &std::io::Error, quota_mb: u64) -> ToolError {
    let full = matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    );
    match (full, super::bash::quota_note(quota_mb)) {
        (true, Some(note)) => ToolError::Io(format!("{shown}: {error} {note}")),
        (true, None) | (false, _) => io_error(shown, error),
    }
}

/// An I/O error in words the model can act on, naming the path as it knows it.
pub fn io_error(shown: &str, error: &std::io::Error) -> ToolError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ToolError::Refused(format!(
            "{shown} does not exist; list_files shows what does"
        )),
        std::io::ErrorKind::PermissionDenied => {
            ToolError::Refused(format!("{shown}: permission denied"))
        }
        _ => ToolError::Io(format!("{shown}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use serde_json::json;

    #[tokio::test]
    async fn read_with_ranges_and_limits() {
        let mut fixture = Fixture::new().await;
        fixture.tool_limits.read_max_lines = 3;
        let text: String = (1..=10).map(|n| format!("line {n}\n")).collect();
        std::fs::write(fixture.work("ten.txt"), text).unwrap();
        assert_eq!(
            fixture.ok(ReadFile, json!({"path": "ten.txt"})).await,
            "     1\tline 1\n     2\tline 2\n     3\tline 3\n(lines 1-3 of 10; call read_file with start_line=4 to read on)\n"
        );
        assert_eq!(
            fixture
                .ok(ReadFile, json!({"path": "ten.txt", "start_line": 9}))
                .await,
            "     9\tline 9\n    10\tline 10\n"
        );
        assert_eq!(
            fixture
                .ok(
                    ReadFile,
                    json!({"path": "./ten.txt", "start_line": 5, "end_line": 5})
                )
                .await,
            "     5\tline 5\n"
        );
        let past = fixture
            .error(ReadFile, json!({"path": "ten.txt", "start_line": 11}))
            .await;
        assert_eq!(past, "start_line 11 is past the end: the file has 10 lines");
        let backwards = fixture
            .error(
                ReadFile,
                json!({"path": "ten.txt", "start_line": 5, "end_line": 2}),
            )
            .await;
        assert_eq!(backwards, "end_line 2 is before start_line 5");
    }

    #[tokio::test]
    async fn read_refusals() {
        let mut fixture = Fixture::new().await;
        std::fs::write(fixture.work("blob"), b"ab\0cd").unwrap();
        std::fs::create_dir(fixture.work("folder")).unwrap();
        std::fs::write(fixture.work("empty"), b"").unwrap();
        let check = |error: String, fragment: &str| {
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        };
        check(
            fixture.error(ReadFile, json!({"path": "blob"})).await,
            "blob looks binary",
        );
        check(
            fixture.error(ReadFile, json!({"path": "folder"})).await,
            "folder is a folder",
        );
        check(
            fixture
                .error(ReadFile, json!({"path": "missing.txt"}))
                .await,
            "missing.txt does not exist",
        );
        check(
            fixture
                .error(ReadFile, json!({"path": "/etc/passwd"}))
                .await,
            "is outside the workspace",
        );
        check(
            fixture
                .error(ReadFile, json!({"path": "../in/inbound.db"}))
                .await,
            "is outside the workspace",
        );
        check(
            fixture.error(ReadFile, json!({"file": "x"})).await,
            "unknown field `file`",
        );
        assert_eq!(
            fixture.ok(ReadFile, json!({"path": "empty"})).await,
            "(empty file)"
        );
        fixture.tool_limits.max_file_bytes = 3;
        check(
            fixture.error(ReadFile, json!({"path": "blob"})).await,
            "over the cap of 3",
        );
    }

    #[tokio::test]
    async fn write_creates_folders_and_stays_inside() {
        let mut fixture = Fixture::new().await;
        assert_eq!(
            fixture
                .ok(
                    WriteFile,
                    json!({"path": "notes/today/todo.md", "content": "- milk\n"})
                )
                .await,
            "wrote 7 bytes to notes/today/todo.md"
        );
        assert_eq!(
            std::fs::read_to_string(fixture.work("notes/today/todo.md")).unwrap(),
            "- milk\n"
        );
        let outside = fixture
            .error(
                WriteFile,
                json!({"path": "../out/transcript.jsonl", "content": "x"}),
            )
            .await;
        assert!(outside.contains("is outside the workspace"), "{outside}");
        assert!(!fixture.paths.transcript().exists());
        let folder = fixture
            .error(WriteFile, json!({"path": "notes", "content": "x"}))
            .await;
        assert_eq!(folder, "notes is a folder");
    }

    #[tokio::test]
    async fn edit_table() {
        let mut fixture = Fixture::new().await;
        let file = fixture.work("a.txt");
        let reset = || std::fs::write(&file, "one\ntwo\none\nthree\n").unwrap();
        reset();
        let check = |result: String, fragment: &str| {
            assert!(result.contains(fragment), "{result} lacks {fragment}");
        };
        check(
            fixture
                .ok(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "two", "new_string": "2"}),
                )
                .await,
            "replaced 1 occurrence in a.txt",
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "one\n2\none\nthree\n"
        );
        check(
            fixture
                .error(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "one", "new_string": "1"}),
                )
                .await,
            "occurs 2 times in a.txt (lines 1, 3); include more surrounding text",
        );
        check(
            fixture
                .ok(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "one", "new_string": "1", "replace_all": true}),
                )
                .await,
            "replaced 2 occurrences",
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n2\n1\nthree\n");
        reset();
        check(
            fixture
                .error(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "four", "new_string": "4"}),
                )
                .await,
            "`old_string` was not found in a.txt",
        );
        check(
            fixture
                .error(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "", "new_string": "4"}),
                )
                .await,
            "`old_string` is empty",
        );
        check(
            fixture
                .error(
                    EditFile,
                    json!({"path": "a.txt", "old_string": "two", "new_string": "two"}),
                )
                .await,
            "are the same",
        );
        check(
            fixture
                .error(
                    EditFile,
                    json!({"path": "nope.txt", "old_string": "a", "new_string": "b"}),
                )
                .await,
            "nope.txt does not exist",
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "one\ntwo\none\nthree\n",
            "failed edits change nothing"
        );
    }
}
