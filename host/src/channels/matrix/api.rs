//! [`Api`]: calls to a homeserver's client-server API (`<homeserver>/_matrix/client/...`,
//! JSON) and its media repository (uploads, authenticated downloads), with every answer read
//! through [`outcome`] into a result or an [`ApiError`].
//!
//! The access token travels in the `Authorization` header only, never in a URL, and no
//! error here carries a URL or a header: the homeserver's `errcode` and `error` are the only
//! text of a refusal, cut to a few hundred characters since they come from outside.

use crate::channels::http;
use crate::config::ApiKey;
use crate::edge::ChannelError;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// The wait assumed when a 429 names none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest homeserver `error` text kept in an error.
const MAX_ERROR_CHARS: usize = 300;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The access token (or the password, at login) was refused: 401, or 403 `M_FORBIDDEN`
    /// at login. Not retryable with the same credentials.
    #[error("the homeserver refused the credentials ({0})")]
    Unauthorized(String),
    /// Anything else, classified as the bridge needs it (retryable or not per variant).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

impl From<ApiError> for ChannelError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unauthorized(why) => ChannelError::Rejected(format!(
                "matrix: the homeserver refused the bot's access token ({why})"
            )),
            ApiError::Channel(error) => error,
        }
    }
}

/// A homeserver's text, made safe to log: no control characters, at most
/// [`MAX_ERROR_CHARS`].
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// The result of an answer with HTTP `status` and `body` to `what`, or why it failed: 429 or
/// `M_LIMIT_EXCEEDED` is `RateLimited` for `retry_after_ms`, a 5xx `Unavailable`, a 401
/// `Unauthorized`, any other refusal `Rejected` with its `errcode` and `error`.
pub fn outcome(what: &str, status: u16, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    if (200..300).contains(&status) {
        return parsed.ok_or_else(|| {
            ChannelError::Unavailable(format!("matrix {what}: the answer is not JSON")).into()
        });
    }
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|value| value.get(name))
            .and_then(Value::as_str)
            .map(clean)
    };
    let errcode = field("errcode").unwrap_or_else(|| format!("HTTP {status}"));
    let message = match field("error") {
        Some(error) if !error.is_empty() => format!("{errcode}: {error}"),
        _ => errcode.clone(),
    };
    if status == 429 || errcode == "M_LIMIT_EXCEEDED" {
        let retry_after = parsed
            .as_ref()
            .and_then(|value| value.get("retry_after_ms"))
            .and_then(Value::as_f64)
            .and_then(|ms| http::seconds(ms / 1000.0))
            .unwrap_or(DEFAULT_RETRY_AFTER);
        return Err(ChannelError::RateLimited { retry_after }.into());
    }
    if status >= 500 {
        return Err(ChannelError::Unavailable(format!("matrix {what}: {message}")).into());
    }
    if status == 401 || errcode == "M_UNKNOWN_TOKEN" || errcode == "M_MISSING_TOKEN" {
        return Err(ApiError::Unauthorized(message));
    }
    Err(ChannelError::Rejected(format!("matrix {what}: {message}")).into())
}

/// What a request carries.
pub enum Body {
    None,
    Json(Value),
    /// Raw bytes with their content type (a media upload).
    Bytes {
        content_type: String,
        bytes: Bytes,
    },
}

/// The client-server API of one homeserver, for one account once logged in.
pub struct Api {
    client: reqwest::Client,
    base: reqwest::Url,
    /// Set by the login; every call but the login carries it.
    token: RwLock<Option<ApiKey>>,
}

impl Api {
    /// The API at `homeserver` (a base URL, config-validated).
    pub fn new(homeserver: &str) -> Result<Self, ChannelError> {
        let base = reqwest::Url::parse(homeserver).map_err(|e| {
            ChannelError::Rejected(format!("the homeserver URL cannot be used: {e}"))
        })?;
        if base.cannot_be_a_base() {
            return Err(ChannelError::Rejected(
                "the homeserver URL cannot be used as a base".into(),
            ));
        }
        Ok(Self {
            client: http::client()?,
            base,
            token: RwLock::new(None),
        })
    }

    pub fn set_token(&self, token: ApiKey) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    /// Forgets the token (before a login, which must not carry a stale one).
    pub fn clear_token(&self) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn token(&self) -> Option<ApiKey> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `<homeserver>/<segments...>`, each segment percent-encoded (room, event and user ids
    /// carry `!`, `$`, `@`, `:`), with `query` pairs.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One call: `method` on `url` with `body`, bounded by `timeout`; `what` names it in
    /// errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Body,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let mut request = self.client.request(method, url).timeout(timeout);
        if let Some(token) = self.token() {
            request = request.bearer_auth(token.expose_secret());
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Bytes {
                content_type,
                bytes,
            } => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|e| http::unavailable(&format!("matrix {what}"), e))?;
        let status = response.status().as_u16();
        let body = http::read_capped(
            response,
            http::MAX_ANSWER_BYTES,
            &format!("the answer to {what}"),
        )
        .await?;
        let value = outcome(what, status, &body)?;
        serde_json::from_value(value).map_err(|e| {
            ApiError::Channel(ChannelError::Unavailable(format!(
                "matrix {what}: unexpected answer: {e}"
            )))
        })
    }

    /// `GET` of a client-server path.
    pub async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        segments: &[&str],
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let url = self.url(segments, query);
        self.call(what, reqwest::Method::GET, url, Body::None, timeout)
            .await
    }

    /// `POST` (or `PUT`) of JSON to a client-server path.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        segments: &[&str],
        body: Value,
    ) -> Result<T, ApiError> {
        let url = self.url(segments, &[]);
        self.call(what, method, url, Body::Json(body), http::CALL_TIMEOUT)
            .await
    }

    /// Uploads a file to the media repository; returns its `mxc://` URI.
    pub async fn upload(
        &self,
        name: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<String, ApiError> {
        #[derive(serde::Deserialize)]
        struct Uploaded {
            content_uri: String,
        }
        let url = self.url(&["_matrix", "media", "v3", "upload"], &[("filename", name)]);
        let body = Body::Bytes {
            content_type: content_type.to_owned(),
            bytes,
        };
        let uploaded: Uploaded = self
            .call(
                "media upload",
                reqwest::Method::POST,
                url,
                body,
                http::CALL_TIMEOUT * 4,
            )
            .await?;
        Ok(uploaded.content_uri)
    }

    /// Downloads the media `server`/`media_id` (authenticated media, Matrix 1.11), refused
    /// past `max_bytes`. The caller has checked both parts ([`super::mapping::parse_mxc`]).
    pub async fn download(
        &self,
        server: &str,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<Bytes, ApiError> {
        let url = self.url(
            &[
                "_matrix", "client", "v1", "media", "download", server, media_id,
            ],
            &[],
        );
        let mut request = self.client.get(url).timeout(http::CALL_TIMEOUT * 4);
        if let Some(token) = self.token() {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::unavailable("matrix media download", e))?;
        let status = response.status();
        if !status.is_success() {
            let body = http::read_capped(response, 64 * 1024, "a failed download's answer")
                .await
                .unwrap_or_default();
            return Err(outcome("media download", status.as_u16(), &body)
                .err()
                .unwrap_or_else(|| {
                    ChannelError::Unavailable(format!("matrix media download: HTTP {status}"))
                        .into()
                }));
        }
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Ok(http::read_capped(response, max, "the file").await?)
    }
}
