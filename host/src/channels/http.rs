//! What the platform adapters share about talking HTTP to a platform: one client with the
//! host's timeouts, errors that never carry a URL (Telegram puts the bot token in its
//! paths), `Retry-After`, and bodies read to a cap.

use crate::edge::ChannelError;
use bytes::Bytes;
use std::time::Duration;

/// How long connecting to a platform may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one ordinary API call may take in all. Long polls set their own.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest JSON answer a platform API call may return.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The client every platform adapter uses (rustls, connection pooling).
pub fn client() -> Result<reqwest::Client, ChannelError> {
    builder()
        .build()
        .map_err(|e| ChannelError::Unavailable(format!("building the HTTP client: {e}")))
}

/// A client that follows no redirect: for URLs an operator named (outbound webhooks), where
/// a redirect would carry a signed body to a host nobody chose.
pub fn client_without_redirects() -> Result<reqwest::Client, ChannelError> {
    builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ChannelError::Unavailable(format!("building the HTTP client: {e}")))
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("crabpot/", env!("CARGO_PKG_VERSION")))
}

/// A request that failed before an answer: retryable, and described without its URL.
pub fn unavailable(what: &str, error: reqwest::Error) -> ChannelError {
    ChannelError::Unavailable(format!("{what}: {}", error.without_url()))
}

/// The wait a `Retry-After` header asks for (seconds, possibly fractional); `None` when
/// absent or unreadable. Capped at an hour so a hostile answer cannot park a chat for good.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    seconds(value.trim().parse::<f64>().ok()?)
}

/// A platform's wait in seconds as a duration, capped at an hour; `None` when negative or
/// not a number.
pub fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value.min(3600.0)))
}

/// The body of `response`, refused past `max` bytes (checked as it arrives, not trusted from
/// `Content-Length`).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Bytes, ChannelError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(ChannelError::Rejected(format!(
            "{what} is larger than {max} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(&format!("reading {what}"), e))?
    {
        if body.len() + chunk.len() > max {
            return Err(ChannelError::Rejected(format!(
                "{what} is larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Reads a file the bridge staged for sending (under `data/files/`), refusing one larger
/// than the platform takes.
pub async fn read_outgoing_file(
    path: &std::path::Path,
    max_bytes: u64,
) -> Result<(String, Bytes), ChannelError> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file")
        .to_owned();
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| ChannelError::Rejected(format!("the file {name:?} cannot be read: {e}")))?
        .len();
    if size > max_bytes {
        return Err(ChannelError::Rejected(format!(
            "the file {name:?} is {size} bytes, more than the platform's {max_bytes}"
        )));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ChannelError::Rejected(format!("the file {name:?} cannot be read: {e}")))?;
    Ok((name, Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("2.5"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(2500)));
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("999999"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("-1"),
        );
        assert_eq!(retry_after(&headers), None);
        assert_eq!(seconds(f64::NAN), None);
    }
}
