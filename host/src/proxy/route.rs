//! [`Route`]: the two model endpoints the proxy serves, one per provider wire format.
//!
//! Only `POST /v1/chat/completions` (OpenAI Chat Completions) and `POST /v1/messages`
//! (Anthropic Messages) are routes; every other method and path is refused. A query string is
//! ignored and never forwarded.

use http::Method;
use protocol::ProviderKind;

/// A model endpoint the container may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`, the OpenAI shape.
    OpenAiChat,
    /// `POST /v1/messages`, the Anthropic shape.
    AnthropicMessages,
}

impl Route {
    /// The route for a method and path, or `None` when the proxy refuses them.
    pub fn classify(method: &Method, path: &str) -> Option<Route> {
        if method != Method::POST {
            return None;
        }
        match path {
            "/v1/chat/completions" => Some(Route::OpenAiChat),
            "/v1/messages" => Some(Route::AnthropicMessages),
            _ => None,
        }
    }

    /// The route that speaks a provider's wire format.
    pub fn for_provider(provider: ProviderKind) -> Route {
        match provider {
            ProviderKind::OpenAi => Route::OpenAiChat,
            ProviderKind::Anthropic => Route::AnthropicMessages,
        }
    }

    /// The wire format this route speaks.
    pub fn provider(self) -> ProviderKind {
        match self {
            Route::OpenAiChat => ProviderKind::OpenAi,
            Route::AnthropicMessages => ProviderKind::Anthropic,
        }
    }

    /// The path the container calls for this route.
    pub fn path(self) -> &'static str {
        match self {
            Route::OpenAiChat => "/v1/chat/completions",
            Route::AnthropicMessages => "/v1/messages",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        fn check(method: Method, path: &str, expected: Option<Route>) {
            assert_eq!(Route::classify(&method, path), expected, "{method} {path}");
        }
        check(
            Method::POST,
            "/v1/chat/completions",
            Some(Route::OpenAiChat),
        );
        check(Method::POST, "/v1/messages", Some(Route::AnthropicMessages));
        check(Method::GET, "/v1/chat/completions", None);
        check(Method::PUT, "/v1/messages", None);
        check(Method::POST, "/v1/models", None);
        check(Method::POST, "/v1/messages/", None);
        check(Method::POST, "/v1/chat/completions/../../admin", None);
        check(Method::POST, "/", None);
        for provider in ProviderKind::ALL {
            assert_eq!(Route::for_provider(*provider).provider(), *provider);
        }
    }
}
