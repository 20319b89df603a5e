//! The web server's settings: where it listens (`web_listen`, `CRABPOT_WEB_LISTEN`,
//! `--web-listen`; `off` disables it), whether it sits behind HTTPS (`web_behind_https`,
//! `CRABPOT_WEB_BEHIND_HTTPS`: cookies are then `Secure`), and the address people reach it
//! at (`web_public_url`, `CRABPOT_WEB_PUBLIC_URL`), used in login links.

use super::{ConfigError, invalid};
use std::net::SocketAddr;

/// The default listen address: loopback only. TLS and a public name are a reverse proxy's.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The validated web settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// `None` = the web server is off.
    pub listen: Option<SocketAddr>,
    /// The server is reached through HTTPS (a reverse proxy): cookies are `Secure`.
    pub behind_https: bool,
    /// The base URL people open, without a trailing slash; `None` = `http://<listen>`.
    pub public_url: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: DEFAULT_LISTEN.parse().ok(),
            behind_https: false,
            public_url: None,
        }
    }
}

impl WebConfig {
    /// Validates the raw fields; errors name the key.
    pub fn from_raw(
        listen: Option<&str>,
        behind_https: Option<bool>,
        public_url: Option<&str>,
    ) -> Result<WebConfig, ConfigError> {
        let listen = match listen.map(str::trim) {
            None => WebConfig::default().listen,
            Some("off") => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "web_listen",
                    format!("{text:?} is not `off` or an address like 127.0.0.1:7878: {e}"),
                )
            })?),
        };
        let public_url = match public_url.map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                let parsed = url
                    .parse::<http::Uri>()
                    .map_err(|e| invalid("web_public_url", format!("{url:?} is not a URL: {e}")))?;
                match parsed.scheme_str() {
                    Some("http" | "https") if parsed.authority().is_some() => {}
                    _ => {
                        return Err(invalid(
                            "web_public_url",
                            format!("{url:?} must start with http:// or https:// and name a host"),
                        ));
                    }
                }
                Some(url.trim_end_matches('/').to_owned())
            }
        };
        Ok(WebConfig {
            listen,
            behind_https: behind_https.unwrap_or(false),
            public_url,
        })
    }

    /// The base URL for links, given the address actually bound.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_defaults_to_loopback_and_off_disables_it() {
        let default = WebConfig::from_raw(None, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default.listen, "127.0.0.1:7878".parse().ok());
        let off = WebConfig::from_raw(Some("off"), None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.listen, None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (Some("localhost"), None, "web_listen"),
            (Some("127.0.0.1:99999"), None, "web_listen"),
            (None, Some("ftp://x"), "web_public_url"),
            (None, Some("not a url"), "web_public_url"),
        ];
        for (listen, url, key) in cases {
            let error = WebConfig::from_raw(listen, None, url)
                .err()
                .unwrap_or_else(|| panic!("{listen:?} {url:?} was accepted"));
            assert!(error.to_string().starts_with(key), "{error}");
        }
    }

    #[test]
    fn public_url_wins_over_the_bound_address() {
        let web = WebConfig::from_raw(None, Some(true), Some("https://chat.example.org/"))
            .unwrap_or_else(|e| panic!("{e}"));
        let bound = "127.0.0.1:1234".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(web.base_url(bound), "https://chat.example.org");
        assert!(web.behind_https);
        let plain = WebConfig::default();
        assert_eq!(plain.base_url(bound), "http://127.0.0.1:1234");
    }
}
