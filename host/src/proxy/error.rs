//! [`ProxyError`], the one error type of the model proxy, and how a request-level error
//! becomes the JSON error response the container sees.
//!
//! Errors come in two families. Set-up errors (binding the socket, building the HTTP client,
//! a bad configured upstream) are returned to the host's caller. Request errors (a refused
//! path, a missing model, an unreachable upstream) are turned into an HTTP status and a body
//! shaped like `{"error":{"type":"...","message":"..."}}`, which both the OpenAI and the
//! Anthropic client code in the agent-runner can read; the runner relays the message verbatim
//! to the user, so every message is written for a person. No message ever holds an API key.

use http::StatusCode;
use protocol::ProviderKind;
use std::path::PathBuf;

/// Everything that can go wrong in the model proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Binding the session socket failed (missing folder, path too long, permissions).
    /// Not retryable: the session folder or the host's configuration needs fixing.
    #[error("cannot bind the proxy socket at {}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Something other than a socket sits where the proxy socket goes; it is left alone.
    /// Not retryable.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },

    /// Setting the mode or owner of the bound socket failed (for example chown without root).
    /// Not retryable.
    #[error("cannot set the mode or owner of the proxy socket at {}", path.display())]
    SocketPermissions {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The configured upstream is unusable (bad base URL, API key with characters a header
    /// cannot carry). Not retryable: the configuration needs fixing.
    #[error("invalid model upstream: {reason}")]
    InvalidUpstream { reason: String },

    /// A configured proxy limit lets nothing through (zero connections, a zero timeout).
    /// Not retryable: the configuration needs fixing.
    #[error("invalid proxy limit {field}: {reason}")]
    InvalidLimit {
        field: &'static str,
        reason: &'static str,
    },

    /// The request took longer than the proxy's total time limit (the answer, or its whole
    /// streamed body). Retryable, with a request that takes less time.
    #[error("the request took longer than the proxy's limit of {} s", limit.as_secs())]
    RequestTimeout { limit: std::time::Duration },

    /// The shared HTTP client could not be built (TLS backend set-up). Not retryable.
    #[error("cannot build the http client for the model upstream")]
    HttpClient(#[source] reqwest::Error),

    /// The container asked for something other than a model endpoint. Not retryable.
    #[error("{method} {path} is not served here")]
    Forbidden { method: String, path: String },

    /// The host has no model configured. Retryable only after the operator configures one.
    #[error("no model is configured on the host")]
    NoModelConfigured,

    /// The request used the other provider's wire format. Not retryable.
    #[error("this session's model speaks {provider}")]
    WrongShape { provider: ProviderKind },

    /// The request body exceeded the size limit. Not retryable.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },

    /// The request body is not a JSON object. Not retryable.
    #[error("invalid request body: {reason}")]
    InvalidBody { reason: String },

    /// Reading the request body from the container failed (it hung up). Retryable.
    #[error("cannot read the request body")]
    ReadBody(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A live body was not a live event within its caps (`protocol::live::parse` names
    /// why). Not retryable: the body is bad as sent.
    #[error("refused live event: {0}")]
    LiveRefused(protocol::live::LiveError),

    /// The session posted more live events per second than the cap; this one is dropped.
    /// Retryable after a short pause.
    #[error("more than {per_second} live events per second; this one was dropped")]
    LiveRateLimited { per_second: u32 },

    /// The upstream could not be reached or did not answer with a response. Retryable.
    #[error("the model server at {upstream} could not be reached")]
    UpstreamUnreachable {
        upstream: String,
        #[source]
        source: reqwest::Error,
    },

    /// The upstream did not accept the connection within the connect timeout, or went quiet
    /// for longer than the idle read timeout before sending the response head. Retryable.
    #[error("the model server at {upstream} timed out")]
    UpstreamTimeout {
        upstream: String,
        #[source]
        source: reqwest::Error,
    },

    /// The upstream broke off in the middle of a response body; the container sees a
    /// truncated response. Retryable.
    #[error("the model server broke off its response")]
    UpstreamBody(#[source] reqwest::Error),

    /// An egress destination broke off a forwarded plain HTTP exchange (its response, or
    /// reading the container's request body for it). Retryable.
    #[error("the egress destination broke off the exchange")]
    EgressBody(#[source] hyper::Error),
}

/// The exact message the container gets when no model is configured.
pub(crate) const NO_MODEL_MESSAGE: &str = "no model is configured on the host: set \
    CRABPOT_MODEL_PROVIDER (openai or anthropic), CRABPOT_MODEL_BASE_URL, CRABPOT_MODEL and \
    CRABPOT_MODEL_API_KEY (or OPENAI_API_KEY / ANTHROPIC_API_KEY) and restart crabpot serve";

impl ProxyError {
    /// The HTTP status the container sees for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ProxyError::NoModelConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::WrongShape { .. } | ProxyError::InvalidBody { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::LiveRefused(protocol::live::LiveError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ProxyError::LiveRefused(_) => StatusCode::BAD_REQUEST,
            ProxyError::LiveRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::UpstreamUnreachable { .. }
            | ProxyError::UpstreamBody(_)
            | ProxyError::EgressBody(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::RequestTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::ReadBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::Bind { .. }
            | ProxyError::NotASocket { .. }
            | ProxyError::SocketPermissions { .. }
            | ProxyError::InvalidUpstream { .. }
            | ProxyError::InvalidLimit { .. }
            | ProxyError::HttpClient(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error.type` of the JSON error body.
    pub fn error_type(&self) -> &'static str {
        match self {
            ProxyError::Forbidden { .. } => "forbidden",
            ProxyError::NoModelConfigured => "no_model_configured",
            ProxyError::WrongShape { .. } => "wrong_endpoint",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::InvalidBody { .. } | ProxyError::ReadBody(_) => "invalid_request",
            ProxyError::LiveRefused(error) => error.kind(),
            ProxyError::LiveRateLimited { .. } => "live_rate_limited",
            ProxyError::UpstreamUnreachable { .. } | ProxyError::UpstreamBody(_) => {
                "upstream_unreachable"
            }
            ProxyError::EgressBody(_) => "egress_failed",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::RequestTimeout { .. } => "request_timeout",
            ProxyError::Bind { .. }
            | ProxyError::NotASocket { .. }
            | ProxyError::SocketPermissions { .. }
            | ProxyError::InvalidUpstream { .. }
            | ProxyError::InvalidLimit { .. }
            | ProxyError::HttpClient(_) => "proxy_error",
        }
    }

    /// The human-readable `error.message` of the JSON error body: the error and its causes.
    /// reqwest errors are stored without their URL (see [`ProxyError::from_upstream`]), so the
    /// base URL is named once, by the variant.
    pub fn message(&self) -> String {
        match self {
            ProxyError::NoModelConfigured => NO_MODEL_MESSAGE.to_owned(),
            ProxyError::Forbidden { method, path } => format!(
                "{method} {path} is not served here: the model proxy only serves \
                 POST /v1/chat/completions (openai) and POST /v1/messages (anthropic), and \
                 POST {} (live drafts)",
                protocol::live::LIVE_PATH
            ),
            ProxyError::WrongShape { provider } => format!(
                "this session's model speaks {provider}; use {}",
                super::route::Route::for_provider(*provider).path()
            ),
            ProxyError::Bind { .. }
            | ProxyError::NotASocket { .. }
            | ProxyError::SocketPermissions { .. }
            | ProxyError::InvalidUpstream { .. }
            | ProxyError::InvalidLimit { .. }
            | ProxyError::RequestTimeout { .. }
            | ProxyError::HttpClient(_)
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::InvalidBody { .. }
            | ProxyError::ReadBody(_)
            | ProxyError::LiveRefused(_)
            | ProxyError::LiveRateLimited { .. }
            | ProxyError::UpstreamUnreachable { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamBody(_)
            | ProxyError::EgressBody(_) => {
                let mut message = self.to_string();
                let mut cause = std::error::Error::source(self);
                while let Some(error) = cause {
                    message.push_str(": ");
                    message.push_str(&error.to_string());
                    cause = error.source();
                }
                message
            }
        }
    }

    /// Classifies a failed upstream request: a timeout or anything else (refused, reset, DNS,
    /// TLS). The URL is dropped from the reqwest error so messages stay short.
    pub(crate) fn from_upstream(upstream: String, error: reqwest::Error) -> Self {
        let source = error.without_url();
        if source.is_timeout() {
            ProxyError::UpstreamTimeout { upstream, source }
        } else {
            ProxyError::UpstreamUnreachable { upstream, source }
        }
    }

    /// The JSON error body: `{"error":{"type":..., "message":...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "type": self.error_type(), "message": self.message() }
        })
    }
}
