//! The web tools: `web_fetch` ([`WebFetch`], a page as Markdown or text) and `web_search`
//! ([`WebSearch`], results from the host's search backend). Both are posted to the host on
//! the session's proxy socket (`protocol::web`): the host checks the group's egress rules,
//! resolves, fetches, converts and caps, so the runner needs no TLS, no DNS and no key. The
//! host's error messages (which name the rule or setting to add) reach the model as they are.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, parse_arguments};
use crate::http::ProxyClient;
use protocol::web::{FETCH_PATH, FetchRequest, SEARCH_PATH, SearchRequest, WebAnswer};
use serde::Deserialize;
use std::time::Duration;

pub const WEB_FETCH: &str = "web_fetch";
pub const WEB_SEARCH: &str = "web_search";

/// The most bytes of the host's answer read (100k characters, JSON-escaped, fit).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How long to wait for the host: its own fetch is capped at 30 s, a search at 20 s.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches a web page through the host.
pub struct WebFetch;
/// Searches the web through the host's search backend.
pub struct WebSearch;

impl Tool for WebFetch {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: WEB_FETCH.into(),
            description: format!(
                "Fetch an http(s) URL and read it: HTML comes back as Markdown (title, headings, \
                 links, lists), text and JSON as they are, other types are refused. Only hosts \
                 the operator allowed for this agent are reachable; a refusal says which rule \
                 would allow it. Returns at most max_chars characters (default {}, up to {}) \
                 and says when it cut.",
                protocol::web::DEFAULT_FETCH_CHARS,
                protocol::web::MAX_FETCH_CHARS
            )
            .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The http:// or https:// URL."},
                    "max_chars": {"type": "integer", "minimum": 1, "maximum": protocol::web::MAX_FETCH_CHARS, "description": "Most characters of the page to return."}
                },
                "required": ["url"],
                "additionalProperties": false
            }),
        }
    }

    fn declared_timeout(
        &self,
        _arguments: &serde_json::Value,
        _limits: &crate::config::ToolLimits,
    ) -> Option<Duration> {
        Some(ANSWER_TIMEOUT)
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let request: FetchRequest = parse_arguments(WEB_FETCH, arguments)?;
            if request.url.trim().is_empty() {
                return Err(ToolError::BadArguments {
                    tool: WEB_FETCH.to_owned(),
                    reason: "url is empty".to_owned(),
                });
            }
            let body = serde_json::to_vec(&request).map_err(|e| ToolError::Io(e.to_string()))?;
            ask_host(context, FETCH_PATH, body).await
        })
    }
}

impl Tool for WebSearch {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: WEB_SEARCH.into(),
            description: format!(
                "Search the web. Returns the top results (title, URL, snippet; default {}, up \
                 to {}); read one with web_fetch. Works when the operator configured a search \
                 backend; otherwise the error says so.",
                protocol::web::DEFAULT_SEARCH_RESULTS,
                protocol::web::MAX_SEARCH_RESULTS
            )
            .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to search for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": protocol::web::MAX_SEARCH_RESULTS, "description": "Most results to return."}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        }
    }

    fn declared_timeout(
        &self,
        _arguments: &serde_json::Value,
        _limits: &crate::config::ToolLimits,
    ) -> Option<Duration> {
        Some(ANSWER_TIMEOUT)
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let request: SearchRequest = parse_arguments(WEB_SEARCH, arguments)?;
            if request.query.trim().is_empty() {
                return Err(ToolError::BadArguments {
                    tool: WEB_SEARCH.to_owned(),
                    reason: "query is empty".to_owned(),
                });
            }
            let body = serde_json::to_vec(&request).map_err(|e| ToolError::Io(e.to_string()))?;
            ask_host(context, SEARCH_PATH, body).await
        })
    }
}

/// The error body the host answers with.
#[derive(Debug, Deserialize)]
struct HostError {
    error: HostErrorBody,
}

#[derive(Debug, Deserialize)]
struct HostErrorBody {
    message: String,
}

/// Posts `body` to `path` on the proxy socket and returns the text of the answer; the
/// host's refusal becomes the tool's error, word for word.
async fn ask_host(
    context: &ToolContext<'_>,
    path: &str,
    body: Vec<u8>,
) -> Result<String, ToolError> {
    let mut client = ProxyClient::new(context.paths.proxy_socket());
    client.idle_timeout = ANSWER_TIMEOUT;
    let unreachable =
        |e: crate::http::HttpError| ToolError::Io(format!("the host did not answer: {e}"));
    let mut response = client
        .post_json(path, &[], body)
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let bytes = client
        .read_body(response.body_mut(), MAX_ANSWER_BYTES)
        .await
        .map_err(unreachable)?;
    interpret(status, &bytes)
}

/// The host's answer as the tool's result.
fn interpret(status: http::StatusCode, bytes: &[u8]) -> Result<String, ToolError> {
    if status.is_success() {
        return serde_json::from_slice::<WebAnswer>(bytes)
            .map(|answer| answer.text)
            .map_err(|e| ToolError::Io(format!("the host's answer is not readable: {e}")));
    }
    match serde_json::from_slice::<HostError>(bytes) {
        Ok(error) => Err(ToolError::Refused(error.error.message)),
        Err(_) => Err(ToolError::Io(format!(
            "the host answered HTTP {status} without a reason"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_refusals_reach_the_model_as_the_host_wrote_them() {
        let text = interpret(http::StatusCode::OK, br##"{"text":"# Page"}"##).unwrap();
        assert_eq!(text, "# Page");
        let refused = interpret(
            http::StatusCode::FORBIDDEN,
            br#"{"error":{"type":"web_fetch","message":"egress to x:443 is not allowed; crabpot groups update g --allow-egress x:443"}}"#,
        )
        .unwrap_err();
        assert!(matches!(refused, ToolError::Refused(_)));
        assert!(
            refused.to_string().contains("--allow-egress x:443"),
            "{refused}"
        );
        let odd = interpret(http::StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert!(odd.to_string().contains("502"), "{odd}");
    }

    #[test]
    fn definitions_describe_their_arguments() {
        let fetch = WebFetch.definition();
        assert_eq!(fetch.name, WEB_FETCH);
        assert_eq!(fetch.parameters["required"], serde_json::json!(["url"]));
        let search = WebSearch.definition();
        assert_eq!(search.name, WEB_SEARCH);
        assert_eq!(search.parameters["required"], serde_json::json!(["query"]));
    }
}
