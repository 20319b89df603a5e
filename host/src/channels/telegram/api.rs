//! [`Api`]: calls to the Bot API (`<api_url>/bot<token>/<method>`, JSON or multipart) and
//! file downloads (`<api_url>/file/bot<token>/<file_path>`), with every answer read through
//! [`outcome`] into a result or an [`ApiError`].
//!
//! The token is in every URL, so no error here carries a URL ([`http::unavailable`] strips
//! it) and the platform's `description` is the only text of a refusal, cut to a few hundred
//! characters since it comes from outside.

use super::wire::Envelope;
use crate::channels::http;
use crate::config::ApiKey;
use crate::edge::ChannelError;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The wait assumed when a 429 names none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest platform `description` kept in an error.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// Why a Bot API call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The token was refused (401, or 404 for a token of the wrong shape). Not retryable:
    /// every later call would be refused too.
    #[error("the bot token was refused ({0})")]
    Unauthorized(String),
    /// Anything else, classified as the bridge needs it (retryable or not per variant).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

impl From<ApiError> for ChannelError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unauthorized(description) => ChannelError::Rejected(format!(
                "telegram refused the bot token ({description}); check CRABPOT_TELEGRAM_BOT_TOKEN"
            )),
            ApiError::Channel(error) => error,
        }
    }
}

/// The result of a Bot API answer with HTTP `status` and `body`, or why it failed: a 429
/// (by status or `error_code`) is `RateLimited` for `parameters.retry_after` seconds, a 5xx
/// `Unavailable`, a 401 `Unauthorized`, any other refusal `Rejected` with its description.
pub fn outcome(method: &str, status: u16, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let envelope = serde_json::from_slice::<Envelope>(body).ok();
    if let Some(Envelope {
        ok: true, result, ..
    }) = &envelope
        && (200..300).contains(&status)
    {
        return Ok(result.clone().unwrap_or(serde_json::Value::Bool(true)));
    }
    let code = envelope
        .as_ref()
        .and_then(|envelope| envelope.error_code)
        .unwrap_or(i64::from(status));
    let description: String = envelope
        .as_ref()
        .and_then(|envelope| envelope.description.clone())
        .unwrap_or_else(|| format!("HTTP {status}"))
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect();
    if code == 429 || status == 429 {
        let retry_after = envelope
            .as_ref()
            .and_then(|envelope| envelope.parameters.as_ref())
            .and_then(|parameters| parameters.retry_after)
            .and_then(http::seconds)
            .unwrap_or(DEFAULT_RETRY_AFTER);
        return Err(ChannelError::RateLimited { retry_after }.into());
    }
    if status >= 500 || code >= 500 {
        return Err(ChannelError::Unavailable(format!("telegram {method}: {description}")).into());
    }
    if status == 401 || code == 401 {
        return Err(ApiError::Unauthorized(description));
    }
    if envelope.is_none() && (200..300).contains(&status) {
        return Err(ChannelError::Unavailable(format!(
            "telegram {method}: the answer is not a Bot API envelope"
        ))
        .into());
    }
    Err(ChannelError::Rejected(format!("telegram {method}: {description}")).into())
}

/// The Bot API of one bot.
pub struct Api {
    client: reqwest::Client,
    api_url: String,
    token: ApiKey,
}

impl Api {
    /// The API at `api_url` (no trailing slash needed) for the bot with `token`.
    pub fn new(api_url: &str, token: ApiKey) -> Result<Self, ChannelError> {
        Ok(Self {
            client: http::client()?,
            api_url: api_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn method_url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.api_url,
            self.token.expose_secret()
        )
    }

    /// Calls `method` with a JSON body; `timeout` bounds the whole call (a long poll sets
    /// its own).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let request = self
            .client
            .post(self.method_url(method))
            .timeout(timeout)
            .json(body);
        self.send(method, request).await
    }

    /// Calls `method` with a `multipart/form-data` body (uploads).
    pub async fn call_multipart<T: DeserializeOwned>(
        &self,
        method: &str,
        form: reqwest::multipart::Form,
    ) -> Result<T, ApiError> {
        let request = self
            .client
            .post(self.method_url(method))
            .timeout(http::CALL_TIMEOUT * 4)
            .multipart(form);
        self.send(method, request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|e| http::unavailable(&format!("telegram {method}"), e))?;
        let status = response.status().as_u16();
        let body = http::read_capped(
            response,
            http::MAX_ANSWER_BYTES,
            &format!("the answer to {method}"),
        )
        .await?;
        let result = outcome(method, status, &body)?;
        serde_json::from_value(result).map_err(|e| {
            ApiError::Channel(ChannelError::Unavailable(format!(
                "telegram {method}: unexpected result: {e}"
            )))
        })
    }

    /// Downloads the file `getFile` named `file_path`, refused past `max_bytes`.
    pub async fn download(&self, file_path: &str, max_bytes: u64) -> Result<Bytes, ApiError> {
        if file_path.is_empty()
            || file_path.split('/').any(|part| part == "..")
            || file_path
                .chars()
                .any(|c| c.is_control() || c == '?' || c == '#' || c == '\\')
        {
            return Err(ChannelError::Rejected(
                "telegram getFile named an unusable file_path".into(),
            )
            .into());
        }
        let url = format!(
            "{}/file/bot{}/{file_path}",
            self.api_url,
            self.token.expose_secret()
        );
        let response = self
            .client
            .get(url)
            .timeout(http::CALL_TIMEOUT * 4)
            .send()
            .await
            .map_err(|e| http::unavailable("telegram file download", e))?;
        let status = response.status();
        if !status.is_success() {
            let body = http::read_capped(response, 64 * 1024, "a failed download's answer")
                .await
                .unwrap_or_default();
            return Err(outcome("file download", status.as_u16(), &body)
                .err()
                .unwrap_or_else(|| {
                    ChannelError::Unavailable(format!("telegram file download: HTTP {status}"))
                        .into()
                }));
        }
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Ok(http::read_capped(response, max, "the file").await?)
    }
}
