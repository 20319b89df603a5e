//! The web chat's page and assets, built into the binary (`include_str!`): no CDN, no build
//! step, no network at run time. The page is a static shell; every byte of data comes from
//! the authenticated `/api/chat` API (`super::chat_api`), and the script sends the user to
//! `/login` when that API answers 401.
//!
//! Agent output is hostile: `chat.js` renders Markdown into DOM nodes with `textContent` only
//! (never `innerHTML`), links only to `http(s)` with `noopener`, and every response here
//! carries a Content-Security-Policy that allows no inline script, no plugin and no framing,
//! so even HTML that slipped through would not run.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("chat.js");
const STYLE: &str = include_str!("chat.css");

/// The policy of every page and asset of the chat.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route(
            "/chat",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/chat.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/chat.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

pub(super) fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_never_writes_html() {
        // The one rule that keeps agent output inert: no HTML parsing of strings.
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(forbidden), "chat.js uses {forbidden}");
        }
    }

    #[test]
    fn the_page_loads_no_inline_script_and_nothing_remote() {
        assert!(
            !PAGE.contains("<script>"),
            "an inline script would need 'unsafe-inline'"
        );
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe-inline"));
    }
}
