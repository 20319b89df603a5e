//! `web_search` on the host: [`search`] asks the configured SearXNG-compatible backend
//! (`GET {url}/search?q=<query>&format=json`, with `Authorization: Bearer <key>` when a key
//! is set) and turns its `results[]` (`title`, `url`, `content`, `engine`) into text for the
//! model.
//!
//! The backend is the host's own configuration, so it is not subject to any group's egress
//! rules; each search is still recorded in the egress log. The key stays on the host: it is
//! never logged, never put in an error and never sent to a container.

use crate::config::SearchConfig;
use serde::Deserialize;
use std::time::Duration;

/// The most bytes of a backend's answer read.
pub const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// How long one search may take.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Characters of one result's snippet shown.
const MAX_SNIPPET_CHARS: usize = 400;

/// Why a search failed; written for the model (and the operator reading its reply).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(
        "web_search is not configured on this host: the operator sets CRABPOT_SEARCH_URL to a SearXNG-compatible server (and CRABPOT_SEARCH_KEY if it needs a key), or [search] url and key in crabpot.toml"
    )]
    NotConfigured,
    #[error("the search query is empty")]
    EmptyQuery,
    #[error("the search query is longer than {0} bytes")]
    QueryTooLong(usize),
    #[error("the search backend could not be reached: {0}")]
    Unreachable(String),
    #[error("the search backend answered HTTP {status}{hint}")]
    Status { status: u16, hint: &'static str },
    #[error("the search backend's answer is not SearXNG JSON: {0}")]
    BadAnswer(String),
    #[error("the search backend took longer than {} s", SEARCH_TIMEOUT.as_secs())]
    Timeout,
}

/// One result as SearXNG sends it; every field may be missing.
#[derive(Debug, Default, Deserialize)]
struct RawResult {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    engine: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawAnswer {
    #[serde(default)]
    results: Vec<serde_json::Value>,
}

/// A search's outcome: the text for the model and the bytes read (for the egress log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Searched {
    pub text: String,
    pub results: usize,
    pub bytes_down: u64,
}

/// Asks `config`'s backend for `query` and returns at most `limit` results as text.
pub async fn search(
    client: &reqwest::Client,
    config: &SearchConfig,
    query: &str,
    limit: usize,
) -> Result<Searched, SearchError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    if query.len() > protocol::web::MAX_URL_BYTES {
        return Err(SearchError::QueryTooLong(protocol::web::MAX_URL_BYTES));
    }
    match tokio::time::timeout(SEARCH_TIMEOUT, ask(client, config, query, limit)).await {
        Ok(result) => result,
        Err(_) => Err(SearchError::Timeout),
    }
}

async fn ask(
    client: &reqwest::Client,
    config: &SearchConfig,
    query: &str,
    limit: usize,
) -> Result<Searched, SearchError> {
    let mut request = client
        .get(format!("{}/search", config.url))
        .query(&[("q", query), ("format", "json")])
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(key) = &config.key {
        request = request.bearer_auth(key.expose_secret());
    }
    // The error's text names the URL, never the header with the key.
    let mut response = request
        .send()
        .await
        .map_err(|error| SearchError::Unreachable(error.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(SearchError::Status {
            status: status.as_u16(),
            hint: match status.as_u16() {
                401 => " (the key in CRABPOT_SEARCH_KEY was refused)",
                403 => {
                    " (SearXNG answers 403 when `json` is not in its search.formats setting, or when the key is refused)"
                }
                429 => " (rate limited; try again later)",
                _ => "",
            },
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| SearchError::Unreachable(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(SearchError::BadAnswer(format!(
                "it is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let bytes_down = body.len() as u64;
    let (text, results) = format_answer(query, &body, limit)?;
    Ok(Searched {
        text,
        results,
        bytes_down,
    })
}

/// The backend's JSON as text: numbered results with title, URL and snippet.
pub fn format_answer(
    query: &str,
    body: &[u8],
    limit: usize,
) -> Result<(String, usize), SearchError> {
    let answer: RawAnswer =
        serde_json::from_slice(body).map_err(|error| SearchError::BadAnswer(error.to_string()))?;
    let results: Vec<RawResult> = answer
        .results
        .into_iter()
        // One odd entry does not spoil the others.
        .filter_map(|value| serde_json::from_value(value).ok())
        .filter(|result: &RawResult| result.url.as_deref().is_some_and(|url| !url.is_empty()))
        .take(limit)
        .collect();
    if results.is_empty() {
        return Ok((format!("No results for {query:?}."), 0));
    }
    let mut text = format!("Search results for {query:?}:\n");
    for (index, result) in results.iter().enumerate() {
        let title = one_line(result.title.as_deref().unwrap_or("(no title)"), 200);
        let url = one_line(result.url.as_deref().unwrap_or_default(), 2000);
        text.push_str(&format!("\n{}. {title}\n   {url}\n", index + 1));
        if let Some(snippet) = result
            .content
            .as_deref()
            .map(|s| one_line(s, MAX_SNIPPET_CHARS))
            && !snippet.is_empty()
        {
            text.push_str(&format!("   {snippet}\n"));
        }
        if let Some(engine) = result.engine.as_deref().filter(|e| !e.is_empty()) {
            text.push_str(&format!("   (from {})\n", one_line(engine, 40)));
        }
    }
    text.push_str("\nUse web_fetch on a URL to read the page.");
    Ok((text, results.len()))
}

/// `text` on one line (whitespace collapsed), at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &joined[..end]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searxng_results_become_numbered_text() {
        let body = serde_json::json!({
            "query": "rust",
            "results": [
                {"title": "Rust\nLang", "url": "https://www.rust-lang.org/", "content": "A language  empowering everyone", "engine": "duckduckgo"},
                {"title": "no url"},
                "not an object",
                {"title": "Second", "url": "https://doc.rust-lang.org/", "content": "x".repeat(1000)},
                {"title": "Third", "url": "https://crates.io/"}
            ]
        })
        .to_string();
        let (text, count) = format_answer("rust", body.as_bytes(), 2).unwrap();
        assert_eq!(count, 2);
        assert!(text.contains("1. Rust Lang\n   https://www.rust-lang.org/\n   A language empowering everyone\n   (from duckduckgo)"), "{text}");
        assert!(
            text.contains("2. Second\n   https://doc.rust-lang.org/"),
            "{text}"
        );
        assert!(!text.contains("Third"));
        assert!(!text.contains(&"x".repeat(401)));
        let (text, count) = format_answer("q", br#"{"results": []}"#, 5).unwrap();
        assert_eq!((text.as_str(), count), ("No results for \"q\".", 0));
        assert!(format_answer("q", b"<html>", 5).is_err());
    }

    #[test]
    fn not_configured_names_the_settings() {
        let text = SearchError::NotConfigured.to_string();
        assert!(text.contains("CRABPOT_SEARCH_URL") && text.contains("[search]"));
    }
}
