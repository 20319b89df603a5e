//! A small HTTP/1 client for tests, built on hyper alone: [`send_tcp`] and [`send_unix`] send
//! one request over a fresh connection and return the whole [`HttpResponse`]; [`parse_sse`]
//! splits a `text/event-stream` body into [`SseEvent`]s.
//!
//! It exists so tests can talk to the fake model server, and to the host's unix sockets (for
//! example a session's `in/proxy.sock`), without pulling a full client library into the suite.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// How long one request may take, connection included, before the client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete response: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text (lossy for invalid UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {}", self.text()))
    }

    /// The value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body split into server-sent events.
    pub fn sse_events(&self) -> Vec<SseEvent> {
        parse_sse(&self.text())
    }
}

/// One server-sent event: the `event:` name, if any, and the `data:` lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.data)
            .with_context(|| format!("SSE data is not JSON: {}", self.data))
    }
}

/// Builds a `POST` of a JSON body with extra headers (`host` and `content-type` are added).
pub fn json_request(path: &str, headers: &[(&str, &str)], body: &Value) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request built from a path, valid headers and a JSON body")
}

/// Sends `request` over a new TCP connection to `addr`.
pub async fn send_tcp(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<HttpResponse> {
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        send_over(stream, request).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .with_context(|| format!("request to {addr} took longer than {REQUEST_TIMEOUT:?}"))?
}

/// Sends `request` over a new connection to the unix socket at `socket`.
pub async fn send_unix(
    socket: &Path,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<HttpResponse> {
    let work = async {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        send_over(stream, request).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .with_context(|| {
            format!(
                "request to {} took longer than {REQUEST_TIMEOUT:?}",
                socket.display()
            )
        })?
}

/// `POST`s a JSON body to `path` on `addr`.
pub async fn post_json_tcp(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> anyhow::Result<HttpResponse> {
    send_tcp(addr, json_request(path, headers, body)).await
}

async fn send_over<IO>(io: IO, request: Request<Full<Bytes>>) -> anyhow::Result<HttpResponse>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1 handshake")?;
    // The connection task ends by itself when the response is done and the sender is dropped.
    let connection_task = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .context("reading the response body")?
        .to_bytes();
    drop(sender);
    match connection_task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => bail!("HTTP connection failed after the response: {error}"),
        Err(error) => bail!("HTTP connection task failed: {error}"),
    }
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Splits a `text/event-stream` body into events, following the SSE rules that matter here:
/// lines end in `\n` or `\r\n`, a blank line dispatches the event, `:` starts a comment, one
/// space after the field's colon is dropped, and several `data:` lines are joined by `\n`.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event_name: Option<String> = None;
    let mut data_lines: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data_lines.is_empty() || event_name.is_some() {
                events.push(SseEvent {
                    event: event_name.take(),
                    data: data_lines.join("\n"),
                });
                data_lines.clear();
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_name = Some(value.to_string()),
            "data" => data_lines.push(value),
            _ => {}
        }
    }
    if !data_lines.is_empty() || event_name.is_some() {
        events.push(SseEvent {
            event: event_name,
            data: data_lines.join("\n"),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[(Option<&str>, &str)]) {
        let events = parse_sse(input);
        let got: Vec<(Option<&str>, &str)> = events
            .iter()
            .map(|event| (event.event.as_deref(), event.data.as_str()))
            .collect();
        assert_eq!(got, expected, "input: {input:?}");
    }

    #[test]
    fn parses_sse() {
        check("", &[]);
        check("data: a\n\n", &[(None, "a")]);
        check("data:a\n\ndata: b\n\n", &[(None, "a"), (None, "b")]);
        check("event: ping\ndata: {}\n\n", &[(Some("ping"), "{}")]);
        check("data: one\ndata: two\n\n", &[(None, "one\ntwo")]);
        check(": comment\r\ndata: x\r\n\r\n", &[(None, "x")]);
        check(
            "data: tail-without-blank-line",
            &[(None, "tail-without-blank-line")],
        );
        check("data:  two spaces\n\n", &[(None, " two spaces")]);
    }
}
