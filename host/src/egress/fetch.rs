//! `web_fetch` on the host: [`fetch`] gets one http(s) URL for a session through its agent
//! group's egress rules and returns the page as text ([`super::page`]).
//!
//! Every hop is checked like a `CONNECT`: the URL's host and port (80/443 by default)
//! against the rules, then the host resolves the name itself with [`super::resolve`] (a
//! name never reaches an internal address; only a rule naming the address does) and the
//! client connects to exactly those addresses (reqwest's resolver is overridden per hop, so
//! no second lookup can answer differently). Redirects are followed by hand, at most
//! [`FetchLimits::max_redirects`], each one checked again. The body read is capped in bytes,
//! the whole fetch in time. Each hop becomes a [`HopRecord`] for the egress log, refused
//! ones included.

use super::page::{self, PageError, Rendered};
use super::{EgressRules, Outcome, ResolveError, Verdict};
use reqwest::Url;
use std::time::{Duration, Instant};

/// Bounds of one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Body bytes read; past them the rest is not read and the page is marked cut.
    pub max_body_bytes: usize,
    /// The whole fetch, redirects and conversion included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
        }
    }
}

/// Why a fetch failed; the text is written for the model and names the fix.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url:?} is not a URL web_fetch can get: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "egress to {host}:{port} is not allowed for agent group {group}; the operator can allow it with: crabpot groups update {group} --allow-egress {host}:{port}"
    )]
    NotListed {
        host: String,
        port: u16,
        group: String,
    },
    #[error(
        "egress to {host}:{port} is denied for agent group {group} by the rule --deny-egress {rule}"
    )]
    Denied {
        host: String,
        port: u16,
        group: String,
        rule: String,
    },
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("fetching {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} redirected more than {max} times")]
    TooManyRedirects { url: String, max: usize },
    #[error("{url} answered a redirect ({status}) without a usable Location")]
    BadRedirect { url: String, status: u16 },
    #[error("fetching {url} took longer than {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url} answered HTTP {status}{}", excerpt_suffix(.excerpt))]
    Status {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("{0}")]
    Page(#[from] PageError),
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!("; the page says:\n{excerpt}")
    }
}

/// One connection attempt of a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopRecord {
    pub host: String,
    pub port: u16,
    pub outcome: Outcome,
    /// The rule that allowed it, or why it was refused.
    pub detail: String,
    /// Response bytes read (head not counted).
    pub bytes_down: u64,
    pub duration: Duration,
    /// When the hop started (ms since the epoch).
    pub at_ms: i64,
}

/// A fetched page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Where the page was found, after redirects.
    pub url: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub rendered: Rendered,
    /// The body was longer than [`FetchLimits::max_body_bytes`] and was cut there.
    pub body_cut: bool,
}

impl Fetched {
    /// The text the model sees: a line naming the page, then its text.
    pub fn to_text(&self) -> String {
        let kind = self.content_type.as_deref().unwrap_or("no content type");
        let cut = if self.body_cut {
            " — only the first part of a very large page was read"
        } else {
            ""
        };
        format!(
            "{} (HTTP {}, {kind}{cut})\n\n{}",
            self.url, self.status, self.rendered.text
        )
    }
}

/// Checks `url` as web_fetch takes it: http or https, a host, no more than
/// [`protocol::web::MAX_URL_BYTES`]. Returns the URL and its host and port.
pub fn check_url(text: &str) -> Result<(Url, String, u16), FetchError> {
    let bad = |reason: &str| FetchError::BadUrl {
        url: text.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    if text.len() > protocol::web::MAX_URL_BYTES {
        return Err(bad("it is too long"));
    }
    let url = Url::parse(text.trim()).map_err(|error| bad(&error.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(bad(&format!(
                "only http and https are fetched, not {other}"
            )));
        }
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| bad("it names no host"))?
        .to_owned();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("it names no port"))?;
    Ok((url, host, port))
}

/// Fetches `url` for agent group `group` under `rules`, returning at most `max_chars`
/// characters of text. Every hop, refused or not, is pushed onto `hops`.
pub async fn fetch(
    rules: &EgressRules,
    group: &str,
    url: &str,
    max_chars: usize,
    limits: &FetchLimits,
    hops: &mut Vec<HopRecord>,
) -> Result<Fetched, FetchError> {
    let (start, _, _) = check_url(url)?;
    let shown = start.to_string();
    match tokio::time::timeout(
        limits.timeout,
        fetch_hops(rules, group, start, max_chars, limits, hops),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            url: shown,
            seconds: limits.timeout.as_secs(),
        }),
    }
}

async fn fetch_hops(
    rules: &EgressRules,
    group: &str,
    mut url: Url,
    max_chars: usize,
    limits: &FetchLimits,
    hops: &mut Vec<HopRecord>,
) -> Result<Fetched, FetchError> {
    let mut redirects = 0;
    loop {
        let (checked, host, port) = check_url(url.as_str())?;
        let began = Instant::now();
        let at_ms = protocol::time::now_ms();
        let mut record = |outcome: Outcome, detail: String, bytes_down: u64| {
            hops.push(HopRecord {
                host: host.clone(),
                port,
                outcome,
                detail,
                bytes_down,
                duration: began.elapsed(),
                at_ms,
            });
        };
        let (rule, names_address) = match rules.check(&host, port) {
            Verdict::Allowed {
                rule,
                names_address,
            } => (rule, names_address),
            Verdict::NotListed => {
                record(Outcome::NotListed, "no allow rule covers it".into(), 0);
                return Err(FetchError::NotListed {
                    host: host.clone(),
                    port,
                    group: group.to_owned(),
                });
            }
            Verdict::Denied { rule } => {
                record(Outcome::DeniedRule, format!("denied by {rule}"), 0);
                return Err(FetchError::Denied {
                    host: host.clone(),
                    port,
                    group: group.to_owned(),
                    rule,
                });
            }
        };
        let addresses = match super::resolve(&host, port, names_address).await {
            Ok(addresses) => addresses,
            Err(error) => {
                let outcome = match error {
                    ResolveError::Internal { .. } => Outcome::InternalAddress,
                    ResolveError::Lookup { .. } => Outcome::LookupFailed,
                };
                record(outcome, error.to_string(), 0);
                return Err(error.into());
            }
        };
        let response = match send(&checked, &host, &addresses, limits).await {
            Ok(response) => response,
            Err(reason) => {
                record(Outcome::ConnectFailed, reason.clone(), 0);
                return Err(FetchError::Request {
                    url: checked.to_string(),
                    reason,
                });
            }
        };
        let status = response.status();
        if status.is_redirection() {
            record(
                Outcome::Allowed,
                format!("{rule}; redirect {}", status.as_u16()),
                0,
            );
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|location| checked.join(location).ok());
            let Some(next) = next else {
                return Err(FetchError::BadRedirect {
                    url: checked.to_string(),
                    status: status.as_u16(),
                });
            };
            redirects += 1;
            if redirects > limits.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    url: shown_url(&checked),
                    max: limits.max_redirects,
                });
            }
            url = next;
            continue;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (body, body_cut) = read_capped(response, limits.max_body_bytes).await;
        record(Outcome::Allowed, rule.clone(), body.len() as u64);
        let kind = page::classify(content_type.as_deref(), &body)?;
        if !status.is_success() {
            let excerpt = page::render_blocking(kind, body, 1000)
                .await
                .map(|rendered| rendered.text)
                .unwrap_or_default();
            return Err(FetchError::Status {
                url: shown_url(&checked),
                status: status.as_u16(),
                excerpt,
            });
        }
        let rendered = page::render_blocking(kind, body, max_chars).await?;
        return Ok(Fetched {
            url: shown_url(&checked),
            status: status.as_u16(),
            content_type,
            rendered,
            body_cut,
        });
    }
}

/// One GET to exactly `addresses`, without following redirects or any proxy.
async fn send(
    url: &Url,
    host: &str,
    addresses: &[std::net::SocketAddr],
    limits: &FetchLimits,
) -> Result<reqwest::Response, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(limits.connect_timeout)
        .user_agent(concat!("crabpot-web-fetch/", env!("CARGO_PKG_VERSION")));
    if super::rules::parse_address(host).is_none() {
        // The only lookup reqwest makes is answered with the addresses checked above.
        builder = builder.resolve_to_addrs(host, addresses);
    }
    let client = builder.build().map_err(|error| error.to_string())?;
    client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "text/html, application/xhtml+xml, text/plain;q=0.9, application/json;q=0.9, */*;q=0.5",
        )
        .send()
        .await
        .map_err(|error| describe(&error))
}

/// Reads at most `cap` bytes of the body; true when more was left unread. A body that
/// breaks off keeps what arrived.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, true);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (body, false),
        }
    }
}

/// A reqwest error with its causes, which say what actually went wrong (refused, TLS...).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The URL as shown to the model: without user info, which may be a password.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let (_, host, port) = check_url("https://Example.COM/a?b").unwrap();
        assert_eq!((host.as_str(), port), ("example.com", 443));
        let (_, host, port) = check_url("http://example.com/").unwrap();
        assert_eq!((host.as_str(), port), ("example.com", 80));
        let (_, host, port) = check_url("http://[::1]:8080/").unwrap();
        assert_eq!((host.as_str(), port), ("[::1]", 8080));
        // Odd IPv4 spellings are normalised before the rules see them.
        let (_, host, _) = check_url("http://2130706433/").unwrap();
        assert_eq!(host, "127.0.0.1");
        for (bad, fragment) in [
            ("file:///etc/passwd", "only http and https"),
            ("ftp://example.com/", "only http and https"),
            ("not a url", "relative URL"),
            ("http://", "empty host"),
        ] {
            let error = check_url(bad).unwrap_err().to_string();
            assert!(error.contains(fragment), "{bad}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(5000));
        assert!(
            check_url(&long)
                .unwrap_err()
                .to_string()
                .contains("too long")
        );
    }

    #[tokio::test]
    async fn refusals_name_the_rule_to_add_and_are_recorded() {
        let rules = EgressRules::default();
        let mut hops = Vec::new();
        let error = fetch(
            &rules,
            "main",
            "https://example.com/x",
            100,
            &FetchLimits::default(),
            &mut hops,
        )
        .await
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("crabpot groups update main --allow-egress example.com:443"),
            "{error}"
        );
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].outcome, Outcome::NotListed);

        // A name allowed by a rule but resolving to loopback is refused.
        let mut rules = EgressRules::default();
        rules.allow(&"localhost:8080".parse().unwrap());
        let mut hops = Vec::new();
        let error = fetch(
            &rules,
            "main",
            "http://localhost:8080/",
            100,
            &FetchLimits::default(),
            &mut hops,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, FetchError::Resolve(ResolveError::Internal { .. })),
            "{error}"
        );
        assert_eq!(hops[0].outcome, Outcome::InternalAddress);

        // A deny rule names itself.
        rules.allow(&"*.example.com:443".parse().unwrap());
        rules.deny(&"bad.example.com:443".parse().unwrap());
        let mut hops = Vec::new();
        let error = fetch(
            &rules,
            "g",
            "https://bad.example.com/",
            100,
            &FetchLimits::default(),
            &mut hops,
        )
        .await
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--deny-egress bad.example.com:443"),
            "{error}"
        );
        assert_eq!(hops[0].outcome, Outcome::DeniedRule);
    }

    #[test]
    fn shown_urls_drop_credentials() {
        let url = Url::parse("https://user:secret@example.com/p").unwrap();
        assert_eq!(shown_url(&url), "https://example.com/p");
    }
}
