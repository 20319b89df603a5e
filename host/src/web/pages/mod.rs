//! The server-rendered pages of the web server: the login page, the landing page and short
//! notices (a used login link, a failed login), plus their stylesheet at `/assets/style.css`.
//! The HTML is built into the binary (`include_str!`); no CDN, no script. Every value put
//! into a page goes through [`escape`].

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

const LOGIN: &str = include_str!("login.html");
const NOTICE: &str = include_str!("notice.html");
const STYLE: &str = include_str!("style.css");

/// The headers every page carries: no script at all, no framing, no referrer (a login
/// link's token is in its URL), no caching.
fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it Chromium sends `Origin: null` with the login form's POST,
    // which the login's cross-site check must refuse. `same-origin` tells nothing to others.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The login page, with an error above the form when `error` is set.
pub fn login(status: StatusCode, error: Option<&str>) -> Response {
    let message = error.map_or_else(String::new, |error| {
        format!("<p class=\"error\">{}</p>", escape(error))
    });
    page(status, LOGIN.replace("{{message}}", &message))
}

/// A short notice with one link; `refresh` sends the browser on to the link at once.
pub struct Notice<'a> {
    pub status: StatusCode,
    pub title: &'a str,
    pub text: &'a str,
    pub href: &'a str,
    pub link: &'a str,
    pub refresh: bool,
}

pub fn notice(notice: &Notice<'_>) -> Response {
    let refresh = if notice.refresh {
        format!(
            "<meta http-equiv=\"refresh\" content=\"0;url={}\">",
            escape(notice.href)
        )
    } else {
        String::new()
    };
    page(
        notice.status,
        NOTICE
            .replace("{{refresh}}", &refresh)
            .replace("{{title}}", &escape(notice.title))
            .replace("{{text}}", &escape(notice.text))
            .replace("{{href}}", &escape(notice.href))
            .replace("{{link}}", &escape(notice.link)),
    )
}

/// `GET /assets/style.css`.
pub async fn style() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Text made safe to put in HTML, attribute values included.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_into_pages() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let response = login(StatusCode::OK, Some("<script>"));
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}
