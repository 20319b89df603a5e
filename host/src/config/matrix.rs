//! Matrix (`[channels.matrix]` in `crabpot.toml`, or `CRABPOT_MATRIX_*`): the homeserver, the
//! bot's user and how it logs in (a password or an access token), and which room invites it
//! accepts. Matrix is on when the homeserver is set.

use super::{ApiKey, ConfigError, invalid};
use serde::Deserialize;

/// Which invites the bot accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitePolicy {
    /// Every invite.
    All,
    /// Invites from people crabpot knows (a `matrix:` user in the central DB), and to rooms
    /// already registered as chats.
    #[default]
    Known,
    /// None: rooms are joined by hand.
    None,
}

/// How the bot logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatrixAuth {
    /// `m.login.password` at start.
    Password(ApiKey),
    /// An access token issued before.
    AccessToken(ApiKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixConfig {
    /// The client-server API's base URL, without a trailing slash (`https://matrix.example.org`).
    pub homeserver: String,
    /// The bot's user id (`@crabpot:example.org`) or its localpart.
    pub user: String,
    pub auth: MatrixAuth,
    pub invites: InvitePolicy,
}

/// `[channels.matrix]` before validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    pub homeserver: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub access_token: Option<String>,
    pub invites: Option<InvitePolicy>,
}

impl RawMatrix {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawMatrix) -> RawMatrix {
        RawMatrix {
            homeserver: over.homeserver.or(self.homeserver),
            user: over.user.or(self.user),
            password: over.password.or(self.password),
            access_token: over.access_token.or(self.access_token),
            invites: over.invites.or(self.invites),
        }
    }

    /// The `CRABPOT_MATRIX_*` variables.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<RawMatrix, ConfigError> {
        let text = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let invites = match text("CRABPOT_MATRIX_INVITES").as_deref().map(str::trim) {
            None => None,
            Some("all") => Some(InvitePolicy::All),
            Some("known") => Some(InvitePolicy::Known),
            Some("none") => Some(InvitePolicy::None),
            Some(other) => {
                return Err(invalid(
                    "CRABPOT_MATRIX_INVITES",
                    format!("{other:?} is not one of: all, known, none"),
                ));
            }
        };
        Ok(RawMatrix {
            homeserver: text("CRABPOT_MATRIX_HOMESERVER"),
            user: text("CRABPOT_MATRIX_USER"),
            password: text("CRABPOT_MATRIX_PASSWORD"),
            access_token: text("CRABPOT_MATRIX_ACCESS_TOKEN"),
            invites,
        })
    }
}

/// The password as given: unlike a token it may hold spaces (and is not trimmed), but no
/// control characters. `None` when unset or empty.
fn password(value: &Option<String>) -> Result<Option<ApiKey>, ConfigError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) if text.chars().any(char::is_control) => Err(invalid(
            "channels.matrix.password",
            "contains control characters".into(),
        )),
        Some(text) => Ok(Some(ApiKey::new(text))),
    }
}

/// Validates `[channels.matrix]`; `None` when no homeserver is set. Errors name the key.
pub fn matrix(raw: &RawMatrix) -> Result<Option<MatrixConfig>, ConfigError> {
    let Some(homeserver) = raw
        .homeserver
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let homeserver =
        super::channels::web_url("channels.matrix.homeserver", homeserver, &["https", "http"])?;
    let user = raw
        .user
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid(
                "channels.matrix.user",
                "the bot's user id (CRABPOT_MATRIX_USER, e.g. @crabpot:example.org) is needed"
                    .into(),
            )
        })?;
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "channels.matrix.user",
            format!("{user:?} contains whitespace or control characters"),
        ));
    }
    let password = password(&raw.password)?;
    let access_token = super::channels::token("channels.matrix.access_token", &raw.access_token)?;
    let auth = match (password, access_token) {
        (_, Some(token)) => MatrixAuth::AccessToken(token),
        (Some(password), None) => MatrixAuth::Password(password),
        (None, None) => {
            return Err(invalid(
                "channels.matrix",
                "needs password (CRABPOT_MATRIX_PASSWORD) or access_token (CRABPOT_MATRIX_ACCESS_TOKEN)".into(),
            ));
        }
    };
    Ok(Some(MatrixConfig {
        homeserver,
        user: user.to_owned(),
        auth,
        invites: raw.invites.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Result<RawMatrix, ConfigError> {
        let env: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RawMatrix::from_env(&|key| env.get(key).cloned())
    }

    #[test]
    fn the_environment_configures_matrix() -> Result<(), ConfigError> {
        assert_eq!(matrix(&raw(&[])?)?, None);
        let config = matrix(&raw(&[
            ("CRABPOT_MATRIX_HOMESERVER", "https://matrix.example.org"),
            ("CRABPOT_MATRIX_USER", "@crabpot:example.org"),
            ("CRABPOT_MATRIX_PASSWORD", "correct horse battery"),
            ("CRABPOT_MATRIX_INVITES", "all"),
        ])?)?
        .ok_or_else(|| invalid("test", "matrix is on".into()))?;
        assert_eq!(config.user, "@crabpot:example.org");
        assert_eq!(config.invites, InvitePolicy::All);
        assert_eq!(
            config.auth,
            MatrixAuth::Password(ApiKey::new("correct horse battery"))
        );
        let token = matrix(&raw(&[
            ("CRABPOT_MATRIX_HOMESERVER", "http://127.0.0.1:8008"),
            ("CRABPOT_MATRIX_USER", "crabpot"),
            ("CRABPOT_MATRIX_PASSWORD", "pw"),
            ("CRABPOT_MATRIX_ACCESS_TOKEN", "syt_abc"),
        ])?)?
        .ok_or_else(|| invalid("test", "matrix is on".into()))?;
        assert_eq!(token.auth, MatrixAuth::AccessToken(ApiKey::new("syt_abc")));
        assert_eq!(token.invites, InvitePolicy::Known);
        Ok(())
    }

    #[test]
    fn errors_name_the_key() -> Result<(), ConfigError> {
        let check = |pairs: &[(&str, &str)], key: &str| {
            let error = raw(pairs).and_then(|raw| matrix(&raw).map(|_| ()));
            let text = format!("{:?}", error.err());
            assert!(text.contains(key), "{pairs:?}: {text}");
        };
        check(
            &[("CRABPOT_MATRIX_INVITES", "some")],
            "CRABPOT_MATRIX_INVITES",
        );
        check(
            &[("CRABPOT_MATRIX_HOMESERVER", "https://m.example.org")],
            "channels.matrix.user",
        );
        check(
            &[
                ("CRABPOT_MATRIX_HOMESERVER", "https://m.example.org"),
                ("CRABPOT_MATRIX_USER", "bot"),
            ],
            "CRABPOT_MATRIX_PASSWORD",
        );
        check(
            &[
                ("CRABPOT_MATRIX_HOMESERVER", "https://m.example.org"),
                ("CRABPOT_MATRIX_USER", "bot"),
                ("CRABPOT_MATRIX_PASSWORD", "a\u{7}b"),
            ],
            "channels.matrix.password",
        );
        check(
            &[
                ("CRABPOT_MATRIX_HOMESERVER", "ftp://m.example.org"),
                ("CRABPOT_MATRIX_USER", "bot"),
                ("CRABPOT_MATRIX_PASSWORD", "pw"),
            ],
            "channels.matrix.homeserver",
        );
        Ok(())
    }
}
