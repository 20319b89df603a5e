//! The layers of configuration before validation: [`RawConfig`] (every field optional), read
//! from `crabpot.toml` ([`RawConfig::from_file`]) and from the `CRABPOT_*` environment
//! ([`RawConfig::from_env`]), and merged ([`RawConfig::merge`]). `Config::from_raw` validates
//! the result.

use super::channels::RawChannels;
use super::{ConfigError, WakeMode, invalid};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One layer of configuration; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub groups_dir: Option<PathBuf>,
    pub install_id: Option<String>,
    pub image: Option<String>,
    /// The image of groups that choose `toolbox` (`CRABPOT_TOOLBOX_IMAGE`).
    pub toolbox_image: Option<String>,
    pub max_containers: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub heartbeat_stale_secs: Option<u64>,
    /// `RUST_LOG` filter for the agent-runner inside containers (never a secret).
    pub agent_log: Option<String>,
    pub sweep_interval_ms: Option<u64>,
    pub wake_mode: Option<WakeMode>,
    pub container_user: Option<String>,
    /// The uids session containers run as, one per session, `first-last`.
    pub container_uid_range: Option<String>,
    /// Hard cap on one session's `out/` and `work/` together, in MiB; 0 = no quota.
    pub disk_quota_mb: Option<u64>,
    /// Free disk kept on the data dir's filesystem, in MiB: below it no container starts.
    pub disk_reserve_mb: Option<u64>,
    /// Per-session bounds of the model proxy socket.
    pub proxy_max_connections: Option<u64>,
    pub proxy_header_timeout_secs: Option<u64>,
    pub proxy_idle_timeout_secs: Option<u64>,
    pub proxy_request_timeout_secs: Option<u64>,
    /// Most outbound rows one session may write in one turn, and in one minute.
    pub outbound_max_rows_per_turn: Option<u64>,
    pub outbound_max_rows_per_minute: Option<u64>,
    pub memory_mb: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub tmpfs_mb: Option<u64>,
    /// Agent-to-agent loop caps: most messages from one session to one agent group, and from
    /// one session to all agents, within the window.
    pub a2a_max_per_pair: Option<usize>,
    pub a2a_max_per_session: Option<usize>,
    pub a2a_window_secs: Option<u64>,
    /// How long an approval stays open.
    pub approval_ttl_secs: Option<u64>,
    /// The web server's address, or `off`.
    pub web_listen: Option<String>,
    /// The web server is reached through HTTPS (cookies are then `Secure`).
    pub web_behind_https: Option<bool>,
    /// The base URL people open, for login links.
    pub web_public_url: Option<String>,
    #[serde(default)]
    pub model: RawModelConfig,
    /// `[channels.telegram]`, `[channels.slack]`, `[channels.discord]`.
    #[serde(default)]
    pub channels: RawChannels,
    /// `[search]`: the `web_search` backend.
    #[serde(default)]
    pub search: super::web_search::RawSearchConfig,
}

/// The `[model]` table and `CRABPOT_MODEL_*` variables.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelConfig {
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub max_output_tokens: Option<u32>,
    /// The model's context window in tokens (the agents compact their conversation near it).
    pub context_window_tokens: Option<u32>,
    /// Compact when a request would take more than this share of the window, in percent.
    pub compact_at_percent: Option<u8>,
    /// Whether the model can see images (default true); false describes images as text.
    pub vision: Option<bool>,
}

impl RawConfig {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            data_dir: over.data_dir.or(self.data_dir),
            groups_dir: over.groups_dir.or(self.groups_dir),
            install_id: over.install_id.or(self.install_id),
            image: over.image.or(self.image),
            toolbox_image: over.toolbox_image.or(self.toolbox_image),
            max_containers: over.max_containers.or(self.max_containers),
            idle_timeout_secs: over.idle_timeout_secs.or(self.idle_timeout_secs),
            heartbeat_stale_secs: over.heartbeat_stale_secs.or(self.heartbeat_stale_secs),
            agent_log: over.agent_log.or(self.agent_log),
            sweep_interval_ms: over.sweep_interval_ms.or(self.sweep_interval_ms),
            wake_mode: over.wake_mode.or(self.wake_mode),
            container_user: over.container_user.or(self.container_user),
            container_uid_range: over.container_uid_range.or(self.container_uid_range),
            disk_quota_mb: over.disk_quota_mb.or(self.disk_quota_mb),
            disk_reserve_mb: over.disk_reserve_mb.or(self.disk_reserve_mb),
            proxy_max_connections: over.proxy_max_connections.or(self.proxy_max_connections),
            proxy_header_timeout_secs: over
                .proxy_header_timeout_secs
                .or(self.proxy_header_timeout_secs),
            proxy_idle_timeout_secs: over
                .proxy_idle_timeout_secs
                .or(self.proxy_idle_timeout_secs),
            proxy_request_timeout_secs: over
                .proxy_request_timeout_secs
                .or(self.proxy_request_timeout_secs),
            outbound_max_rows_per_turn: over
                .outbound_max_rows_per_turn
                .or(self.outbound_max_rows_per_turn),
            outbound_max_rows_per_minute: over
                .outbound_max_rows_per_minute
                .or(self.outbound_max_rows_per_minute),
            memory_mb: over.memory_mb.or(self.memory_mb),
            cpus: over.cpus.or(self.cpus),
            pids_limit: over.pids_limit.or(self.pids_limit),
            tmpfs_mb: over.tmpfs_mb.or(self.tmpfs_mb),
            a2a_max_per_pair: over.a2a_max_per_pair.or(self.a2a_max_per_pair),
            a2a_max_per_session: over.a2a_max_per_session.or(self.a2a_max_per_session),
            a2a_window_secs: over.a2a_window_secs.or(self.a2a_window_secs),
            approval_ttl_secs: over.approval_ttl_secs.or(self.approval_ttl_secs),
            web_listen: over.web_listen.or(self.web_listen),
            web_behind_https: over.web_behind_https.or(self.web_behind_https),
            web_public_url: over.web_public_url.or(self.web_public_url),
            channels: self.channels.merge(over.channels),
            search: self.search.merge(over.search),
            model: RawModelConfig {
                provider: over.model.provider.or(self.model.provider),
                base_url: over.model.base_url.or(self.model.base_url),
                model: over.model.model.or(self.model.model),
                api_key: over.model.api_key.or(self.model.api_key),
                max_output_tokens: over
                    .model
                    .max_output_tokens
                    .or(self.model.max_output_tokens),
                context_window_tokens: over
                    .model
                    .context_window_tokens
                    .or(self.model.context_window_tokens),
                compact_at_percent: over
                    .model
                    .compact_at_percent
                    .or(self.model.compact_at_percent),
                vision: over.model.vision.or(self.model.vision),
            },
        }
    }

    /// Reads a `crabpot.toml`.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads the `CRABPOT_*` variables (and `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` as key
    /// fallbacks) through `get`, so tests can pass a map instead of the process environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let text = |key: &str| get(key).filter(|v| !v.is_empty());
        let number = |key: &'static str| -> Result<Option<u64>, ConfigError> {
            text(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|e| invalid(key, format!("{v:?} is not a whole number: {e}")))
                })
                .transpose()
        };
        // Signed, so `-1` reaches validation and is refused there with the setting's name.
        let signed = |key: &'static str| -> Result<Option<i64>, ConfigError> {
            text(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|e| invalid(key, format!("{v:?} is not a whole number: {e}")))
                })
                .transpose()
        };
        let wake_mode = match text("CRABPOT_WAKE_MODE").as_deref() {
            None => None,
            Some("events") => Some(WakeMode::Events),
            Some("poll") => Some(WakeMode::Poll),
            Some(other) => {
                return Err(invalid(
                    "CRABPOT_WAKE_MODE",
                    format!("{other:?} is not one of: events, poll"),
                ));
            }
        };
        let provider = text("CRABPOT_MODEL_PROVIDER");
        let api_key = text("CRABPOT_MODEL_API_KEY").or_else(|| match provider.as_deref() {
            Some("anthropic") => text("ANTHROPIC_API_KEY"),
            Some(_) => text("OPENAI_API_KEY"),
            None => text("OPENAI_API_KEY").or_else(|| text("ANTHROPIC_API_KEY")),
        });
        // A bare provider key is enough to pick the provider, as the vendors' own tools do.
        let provider = provider.or_else(|| {
            if text("CRABPOT_MODEL_API_KEY").is_some() {
                None
            } else if text("OPENAI_API_KEY").is_some() {
                Some("openai".into())
            } else if text("ANTHROPIC_API_KEY").is_some() {
                Some("anthropic".into())
            } else {
                None
            }
        });
        Ok(RawConfig {
            data_dir: text("CRABPOT_DATA_DIR").map(PathBuf::from),
            groups_dir: text("CRABPOT_GROUPS_DIR").map(PathBuf::from),
            install_id: text("CRABPOT_INSTALL_ID"),
            image: text("CRABPOT_IMAGE"),
            toolbox_image: text("CRABPOT_TOOLBOX_IMAGE"),
            max_containers: number("CRABPOT_MAX_CONTAINERS")?.map(|n| n as usize),
            idle_timeout_secs: number("CRABPOT_IDLE_TIMEOUT_SECS")?,
            heartbeat_stale_secs: number("CRABPOT_HEARTBEAT_STALE_SECS")?,
            agent_log: text("CRABPOT_AGENT_LOG"),
            sweep_interval_ms: number("CRABPOT_SWEEP_INTERVAL_MS")?,
            wake_mode,
            container_user: text("CRABPOT_CONTAINER_USER"),
            container_uid_range: text("CRABPOT_CONTAINER_UID_RANGE"),
            disk_quota_mb: number("CRABPOT_DISK_QUOTA_MB")?,
            disk_reserve_mb: number("CRABPOT_DISK_RESERVE_MB")?,
            proxy_max_connections: number("CRABPOT_PROXY_MAX_CONNECTIONS")?,
            proxy_header_timeout_secs: number("CRABPOT_PROXY_HEADER_TIMEOUT_SECS")?,
            proxy_idle_timeout_secs: number("CRABPOT_PROXY_IDLE_TIMEOUT_SECS")?,
            proxy_request_timeout_secs: number("CRABPOT_PROXY_REQUEST_TIMEOUT_SECS")?,
            outbound_max_rows_per_turn: number("CRABPOT_OUTBOUND_MAX_ROWS_PER_TURN")?,
            outbound_max_rows_per_minute: number("CRABPOT_OUTBOUND_MAX_ROWS_PER_MINUTE")?,
            memory_mb: signed("CRABPOT_MEMORY_MB")?,
            cpus: text("CRABPOT_CPUS")
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|e| invalid("CRABPOT_CPUS", format!("{v:?}: {e}")))
                })
                .transpose()?,
            pids_limit: signed("CRABPOT_PIDS_LIMIT")?,
            tmpfs_mb: number("CRABPOT_TMPFS_MB")?,
            a2a_max_per_pair: number("CRABPOT_A2A_MAX_PER_PAIR")?.map(|n| n as usize),
            a2a_max_per_session: number("CRABPOT_A2A_MAX_PER_SESSION")?.map(|n| n as usize),
            a2a_window_secs: number("CRABPOT_A2A_WINDOW_SECS")?,
            approval_ttl_secs: number("CRABPOT_APPROVAL_TTL_SECS")?,
            web_listen: text("CRABPOT_WEB_LISTEN"),
            web_behind_https: text("CRABPOT_WEB_BEHIND_HTTPS")
                .map(|v| match v.as_str() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" => Ok(false),
                    other => Err(invalid(
                        "CRABPOT_WEB_BEHIND_HTTPS",
                        format!("{other:?} is not true or false"),
                    )),
                })
                .transpose()?,
            web_public_url: text("CRABPOT_WEB_PUBLIC_URL"),
            channels: RawChannels::from_env(&get)?,
            search: super::web_search::RawSearchConfig::from_env(&get),
            model: RawModelConfig {
                provider,
                base_url: text("CRABPOT_MODEL_BASE_URL"),
                model: text("CRABPOT_MODEL"),
                api_key,
                max_output_tokens: number("CRABPOT_MODEL_MAX_OUTPUT_TOKENS")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                context_window_tokens: number("CRABPOT_MODEL_CONTEXT_WINDOW")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                compact_at_percent: number("CRABPOT_MODEL_COMPACT_AT_PERCENT")?
                    .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
                vision: text("CRABPOT_MODEL_VISION")
                    .map(|v| match v.as_str() {
                        "1" | "true" | "yes" => Ok(true),
                        "0" | "false" | "no" => Ok(false),
                        other => Err(invalid(
                            "CRABPOT_MODEL_VISION",
                            format!("{other:?} is not true or false"),
                        )),
                    })
                    .transpose()?,
            },
        })
    }
}
