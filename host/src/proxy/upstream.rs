//! The model server a proxy forwards to ([`ModelUpstream`], what the operator configured, with
//! its [`crate::config::ApiKey`] that never prints), and how a container's request is turned into the
//! upstream's: the endpoint URL, the filtered headers with the host's key, the rewritten body.
//!
//! The container controls the headers and body it sends, so they are treated as hostile:
//! credentials, cookies, proxy and hop-by-hop headers, and headers that would pick another
//! account under the host's key are dropped; the body's `model` is replaced by the configured
//! one, so the agent cannot choose a different (or more expensive) model.

use super::error::ProxyError;
use crate::config::ModelUpstream;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use protocol::ProviderKind;
use serde_json::{Map, Value};

/// The Anthropic API version sent when the container names none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// A [`ModelUpstream`] checked and prepared once: the endpoint URL and the auth header.
#[derive(Clone, Debug)]
pub(crate) struct PreparedUpstream {
    pub(crate) config: ModelUpstream,
    pub(crate) endpoint: reqwest::Url,
    /// `scheme://host:port` of the endpoint, to name the server in messages and logs.
    pub(crate) origin: String,
    auth: Option<(HeaderName, HeaderValue)>,
}

impl PreparedUpstream {
    pub(crate) fn new(config: ModelUpstream) -> Result<Self, ProxyError> {
        let endpoint = endpoint_url(config.provider, &config.base_url)?;
        let origin = endpoint.origin().ascii_serialization();
        let auth = match &config.api_key {
            None => None,
            Some(key) => {
                let (name, text) = match config.provider {
                    ProviderKind::OpenAi => (
                        header::AUTHORIZATION,
                        format!("Bearer {}", key.expose_secret()),
                    ),
                    ProviderKind::Anthropic => (
                        HeaderName::from_static("x-api-key"),
                        key.expose_secret().to_owned(),
                    ),
                };
                let mut value =
                    HeaderValue::from_str(&text).map_err(|_| ProxyError::InvalidUpstream {
                        reason: "the API key holds characters an HTTP header cannot carry"
                            .to_owned(),
                    })?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(Self {
            config,
            endpoint,
            origin,
            auth,
        })
    }

    /// The headers of the upstream request: the container's, filtered, plus the host's key
    /// and (Anthropic) a default `anthropic-version`.
    pub(crate) fn request_headers(&self, incoming: &HeaderMap) -> HeaderMap {
        let named_by_connection: Vec<HeaderName> = incoming
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        let mut headers = HeaderMap::new();
        for (name, value) in incoming {
            if is_forwarded(name) && !named_by_connection.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some((name, value)) = &self.auth {
            headers.insert(name.clone(), value.clone());
        }
        match self.config.provider {
            ProviderKind::OpenAi => {}
            ProviderKind::Anthropic => {
                let version = HeaderName::from_static("anthropic-version");
                if !headers.contains_key(&version) {
                    headers.insert(version, HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
                }
            }
        }
        headers
    }

    /// Rewrites the container's JSON body for the upstream: the configured model, and for
    /// streaming OpenAI requests `stream_options.include_usage = true` so the last chunk
    /// carries the token counts.
    pub(crate) fn rewrite_body(&self, body: &mut Map<String, Value>) {
        body.insert("model".to_owned(), Value::String(self.config.model.clone()));
        match self.config.provider {
            ProviderKind::OpenAi => {
                if body.get("stream") == Some(&Value::Bool(true)) {
                    let options = body
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !options.is_object() {
                        *options = Value::Object(Map::new());
                    }
                    if let Value::Object(options) = options {
                        options.insert("include_usage".to_owned(), Value::Bool(true));
                    }
                }
            }
            ProviderKind::Anthropic => {}
        }
    }
}

/// The endpoint for a provider and base URL: OpenAI `{base}/chat/completions`, Anthropic
/// `{base}/v1/messages` (or `{base}/messages` when the base already ends in `/v1`).
pub(crate) fn endpoint_url(
    provider: ProviderKind,
    base_url: &str,
) -> Result<reqwest::Url, ProxyError> {
    let base = base_url.trim().trim_end_matches('/');
    let text = match provider {
        ProviderKind::OpenAi => format!("{base}/chat/completions"),
        ProviderKind::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
        ProviderKind::Anthropic => format!("{base}/v1/messages"),
    };
    let url = reqwest::Url::parse(&text).map_err(|error| ProxyError::InvalidUpstream {
        reason: format!("base URL {base_url:?} is not a valid URL: {error}"),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ProxyError::InvalidUpstream {
                reason: format!("base URL {base_url:?} has scheme {other:?}; use http or https"),
            });
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ProxyError::InvalidUpstream {
            reason: "the base URL must not hold credentials; configure the API key instead"
                .to_owned(),
        });
    }
    Ok(url)
}

/// True for a container request header that may go upstream.
fn is_forwarded(name: &HeaderName) -> bool {
    let name = name.as_str();
    let dropped = matches!(
        name,
        // Credentials: only the host's key goes upstream.
        "authorization" | "x-api-key" | "api-key" | "cookie"
        // Would pick another account or project under the host's key.
        | "openai-organization" | "openai-project"
        // Hop-by-hop (RFC 9110 section 7.6.1) and framing: set anew for the upstream request.
        | "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        | "host" | "content-length" | "content-type" | "content-encoding" | "expect"
        // The response is scanned for usage, so it must arrive uncompressed.
        | "accept-encoding"
        // Would claim a client address on the container's behalf.
        | "forwarded" | "x-real-ip"
    );
    !dropped && !name.starts_with("proxy-") && !name.starts_with("x-forwarded-")
}

/// True for an upstream response header the container gets: the content type and encoding
/// (a server may compress though not asked to), and what a client needs to back off or
/// report (`retry-after`, rate limits, request ids).
pub(crate) fn is_returned(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "content-type" | "content-encoding" | "retry-after" | "request-id" | "x-request-id"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("sk-secret");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{key:?}"), "***");
        let upstream = ModelUpstream {
            provider: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1/v1".to_owned(),
            model: "m".to_owned(),
            api_key: Some(key),
        };
        assert!(!format!("{upstream:?}").contains("sk-secret"));
        let prepared = PreparedUpstream::new(upstream).unwrap();
        assert!(!format!("{prepared:?}").contains("sk-secret"));
    }

    #[test]
    fn endpoints() {
        fn check(provider: ProviderKind, base_url: &str, expected: Result<&str, ()>) {
            let actual = endpoint_url(provider, base_url)
                .map(|url| url.to_string())
                .map_err(|_| ());
            assert_eq!(
                actual.as_deref(),
                expected.as_deref(),
                "{provider} {base_url}"
            );
        }
        use ProviderKind::{Anthropic, OpenAi};
        check(
            OpenAi,
            "https://api.openai.com/v1",
            Ok("https://api.openai.com/v1/chat/completions"),
        );
        check(
            OpenAi,
            "http://127.0.0.1:11434/v1/",
            Ok("http://127.0.0.1:11434/v1/chat/completions"),
        );
        check(
            OpenAi,
            "https://openrouter.ai/api/v1//",
            Ok("https://openrouter.ai/api/v1/chat/completions"),
        );
        check(
            Anthropic,
            "https://api.anthropic.com",
            Ok("https://api.anthropic.com/v1/messages"),
        );
        check(
            Anthropic,
            "https://api.anthropic.com/",
            Ok("https://api.anthropic.com/v1/messages"),
        );
        check(
            Anthropic,
            "https://api.anthropic.com/v1",
            Ok("https://api.anthropic.com/v1/messages"),
        );
        check(OpenAi, "api.openai.com/v1", Err(()));
        check(OpenAi, "ftp://example.com/v1", Err(()));
        check(OpenAi, "https://user:pw@example.com/v1", Err(()));
        check(Anthropic, "", Err(()));
    }

    #[test]
    fn header_filter() {
        let forwarded = [
            "anthropic-version",
            "anthropic-beta",
            "accept",
            "user-agent",
            "x-stainless-lang",
        ];
        let dropped = [
            "authorization",
            "x-api-key",
            "api-key",
            "cookie",
            "proxy-authorization",
            "proxy-connection",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "host",
            "content-length",
            "accept-encoding",
            "openai-organization",
            "x-forwarded-for",
        ];
        for name in forwarded {
            assert!(is_forwarded(&HeaderName::from_static(name)), "{name}");
        }
        for name in dropped {
            assert!(!is_forwarded(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn connection_named_headers_are_dropped() {
        let prepared = PreparedUpstream::new(ModelUpstream {
            provider: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1/v1".to_owned(),
            model: "m".to_owned(),
            api_key: None,
        })
        .unwrap();
        let mut incoming = HeaderMap::new();
        incoming.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        incoming.insert("x-secret-hop", HeaderValue::from_static("1"));
        incoming.insert("x-kept", HeaderValue::from_static("1"));
        let headers = prepared.request_headers(&incoming);
        assert!(!headers.contains_key("x-secret-hop"));
        assert!(headers.contains_key("x-kept"));
        assert!(
            !headers.contains_key(header::AUTHORIZATION),
            "no key configured, none sent"
        );
    }

    #[test]
    fn body_rewrite() {
        fn check(provider: ProviderKind, body: Value, expected: Value) {
            let prepared = PreparedUpstream::new(ModelUpstream {
                provider,
                base_url: "http://127.0.0.1:1".to_owned(),
                model: "host-model".to_owned(),
                api_key: None,
            })
            .unwrap();
            let Value::Object(mut body) = body else {
                panic!("not an object")
            };
            prepared.rewrite_body(&mut body);
            assert_eq!(Value::Object(body), expected);
        }
        use ProviderKind::{Anthropic, OpenAi};
        use serde_json::json;
        check(
            OpenAi,
            json!({"model": "gpt-x", "messages": []}),
            json!({"model": "host-model", "messages": []}),
        );
        check(
            OpenAi,
            json!({"messages": []}),
            json!({"model": "host-model", "messages": []}),
        );
        check(
            OpenAi,
            json!({"model": "a", "stream": true}),
            json!({"model": "host-model", "stream": true, "stream_options": {"include_usage": true}}),
        );
        check(
            OpenAi,
            json!({"stream": true, "stream_options": {"include_usage": false, "x": 1}}),
            json!({"model": "host-model", "stream": true, "stream_options": {"include_usage": true, "x": 1}}),
        );
        check(
            OpenAi,
            json!({"stream": true, "stream_options": "junk"}),
            json!({"model": "host-model", "stream": true, "stream_options": {"include_usage": true}}),
        );
        check(
            OpenAi,
            json!({"stream": false}),
            json!({"model": "host-model", "stream": false}),
        );
        check(
            Anthropic,
            json!({"model": "claude-x", "stream": true, "max_tokens": 5}),
            json!({"model": "host-model", "stream": true, "max_tokens": 5}),
        );
    }
}
