//! The search backend behind the agents' `web_search` tool: a SearXNG-compatible JSON API
//! (`GET {url}/search?q=...&format=json`), set with `CRABPOT_SEARCH_URL` and
//! `CRABPOT_SEARCH_KEY`, or `[search] url` and `key` in `crabpot.toml`. The key is a secret
//! ([`ApiKey`]: never printed); the host sends it as `Authorization: Bearer <key>` and it
//! never reaches a container. Unset, `web_search` answers with an error naming these settings.

use super::{ApiKey, ConfigError, invalid};
use serde::Deserialize;

/// The `[search]` table and `CRABPOT_SEARCH_*` variables.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearchConfig {
    pub url: Option<String>,
    pub key: Option<String>,
}

impl RawSearchConfig {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawSearchConfig) -> RawSearchConfig {
        RawSearchConfig {
            url: over.url.or(self.url),
            key: over.key.or(self.key),
        }
    }

    /// `CRABPOT_SEARCH_URL` and `CRABPOT_SEARCH_KEY`.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> RawSearchConfig {
        let text = |name: &str| get(name).filter(|value| !value.trim().is_empty());
        RawSearchConfig {
            url: text("CRABPOT_SEARCH_URL"),
            key: text("CRABPOT_SEARCH_KEY"),
        }
    }
}

/// A validated search backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchConfig {
    /// The base URL without a trailing slash; `/search` is appended.
    pub url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub key: Option<ApiKey>,
}

impl SearchConfig {
    /// `None` when no URL is set; a key without a URL, or a URL that is not http(s), is an
    /// error naming the setting.
    pub fn from_raw(raw: &RawSearchConfig) -> Result<Option<SearchConfig>, ConfigError> {
        let Some(url) = raw.url.as_deref().map(str::trim) else {
            if raw.key.is_some() {
                return Err(invalid(
                    "search.key",
                    "a search key is set but no search URL: set CRABPOT_SEARCH_URL (or [search] url)"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let parsed = url
            .parse::<http::Uri>()
            .map_err(|e| invalid("search.url", format!("{url:?} is not a URL: {e}")))?;
        match parsed.scheme_str() {
            Some("http" | "https") if parsed.authority().is_some() => {}
            _ => {
                return Err(invalid(
                    "search.url",
                    format!("{url:?} must start with http:// or https:// and name a host"),
                ));
            }
        }
        if parsed.query().is_some() {
            return Err(invalid(
                "search.url",
                format!("{url:?} must be the server's base URL, without a query"),
            ));
        }
        Ok(Some(SearchConfig {
            url: url.trim_end_matches('/').to_owned(),
            key: raw
                .key
                .as_deref()
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(ApiKey::new),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>, key: Option<&str>) -> RawSearchConfig {
        RawSearchConfig {
            url: url.map(str::to_owned),
            key: key.map(str::to_owned),
        }
    }

    #[test]
    fn search_settings_are_checked() {
        assert_eq!(SearchConfig::from_raw(&raw(None, None)).unwrap(), None);
        let config = SearchConfig::from_raw(&raw(Some("http://127.0.0.1:8888/"), Some("k")))
            .unwrap()
            .unwrap();
        assert_eq!(config.url, "http://127.0.0.1:8888");
        assert_eq!(config.key.as_ref().map(ApiKey::expose_secret), Some("k"));
        assert!(!format!("{config:?}").contains("\"k\""));
        for (bad, fragment) in [
            (raw(None, Some("k")), "no search URL"),
            (raw(Some("ftp://x"), None), "http://"),
            (raw(Some("searx"), None), "http://"),
            (raw(Some("http://x/?a=b"), None), "without a query"),
        ] {
            let error = SearchConfig::from_raw(&bad).unwrap_err().to_string();
            assert!(error.contains(fragment), "{error}");
        }
    }

    #[test]
    fn env_names_the_settings() {
        let env = |name: &str| match name {
            "CRABPOT_SEARCH_URL" => Some("http://s".to_owned()),
            "CRABPOT_SEARCH_KEY" => Some(" ".to_owned()),
            _ => None,
        };
        let raw = RawSearchConfig::from_env(&env);
        assert_eq!(raw.url.as_deref(), Some("http://s"));
        assert_eq!(raw.key, None);
        let merged = RawSearchConfig::default().merge(raw);
        assert_eq!(merged.url.as_deref(), Some("http://s"));
    }
}
