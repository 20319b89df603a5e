//! Usage counting: [`UsageRecord`] (one per forwarded model request, sent on the proxy's
//! channel for the host to persist) and [`UsageMeter`], which reads token counts out of a
//! response body as it passes, without holding any of it back.
//!
//! Non-streaming responses are JSON with a `usage` object: OpenAI `prompt_tokens` /
//! `completion_tokens`, Anthropic `input_tokens` / `output_tokens`. Streaming responses are
//! server-sent events: OpenAI sends the usage in a final chunk (the proxy asks for it with
//! `stream_options.include_usage`), Anthropic in `message_start.message.usage` (input) and
//! `message_delta.usage` (output, cumulative). The meter scans `data:` lines for those and
//! reports once, when the body ends, breaks off, or is dropped.
//!
//! A count the server did not report is estimated ([`super::estimate`]): the prompt from the
//! request's text, the reply from the text that streamed past. The record says so
//! (`estimated`). A response whose final event passed (`data: [DONE]`, Anthropic's
//! `message_stop`, or a whole JSON body) is complete even when the container hangs up before
//! the body's last bytes: it has its reply.

use super::estimate;
use protocol::{AgentGroupId, ProviderKind, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

/// The longest SSE line the meter keeps to parse; a longer line is skipped (it is still
/// forwarded). Usage chunks are a few hundred bytes; content chunks are skipped anyway.
const MAX_SSE_LINE_BYTES: usize = 1024 * 1024;

/// The largest JSON response body the meter buffers to read its usage; past that the tokens
/// of the response are not counted (the body itself is still forwarded).
const MAX_JSON_SCAN_BYTES: usize = 8 * 1024 * 1024;

/// One model request forwarded for a session, sent on the usage channel when its response has
/// finished (or failed, or broken off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    pub provider: ProviderKind,
    /// The configured model the request was sent to.
    pub model: String,
    /// The upstream's HTTP status; the proxy's own 502/504 when the upstream could not be
    /// reached; 0 when the container hung up before the upstream answered.
    pub status: u16,
    /// Prompt tokens the upstream reported, or the estimate when it reported none.
    pub input_tokens: u64,
    /// Completion tokens the upstream reported, or the estimate when it reported none.
    pub output_tokens: u64,
    /// Whether a count is an estimate ([`estimate`]): the upstream answered successfully but
    /// did not report it.
    #[serde(default)]
    pub estimated: bool,
    /// False when the response broke off (upstream error, container hung up, shutdown) before
    /// its final event; the token counts are then whatever had passed.
    pub completed: bool,
    /// Unix milliseconds when the response finished.
    pub at_ms: i64,
}

/// Token counts read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) input: u64,
    pub(crate) output: u64,
    /// Whether the upstream reported each count at all.
    pub(crate) saw_input: bool,
    pub(crate) saw_output: bool,
}

impl Tokens {
    /// Updates the counts from one JSON document: a whole response or one SSE event.
    /// Later values win, which is right for Anthropic's cumulative `message_delta` counts.
    pub(crate) fn read(&mut self, provider: ProviderKind, document: &Value) {
        match provider {
            ProviderKind::OpenAi => {
                let usage = &document["usage"];
                self.saw_input |= set_if_present(&mut self.input, &usage["prompt_tokens"]);
                self.saw_output |= set_if_present(&mut self.output, &usage["completion_tokens"]);
            }
            ProviderKind::Anthropic => {
                // `message_start` nests the usage in `message`; a whole response and
                // `message_delta` carry it at the top.
                for usage in [&document["message"]["usage"], &document["usage"]] {
                    self.saw_input |= set_if_present(&mut self.input, &usage["input_tokens"]);
                    self.saw_output |= set_if_present(&mut self.output, &usage["output_tokens"]);
                }
            }
        }
    }
}

/// Sets `count` from `value` when it is a number; returns whether it was.
fn set_if_present(count: &mut u64, value: &Value) -> bool {
    match value.as_u64() {
        Some(number) => {
            *count = number;
            true
        }
        None => false,
    }
}

/// What the meter has read off the body so far.
#[derive(Debug, Default)]
struct Seen {
    tokens: Tokens,
    /// Characters of reply text, for the estimate.
    reply_chars: u64,
    /// The final event (or a whole JSON body) has passed.
    ended: bool,
}

impl Seen {
    /// Takes one JSON document: a whole response or one SSE event.
    fn document(&mut self, provider: ProviderKind, document: &Value) {
        self.tokens.read(provider, document);
        self.reply_chars = self
            .reply_chars
            .saturating_add(estimate::reply_chars(provider, document));
        if provider == ProviderKind::Anthropic && document["type"] == "message_stop" {
            self.ended = true;
        }
    }
}

/// How a response body is scanned.
#[derive(Debug)]
enum Scan {
    /// `text/event-stream`: complete `data:` lines are parsed as they pass; `partial` holds
    /// the start of a line split across chunks.
    Sse { partial: Vec<u8>, overlong: bool },
    /// Anything else: buffered (up to a cap) and parsed as JSON at the end.
    Json { buffer: Vec<u8>, overlong: bool },
}

/// Counts the tokens of one response as its body passes, and sends one [`UsageRecord`] when
/// [`UsageMeter::finish`] is called or, failing that, when it is dropped.
#[derive(Debug)]
pub(crate) struct UsageMeter {
    /// `None` once the record has been sent.
    record: Option<UsageRecord>,
    scan: Scan,
    seen: Seen,
    /// Characters of the request's text, for the prompt estimate.
    prompt_chars: u64,
    sender: UnboundedSender<UsageRecord>,
}

impl UsageMeter {
    /// A meter for a request about to be sent; `record` names it. Until
    /// [`UsageMeter::start_response`] is called the status is 0, so a request the container
    /// gives up on before the upstream answers is still recorded (as status 0).
    pub(crate) fn new(record: UsageRecord, sender: UnboundedSender<UsageRecord>) -> Self {
        Self {
            record: Some(UsageRecord {
                status: 0,
                ..record
            }),
            scan: Scan::Json {
                buffer: Vec::new(),
                overlong: false,
            },
            seen: Seen::default(),
            prompt_chars: 0,
            sender,
        }
    }

    /// The request sends `chars` characters of text ([`estimate::request_chars`]): the
    /// prompt estimate when the upstream reports no prompt tokens.
    pub(crate) fn estimate_prompt_from(&mut self, chars: u64) {
        self.prompt_chars = chars;
    }

    /// The upstream answered with `status`; its body is an event stream or not.
    pub(crate) fn start_response(&mut self, status: u16, event_stream: bool) {
        if let Some(record) = &mut self.record {
            record.status = status;
        }
        if event_stream {
            self.scan = Scan::Sse {
                partial: Vec::new(),
                overlong: false,
            };
        }
    }

    /// The upstream never answered; the proxy answers `status` (502 or 504) itself.
    pub(crate) fn fail(&mut self, status: u16) {
        if let Some(record) = &mut self.record {
            record.status = status;
        }
        self.finish(false);
    }

    /// Feeds one chunk of the body as it passes.
    pub(crate) fn observe(&mut self, chunk: &[u8]) {
        let Some(record) = &self.record else { return };
        let provider = record.provider;
        match &mut self.scan {
            Scan::Sse { partial, overlong } => {
                let mut rest = chunk;
                while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
                    let (head, tail) = rest.split_at(newline);
                    rest = &tail[1..];
                    if partial.is_empty() && !*overlong {
                        read_sse_line(provider, head, &mut self.seen);
                    } else {
                        if !*overlong && partial.len() + head.len() <= MAX_SSE_LINE_BYTES {
                            partial.extend_from_slice(head);
                            read_sse_line(provider, partial, &mut self.seen);
                        }
                        partial.clear();
                        *overlong = false;
                    }
                }
                if !*overlong {
                    if partial.len() + rest.len() <= MAX_SSE_LINE_BYTES {
                        partial.extend_from_slice(rest);
                    } else {
                        partial.clear();
                        *overlong = true;
                    }
                }
            }
            Scan::Json { buffer, overlong } => {
                if !*overlong {
                    if buffer.len() + chunk.len() <= MAX_JSON_SCAN_BYTES {
                        buffer.extend_from_slice(chunk);
                    } else {
                        *buffer = Vec::new();
                        *overlong = true;
                    }
                }
            }
        }
    }

    /// Sends the record, once: `completed` says whether the body reached its end (it is
    /// complete anyway when its final event passed).
    pub(crate) fn finish(&mut self, completed: bool) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        match &mut self.scan {
            Scan::Sse { partial, overlong } => {
                // A stream normally ends with a blank line; read a last unterminated one too.
                if !*overlong && !partial.is_empty() {
                    read_sse_line(record.provider, partial, &mut self.seen);
                }
            }
            Scan::Json { buffer, overlong } => {
                if !*overlong && let Ok(document) = serde_json::from_slice::<Value>(buffer) {
                    self.seen.document(record.provider, &document);
                    // A body that parses whole has all of its reply.
                    self.seen.ended = true;
                }
            }
        }
        let tokens = self.seen.tokens;
        record.input_tokens = tokens.input;
        record.output_tokens = tokens.output;
        if (200..300).contains(&record.status) {
            if !tokens.saw_input {
                record.input_tokens = estimate::tokens_for(self.prompt_chars);
                record.estimated = true;
            }
            if !tokens.saw_output {
                record.output_tokens = estimate::tokens_for(self.seen.reply_chars);
                record.estimated = true;
            }
        }
        record.completed = completed || self.seen.ended;
        record.at_ms = protocol::time::now_ms();
        send(&self.sender, record);
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Sends a record and logs it; a closed channel (host shutting down) only loses the record.
fn send(sender: &UnboundedSender<UsageRecord>, record: UsageRecord) {
    crate::metrics::global().proxy_request(&record);
    tracing::info!(
        status = record.status,
        input_tokens = record.input_tokens,
        output_tokens = record.output_tokens,
        estimated = record.estimated,
        completed = record.completed,
        "model request finished"
    );
    if sender.send(record).is_err() {
        tracing::debug!("usage channel closed; record dropped");
    }
}

/// Reads one SSE line: a `data:` line is OpenAI's `[DONE]` or a JSON event (usage, reply
/// text, Anthropic's `message_stop`); anything else is skipped.
fn read_sse_line(provider: ProviderKind, line: &[u8], seen: &mut Seen) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" {
        seen.ended = true;
        return;
    }
    if data.first() == Some(&b'{')
        && let Ok(document) = serde_json::from_slice::<Value>(data)
    {
        seen.document(provider, &document);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn record(provider: ProviderKind) -> UsageRecord {
        UsageRecord {
            session_id: SessionId::new("s-1"),
            agent_group_id: AgentGroupId::new("main"),
            provider,
            model: "m".to_owned(),
            status: 200,
            input_tokens: 0,
            output_tokens: 0,
            estimated: false,
            completed: false,
            at_ms: 0,
        }
    }

    /// Feeds `body` in chunks of every size from 1 byte to whole, and checks each gives the
    /// same counts: a chunk boundary anywhere must not change what is counted.
    fn check(provider: ProviderKind, event_stream: bool, body: &str, expected: (u64, u64)) {
        for chunk_size in 1..=body.len().max(1) {
            let (sender, mut receiver) = mpsc::unbounded_channel();
            let mut meter = UsageMeter::new(record(provider), sender);
            meter.start_response(200, event_stream);
            for chunk in body.as_bytes().chunks(chunk_size) {
                meter.observe(chunk);
            }
            meter.finish(true);
            let sent = receiver.try_recv().unwrap();
            assert_eq!(
                (sent.input_tokens, sent.output_tokens),
                expected,
                "chunk size {chunk_size}"
            );
            assert!(sent.completed);
            drop(meter);
            assert!(receiver.try_recv().is_err(), "one record per response");
        }
    }

    #[test]
    fn json_usage() {
        use ProviderKind::{Anthropic, OpenAi};
        check(
            OpenAi,
            false,
            r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#,
            (11, 7),
        );
        check(
            Anthropic,
            false,
            r#"{"type":"message","content":[],"usage":{"input_tokens":5,"output_tokens":3}}"#,
            (5, 3),
        );
        check(OpenAi, false, r#"{"error":{"message":"bad"}}"#, (0, 0));
        check(OpenAi, false, "<html>gateway</html>", (0, 0));
        check(OpenAi, false, "", (0, 0));
    }

    #[test]
    fn sse_usage() {
        use ProviderKind::{Anthropic, OpenAi};
        check(
            OpenAi,
            true,
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
             data: [DONE]\n\n",
            (9, 2),
        );
        check(
            Anthropic,
            true,
            "event: message_start\r\n\
             data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
             event: content_block_delta\r\n\
             data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"the word usage\"}}\r\n\r\n\
             event: message_delta\r\n\
             data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n\
             event: message_stop\r\n\
             data: {\"type\":\"message_stop\"}\r\n\r\n",
            (25, 15),
        );
        // No trailing newline after the last event.
        check(
            OpenAi,
            true,
            "data:{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
            (1, 1),
        );
        check(OpenAi, true, ": keep-alive\n\ndata: [DONE]\n\n", (0, 0));
    }

    #[test]
    fn overlong_sse_line_is_skipped_and_scanning_recovers() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut meter = UsageMeter::new(record(ProviderKind::OpenAi), sender);
        meter.start_response(200, true);
        let filler = vec![b'x'; MAX_SSE_LINE_BYTES / 2 + 1];
        meter.observe(b"data: {\"usage\":{\"prompt_tokens\":99}, \"pad\":\"");
        meter.observe(&filler);
        meter.observe(&filler);
        meter
            .observe(b"\"}\n\ndata: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6}}\n\n");
        meter.finish(true);
        let sent = receiver.try_recv().unwrap();
        assert_eq!((sent.input_tokens, sent.output_tokens), (4, 6));
    }

    #[test]
    fn dropped_meter_reports_incomplete() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut meter = UsageMeter::new(record(ProviderKind::Anthropic), sender);
        meter.start_response(200, true);
        meter.observe(
            b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n",
        );
        drop(meter);
        let sent = receiver.try_recv().unwrap();
        assert_eq!(
            (sent.input_tokens, sent.output_tokens, sent.completed),
            (3, 0, false)
        );
    }

    /// Feeds `body` whole to a meter for a request of `prompt_chars` characters, finishes it
    /// as `completed` (or drops it, for `None`: the container hung up) and returns the record.
    fn metered(status: u16, body: &str, prompt_chars: u64, completed: Option<bool>) -> UsageRecord {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut meter = UsageMeter::new(record(ProviderKind::OpenAi), sender);
        meter.estimate_prompt_from(prompt_chars);
        meter.start_response(status, true);
        meter.observe(body.as_bytes());
        match completed {
            Some(completed) => meter.finish(completed),
            None => drop(meter),
        }
        receiver.try_recv().unwrap()
    }

    /// llama.cpp-style: content deltas, a finish reason, `[DONE]`, and no usage at all.
    const NO_USAGE_STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello \"}}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"world\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn missing_usage_is_estimated_and_marked() {
        let sent = metered(200, NO_USAGE_STREAM, 41, Some(true));
        // 41 prompt characters: 11 tokens; "Hello world", 11 characters: 3 tokens.
        assert_eq!((sent.input_tokens, sent.output_tokens), (11, 3));
        assert!(sent.estimated && sent.completed);

        // Reported usage is taken as is and not marked.
        let reported = format!(
            "{NO_USAGE_STREAM}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":2}}}}\n\n"
        );
        let sent = metered(200, &reported, 41, Some(true));
        assert_eq!((sent.input_tokens, sent.output_tokens), (7, 2));
        assert!(!sent.estimated);

        // A refused request consumed nothing to estimate.
        let sent = metered(500, "data: {\"error\":\"down\"}\n\n", 41, Some(true));
        assert_eq!((sent.input_tokens, sent.output_tokens), (0, 0));
        assert!(!sent.estimated);
    }

    #[test]
    fn a_reply_whose_final_event_passed_is_complete_when_the_container_hangs_up() {
        // The runner stops reading at `[DONE]` and drops the connection before the body's
        // end: the reply was delivered, so the request is complete.
        let sent = metered(200, NO_USAGE_STREAM, 0, None);
        assert!(sent.completed);
        let anthropic = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut meter = UsageMeter::new(record(ProviderKind::Anthropic), sender);
        meter.start_response(200, true);
        meter.observe(anthropic.as_bytes());
        drop(meter);
        assert!(receiver.try_recv().unwrap().completed);
        // Broken off before the final event: incomplete.
        let cut = NO_USAGE_STREAM.replace("data: [DONE]\n\n", "");
        assert!(!metered(200, &cut, 0, None).completed);
    }
}
