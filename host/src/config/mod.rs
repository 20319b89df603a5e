//! Host configuration: [`Config`], built in layers — defaults < `crabpot.toml` < `CRABPOT_*`
//! environment < command-line flags.
//!
//! Each layer is parsed into a [`RawConfig`] of optional fields; the merged result is
//! validated into a [`Config`], and errors name the key that was wrong. The model's API key
//! lives only here and in the proxy: it never reaches a session file or a container.

mod a2a;
pub mod channels;
pub mod email;
#[cfg(test)]
mod example;
pub mod matrix;
mod model;
mod raw;
mod web;
mod web_search;

pub use a2a::A2aLimits;
pub use channels::ChannelsConfig;
pub use model::{ApiKey, ModelUpstream};
pub use raw::{RawConfig, RawModelConfig};
pub use web::WebConfig;
pub use web_search::{RawSearchConfig, SearchConfig};

use crate::db::central::uids::UidRange;
use protocol::ProviderKind;
use serde::Deserialize;
use std::path::PathBuf;
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
    /// The image of groups that choose `toolbox` (default `crabpot-agent-toolbox:latest`,
    /// built by `make image-toolbox`).
    pub toolbox_image: String,
    pub max_containers: usize,
    pub idle_timeout: Duration,
    pub heartbeat_stale: Duration,
    /// `RUST_LOG` of the agent-runner (default `info`).
    pub agent_log: String,
    pub sweep_interval: Duration,
    pub wake_mode: WakeMode,
    /// `uid:gid` every container runs as, overriding one uid per session (for hosts and
    /// tests that cannot give each session its own); `None` = one uid per session from
    /// `container_uid_range` when the host is root, else the host's own uid.
    pub container_user: Option<(u32, u32)>,
    /// The uids session containers run as, one per session (gid = uid).
    pub container_uid_range: UidRange,
    /// Hard cap on one session's `out/` and `work/` together, in MiB (per group overridable);
    /// 0 = no quota.
    pub disk_quota_mb: u64,
    /// Free disk kept on the data dir's filesystem, in MiB: below it no container starts.
    pub disk_reserve_mb: u64,
    /// Most concurrent connections one session may hold on its proxy socket.
    pub proxy_max_connections: usize,
    /// How long a proxy client may take to send a request's headers.
    pub proxy_header_timeout: Duration,
    /// How long a proxy connection may sit idle between requests.
    pub proxy_idle_timeout: Duration,
    /// How long one proxied request may take in all (a long model stream included).
    pub proxy_request_timeout: Duration,
    /// Most outbound rows one session may write in one turn.
    pub outbound_max_rows_per_turn: u32,
    /// Most outbound rows one session may write in one minute.
    pub outbound_max_rows_per_minute: u32,
    pub limits: Limits,
    /// `None` when no model is configured: the host still runs and says so in replies.
    pub model: Option<ModelUpstream>,
    pub max_output_tokens: u32,
    /// The model's context window in tokens; 0 = the runner's default (128000).
    pub context_window_tokens: u32,
    /// The share of the window past which agents compact, in percent; 0 = the default (80).
    pub compact_at_percent: u8,
    /// Whether the model can see images (`CRABPOT_MODEL_VISION`, default true): screenshots
    /// and images people send reach it as image input, or are described as text.
    pub model_vision: bool,
    pub a2a: A2aLimits,
    pub approval_ttl: Duration,
    /// The HTTP server: web chat, dashboard, admin and OpenAI-compatible APIs, metrics.
    pub web: WebConfig,
    /// The chat platforms the host connects to (Telegram, Slack, Discord).
    pub channels: ChannelsConfig,
    /// The `web_search` backend; `None`: not configured.
    pub search: Option<SearchConfig>,
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
    /// Where a running host writes its web server's base URL (absent when it is off).
    pub fn web_url_file(&self) -> PathBuf {
        self.data_dir.join("web.url")
    }
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("crabpot.sock")
    }
    /// Copies of the files agents send to chats, for channel adapters to read.
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Validates a merged layer stack. Every limit is checked here, at start, and an error
    /// names the key (the first one wrong).
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let model = validate_model(&raw.model)?;
        let web = WebConfig::from_raw(
            raw.web_listen.as_deref(),
            raw.web_behind_https,
            raw.web_public_url.as_deref(),
        )?;
        let container_user = raw.container_user.as_deref().map(parse_user).transpose()?;
        let max_containers = at_least("max_containers", raw.max_containers.unwrap_or(32), 1)?;
        let cpus = raw.cpus.unwrap_or(1.0);
        if !(0.01..=64.0).contains(&cpus) {
            return Err(invalid("cpus", format!("{cpus} is outside 0.01..=64")));
        }
        let memory_mb = positive("memory_mb", raw.memory_mb.unwrap_or(512))?;
        if !(16..=1 << 30).contains(&memory_mb) {
            return Err(invalid(
                "memory_mb",
                format!("{memory_mb} is outside 16 (what Docker needs) ..= 1073741824"),
            ));
        }
        let pids_limit = positive("pids_limit", raw.pids_limit.unwrap_or(256))?;
        if !(8..=1 << 22).contains(&pids_limit) {
            return Err(invalid(
                "pids_limit",
                format!("{pids_limit} is outside 8 (a shell and its tools) ..= 4194304"),
            ));
        }
        let tmpfs_mb = raw.tmpfs_mb.unwrap_or(64);
        if !(1..=1 << 20).contains(&tmpfs_mb) {
            return Err(invalid(
                "tmpfs_mb",
                format!("{tmpfs_mb} is outside 1..=1048576"),
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
        let image = raw.image.unwrap_or_else(|| "crabpot-agent:latest".into());
        let toolbox_image = raw
            .toolbox_image
            .clone()
            .unwrap_or_else(|| "crabpot-agent-toolbox:latest".into());
        if toolbox_image.trim().is_empty() {
            return Err(invalid("toolbox_image", "is empty".into()));
        }
        if image.trim().is_empty() {
            return Err(invalid("image", "is empty".into()));
        }
        let sweep_ms = raw.sweep_interval_ms.unwrap_or(2_000);
        if sweep_ms < 50 {
            return Err(invalid(
                "sweep_interval_ms",
                format!("{sweep_ms} is below 50"),
            ));
        }
        let idle_timeout_secs =
            at_least("idle_timeout_secs", raw.idle_timeout_secs.unwrap_or(600), 1)?;
        // The runner touches its heartbeat every 5 s: a shorter tolerance kills healthy agents.
        let heartbeat_stale_secs = at_least(
            "heartbeat_stale_secs",
            raw.heartbeat_stale_secs.unwrap_or(60),
            10,
        )?;
        let default_a2a = A2aLimits::default();
        let a2a = A2aLimits {
            per_pair: at_least(
                "a2a_max_per_pair",
                raw.a2a_max_per_pair.unwrap_or(default_a2a.per_pair),
                1,
            )?,
            per_session: at_least(
                "a2a_max_per_session",
                raw.a2a_max_per_session.unwrap_or(default_a2a.per_session),
                1,
            )?,
            window: Duration::from_secs(at_least(
                "a2a_window_secs",
                raw.a2a_window_secs
                    .unwrap_or(default_a2a.window.as_secs().max(1)),
                1,
            )?),
        };
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
        let max_output_tokens = at_least(
            "model.max_output_tokens",
            raw.model.max_output_tokens.unwrap_or(4096),
            1,
        )?;
        let approval_ttl_secs = at_least(
            "approval_ttl_secs",
            raw.approval_ttl_secs.unwrap_or(7 * 24 * 3600),
            1,
        )?;
        let container_uid_range = match raw.container_uid_range.as_deref() {
            None => UidRange::DEFAULT,
            Some(text) => parse_uid_range(text)?,
        };
        let disk_quota_mb = raw.disk_quota_mb.unwrap_or(1024);
        if disk_quota_mb != 0 && !(16..=1 << 24).contains(&disk_quota_mb) {
            return Err(invalid(
                "disk_quota_mb",
                format!("{disk_quota_mb} is outside 16..=16777216 (0 turns quotas off)"),
            ));
        }
        let disk_reserve_mb = raw.disk_reserve_mb.unwrap_or(1024);
        if disk_reserve_mb > 1 << 30 {
            return Err(invalid(
                "disk_reserve_mb",
                format!("{disk_reserve_mb} is over 1073741824"),
            ));
        }
        let proxy_max_connections = raw.proxy_max_connections.unwrap_or(16);
        if !(1..=4096).contains(&proxy_max_connections) {
            return Err(invalid(
                "proxy_max_connections",
                format!("{proxy_max_connections} is outside 1..=4096"),
            ));
        }
        let proxy_header_timeout_secs = at_least(
            "proxy_header_timeout_secs",
            raw.proxy_header_timeout_secs.unwrap_or(10),
            1,
        )?;
        let proxy_idle_timeout_secs = at_least(
            "proxy_idle_timeout_secs",
            raw.proxy_idle_timeout_secs.unwrap_or(60),
            1,
        )?;
        let proxy_request_timeout_secs = at_least(
            "proxy_request_timeout_secs",
            raw.proxy_request_timeout_secs.unwrap_or(900),
            1,
        )?;
        if proxy_request_timeout_secs < proxy_header_timeout_secs {
            return Err(invalid(
                "proxy_request_timeout_secs",
                format!(
                    "{proxy_request_timeout_secs} is below proxy_header_timeout_secs ({proxy_header_timeout_secs})"
                ),
            ));
        }
        let outbound_max_rows_per_turn = row_cap(
            "outbound_max_rows_per_turn",
            raw.outbound_max_rows_per_turn.unwrap_or(200),
        )?;
        let outbound_max_rows_per_minute = row_cap(
            "outbound_max_rows_per_minute",
            raw.outbound_max_rows_per_minute.unwrap_or(600),
        )?;
        Ok(Config {
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            groups_dir: raw.groups_dir.unwrap_or_else(|| PathBuf::from("groups")),
            install_id: raw.install_id,
            image,
            toolbox_image,
            max_containers,
            idle_timeout: Duration::from_secs(idle_timeout_secs),
            heartbeat_stale: Duration::from_secs(heartbeat_stale_secs),
            agent_log: raw.agent_log.clone().unwrap_or_else(|| "info".into()),
            sweep_interval: Duration::from_millis(sweep_ms),
            wake_mode: raw.wake_mode.unwrap_or(WakeMode::Events),
            container_user,
            container_uid_range,
            disk_quota_mb,
            disk_reserve_mb,
            proxy_max_connections: usize::try_from(proxy_max_connections).unwrap_or(4096),
            proxy_header_timeout: Duration::from_secs(proxy_header_timeout_secs),
            proxy_idle_timeout: Duration::from_secs(proxy_idle_timeout_secs),
            proxy_request_timeout: Duration::from_secs(proxy_request_timeout_secs),
            outbound_max_rows_per_turn,
            outbound_max_rows_per_minute,
            limits: Limits {
                memory_bytes: memory_mb * 1024 * 1024,
                nano_cpus: (cpus * 1e9) as i64,
                pids_limit,
                tmpfs_bytes: tmpfs_mb * 1024 * 1024,
            },
            model,
            max_output_tokens,
            context_window_tokens,
            compact_at_percent,
            model_vision: raw.model.vision.unwrap_or(true),
            a2a,
            approval_ttl: Duration::from_secs(approval_ttl_secs),
            channels: ChannelsConfig::from_raw(&raw.channels, web.listen.is_some())?,
            search: SearchConfig::from_raw(&raw.search)?,
            web,
        })
    }
}

/// `value`, refused unless it is above zero.
fn positive(key: &'static str, value: i64) -> Result<i64, ConfigError> {
    if value > 0 {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is not a positive number")))
    }
}

/// `value`, refused when below `minimum`.
fn at_least<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    minimum: T,
) -> Result<T, ConfigError> {
    if value >= minimum {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is below {minimum}")))
    }
}

fn row_cap(key: &'static str, value: u64) -> Result<u32, ConfigError> {
    match u32::try_from(value) {
        Ok(cap) if (1..=1_000_000).contains(&cap) => Ok(cap),
        _ => Err(invalid(key, format!("{value} is outside 1..=1000000"))),
    }
}

fn parse_uid_range(text: &str) -> Result<UidRange, ConfigError> {
    let range = UidRange::parse(text).ok_or_else(|| {
        invalid(
            "container_uid_range",
            format!("{text:?} must be first-last, e.g. 200000-265535"),
        )
    })?;
    // Below 1000 live the system's own users; u32::MAX is (uid_t)-1, "no change" to chown.
    if range.first < 1000 || range.last == u32::MAX {
        return Err(invalid(
            "container_uid_range",
            format!("{range} must lie within 1000-4294967294, away from system users"),
        ));
    }
    Ok(range)
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

pub(crate) fn invalid(key: &'static str, message: String) -> ConfigError {
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

    /// `toml` is one `crabpot.toml`; `expected` is the start of the error, `None` = accepted.
    fn check(toml_text: &str, expected: Option<&str>) {
        let raw: RawConfig = toml::from_str(toml_text).unwrap();
        match (Config::from_raw(raw), expected) {
            (Ok(_), None) => {}
            (Ok(_), Some(expected)) => panic!("{toml_text:?} was accepted, expected {expected:?}"),
            (Err(e), None) => panic!("{toml_text:?} was refused: {e}"),
            (Err(e), Some(expected)) => {
                assert!(e.to_string().starts_with(expected), "{toml_text:?}: {e}")
            }
        }
    }

    #[test]
    fn every_limit_is_checked_at_start_and_names_its_key() {
        for (toml_text, expected) in [
            (
                "pids_limit = -1",
                Some("pids_limit: -1 is not a positive number"),
            ),
            (
                "pids_limit = 0",
                Some("pids_limit: 0 is not a positive number"),
            ),
            ("pids_limit = 4", Some("pids_limit: 4 is outside 8")),
            ("pids_limit = 64", None),
            (
                "memory_mb = -5",
                Some("memory_mb: -5 is not a positive number"),
            ),
            ("memory_mb = 8", Some("memory_mb: 8 is outside 16")),
            ("cpus = 0.0", Some("cpus: 0 is outside")),
            ("cpus = 100.0", Some("cpus: 100 is outside")),
            ("tmpfs_mb = 0", Some("tmpfs_mb: 0 is outside")),
            ("max_containers = 0", Some("max_containers: 0 is below 1")),
            (
                "idle_timeout_secs = 0",
                Some("idle_timeout_secs: 0 is below 1"),
            ),
            (
                "heartbeat_stale_secs = 3",
                Some("heartbeat_stale_secs: 3 is below 10"),
            ),
            (
                "sweep_interval_ms = 1",
                Some("sweep_interval_ms: 1 is below 50"),
            ),
            ("image = \" \"", Some("image: is empty")),
            (
                "approval_ttl_secs = 0",
                Some("approval_ttl_secs: 0 is below 1"),
            ),
            (
                "a2a_max_per_session = 0",
                Some("a2a_max_per_session: 0 is below 1"),
            ),
            ("a2a_window_secs = 0", Some("a2a_window_secs: 0 is below 1")),
            ("container_user = \"0:0\"", Some("container_user")),
            (
                "container_uid_range = \"5-1\"",
                Some("container_uid_range: \"5-1\" must be"),
            ),
            (
                "container_uid_range = \"0-65535\"",
                Some("container_uid_range: 0-65535 must lie"),
            ),
            ("container_uid_range = \"300000-300009\"", None),
            ("disk_quota_mb = 1", Some("disk_quota_mb: 1 is outside")),
            ("disk_quota_mb = 0", None),
            ("disk_quota_mb = 64", None),
            (
                "disk_reserve_mb = 99999999999",
                Some("disk_reserve_mb: 99999999999 is over"),
            ),
            ("disk_reserve_mb = 0", None),
            (
                "proxy_max_connections = 0",
                Some("proxy_max_connections: 0 is outside"),
            ),
            (
                "proxy_header_timeout_secs = 0",
                Some("proxy_header_timeout_secs: 0 is below 1"),
            ),
            (
                "proxy_idle_timeout_secs = 0",
                Some("proxy_idle_timeout_secs: 0 is below 1"),
            ),
            (
                "proxy_request_timeout_secs = 5\nproxy_header_timeout_secs = 10",
                Some("proxy_request_timeout_secs: 5 is below proxy_header_timeout_secs"),
            ),
            (
                "outbound_max_rows_per_turn = 0",
                Some("outbound_max_rows_per_turn: 0 is outside"),
            ),
            (
                "outbound_max_rows_per_minute = 0",
                Some("outbound_max_rows_per_minute: 0 is outside"),
            ),
            (
                "[model]\nmax_output_tokens = 0",
                Some("model.max_output_tokens: 0 is below 1"),
            ),
        ] {
            check(toml_text, expected);
        }
    }

    #[test]
    fn limits_have_defaults_and_env_names() {
        let config = Config::from_raw(RawConfig::default()).unwrap();
        assert_eq!(config.container_uid_range, UidRange::DEFAULT);
        assert_eq!(config.disk_quota_mb, 1024);
        assert_eq!(config.disk_reserve_mb, 1024);
        assert_eq!(config.proxy_max_connections, 16);
        assert_eq!(config.proxy_header_timeout, Duration::from_secs(10));
        assert_eq!(config.proxy_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.proxy_request_timeout, Duration::from_secs(900));
        assert_eq!(config.outbound_max_rows_per_turn, 200);
        assert_eq!(config.outbound_max_rows_per_minute, 600);
        let config = Config::from_raw(env(&[
            ("CRABPOT_CONTAINER_UID_RANGE", "300000-300099"),
            ("CRABPOT_DISK_QUOTA_MB", "64"),
            ("CRABPOT_DISK_RESERVE_MB", "10"),
            ("CRABPOT_PROXY_MAX_CONNECTIONS", "4"),
            ("CRABPOT_PROXY_HEADER_TIMEOUT_SECS", "2"),
            ("CRABPOT_PROXY_IDLE_TIMEOUT_SECS", "3"),
            ("CRABPOT_PROXY_REQUEST_TIMEOUT_SECS", "4"),
            ("CRABPOT_OUTBOUND_MAX_ROWS_PER_TURN", "5"),
            ("CRABPOT_OUTBOUND_MAX_ROWS_PER_MINUTE", "6"),
        ]))
        .unwrap();
        assert_eq!(config.container_uid_range.first, 300_000);
        assert_eq!(config.disk_quota_mb, 64);
        assert_eq!(config.disk_reserve_mb, 10);
        assert_eq!(config.proxy_max_connections, 4);
        assert_eq!(config.proxy_request_timeout, Duration::from_secs(4));
        assert_eq!(config.outbound_max_rows_per_minute, 6);
        let err = Config::from_raw(env(&[("CRABPOT_PIDS_LIMIT", "-1")])).unwrap_err();
        assert_eq!(err.to_string(), "pids_limit: -1 is not a positive number");
    }
}
