//! Where the runner finds things and how it paces itself: [`RunnerOptions`] (the session and
//! group folders, overridable by `CRABPOT_SESSION_DIR` and `CRABPOT_GROUP_DIR` for tests —
//! paths only, never a secret) and [`Limits`], the session's `session_config` with its
//! numbers clamped to sane ranges.
//!
//! Everything else (provider, model, limits) comes from `inbound.db`, written by the host.

use crate::model::RetryPolicy;
use protocol::paths::CONTAINER_GROUP_DIR;
use protocol::{SessionConfig, SessionPaths};
use std::path::PathBuf;
use std::time::Duration;

/// Overrides the session folder root (default `/session`).
pub const SESSION_DIR_ENV: &str = "CRABPOT_SESSION_DIR";
/// Overrides the group folder (default `/group`).
pub const GROUP_DIR_ENV: &str = "CRABPOT_GROUP_DIR";

/// How the runner is started.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    pub paths: SessionPaths,
    pub group_dir: PathBuf,
    /// Retries of failed model calls.
    pub model_retry: RetryPolicy,
    /// How long to keep retrying while the session files are busy or not ready at start.
    pub open_deadline: Duration,
}

impl RunnerOptions {
    /// Options for a session folder and group folder at the given places.
    pub fn at(session_root: impl Into<PathBuf>, group_dir: impl Into<PathBuf>) -> Self {
        Self {
            paths: SessionPaths::at(session_root),
            group_dir: group_dir.into(),
            model_retry: RetryPolicy::default(),
            open_deadline: Duration::from_secs(30),
        }
    }

    /// The container layout, with the roots overridable from the environment.
    pub fn from_env() -> Self {
        let paths = match std::env::var_os(SESSION_DIR_ENV) {
            Some(root) if !root.is_empty() => SessionPaths::at(root),
            _ => SessionPaths::in_container(),
        };
        let group_dir = match std::env::var_os(GROUP_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(CONTAINER_GROUP_DIR),
        };
        Self {
            paths,
            group_dir,
            ..Self::at("", "")
        }
    }
}

/// The session configuration with its numbers made safe to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub config: SessionConfig,
    pub heartbeat_interval: Duration,
    pub poll_interval: Duration,
}

impl Limits {
    /// Clamps what the host wrote: a zero interval would spin, a zero limit would never call
    /// the model.
    pub fn new(mut config: SessionConfig) -> Self {
        config.max_tool_rounds = config.max_tool_rounds.max(1);
        config.max_output_tokens = config.max_output_tokens.max(1);
        let heartbeat_interval =
            Duration::from_millis(config.heartbeat_interval_ms.clamp(50, 60_000));
        let poll_interval = Duration::from_millis(config.poll_interval_ms.clamp(10, 60_000));
        Self {
            config,
            heartbeat_interval,
            poll_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped() {
        let limits = Limits::new(SessionConfig {
            max_tool_rounds: 0,
            max_output_tokens: 0,
            heartbeat_interval_ms: 0,
            poll_interval_ms: u64::MAX,
            ..SessionConfig::default()
        });
        assert_eq!(limits.config.max_tool_rounds, 1);
        assert_eq!(limits.config.max_output_tokens, 1);
        assert_eq!(limits.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(limits.poll_interval, Duration::from_secs(60));
    }
}
