//! A small Chrome DevTools Protocol client over `--remote-debugging-pipe`: Chromium reads
//! commands on its fd 3 and writes responses and events on its fd 4, each one JSON message
//! followed by a NUL byte, so no websocket is needed. [`encode`] and [`Framer`] are the
//! framing; [`CdpConnection`] sends a command and waits for its response (events that arrive
//! meanwhile are kept for [`CdpConnection::wait_event`]).
//!
//! Chromium's output is treated as hostile: a message over [`MAX_MESSAGE_BYTES`], a message
//! that is not JSON, or a closed pipe is a [`CdpError`], never a panic.

use serde_json::{Value, json};
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message read, in bytes: a full-page screenshot, base64, fits well inside.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why talking to the browser failed. None is retryable within the same browser.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("the browser closed its DevTools pipe")]
    Closed,
    #[error("the browser's DevTools pipe failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the browser sent a DevTools message over {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("the browser sent a DevTools message that is not JSON: {0}")]
    NotJson(String),
    #[error("the browser refused {method}: {message}")]
    Command { method: String, message: String },
}

/// One command as written to the pipe: the JSON and its NUL terminator.
pub fn encode(id: u64, method: &str, params: Value, session_id: Option<&str>) -> Vec<u8> {
    let mut message = json!({"id": id, "method": method, "params": params});
    if let Some(session_id) = session_id {
        message["sessionId"] = json!(session_id);
    }
    let mut bytes = message.to_string().into_bytes();
    bytes.push(0);
    bytes
}

/// Splits the byte stream from the browser into NUL-terminated messages.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
}

impl Framer {
    /// Takes more bytes; returns the messages they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Value>, CdpError> {
        let mut messages = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == 0) {
            match chunk.split_last() {
                Some((0, body)) => {
                    self.buffer.extend_from_slice(body);
                    let message = std::mem::take(&mut self.buffer);
                    let value = serde_json::from_slice(&message)
                        .map_err(|error| CdpError::NotJson(error.to_string()))?;
                    messages.push(value);
                }
                Some(_) | None => self.buffer.extend_from_slice(chunk),
            }
            if self.buffer.len() > MAX_MESSAGE_BYTES {
                return Err(CdpError::TooLarge);
            }
        }
        Ok(messages)
    }
}

/// A connection to one browser.
pub struct CdpConnection<W, R> {
    writer: W,
    reader: R,
    framer: Framer,
    next_id: u64,
    /// Events read while waiting for a response.
    pending: VecDeque<Value>,
    /// Messages framed but not yet looked at.
    frames: VecDeque<Value>,
}

impl<W: AsyncWrite + Unpin, R: AsyncRead + Unpin> CdpConnection<W, R> {
    pub fn new(writer: W, reader: R) -> Self {
        Self {
            writer,
            reader,
            framer: Framer::default(),
            next_id: 1,
            pending: VecDeque::new(),
            frames: VecDeque::new(),
        }
    }

    /// Sends `method` and returns its `result`; an `error` answer is [`CdpError::Command`].
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
        session_id: Option<&str>,
    ) -> Result<Value, CdpError> {
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .write_all(&encode(id, method, params, session_id))
            .await?;
        self.writer.flush().await?;
        loop {
            let message = self.read_message().await?;
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    return Err(CdpError::Command {
                        method: method.to_owned(),
                        message: error["message"]
                            .as_str()
                            .unwrap_or("unknown error")
                            .to_owned(),
                    });
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
            if message.get("method").is_some() {
                self.pending.push_back(message);
            }
        }
    }

    /// Forgets the events read so far.
    pub fn discard_events(&mut self) {
        self.pending.clear();
    }

    /// Waits for the event `method` (of `session_id`, when given), taking one already read.
    pub async fn wait_event(
        &mut self,
        method: &str,
        session_id: Option<&str>,
    ) -> Result<Value, CdpError> {
        let matches = |message: &Value| {
            message["method"].as_str() == Some(method)
                && session_id.is_none_or(|id| message["sessionId"].as_str() == Some(id))
        };
        if let Some(position) = self.pending.iter().position(matches)
            && let Some(message) = self.pending.remove(position)
        {
            return Ok(message);
        }
        loop {
            let message = self.read_message().await?;
            if matches(&message) {
                return Ok(message);
            }
        }
    }

    async fn read_message(&mut self) -> Result<Value, CdpError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(message) = self.frames.pop_front() {
                return Ok(message);
            }
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                return Err(CdpError::Closed);
            }
            self.frames.extend(self.framer.feed(&chunk[..n])?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trip() {
        let bytes = encode(7, "Page.navigate", json!({"url": "file:///x"}), Some("s1"));
        assert_eq!(bytes.last(), Some(&0));
        assert_eq!(bytes.iter().filter(|b| **b == 0).count(), 1);
        let mut framer = Framer::default();
        // Two messages, cut at every byte, give the same two values.
        let mut stream = bytes.clone();
        stream.extend(br#"{"method":"Page.loadEventFired","params":{}}"#);
        stream.push(0);
        let mut got = Vec::new();
        for byte in &stream {
            got.extend(framer.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["method"], "Page.navigate");
        assert_eq!(got[0]["sessionId"], "s1");
        assert_eq!(got[0]["id"], 7);
        assert_eq!(got[1]["method"], "Page.loadEventFired");
        let all_at_once = Framer::default().feed(&stream).unwrap();
        assert_eq!(all_at_once, got);
        assert!(matches!(
            Framer::default().feed(b"not json\0"),
            Err(CdpError::NotJson(_))
        ));
    }

    #[tokio::test]
    async fn calls_wait_for_their_answer_and_keep_events() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (their_read, mut their_write) = tokio::io::split(theirs);
        let (our_read, our_write) = tokio::io::split(ours);
        let browser = tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(their_read);
            let mut request = Vec::new();
            tokio::io::AsyncBufReadExt::read_until(&mut reader, 0, &mut request)
                .await
                .unwrap();
            let request: Value = serde_json::from_slice(&request[..request.len() - 1]).unwrap();
            assert_eq!(request["method"], "Page.enable");
            let id = request["id"].as_u64().unwrap();
            let mut out =
                br#"{"method":"Page.loadEventFired","sessionId":"s","params":{}}"#.to_vec();
            out.push(0);
            out.extend(format!(r#"{{"id":{id},"result":{{"ok":true}}}}"#).into_bytes());
            out.push(0);
            out.extend(format!(r#"{{"id":{},"error":{{"message":"no"}}}}"#, id + 1).into_bytes());
            out.push(0);
            their_write.write_all(&out).await.unwrap();
            reader
        });
        let mut connection = CdpConnection::new(our_write, our_read);
        let result = connection
            .call("Page.enable", json!({}), Some("s"))
            .await
            .unwrap();
        assert_eq!(result, json!({"ok": true}));
        let event = connection
            .wait_event("Page.loadEventFired", Some("s"))
            .await
            .unwrap();
        assert_eq!(event["sessionId"], "s");
        let refused = connection.call("Page.navigate", json!({}), None).await;
        assert!(matches!(refused, Err(CdpError::Command { ref message, .. }) if message == "no"));
        drop(browser.await.unwrap());
        assert!(matches!(
            connection.call("Browser.close", json!({}), None).await,
            Err(CdpError::Closed | CdpError::Io(_))
        ));
    }
}
