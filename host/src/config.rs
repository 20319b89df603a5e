//! Host configuration: [`Config`], built in layers — defaults < `crabpot.toml` < `CRABPOT_*`
//! environment < command-line flags.
//!
//! Each layer is parsed into a [`RawConfig`] of optional fields; the merged result is
//! validated into a [`Config`], and errors name the key that was wrong. The model's API key
//! lives only here and in the proxy: it never reaches a session file or a container.

use crate::delivery::a2a::A2aLimits;
use crate::proxy::{ApiKey, ModelUpstream};
use protocol::ProviderKind;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error, naming the key. Not retryable: fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// How sessions notice new rows: file events (the default) or polling at NanoClaw's 1 s
/// intervals (kept as a measured baseline for `make bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WakeMode {
    Events,
    Poll,
}

/// One layer of configuration; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub groups_dir: Option<PathBuf>,
    pub install_id: Option<String>,
    pub image: Option<String>,
    pub max_containers: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub heartbeat_stale_secs: Option<u64>,
    /// `RUST_LOG` filter for the agent-runner inside containers (never a secret).
    pub agent_log: Option<String>,
    pub sweep_interval_ms: Option<u64>,
    pub wake_mode: Option<WakeMode>,
    pub container_user: Option<String>,
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
    #[serde(default)]
    pub model: RawModelConfig,
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
}

impl RawConfig {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            data_dir: over.data_dir.or(self.data_dir),
            groups_dir: over.groups_dir.or(self.groups_dir),
            install_id: over.install_id.or(self.install_id),
            image: over.image.or(self.image),
            max_containers: over.max_containers.or(self.max_containers),
            idle_timeout_secs: over.idle_timeout_secs.or(self.idle_timeout_secs),
            heartbeat_stale_secs: over.heartbeat_stale_secs.or(self.heartbeat_stale_secs),
            agent_log: over.agent_log.or(self.agent_log),
            sweep_interval_ms: over.sweep_interval_ms.or(self.sweep_interval_ms),
            wake_mode: over.wake_mode.or(self.wake_mode),
            container_user: over.container_user.or(self.container_user),
            memory_mb: over.memory_mb.or(self.memory_mb),
            cpus: over.cpus.or(self.cpus),
            pids_limit: over.pids_limit.or(self.pids_limit),
            tmpfs_mb: over.tmpfs_mb.or(self.tmpfs_mb),
            a2a_max_per_pair: over.a2a_max_per_pair.or(self.a2a_max_per_pair),
            a2a_max_per_session: over.a2a_max_per_session.or(self.a2a_max_per_session),
            a2a_window_secs: over.a2a_window_secs.or(self.a2a_window_secs),
            approval_ttl_secs: over.approval_ttl_secs.or(self.approval_ttl_secs),
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
            max_containers: number("CRABPOT_MAX_CONTAINERS")?.map(|n| n as usize),
            idle_timeout_secs: number("CRABPOT_IDLE_TIMEOUT_SECS")?,
            heartbeat_stale_secs: number("CRABPOT_HEARTBEAT_STALE_SECS")?,
            agent_log: text("CRABPOT_AGENT_LOG"),
            sweep_interval_ms: number("CRABPOT_SWEEP_INTERVAL_MS")?,
            wake_mode,
            container_user: text("CRABPOT_CONTAINER_USER"),
            memory_mb: number("CRABPOT_MEMORY_MB")?.map(|n| n as i64),
            cpus: text("CRABPOT_CPUS")
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|e| invalid("CRABPOT_CPUS", format!("{v:?}: {e}")))
                })
                .transpose()?,
            pids_limit: number("CRABPOT_PIDS_LIMIT")?.map(|n| n as i64),
            tmpfs_mb: number("CRABPOT_TMPFS_MB")?,
            a2a_max_per_pair: number("CRABPOT_A2A_MAX_PER_PAIR")?.map(|n| n as usize),
            a2a_max_per_session: number("CRABPOT_A2A_MAX_PER_SESSION")?.map(|n| n as usize),
            a2a_window_secs: number("CRABPOT_A2A_WINDOW_SECS")?,
            approval_ttl_secs: number("CRABPOT_APPROVAL_TTL_SECS")?,
            model: RawModelConfig {
                provider,
                base_url: text("CRABPOT_MODEL_BASE_URL"),
                model: text("CRABPOT_MODEL"),
                api_key,
                max_output_tokens: number("CRABPOT_MODEL_MAX_OUTPUT_TOKENS")?.map(|n| n as u32),
                context_window_tokens: number("CRABPOT_MODEL_CONTEXT_WINDOW")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                compact_at_percent: number("CRABPOT_MODEL_COMPACT_AT_PERCENT")?
                    .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
            },
        })
    }
}

/// Per-container resource limits (DESIGN §5).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub tmpfs_bytes: u64,
}

/// The validated host configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub groups_dir: PathBuf,
    /// Names and labels this installation's containers; `None` = the one stored in the central DB.
    pub install_id: Option<String>,
    pub image: String,
    pub max_containers: usize,
    pub idle_timeout: Duration,
    pub heartbeat_stale: Duration,
    /// `RUST_LOG` of the agent-runner (default `info`).
    pub agent_log: String,
    pub sweep_interval: Duration,
    pub wake_mode: WakeMode,
    /// `uid:gid` the container runs as; `None` = chosen at start (10001 when the host is root,
    /// else the host's own uid).
    pub container_user: Option<(u32, u32)>,
    pub limits: Limits,
    /// `None` when no model is configured: the host still runs and says so in replies.
    pub model: Option<ModelUpstream>,
    pub max_output_tokens: u32,
    /// The model's context window in tokens; 0 = the runner's default (128000).
    pub context_window_tokens: u32,
    /// The share of the window past which agents compact, in percent; 0 = the default (80).
    pub compact_at_percent: u8,
    pub a2a: A2aLimits,
    pub approval_ttl: Duration,
}

impl Config {
    pub fn sessions_dir(&self) -> PathBuf {
        self.data_dir.join("sessions")
    }
    pub fn central_db(&self) -> PathBuf {
        self.data_dir.join("crabpot.db")
    }
    pub fn cli_socket(&self) -> PathBuf {
        self.data_dir.join("cli.sock")
    }
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("crabpot.sock")
    }
    /// Copies of the files agents send to chats, for channel adapters to read.
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Validates a merged layer stack.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let model = validate_model(&raw.model)?;
        let container_user = raw.container_user.as_deref().map(parse_user).transpose()?;
        let max_containers = raw.max_containers.unwrap_or(32);
        if max_containers == 0 {
            return Err(invalid("max_containers", "must be at least 1".into()));
        }
        let cpus = raw.cpus.unwrap_or(1.0);
        if !(0.01..=64.0).contains(&cpus) {
            return Err(invalid("cpus", format!("{cpus} is outside 0.01..=64")));
        }
        let memory_mb = raw.memory_mb.unwrap_or(512);
        if memory_mb < 16 {
            return Err(invalid(
                "memory_mb",
                format!("{memory_mb} is below the 16 MB Docker needs"),
            ));
        }
        if let Some(id) = &raw.install_id
            && (!protocol::ids::is_safe_folder_name(id) || id.len() > 32)
        {
            return Err(invalid(
                "install_id",
                format!("{id:?} must be 1-32 of [A-Za-z0-9._-]"),
            ));
        }
        let sweep_ms = raw.sweep_interval_ms.unwrap_or(2_000);
        if sweep_ms < 50 {
            return Err(invalid(
                "sweep_interval_ms",
                format!("{sweep_ms} is below 50"),
            ));
        }
        let default_a2a = A2aLimits::default();
        let a2a = A2aLimits {
            per_pair: raw.a2a_max_per_pair.unwrap_or(default_a2a.per_pair),
            per_session: raw.a2a_max_per_session.unwrap_or(default_a2a.per_session),
            window: raw
                .a2a_window_secs
                .map_or(default_a2a.window, Duration::from_secs),
        };
        if a2a.per_pair == 0 || a2a.per_session == 0 || a2a.window.is_zero() {
            return Err(invalid(
                "a2a_max_per_pair",
                "agent-to-agent caps and window must be at least 1".into(),
            ));
        }
        let compact_at_percent = raw.model.compact_at_percent.unwrap_or(0);
        if compact_at_percent > 100 {
            return Err(invalid(
                "model.compact_at_percent",
                format!("{compact_at_percent} is over 100"),
            ));
        }
        let context_window_tokens = raw.model.context_window_tokens.unwrap_or(0);
        if context_window_tokens != 0 && context_window_tokens < 256 {
            return Err(invalid(
                "model.context_window_tokens",
                format!("{context_window_tokens} is below 256 tokens"),
            ));
        }
        let approval_ttl_secs = raw.approval_ttl_secs.unwrap_or(7 * 24 * 3600);
        if approval_ttl_secs == 0 {
            return Err(invalid("approval_ttl_secs", "must be at least 1".into()));
        }
        Ok(Config {
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            groups_dir: raw.groups_dir.unwrap_or_else(|| PathBuf::from("groups")),
            install_id: raw.install_id,
            image: raw.image.unwrap_or_else(|| "crabpot-agent:latest".into()),
            max_containers,
            idle_timeout: Duration::from_secs(raw.idle_timeout_secs.unwrap_or(600)),
            heartbeat_stale: Duration::from_secs(raw.heartbeat_stale_secs.unwrap_or(60)),
            agent_log: raw.agent_log.clone().unwrap_or_else(|| "info".into()),
            sweep_interval: Duration::from_millis(sweep_ms),
            wake_mode: raw.wake_mode.unwrap_or(WakeMode::Events),
            container_user,
            limits: Limits {
                memory_bytes: memory_mb * 1024 * 1024,
                nano_cpus: (cpus * 1e9) as i64,
                pids_limit: raw.pids_limit.unwrap_or(256),
                tmpfs_bytes: raw.tmpfs_mb.unwrap_or(64) * 1024 * 1024,
            },
            model,
            max_output_tokens: raw.model.max_output_tokens.unwrap_or(4096),
            context_window_tokens,
            compact_at_percent,
            a2a,
            approval_ttl: Duration::from_secs(approval_ttl_secs),
        })
    }
}

fn validate_model(raw: &RawModelConfig) -> Result<Option<ModelUpstream>, ConfigError> {
    let Some(provider_text) = raw.provider.as_deref() else {
        if raw.base_url.is_some() || raw.model.is_some() {
            return Err(invalid(
                "model.provider",
                "CRABPOT_MODEL_PROVIDER (openai or anthropic) must be set when a base URL or model is".into(),
            ));
        }
        return Ok(None);
    };
    let provider = ProviderKind::parse(provider_text).ok_or_else(|| {
        invalid(
            "model.provider",
            format!("{provider_text:?} is not one of: openai, anthropic"),
        )
    })?;
    let (default_url, default_model) = match provider {
        ProviderKind::OpenAi => ("https://api.openai.com/v1", "gpt-4o-mini"),
        ProviderKind::Anthropic => ("https://api.anthropic.com", "claude-sonnet-4-5"),
    };
    let base_url = raw.base_url.clone().unwrap_or_else(|| default_url.into());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(invalid(
            "model.base_url",
            format!("{base_url:?} must start with http:// or https://"),
        ));
    }
    Ok(Some(ModelUpstream {
        provider,
        base_url: base_url.trim_end_matches('/').to_owned(),
        model: raw.model.clone().unwrap_or_else(|| default_model.into()),
        api_key: raw.api_key.clone().map(ApiKey::new),
    }))
}

fn parse_user(text: &str) -> Result<(u32, u32), ConfigError> {
    let bad = || {
        invalid(
            "container_user",
            format!("{text:?} must be uid:gid with a non-zero uid"),
        )
    };
    let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
    let uid: u32 = uid.parse().map_err(|_| bad())?;
    let gid: u32 = gid.parse().map_err(|_| bad())?;
    if uid == 0 {
        return Err(bad());
    }
    Ok((uid, gid))
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> RawConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RawConfig::from_env(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn layers_override_in_order() {
        let file: RawConfig =
            toml::from_str("image = \"file\"\nmax_containers = 5\n[model]\nprovider = \"openai\"")
                .unwrap();
        let from_env = env(&[("CRABPOT_IMAGE", "env")]);
        let flags = RawConfig {
            max_containers: Some(7),
            ..Default::default()
        };
        let config = Config::from_raw(
            RawConfig::default()
                .merge(file)
                .merge(from_env)
                .merge(flags),
        )
        .unwrap();
        assert_eq!(config.image, "env");
        assert_eq!(config.max_containers, 7);
        assert_eq!(config.model.unwrap().provider, ProviderKind::OpenAi);
    }

    #[test]
    fn model_from_env() {
        let none = Config::from_raw(env(&[])).unwrap();
        assert!(none.model.is_none());
        let key_only = Config::from_raw(env(&[("ANTHROPIC_API_KEY", "k")]))
            .unwrap()
            .model
            .unwrap();
        assert_eq!(key_only.provider, ProviderKind::Anthropic);
        assert_eq!(key_only.base_url, "https://api.anthropic.com");
        let full = Config::from_raw(env(&[
            ("CRABPOT_MODEL_PROVIDER", "openai"),
            ("CRABPOT_MODEL_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("CRABPOT_MODEL", "m"),
            ("OPENAI_API_KEY", "fallback"),
        ]))
        .unwrap()
        .model
        .unwrap();
        assert_eq!(full.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            full.api_key
                .map(|k| k.expose_secret().to_owned())
                .as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![("CRABPOT_MODEL_PROVIDER", "gemini")], "model.provider"),
            (vec![("CRABPOT_MODEL", "x")], "model.provider"),
            (
                vec![
                    ("CRABPOT_MODEL_PROVIDER", "openai"),
                    ("CRABPOT_MODEL_BASE_URL", "ftp://x"),
                ],
                "model.base_url",
            ),
            (vec![("CRABPOT_CONTAINER_USER", "0:0")], "container_user"),
            (vec![("CRABPOT_MAX_CONTAINERS", "0")], "max_containers"),
            (vec![("CRABPOT_INSTALL_ID", "a/b")], "install_id"),
            (
                vec![("CRABPOT_MODEL_COMPACT_AT_PERCENT", "150")],
                "model.compact_at_percent",
            ),
            (
                vec![("CRABPOT_MODEL_CONTEXT_WINDOW", "10")],
                "model.context_window_tokens",
            ),
        ] {
            let err = Config::from_raw(env(&pairs)).unwrap_err();
            assert!(err.to_string().starts_with(key), "{err}");
        }
        let map: HashMap<&str, &str> = [("CRABPOT_MAX_CONTAINERS", "many")].into();
        let err = RawConfig::from_env(|k| map.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(err.to_string().contains("CRABPOT_MAX_CONTAINERS"), "{err}");
        let bad_toml: Result<RawConfig, _> = toml::from_str("colour = 1");
        assert!(bad_toml.unwrap_err().to_string().contains("colour"));
    }
}
