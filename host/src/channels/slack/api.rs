//! [`SlackApi`]: the Slack Web API as the adapter calls it — `POST <api_url>/<method>` with
//! `Authorization: Bearer <token>`, a JSON or form body, and an answer `{"ok": true, ...}`
//! or `{"ok": false, "error": "<code>"}` — and how it fails ([`ApiError`]): HTTP 429 with
//! `Retry-After` (or the `ratelimited` code) is a rate limit, another `ok: false` a refusal
//! naming its code, a 5xx or a network failure the platform being unavailable.

use crate::channels::http;
use crate::config::ApiKey;
use crate::edge::ChannelError;
use serde_json::Value;
use std::time::Duration;

/// The wait assumed when Slack rate-limits without saying for how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a Web API call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Slack could not be reached or failed (5xx, a broken answer). Retryable.
    #[error("slack {method} failed: {reason}")]
    Unavailable { method: String, reason: String },
    /// HTTP 429 or `ratelimited`. Retryable after the wait.
    #[error("slack {method} is rate-limited for {}ms", retry_after.as_millis())]
    RateLimited {
        method: String,
        retry_after: Duration,
    },
    /// `{"ok": false, "error": code}`. Not retryable.
    #[error("slack {method} refused: {code}")]
    Refused { method: String, code: String },
}

impl ApiError {
    /// The error code of a refusal (`invalid_auth`, `channel_not_found`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { code, .. } => Some(code),
            ApiError::Unavailable { .. } | ApiError::RateLimited { .. } => None,
        }
    }

    /// Whether the code says the token itself is no good.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "invalid_auth"
                    | "not_authed"
                    | "account_inactive"
                    | "token_revoked"
                    | "token_expired"
                    | "not_allowed_token_type"
            )
        )
    }
}

impl From<ApiError> for ChannelError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unavailable { .. } => ChannelError::Unavailable(error.to_string()),
            ApiError::RateLimited { retry_after, .. } => ChannelError::RateLimited { retry_after },
            ApiError::Refused { .. } => ChannelError::Rejected(error.to_string()),
        }
    }
}

/// The arguments of one call.
pub enum Args<'a> {
    /// A JSON body (`application/json; charset=utf-8`), for the write methods.
    Json(&'a Value),
    /// A form body, for the methods that read only form arguments (`users.info`,
    /// `files.getUploadURLExternal`, `apps.connections.open`).
    Form(&'a [(&'a str, String)]),
}

/// The Web API with one token (the bot token, or the app token for Socket Mode).
#[derive(Clone)]
pub struct SlackApi {
    client: reqwest::Client,
    base_url: String,
    token: ApiKey,
}

impl SlackApi {
    /// The API at `base_url` (`https://slack.com/api`) with `token`.
    pub fn new(client: reqwest::Client, base_url: &str, token: ApiKey) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The API's base URL (`https://slack.com/api`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The same API with another token.
    pub fn with_token(&self, token: ApiKey) -> Self {
        Self {
            client: self.client.clone(),
            base_url: self.base_url.clone(),
            token,
        }
    }

    /// The HTTP client (for uploads and downloads outside the API).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The token, for the one place that sends it to a file download on Slack's host.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }

    /// Calls `method`; the whole answer on `ok: true`.
    pub async fn call(&self, method: &str, args: Args<'_>) -> Result<Value, ApiError> {
        let request = self
            .client
            .post(format!("{}/{method}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .timeout(http::CALL_TIMEOUT);
        let request = match args {
            Args::Json(body) => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(body.to_string()),
            Args::Form(fields) => request.form(fields),
        };
        let unavailable = |reason: String| ApiError::Unavailable {
            method: method.to_owned(),
            reason,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::RateLimited {
                method: method.to_owned(),
                retry_after: http::retry_after(response.headers()).unwrap_or(DEFAULT_RETRY_AFTER),
            });
        }
        let retry_after = http::retry_after(response.headers());
        if status.is_server_error() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let body = http::read_capped(response, http::MAX_ANSWER_BYTES, "the answer")
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("HTTP {status}, the answer is not JSON: {e}")))?;
        answer_of(method, answer, retry_after)
    }
}

/// `{"ok": true}` answers pass; `ok: false` become [`ApiError`]s.
pub fn answer_of(
    method: &str,
    answer: Value,
    retry_after: Option<Duration>,
) -> Result<Value, ApiError> {
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(answer);
    }
    let code: String = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error")
        .chars()
        .take(100)
        .collect();
    if code == "ratelimited" || code == "rate_limited" {
        return Err(ApiError::RateLimited {
            method: method.to_owned(),
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        });
    }
    Err(ApiError::Refused {
        method: method.to_owned(),
        code,
    })
}

/// A string field of a JSON object, `None` when absent or not a string.
pub fn str_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}
