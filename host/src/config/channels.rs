//! The chat platforms the host connects to itself: Telegram, Slack and Discord
//! (`[channels.telegram]`, `[channels.slack]`, `[channels.discord]` in `crabpot.toml`, or the
//! `CRABPOT_TELEGRAM_*`, `CRABPOT_SLACK_*` and `CRABPOT_DISCORD_*` variables). A platform is
//! on when its bot token is set. Tokens and secrets are [`ApiKey`]s: they never print, and
//! only the adapter that puts them in a request reads them.
//!
//! Every API base URL can be changed, for self-hosted API servers and for tests.

use super::email::{EmailConfig, RawEmail};
use super::matrix::{MatrixConfig, RawMatrix};
use super::{ApiKey, ConfigError, invalid};
use serde::Deserialize;

pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";
pub const SLACK_API_URL: &str = "https://slack.com/api";
pub const DISCORD_API_URL: &str = "https://discord.com/api/v10";

/// How Telegram updates reach the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// `getUpdates` long polling (the default: works behind NAT, needs no public URL).
    Polling,
    /// Telegram posts updates to `/hooks/telegram` on the web server, with `secret_token`.
    Webhook,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramConfig {
    pub bot_token: ApiKey,
    /// Requests go to `<api_url>/bot<token>/<method>`, files to
    /// `<api_url>/file/bot<token>/<path>`.
    pub api_url: String,
    pub mode: TelegramMode,
    /// The `secret_token` Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (webhook mode).
    pub webhook_secret: Option<ApiKey>,
    /// The public URL the webhook is registered at with `setWebhook`; `None` = the web
    /// server's public URL + `/hooks/telegram`.
    pub webhook_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackConfig {
    /// `xoxb-...`: the bot token for the Web API.
    pub bot_token: ApiKey,
    /// Verifies Events API and interactivity requests (`/hooks/slack/events`,
    /// `/hooks/slack/interactivity`).
    pub signing_secret: Option<ApiKey>,
    /// `xapp-...`: Socket Mode instead of public endpoints.
    pub app_token: Option<ApiKey>,
    pub api_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscordConfig {
    pub bot_token: ApiKey,
    /// The REST API root, version included.
    pub api_url: String,
    /// The Gateway's WebSocket URL; `None` = the one `GET /gateway/bot` names.
    pub gateway_url: Option<String>,
}

/// The platforms that are on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelsConfig {
    pub telegram: Option<TelegramConfig>,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    pub matrix: Option<MatrixConfig>,
    pub email: Option<EmailConfig>,
}

/// `[channels]` before validation; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannels {
    #[serde(default)]
    pub telegram: RawTelegram,
    #[serde(default)]
    pub slack: RawSlack,
    #[serde(default)]
    pub discord: RawDiscord,
    #[serde(default)]
    pub matrix: RawMatrix,
    #[serde(default)]
    pub email: RawEmail,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelegram {
    pub bot_token: Option<String>,
    pub api_url: Option<String>,
    pub mode: Option<TelegramMode>,
    pub webhook_secret: Option<String>,
    pub webhook_url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    pub bot_token: Option<String>,
    pub signing_secret: Option<String>,
    pub app_token: Option<String>,
    pub api_url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscord {
    pub bot_token: Option<String>,
    pub api_url: Option<String>,
    pub gateway_url: Option<String>,
}

impl RawChannels {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawChannels) -> RawChannels {
        RawChannels {
            telegram: RawTelegram {
                bot_token: over.telegram.bot_token.or(self.telegram.bot_token),
                api_url: over.telegram.api_url.or(self.telegram.api_url),
                mode: over.telegram.mode.or(self.telegram.mode),
                webhook_secret: over
                    .telegram
                    .webhook_secret
                    .or(self.telegram.webhook_secret),
                webhook_url: over.telegram.webhook_url.or(self.telegram.webhook_url),
            },
            slack: RawSlack {
                bot_token: over.slack.bot_token.or(self.slack.bot_token),
                signing_secret: over.slack.signing_secret.or(self.slack.signing_secret),
                app_token: over.slack.app_token.or(self.slack.app_token),
                api_url: over.slack.api_url.or(self.slack.api_url),
            },
            discord: RawDiscord {
                bot_token: over.discord.bot_token.or(self.discord.bot_token),
                api_url: over.discord.api_url.or(self.discord.api_url),
                gateway_url: over.discord.gateway_url.or(self.discord.gateway_url),
            },
            matrix: self.matrix.merge(over.matrix),
            email: self.email.merge(over.email),
        }
    }

    /// The `CRABPOT_TELEGRAM_*`, `CRABPOT_SLACK_*` and `CRABPOT_DISCORD_*` variables.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<RawChannels, ConfigError> {
        let text = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let mode = match text("CRABPOT_TELEGRAM_MODE").as_deref().map(str::trim) {
            None => None,
            Some("polling") => Some(TelegramMode::Polling),
            Some("webhook") => Some(TelegramMode::Webhook),
            Some(other) => {
                return Err(invalid(
                    "CRABPOT_TELEGRAM_MODE",
                    format!("{other:?} is not one of: polling, webhook"),
                ));
            }
        };
        Ok(RawChannels {
            telegram: RawTelegram {
                bot_token: text("CRABPOT_TELEGRAM_BOT_TOKEN"),
                api_url: text("CRABPOT_TELEGRAM_API_URL"),
                mode,
                webhook_secret: text("CRABPOT_TELEGRAM_WEBHOOK_SECRET"),
                webhook_url: text("CRABPOT_TELEGRAM_WEBHOOK_URL"),
            },
            slack: RawSlack {
                bot_token: text("CRABPOT_SLACK_BOT_TOKEN"),
                signing_secret: text("CRABPOT_SLACK_SIGNING_SECRET"),
                app_token: text("CRABPOT_SLACK_APP_TOKEN"),
                api_url: text("CRABPOT_SLACK_API_URL"),
            },
            discord: RawDiscord {
                bot_token: text("CRABPOT_DISCORD_BOT_TOKEN"),
                api_url: text("CRABPOT_DISCORD_API_URL"),
                gateway_url: text("CRABPOT_DISCORD_GATEWAY_URL"),
            },
            matrix: RawMatrix::from_env(&get)?,
            email: RawEmail::from_env(&get)?,
        })
    }
}

impl ChannelsConfig {
    /// Validates the raw tables; errors name the key. `web_on` says whether the web server
    /// runs (the webhooks of Telegram and Slack's Events API are served by it).
    pub fn from_raw(raw: &RawChannels, web_on: bool) -> Result<ChannelsConfig, ConfigError> {
        Ok(ChannelsConfig {
            telegram: telegram(&raw.telegram, web_on)?,
            slack: slack(&raw.slack, web_on)?,
            discord: discord(&raw.discord)?,
            matrix: super::matrix::matrix(&raw.matrix)?,
            email: super::email::email(&raw.email)?,
        })
    }
}

pub(super) fn token(
    key: &'static str,
    value: &Option<String>,
) -> Result<Option<ApiKey>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) if text.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(invalid(
            key,
            "contains whitespace or control characters; paste the token exactly".into(),
        )),
        Some(text) => Ok(Some(ApiKey::new(text))),
    }
}

/// An `http(s)` URL without a trailing slash.
fn url(key: &'static str, value: &Option<String>, default: &str) -> Result<String, ConfigError> {
    let text = value.as_deref().map_or(default, str::trim);
    web_url(key, text, &["http", "https"])
}

pub(super) fn web_url(
    key: &'static str,
    text: &str,
    schemes: &[&str],
) -> Result<String, ConfigError> {
    let parsed = text
        .parse::<http::Uri>()
        .map_err(|e| invalid(key, format!("{text:?} is not a URL: {e}")))?;
    match parsed.scheme_str() {
        Some(scheme) if schemes.contains(&scheme) && parsed.authority().is_some() => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(
            key,
            format!(
                "{text:?} must start with {} and name a host",
                schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
    }
}

fn telegram(raw: &RawTelegram, web_on: bool) -> Result<Option<TelegramConfig>, ConfigError> {
    let Some(bot_token) = token("channels.telegram.bot_token", &raw.bot_token)? else {
        return Ok(None);
    };
    let mode = raw.mode.unwrap_or(TelegramMode::Polling);
    let webhook_secret = token("channels.telegram.webhook_secret", &raw.webhook_secret)?;
    if mode == TelegramMode::Webhook {
        let Some(secret) = &webhook_secret else {
            return Err(invalid(
                "channels.telegram.webhook_secret",
                "webhook mode needs a secret_token (1-256 of A-Z a-z 0-9 _ -) to check that updates come from Telegram".into(),
            ));
        };
        let secret = secret.expose_secret();
        if secret.len() > 256
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "channels.telegram.webhook_secret",
                "Telegram allows 1-256 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        if !web_on {
            return Err(invalid(
                "channels.telegram.mode",
                "webhook mode is served by the web server, which is off (web_listen = off)".into(),
            ));
        }
    }
    let webhook_url = match raw.webhook_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(web_url(
            "channels.telegram.webhook_url",
            text,
            &["https", "http"],
        )?),
    };
    Ok(Some(TelegramConfig {
        bot_token,
        api_url: url("channels.telegram.api_url", &raw.api_url, TELEGRAM_API_URL)?,
        mode,
        webhook_secret,
        webhook_url,
    }))
}

fn slack(raw: &RawSlack, web_on: bool) -> Result<Option<SlackConfig>, ConfigError> {
    let Some(bot_token) = token("channels.slack.bot_token", &raw.bot_token)? else {
        return Ok(None);
    };
    let signing_secret = token("channels.slack.signing_secret", &raw.signing_secret)?;
    let app_token = token("channels.slack.app_token", &raw.app_token)?;
    match (&signing_secret, &app_token) {
        (None, None) => {
            return Err(invalid(
                "channels.slack",
                "needs signing_secret (CRABPOT_SLACK_SIGNING_SECRET, for the Events API) or app_token (CRABPOT_SLACK_APP_TOKEN, for Socket Mode)".into(),
            ));
        }
        (Some(_), None) if !web_on => {
            return Err(invalid(
                "channels.slack.signing_secret",
                "the Events API is served by the web server, which is off (web_listen = off); use app_token for Socket Mode".into(),
            ));
        }
        _ => {}
    }
    Ok(Some(SlackConfig {
        bot_token,
        signing_secret,
        app_token,
        api_url: url("channels.slack.api_url", &raw.api_url, SLACK_API_URL)?,
    }))
}

fn discord(raw: &RawDiscord) -> Result<Option<DiscordConfig>, ConfigError> {
    let Some(bot_token) = token("channels.discord.bot_token", &raw.bot_token)? else {
        return Ok(None);
    };
    let gateway_url = match raw.gateway_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(web_url(
            "channels.discord.gateway_url",
            text,
            &["wss", "ws"],
        )?),
    };
    Ok(Some(DiscordConfig {
        bot_token,
        api_url: url("channels.discord.api_url", &raw.api_url, DISCORD_API_URL)?,
        gateway_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)], web_on: bool) -> Result<ChannelsConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let raw = RawChannels::from_env(|key| map.get(key).cloned())?;
        ChannelsConfig::from_raw(&raw, web_on)
    }

    #[test]
    fn a_platform_is_on_when_its_token_is_set() {
        let none = from(&[], true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none, ChannelsConfig::default());
        let on = from(
            &[
                ("CRABPOT_TELEGRAM_BOT_TOKEN", "123:abc"),
                ("CRABPOT_DISCORD_BOT_TOKEN", "d.t"),
                ("CRABPOT_DISCORD_API_URL", "http://127.0.0.1:9/api/v10/"),
            ],
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let telegram = on.telegram.unwrap_or_else(|| panic!("telegram is off"));
        assert_eq!(telegram.api_url, TELEGRAM_API_URL);
        assert_eq!(telegram.mode, TelegramMode::Polling);
        assert_eq!(format!("{:?}", telegram.bot_token), "***");
        let discord = on.discord.unwrap_or_else(|| panic!("discord is off"));
        assert_eq!(discord.api_url, "http://127.0.0.1:9/api/v10");
        assert!(on.slack.is_none());
    }

    /// The variables set, whether the web server is on, and the key the error must name.
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);

    #[test]
    fn bad_settings_name_their_key() {
        let cases: &[Case<'_>] = &[
            (
                &[("CRABPOT_SLACK_BOT_TOKEN", "xoxb-1")],
                true,
                "channels.slack",
            ),
            (
                &[
                    ("CRABPOT_SLACK_BOT_TOKEN", "xoxb-1"),
                    ("CRABPOT_SLACK_SIGNING_SECRET", "s"),
                ],
                false,
                "channels.slack.signing_secret",
            ),
            (
                &[
                    ("CRABPOT_TELEGRAM_BOT_TOKEN", "1:a"),
                    ("CRABPOT_TELEGRAM_MODE", "webhook"),
                ],
                true,
                "channels.telegram.webhook_secret",
            ),
            (
                &[
                    ("CRABPOT_TELEGRAM_BOT_TOKEN", "1:a"),
                    ("CRABPOT_TELEGRAM_API_URL", "ftp://x"),
                ],
                true,
                "channels.telegram.api_url",
            ),
            (
                &[("CRABPOT_TELEGRAM_BOT_TOKEN", "1:a b")],
                true,
                "channels.telegram.bot_token",
            ),
            (
                &[
                    ("CRABPOT_DISCORD_BOT_TOKEN", "t"),
                    ("CRABPOT_DISCORD_GATEWAY_URL", "https://gateway"),
                ],
                true,
                "channels.discord.gateway_url",
            ),
            (
                &[("CRABPOT_TELEGRAM_MODE", "push")],
                true,
                "CRABPOT_TELEGRAM_MODE",
            ),
        ];
        for (vars, web_on, key) in cases {
            let error = from(vars, *web_on)
                .err()
                .unwrap_or_else(|| panic!("{vars:?} was accepted"));
            assert!(error.to_string().starts_with(key), "{vars:?}: {error}");
        }
    }
}
