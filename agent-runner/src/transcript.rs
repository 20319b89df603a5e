//! The model transcript: a provider-neutral JSONL file at `out/transcript.jsonl`, one
//! [`Entry`] per line, appended after each step of a turn and loaded at start so a restarted
//! container resumes the conversation. Key types: [`Transcript`], [`Entry`], [`ToolCall`].
//!
//! A corrupt line (say, half-written when the container was killed) is skipped with a
//! warning. [`for_model`] repairs what a crash can leave behind (tool calls without results,
//! results without calls) before the entries are rendered for a provider.
//!
//! Compaction replaces the older entries with one [`Entry::Summary`], and `/clear` empties
//! the transcript; both rewrite the file atomically ([`Transcript::replace`]).

use crate::image::ImageRef;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a summary is introduced to the model.
pub const SUMMARY_HEADING: &str =
    "Summary of the earlier conversation (older messages were condensed to save space):";

/// What a result says when the runner stopped between a tool call and its result.
pub const INTERRUPTED_TOOL_RESULT: &str =
    "no result: the agent-runner stopped before this tool finished; it may or may not have run";

/// Errors reading or appending the transcript.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file could not be read or written. Retryable only if the disk problem goes away.
    #[error("transcript {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An entry could not be serialised. Not retryable (a bug).
    #[error("could not serialise a transcript entry: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A tool call requested by the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id, echoed back with the result.
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not yet validated.
    pub arguments: String,
}

/// One step of the conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// Inbound messages rendered for the model, and the seqs they came from.
    User {
        text: String,
        #[serde(default)]
        seqs: Vec<i64>,
        /// Images people sent with these messages (older transcripts have none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ImageRef>,
    },
    /// What the model answered: text and the tool calls it asked for.
    Assistant {
        #[serde(default)]
        text: String,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call.
    ToolResult {
        call_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
        /// Images the tool returned (a screenshot); older transcripts have none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ImageRef>,
    },
    /// Older turns condensed by the model into one note; shown to the model as a user
    /// message. `seqs` are the inbound rows the condensed turns held.
    Summary {
        text: String,
        #[serde(default)]
        seqs: Vec<i64>,
    },
}

impl Entry {
    /// The text a summary is shown to the model as.
    pub fn summary_text(text: &str) -> String {
        format!("{SUMMARY_HEADING}\n\n{text}")
    }

    /// The images this entry carries, oldest first.
    pub fn images(&self) -> &[ImageRef] {
        match self {
            Entry::User { images, .. } | Entry::ToolResult { images, .. } => images,
            Entry::Assistant { .. } | Entry::Summary { .. } => &[],
        }
    }
}

/// The transcript file and its entries in memory.
#[derive(Debug)]
pub struct Transcript {
    path: PathBuf,
    entries: Vec<Entry>,
    seqs: HashSet<i64>,
    /// The file ends in a partial line: the next append starts a new line first.
    needs_newline: bool,
}

impl Transcript {
    /// Loads the transcript at `path`; a missing file is an empty transcript.
    pub fn load(path: &Path) -> Result<Self, TranscriptError> {
        let io = |source| TranscriptError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut transcript = Self {
            path: path.to_owned(),
            entries: Vec::new(),
            seqs: HashSet::new(),
            needs_newline: !bytes.is_empty() && !bytes.ends_with(b"\n"),
        };
        for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => transcript.remember(entry),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    line = number + 1,
                    %error,
                    "skipping a corrupt transcript line"
                ),
            }
        }
        Ok(transcript)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// True when an inbound row with this seq is already in the transcript (a row retaken
    /// after a crash is not shown to the model twice).
    pub fn contains_seq(&self, seq: i64) -> bool {
        self.seqs.contains(&seq)
    }

    /// Appends one entry to the file, then to memory.
    pub fn append(&mut self, entry: Entry) -> Result<(), TranscriptError> {
        let mut line = Vec::new();
        if self.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, &entry)?;
        line.push(b'\n');
        let io = |source| TranscriptError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        // One write call per line, so a kill leaves at most one partial (skipped) line.
        file.write_all(&line).map_err(io)?;
        self.needs_newline = false;
        self.remember(entry);
        Ok(())
    }

    /// Replaces every entry (compaction, `/clear`): the new content is written to a file
    /// beside the transcript and renamed over it, so a crash leaves the old transcript or
    /// the new one, never a mix.
    pub fn replace(&mut self, entries: Vec<Entry>) -> Result<(), TranscriptError> {
        let mut bytes = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut bytes, entry)?;
            bytes.push(b'\n');
        }
        let temporary = self.path.with_extension("jsonl.tmp");
        let io = |source| TranscriptError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        self.entries.clear();
        self.seqs.clear();
        self.needs_newline = false;
        for entry in entries {
            self.remember(entry);
        }
        Ok(())
    }

    fn remember(&mut self, entry: Entry) {
        if let Entry::User { seqs, .. } | Entry::Summary { seqs, .. } = &entry {
            self.seqs.extend(seqs.iter().copied());
        }
        self.entries.push(entry);
    }
}

/// The entries as a provider will accept them: every tool call is followed by exactly one
/// result (a call whose result is missing gets [`INTERRUPTED_TOOL_RESULT`] as an error),
/// and results without a matching call are dropped.
pub fn for_model(entries: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(entries.len());
    let mut open_calls: VecDeque<String> = VecDeque::new();
    let close_all = |open_calls: &mut VecDeque<String>, out: &mut Vec<Entry>| {
        for call_id in open_calls.drain(..) {
            out.push(Entry::ToolResult {
                call_id,
                content: INTERRUPTED_TOOL_RESULT.to_owned(),
                is_error: true,
                images: Vec::new(),
            });
        }
    };
    for entry in entries {
        match entry {
            Entry::ToolResult { call_id, .. } => {
                if let Some(position) = open_calls.iter().position(|id| id == call_id) {
                    open_calls.remove(position);
                    out.push(entry.clone());
                }
            }
            Entry::User { .. } | Entry::Summary { .. } => {
                close_all(&mut open_calls, &mut out);
                out.push(entry.clone());
            }
            Entry::Assistant { tool_calls, .. } => {
                close_all(&mut open_calls, &mut out);
                open_calls.extend(tool_calls.iter().map(|call| call.id.clone()));
                out.push(entry.clone());
            }
        }
    }
    close_all(&mut open_calls, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str, seqs: &[i64]) -> Entry {
        Entry::User {
            text: text.into(),
            seqs: seqs.to_vec(),
            images: Vec::new(),
        }
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "send_message".into(),
            arguments: r#"{"text":"hi"}"#.into(),
        }
    }

    fn result(id: &str) -> Entry {
        Entry::ToolResult {
            call_id: id.into(),
            content: "ok".into(),
            is_error: false,
            images: Vec::new(),
        }
    }

    fn assistant(text: &str, calls: &[&str]) -> Entry {
        Entry::Assistant {
            text: text.into(),
            tool_calls: calls.iter().map(|id| call(id)).collect(),
        }
    }

    #[test]
    fn round_trip_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.jsonl");
        let entries = vec![
            user("[seq 2] ann: hi", &[2]),
            assistant("", &["c1"]),
            result("c1"),
            assistant("done", &[]),
        ];
        let mut transcript = Transcript::load(&path).unwrap();
        assert!(transcript.entries().is_empty());
        for entry in entries.clone() {
            transcript.append(entry).unwrap();
        }
        let resumed = Transcript::load(&path).unwrap();
        assert_eq!(resumed.entries(), entries.as_slice());
        assert!(resumed.contains_seq(2));
        assert!(!resumed.contains_seq(4));
    }

    /// Lines written before images existed still load, and entries without images are
    /// written exactly as before.
    #[test]
    fn entries_without_images_keep_their_old_shape() {
        let old = r#"{"type":"tool_result","call_id":"c1","content":"ok","is_error":false}"#;
        let entry: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(entry, result("c1"));
        assert_eq!(serde_json::to_string(&entry).unwrap(), old);
        let old_user = r#"{"type":"user","text":"hi","seqs":[2]}"#;
        let entry: Entry = serde_json::from_str(old_user).unwrap();
        assert_eq!(serde_json::to_string(&entry).unwrap(), old_user);
        let image = crate::image::ImageRef {
            file: "0190.png".into(),
            format: crate::image::ImageFormat::Png,
            width: 800,
            height: 600,
            name: ".previews/index-800x600.png".into(),
            bytes: 1234,
        };
        let with_image = Entry::ToolResult {
            call_id: "c2".into(),
            content: "saved".into(),
            is_error: false,
            images: vec![image.clone()],
        };
        let line = serde_json::to_string(&with_image).unwrap();
        assert!(line.contains(r#""format":"png""#), "{line}");
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), with_image);
        assert_eq!(with_image.images(), [image]);
    }

    #[test]
    fn corrupt_and_partial_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.jsonl");
        let good = serde_json::to_string(&user("a", &[2])).unwrap();
        // A garbage line, a good line, then a line cut off mid-write with no newline.
        std::fs::write(&path, format!("not json\n{good}\n{{\"type\":\"user\",\"te")).unwrap();
        let mut transcript = Transcript::load(&path).unwrap();
        assert_eq!(transcript.entries(), [user("a", &[2])]);
        // The next append must not be glued onto the partial line.
        transcript.append(user("b", &[4])).unwrap();
        let resumed = Transcript::load(&path).unwrap();
        assert_eq!(resumed.entries(), [user("a", &[2]), user("b", &[4])]);
    }

    #[test]
    fn replace_rewrites_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.jsonl");
        let mut transcript = Transcript::load(&path).unwrap();
        for entry in [user("a", &[2]), assistant("b", &[]), user("c", &[4])] {
            transcript.append(entry).unwrap();
        }
        let summary = Entry::Summary {
            text: "Ann said a.".into(),
            seqs: vec![2],
        };
        transcript
            .replace(vec![summary.clone(), user("c", &[4])])
            .unwrap();
        assert!(transcript.contains_seq(2) && transcript.contains_seq(4));
        let resumed = Transcript::load(&path).unwrap();
        assert_eq!(resumed.entries(), [summary, user("c", &[4])]);
        assert!(!dir.path().join("transcript.jsonl.tmp").exists());
        transcript.replace(Vec::new()).unwrap();
        assert!(Transcript::load(&path).unwrap().entries().is_empty());
        assert!(!transcript.contains_seq(4));
    }

    #[test]
    fn for_model_closes_dangling_calls_and_drops_orphans() {
        let entries = vec![
            user("q", &[2]),
            result("orphan"),
            assistant("", &["c1", "c2"]),
            result("c2"),
            user("next", &[4]),
            assistant("", &["c3"]),
        ];
        let interrupted = |id: &str| Entry::ToolResult {
            call_id: id.into(),
            content: INTERRUPTED_TOOL_RESULT.into(),
            is_error: true,
            images: Vec::new(),
        };
        assert_eq!(
            for_model(&entries),
            vec![
                user("q", &[2]),
                assistant("", &["c1", "c2"]),
                result("c2"),
                interrupted("c1"),
                user("next", &[4]),
                assistant("", &["c3"]),
                interrupted("c3"),
            ]
        );
    }
}
