//! Where the runner finds things and how it paces itself: [`RunnerOptions`] (the session and
//! group folders, overridable by `CRABPOT_SESSION_DIR` and `CRABPOT_GROUP_DIR` for tests —
//! paths only, never a secret), [`ToolLimits`] (the caps of the tools: timeouts, output
//! sizes, the shell) and [`Limits`], the session's `session_config` with its numbers clamped
//! to sane ranges.
//!
//! Everything else (provider, model, limits) comes from `inbound.db`, written by the host.

use crate::model::RetryPolicy;
use protocol::paths::CONTAINER_GROUP_DIR;
use protocol::rows::{DEFAULT_COMPACT_AT_PERCENT, DEFAULT_CONTEXT_WINDOW_TOKENS};
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
    /// The caps of the tools.
    pub tool_limits: ToolLimits,
}

/// The caps of the tools. The defaults are what the model is told in the tool descriptions;
/// tests lower them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolLimits {
    /// The shell `bash` runs commands with (busybox `sh` in the image).
    pub shell: PathBuf,
    /// `bash` timeout when the model gives none.
    pub bash_default_timeout: Duration,
    /// The most the model may raise a `bash` timeout to.
    pub bash_max_timeout: Duration,
    /// Most bytes of combined stdout and stderr shown; the middle of longer output is cut.
    pub bash_output_bytes: usize,
    /// `ask_user_question` timeout when the model gives none.
    pub question_default_timeout: Duration,
    /// The most the model may raise a question timeout to.
    pub question_max_timeout: Duration,
    /// Most lines `read_file` returns in one call.
    pub read_max_lines: usize,
    /// Most bytes of text `read_file`, `list_files` and `grep` return in one call.
    pub output_bytes: usize,
    /// Largest file `send_file` sends and `read_file` / `edit_file` / `grep` open.
    pub max_file_bytes: u64,
    /// Most entries `list_files` returns.
    pub list_max_entries: usize,
    /// Most matching lines `grep` returns.
    pub grep_max_matches: usize,
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self {
            shell: PathBuf::from("/bin/sh"),
            bash_default_timeout: Duration::from_secs(60),
            bash_max_timeout: Duration::from_secs(600),
            bash_output_bytes: 30_000,
            question_default_timeout: Duration::from_secs(300),
            question_max_timeout: Duration::from_secs(3600),
            read_max_lines: 2000,
            output_bytes: 64 * 1024,
            max_file_bytes: 64 * 1024 * 1024,
            list_max_entries: 1000,
            grep_max_matches: 200,
        }
    }
}

impl RunnerOptions {
    /// Options for a session folder and group folder at the given places.
    pub fn at(session_root: impl Into<PathBuf>, group_dir: impl Into<PathBuf>) -> Self {
        Self {
            paths: SessionPaths::at(session_root),
            group_dir: group_dir.into(),
            model_retry: RetryPolicy::default(),
            open_deadline: Duration::from_secs(30),
            tool_limits: ToolLimits::default(),
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
    /// The model's context window in tokens (the default when the host did not say).
    pub context_window_tokens: u32,
    /// Compact the conversation when a request's estimated size exceeds this many tokens.
    pub compact_at_tokens: u32,
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
        let context_window_tokens = match config.context_window_tokens {
            0 => DEFAULT_CONTEXT_WINDOW_TOKENS,
            tokens => tokens,
        };
        let percent = match config.compact_at_percent {
            0 => DEFAULT_COMPACT_AT_PERCENT,
            percent => percent.min(100),
        };
        let compact_at_tokens =
            u32::try_from(u64::from(context_window_tokens) * u64::from(percent) / 100)
                .unwrap_or(u32::MAX);
        Self {
            config,
            heartbeat_interval,
            poll_interval,
            context_window_tokens,
            compact_at_tokens,
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
        assert_eq!(limits.context_window_tokens, 128_000);
        assert_eq!(limits.compact_at_tokens, 102_400);
        let small = Limits::new(SessionConfig {
            context_window_tokens: 1000,
            compact_at_percent: 250,
            ..SessionConfig::default()
        });
        assert_eq!(small.compact_at_tokens, 1000);
    }
}
