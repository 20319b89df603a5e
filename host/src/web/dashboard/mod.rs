//! The admin dashboard's page and assets, built into the binary. The page is a static shell
//! (it answers without authentication, like every asset, and holds no data); its script reads
//! and acts through the admin API over HTTP (`/api/v1/...`), which needs an owner's or
//! admin's session and its CSRF token, so the dashboard has no handler of its own and no
//! second implementation of any action. It refreshes every few seconds.

use axum::routing::get;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    use super::chat_ui::asset;
    axum::Router::new()
        .route(
            "/dashboard",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_never_parses_strings_as_html_and_calls_only_the_admin_api() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(forbidden), "dashboard.js uses {forbidden}");
        }
        // Every fetch goes to the admin API or the session: no private endpoints.
        for (at, _) in SCRIPT.match_indices("fetch(") {
            let call = &SCRIPT[at..at + 40.min(SCRIPT.len() - at)];
            assert!(
                call.starts_with("fetch(path") || call.starts_with("fetch(\"/api/session\""),
                "{call}"
            );
        }
        assert!(!PAGE.contains("<script>"));
    }
}
