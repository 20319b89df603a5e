//! An incremental parser for server-sent events (the `text/event-stream` format both model
//! providers stream in): [`SseParser`] turns byte chunks, split anywhere, into [`SseEvent`]s.
//!
//! It follows the WHATWG rules that matter here: lines end in `\n`, `\r\n` or `\r`; a blank
//! line dispatches the event; `data:` lines accumulate joined by `\n`; lines starting with `:`
//! are comments; one space after the colon is dropped; a leading byte-order mark is ignored.
//! Bytes are buffered until a line is complete, so a UTF-8 character split across chunks is
//! decoded whole.

/// The largest event the parser buffers before giving up, in bytes. A model response is far
/// smaller; the cap keeps a broken or hostile stream from exhausting the container's memory.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Errors while parsing a stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past [`MAX_EVENT_BYTES`]. Not retryable: the stream is unusable.
    #[error("an event in the stream is larger than {MAX_EVENT_BYTES} bytes")]
    EventTooLarge,
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Turns a byte stream into events, one chunk at a time.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    /// No byte has been seen yet (a byte-order mark may still come).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        if chunk.is_empty() {
            return Ok(events);
        }
        if !self.started {
            self.line.extend_from_slice(chunk);
            // Wait until three bytes are buffered to decide on a byte-order mark.
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return Ok(events);
            }
            self.started = true;
            let buffered = std::mem::take(&mut self.line);
            let rest = buffered.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buffered);
            self.feed_lines(rest, &mut events)?;
            return Ok(events);
        }
        let bytes = match chunk.split_first() {
            Some((b'\n', rest)) if self.after_cr => rest,
            _ => chunk,
        };
        self.after_cr = false;
        self.feed_lines(bytes, &mut events)?;
        Ok(events)
    }

    fn feed_lines(&mut self, mut bytes: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&bytes[..end]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, events)?;
            let terminator = bytes[end];
            bytes = &bytes[end + 1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.line.len() + bytes.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Ends the stream. A last event not followed by a blank line is still dispatched:
    /// stricter parsers drop it, but some servers close right after their final `data:` line.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events)?;
        }
        self.process_line(b"", &mut events)?;
        Ok(events.pop())
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                events.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
                if self.data.len() > MAX_EVENT_BYTES {
                    return Err(SseError::EventTooLarge);
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // `id` and `retry` matter for reconnecting browsers, not for one model response.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_in_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.feed(chunk).unwrap());
        }
        events.extend(parser.finish().unwrap());
        events
    }

    /// Parses `input` whole, byte by byte, and split at every one and every two positions;
    /// every way must give `expected`.
    fn check(input: &str, expected: &[SseEvent]) {
        let bytes = input.as_bytes();
        assert_eq!(parse_in_chunks(&[bytes]), expected, "whole: {input:?}");
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_in_chunks(&singles), expected, "bytewise: {input:?}");
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let got = parse_in_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(got, expected, "split at {i},{j}: {input:?}");
            }
        }
    }

    #[test]
    fn table() {
        check("data: hello\n\n", &[event(None, "hello")]);
        check("data:hello\n\n", &[event(None, "hello")]);
        check("data:  two spaces\n\n", &[event(None, " two spaces")]);
        check(
            "event: message_start\ndata: {\"a\":1}\n\n",
            &[event(Some("message_start"), "{\"a\":1}")],
        );
        check("data: a\ndata: b\n\n", &[event(None, "a\nb")]);
        check("data: a\r\ndata: b\r\n\r\n", &[event(None, "a\nb")]);
        check("data: a\rdata: b\r\r", &[event(None, "a\nb")]);
        check(": keep-alive\n\ndata: x\n\n", &[event(None, "x")]);
        check("data\n\n", &[event(None, "")]);
        check("event: ping\n\n", &[]);
        check("id: 7\nretry: 100\ndata: x\n\n", &[event(None, "x")]);
        check(
            "data: 1\n\ndata: 2\n\n",
            &[event(None, "1"), event(None, "2")],
        );
        check("\u{feff}data: bom\n\n", &[event(None, "bom")]);
        check("data: é ✓ 😀\n\n", &[event(None, "é ✓ 😀")]);
        check("data: [DONE]", &[event(None, "[DONE]")]);
        check("", &[]);
        check("\n\n\n", &[]);
    }

    #[test]
    fn an_event_type_does_not_leak_into_the_next_event() {
        check(
            "event: a\ndata: 1\n\ndata: 2\n\n",
            &[event(Some("a"), "1"), event(None, "2")],
        );
    }

    #[test]
    fn huge_event_is_refused() {
        let mut parser = SseParser::new();
        let line = vec![b'x'; 1024 * 1024];
        let mut result = parser.feed(b"data: ");
        for _ in 0..9 {
            if result.is_err() {
                break;
            }
            result = parser.feed(&line).and_then(|_| parser.feed(b"\ndata: "));
        }
        assert_eq!(result, Err(SseError::EventTooLarge));
    }
}
