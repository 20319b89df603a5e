//! Discord's REST API ([`Rest`]): every call carries `Authorization: Bot <token>`, waits
//! out an exhausted bucket or a global limit first ([`super::ratelimit`]), and fails as a
//! [`RestError`] that names what Discord said (a refused token, a 429's wait, a refusal).

use super::ratelimit::{RateLimits, TooManyRequests, parse_headers, route_key};
use crate::channels::http::{self as platform_http, CALL_TIMEOUT, MAX_ANSWER_BYTES};
use crate::config::ApiKey;
use crate::edge::ChannelError;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The longest bucket wait the client sits out itself; past it the bridge is told to retry.
const MAX_INNER_WAIT: Duration = Duration::from_secs(30);

/// How a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401: the token is wrong. Not retryable.
    #[error(
        "discord: the bot token was refused (401 Unauthorized); check CRABPOT_DISCORD_BOT_TOKEN"
    )]
    Unauthorized,
    /// 429, or a bucket empty for long. Retryable after the wait.
    #[error("discord: rate-limited for {}ms", .0.as_millis())]
    RateLimited(Duration),
    /// Unreachable, or a 5xx. Retryable.
    #[error("discord: {0}")]
    Unavailable(String),
    /// Any other 4xx. Not retryable.
    #[error("discord refused {what}: {status} {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
}

impl From<RestError> for ChannelError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::RateLimited(retry_after) => ChannelError::RateLimited { retry_after },
            RestError::Unavailable(_) => ChannelError::Unavailable(error.to_string()),
            RestError::Unauthorized | RestError::Rejected { .. } => {
                ChannelError::Rejected(error.to_string())
            }
        }
    }
}

/// What a request carries.
pub enum Body {
    None,
    Json(Value),
    Multipart(reqwest::multipart::Form),
}

/// The REST client of one adapter.
pub struct Rest {
    http: reqwest::Client,
    /// For attachments: follows no redirect, so a CDN URL cannot lead anywhere else.
    downloads: reqwest::Client,
    api_url: String,
    token: ApiKey,
    limits: RateLimits,
}

impl Rest {
    pub fn new(http: reqwest::Client, api_url: &str, token: ApiKey) -> Self {
        let downloads = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("crabpot/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            downloads,
            api_url: api_url.trim_end_matches('/').to_owned(),
            token,
            limits: RateLimits::default(),
        }
    }

    /// The API root (version included), for telling the fake's attachment URLs from others.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The HTTP client for attachments (no redirects, no token).
    pub fn downloads(&self) -> &reqwest::Client {
        &self.downloads
    }

    /// Calls `method path` (path under the API root, starting with `/`); returns the JSON
    /// answer (`Null` for 204).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Body,
    ) -> Result<Value, RestError> {
        let route = route_key(&method, path);
        let wait = self.limits.wait_before(&route, Instant::now());
        if wait > MAX_INNER_WAIT {
            return Err(RestError::RateLimited(wait));
        }
        if !wait.is_zero() {
            tracing::debug!(route = %route, wait_ms = wait.as_millis() as u64, "waiting out a discord rate-limit bucket");
            tokio::time::sleep(wait).await;
        }
        self.limits.take(&route);
        let request = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .timeout(CALL_TIMEOUT)
            .header(
                "authorization",
                format!("Bot {}", self.token.expose_secret()),
            );
        let request = match body {
            Body::None => request,
            Body::Json(json) => request.json(&json),
            Body::Multipart(form) => request.multipart(form),
        };
        let response = request.send().await.map_err(|e| {
            RestError::Unavailable(platform_http::unavailable(&route, e).to_string())
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bucket = parse_headers(&headers);
        self.limits.update(&route, &bucket, Instant::now());
        let body = platform_http::read_capped(response, MAX_ANSWER_BYTES, "discord's answer")
            .await
            .map_err(|e| RestError::Unavailable(e.to_string()))?;
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|e| {
                RestError::Unavailable(format!("{route} answered with bad JSON: {e}"))
            });
        }
        match status.as_u16() {
            401 => Err(RestError::Unauthorized),
            429 => {
                let limited: TooManyRequests = serde_json::from_slice(&body).unwrap_or_default();
                let wait = platform_http::seconds(limited.retry_after)
                    .filter(|wait| !wait.is_zero())
                    .or_else(|| platform_http::retry_after(&headers))
                    .unwrap_or(Duration::from_secs(1));
                let global = limited.global || bucket.global;
                self.limits.limited(&route, wait, global, Instant::now());
                tracing::info!(route = %route, wait_ms = wait.as_millis() as u64, global, "discord rate-limited a call");
                Err(RestError::RateLimited(wait))
            }
            code if status.is_server_error() => Err(RestError::Unavailable(format!(
                "{route} failed with {code}"
            ))),
            code => Err(RestError::Rejected {
                what: route,
                status: code,
                message: error_message(&body),
            }),
        }
    }
}

/// Discord's `message` of an error body, capped; the raw start of the body otherwise.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| {
            json.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(300).collect()
}

/// `text` percent-encoded for one path segment (an emoji in a reaction's path).
pub fn encode_segment(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_percent_encoded() {
        assert_eq!(encode_segment("👍"), "%F0%9F%91%8D");
        assert_eq!(encode_segment("custom:123"), "custom:123");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"message":"Missing Access","code":50001}"#),
            "Missing Access"
        );
        assert_eq!(error_message(b"oops"), "oops");
    }
}
