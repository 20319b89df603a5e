//! The model server the operator configured ([`ModelUpstream`]) and its key ([`ApiKey`], a
//! secret that never prints). Defined with the configuration, below the proxy that uses them.

use protocol::ProviderKind;
use std::fmt;

/// An API key. Its `Debug` and `Display` print `***`, so it cannot leak through a log line or
/// an error message; [`ApiKey::expose_secret`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that puts it in a request header.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The model server a session's requests go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelUpstream {
    /// The wire format the server speaks; the container must use the matching route.
    pub provider: ProviderKind,
    /// OpenAI: the API root including the version, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1`. Anthropic: the server root, e.g. `https://api.anthropic.com`
    /// (a trailing `/v1` is tolerated).
    pub base_url: String,
    /// The model every request is sent to, whatever the container asked for.
    pub model: String,
    /// `None` for local servers that need no key (Ollama, llama.cpp).
    pub api_key: Option<ApiKey>,
}
