//! A fake SearXNG for the web tools' end-to-end tests: a loopback server ([`FakeSearch`], on
//! [`FakeServer`]) answering `GET /search?q=...&format=json` in SearXNG's JSON shape
//! (`results[]` with `title`, `url`, `content`, `engine`) and recording every request, so a
//! test can check the query and the `Authorization` header the host sent.
//!
//! Each answer carries three results whose titles and snippets name the query, so a test
//! can see that the model got this search's results and not some other text.

use crate::fake_platform::{FakeServer, Recorder};
use axum::extract::Query;
use axum::http::StatusCode;
use std::collections::HashMap;

/// The path SearXNG serves its search on.
pub const PATH: &str = "/search";

/// A recording fake search backend (see the module docs).
pub struct FakeSearch {
    server: FakeServer,
}

impl FakeSearch {
    pub fn start() -> anyhow::Result<FakeSearch> {
        let routes = axum::Router::new().route(PATH, axum::routing::get(answer));
        Ok(FakeSearch {
            server: FakeServer::start(routes)?,
        })
    }

    /// The base URL to set as `CRABPOT_SEARCH_URL`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request received, in order.
    pub fn recorder(&self) -> &Recorder {
        &self.server.recorder
    }
}

async fn answer(
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    if query.get("format").map(String::as_str) != Some("json") {
        // What SearXNG does when a format is not enabled.
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": "format not allowed"})),
        );
    }
    let q = query.get("q").cloned().unwrap_or_default();
    let results: Vec<serde_json::Value> = (1..=3)
        .map(|n| {
            serde_json::json!({
                "title": format!("Result {n} about {q}"),
                "url": format!("https://example.org/{n}"),
                "content": format!("Snippet {n} for {q}."),
                "engine": "fake",
                "score": 1.0 / f64::from(n),
            })
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "query": q,
            "number_of_results": results.len(),
            "results": results,
            "answers": [],
            "suggestions": [],
            "unresponsive_engines": [],
        })),
    )
}
