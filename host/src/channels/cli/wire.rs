//! The `cli.sock` wire format: [`ClientLine`] (client to host), [`ServerLine`] (host to
//! client), one JSON object per line, and the bounded reading of those lines:
//! [`LineReader`] never holds more than [`MAX_LINE_BYTES`] of one line, and
//! [`parse_client_line`] is the one parser the server uses (and the fuzz target calls).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest line a client may send, newline excluded. Far above any real message (a
/// chat message is a few KiB), far below what would hurt the host.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The one chat of the terminal.
pub const PLATFORM_ID: &str = "local";

/// A line from `crabpot chat` (or a script playing a platform).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientLine {
    Message {
        text: String,
        /// The sender's handle; the sender id is `cli:<user>`.
        user: String,
        /// The chat's platform id (default `local`, the terminal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
        /// A group chat (default: a direct chat).
        #[serde(default, skip_serializing_if = "is_false")]
        is_group: bool,
        /// Whether the message mentions the agent (default: true).
        #[serde(default = "default_true")]
        is_mention: bool,
        /// The platform's id for this message (default: a fresh one); a repeat is stored once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// The answer to a question an agent asked in this chat: an option's number, an option's
    /// text, or a free answer.
    Answer {
        /// The question's id from its `reply` line; absent = the chat's newest open question.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<String>,
        answer: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
    },
    /// Receive the replies of a chat (every thread of it) on this connection, or with
    /// `all_chats` the replies of every chat of channel `cli` (a script playing a whole
    /// platform). Answered by `subscribed`.
    Subscribe {
        /// The chat's platform id (default `local`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        all_chats: bool,
    },
}

fn default_true() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A line to `crabpot chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerLine {
    Accepted {
        /// Rows that wake an agent: each gets a `turn_complete`.
        message_ids: Vec<String>,
        /// Rows stored as context only (they ride along with the agent's next turn).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        context_ids: Vec<String>,
        /// Approvals holding the message.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held: Vec<String>,
        /// The answer to an approval decision typed in a DM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<String>,
    },
    Reply {
        /// The outbound row's id (or the host message's): the same reply sent again, after a
        /// host restart for example, has the same id, so a client can drop the repeat.
        /// Empty from a host that predates it.
        #[serde(default)]
        id: String,
        seq: i64,
        text: String,
        files: Vec<String>,
        #[serde(default = "default_platform_id")]
        platform_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
        /// Set on a question: answer it with an `answer` line naming this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<String>,
        /// A question's options, in order (answer with a number from 1).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        /// Set when this reply takes the place of the `draft` lines with this key: the
        /// client shows the reply instead of the draft, not after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces_draft: Option<String>,
    },
    /// The text so far of a reply being written. Later drafts with the same `key` replace
    /// it; `appended` is what was added since the last one when the text only grew. An
    /// empty `text` removes the draft (the turn ended without that reply).
    Draft {
        key: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        appended: Option<String>,
        #[serde(default = "default_platform_id")]
        platform_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
    },
    /// The agent is working on a reply in this chat (`on`), or no longer.
    Typing {
        on: bool,
        #[serde(default = "default_platform_id")]
        platform_id: String,
    },
    TurnComplete {
        message_id: String,
        #[serde(default = "default_platform_id")]
        platform_id: String,
    },
    /// The answer to `subscribe`: this connection now receives the replies of that chat
    /// (`platform_id`), or of every chat (`all_chats`).
    Subscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform_id: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        all_chats: bool,
    },
    Error {
        message: String,
    },
}

fn default_platform_id() -> String {
    PLATFORM_ID.to_owned()
}

/// Why a client line was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CliLineError {
    /// A blank line: skipped without an answer. Not an error to report.
    #[error("the line is empty")]
    Empty,
    /// The line is longer than the cap; the connection is closed after saying so. Not
    /// retryable as is.
    #[error("the line is longer than the limit of {max} bytes")]
    TooLong { max: usize },
    /// Not a JSON object of a known `type` with its fields. Not retryable as is.
    #[error("not a valid cli message: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Parses one line from a client (without its newline). The server calls exactly this.
pub fn parse_client_line(line: &[u8]) -> Result<ClientLine, CliLineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(CliLineError::TooLong {
            max: MAX_LINE_BYTES,
        });
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(CliLineError::Empty);
    }
    Ok(serde_json::from_slice(line)?)
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A line is in [`LineReader::line`].
    Line,
    /// The client closed the connection.
    End,
    /// The line grew past the cap before its newline; what was read of it is dropped.
    TooLong,
}

/// Reads newline-terminated lines, holding at most `max` bytes of one line (plus the read
/// buffer): a client that sends gigabytes without a newline costs the host `max` bytes.
pub struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader: BufReader::new(reader),
            line: Vec::new(),
            max,
        }
    }

    /// The line [`LineReader::next_line`] last found, without its newline.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Reads the next line. Cancel-safe only between lines: the server never cancels it
    /// except to close the connection.
    pub async fn next_line(&mut self) -> std::io::Result<LineRead> {
        self.line.clear();
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                // A last line without its newline still counts.
                return Ok(if self.line.is_empty() {
                    LineRead::End
                } else {
                    LineRead::Line
                });
            }
            let (taken, complete) = match available.iter().position(|&byte| byte == b'\n') {
                Some(newline) => (newline, true),
                None => (available.len(), false),
            };
            if self.line.len() + taken > self.max {
                self.line = Vec::new();
                return Ok(LineRead::TooLong);
            }
            // Grow by doubling, but never past the cap: the buffer's capacity stays within it.
            let needed = self.line.len() + taken;
            if needed > self.line.capacity() {
                let grown = needed.max(self.line.capacity() * 2).min(self.max);
                self.line.reserve_exact(grown - self.line.len());
            }
            self.line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken + usize::from(complete));
            if complete {
                return Ok(LineRead::Line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn parse_client_line_takes_every_kind() {
        fn check(line: &str, expected: Result<ClientLine, &str>) {
            let parsed = parse_client_line(line.as_bytes()).map_err(|e| e.to_string());
            match expected {
                Ok(expected) => assert_eq!(parsed.unwrap(), expected, "{line}"),
                Err(fragment) => {
                    let error = parsed.unwrap_err();
                    assert!(error.contains(fragment), "{line}: {error}");
                }
            }
        }
        check(
            r#"{"type":"subscribe","chat":"room","thread":null}"#,
            Ok(ClientLine::Subscribe {
                chat: Some("room".into()),
                all_chats: false,
            }),
        );
        check(
            r#"{"type":"subscribe","all_chats":true}"#,
            Ok(ClientLine::Subscribe {
                chat: None,
                all_chats: true,
            }),
        );
        check(
            r#"{"type":"message","text":"hi","user":"ann"}"#,
            Ok(ClientLine::Message {
                text: "hi".into(),
                user: "ann".into(),
                chat: None,
                thread: None,
                is_group: false,
                is_mention: true,
                message_id: None,
            }),
        );
        check("   ", Err("empty"));
        check(r#"{"type":"shout"}"#, Err("not a valid cli message"));
        check("\u{0}\u{1}", Err("not a valid cli message"));
        let long = format!(
            r#"{{"type":"message","user":"a","text":"{}"}}"#,
            "x".repeat(MAX_LINE_BYTES)
        );
        check(&long, Err("limit of 1048576 bytes"));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let error = parse_client_line(b"{\"type\":\"message\",\"text\":\"\xff\"}").unwrap_err();
        assert!(matches!(error, CliLineError::Invalid(_)), "{error:?}");
    }

    #[tokio::test]
    async fn lines_are_read_up_to_the_cap() {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // The reader stops at the long line, so the last writes may fail: that is fine.
            let _ = client.write_all(b"first\nsecond").await;
            let _ = client.write_all(b" part\n").await;
            let _ = client.write_all(&[b'x'; 100]).await;
            let _ = client.write_all(b"\nlast").await;
        });
        let mut reader = LineReader::new(server, 50);
        assert_eq!(reader.next_line().await.unwrap(), LineRead::Line);
        assert_eq!(reader.line(), b"first");
        assert_eq!(reader.next_line().await.unwrap(), LineRead::Line);
        assert_eq!(reader.line(), b"second part");
        assert!(reader.line.capacity() <= 50, "{}", reader.line.capacity());
        assert_eq!(reader.next_line().await.unwrap(), LineRead::TooLong);
        drop(reader);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_last_line_without_newline_counts() {
        let mut reader = LineReader::new(&b"a\nb"[..], 10);
        assert_eq!(reader.next_line().await.unwrap(), LineRead::Line);
        assert_eq!(reader.next_line().await.unwrap(), LineRead::Line);
        assert_eq!(reader.line(), b"b");
        assert_eq!(reader.next_line().await.unwrap(), LineRead::End);
    }
}
