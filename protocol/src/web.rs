//! The web tools' requests on the proxy socket: the runner posts `web_fetch` and `web_search`
//! calls to [`FETCH_PATH`] and [`SEARCH_PATH`], and the host does the network work (so the
//! container needs no TLS stack, no DNS and no key).
//!
//! Bodies are JSON: a [`FetchRequest`] or [`SearchRequest`] in; a [`WebAnswer`] back with
//! `200`, or `{"error": {"type": ..., "message": ...}}` with a 4xx/5xx status, whose message
//! is written for the model (it names the rule or setting to add).

use serde::{Deserialize, Serialize};

/// Every web tool path starts with this.
pub const WEB_PREFIX: &str = "/crabpot/v1/web/";
/// `POST` a [`FetchRequest`].
pub const FETCH_PATH: &str = "/crabpot/v1/web/fetch";
/// `POST` a [`SearchRequest`].
pub const SEARCH_PATH: &str = "/crabpot/v1/web/search";

/// The largest request body the host reads on these paths.
pub const MAX_WEB_BODY_BYTES: usize = 16 * 1024;
/// Characters of a page returned when the call names no `max_chars`.
pub const DEFAULT_FETCH_CHARS: usize = 20_000;
/// The most characters of a page one call may ask for.
pub const MAX_FETCH_CHARS: usize = 100_000;
/// Results returned when the call names no `limit`.
pub const DEFAULT_SEARCH_RESULTS: usize = 5;
/// The most results one call may ask for.
pub const MAX_SEARCH_RESULTS: usize = 20;
/// The longest URL or query accepted.
pub const MAX_URL_BYTES: usize = 4096;

/// `web_fetch(url, max_chars?)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
}

/// `web_search(query, limit?)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A successful answer: the text the model sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAnswer {
    pub text: String,
}

/// The characters to return for a requested `max_chars`: the default when absent, clamped
/// to `1..=MAX_FETCH_CHARS`.
pub fn fetch_chars(requested: Option<usize>) -> usize {
    requested
        .unwrap_or(DEFAULT_FETCH_CHARS)
        .clamp(1, MAX_FETCH_CHARS)
}

/// The results to return for a requested `limit`, clamped to `1..=MAX_SEARCH_RESULTS`.
pub fn search_results(requested: Option<usize>) -> usize {
    requested
        .unwrap_or(DEFAULT_SEARCH_RESULTS)
        .clamp(1, MAX_SEARCH_RESULTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped() {
        assert_eq!(fetch_chars(None), DEFAULT_FETCH_CHARS);
        assert_eq!(fetch_chars(Some(0)), 1);
        assert_eq!(fetch_chars(Some(10_000_000)), MAX_FETCH_CHARS);
        assert_eq!(search_results(None), DEFAULT_SEARCH_RESULTS);
        assert_eq!(search_results(Some(1000)), MAX_SEARCH_RESULTS);
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let parsed: Result<FetchRequest, _> =
            serde_json::from_str(r#"{"url":"https://x","headers":{}}"#);
        assert!(parsed.is_err());
        let parsed: FetchRequest = serde_json::from_str(r#"{"url":"https://x"}"#).unwrap();
        assert_eq!(parsed.max_chars, None);
    }
}
