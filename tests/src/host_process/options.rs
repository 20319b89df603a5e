//! How a test host is configured: [`HostOptions`] with its [`ModelConfig`], and the hermetic
//! environment built from them for the host and its CLI (inherited model and host settings are
//! removed first, so a "no model configured" test is honest).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::fake_model::FakeModel;

/// Inherited variables whose names start with these never reach the host or the CLI.
const SCRUBBED_PREFIXES: &[&str] = &["CRABPOT_", "OPENAI_", "ANTHROPIC_"];

/// Inherited variables with these exact names never reach the host or the CLI.
const SCRUBBED_NAMES: &[&str] = &["RUST_LOG"];

/// Which wire format the host speaks to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelProvider {
    OpenAi,
    Anthropic,
}

impl ModelProvider {
    /// The value of `CRABPOT_MODEL_PROVIDER`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelProvider::OpenAi => "openai",
            ModelProvider::Anthropic => "anthropic",
        }
    }
}

/// The model the host is configured with, passed as `CRABPOT_MODEL_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub provider: ModelProvider,
    pub base_url: String,
    pub model: String,
    /// `CRABPOT_MODEL_API_KEY`; none is set when `None`.
    pub api_key: Option<String>,
}

impl ModelConfig {
    /// The fake model as an OpenAI-compatible upstream (`http://127.0.0.1:PORT/v1`).
    pub fn openai(fake: &FakeModel) -> Self {
        Self {
            provider: ModelProvider::OpenAi,
            base_url: fake.openai_base_url(),
            model: "fake-model".to_string(),
            api_key: None,
        }
    }

    /// The fake model as an Anthropic upstream (`http://127.0.0.1:PORT`).
    pub fn anthropic(fake: &FakeModel) -> Self {
        Self {
            provider: ModelProvider::Anthropic,
            base_url: fake.anthropic_base_url(),
            model: "fake-claude".to_string(),
            api_key: None,
        }
    }

    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }
}

/// How to start a host. `HostOptions::default()` is a host with no model configured.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    pub model: Option<ModelConfig>,
    /// `CRABPOT_IMAGE`; default [`crate::image_name`].
    pub image: Option<String>,
    /// `CRABPOT_GROUPS_DIR`; default `<repo root>/groups`.
    pub groups_dir: Option<PathBuf>,
    /// `RUST_LOG`; default `info,host=debug`.
    pub rust_log: Option<String>,
    /// More variables, set last (so they win over everything above).
    pub env: Vec<(String, String)>,
    /// The binary to run; default [`crabpot_bin`](super::crabpot_bin).
    pub binary: Option<PathBuf>,
    /// How long to wait for `cli.sock`; default [`DEFAULT_READY_TIMEOUT`](super::DEFAULT_READY_TIMEOUT).
    pub ready_timeout: Option<Duration>,
}

impl HostOptions {
    pub fn with_model(model: ModelConfig) -> Self {
        Self {
            model: Some(model),
            ..Self::default()
        }
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// One change to a child's environment: set (`Some`) or remove (`None`).
pub(super) type EnvChange = (OsString, Option<OsString>);

/// The environment changes for the host and its CLI: scrub the inherited names that could
/// configure a model or the host, then set what `options` say.
pub(super) fn child_env(
    options: &HostOptions,
    install_id: &str,
    inherited_names: impl IntoIterator<Item = OsString>,
) -> Vec<EnvChange> {
    let mut changes: Vec<EnvChange> = inherited_names
        .into_iter()
        .filter(|name| {
            let name = name.to_string_lossy();
            SCRUBBED_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || SCRUBBED_NAMES.contains(&name.as_ref())
        })
        .map(|name| (name, None))
        .collect();
    let mut set = |name: &str, value: String| {
        changes.push((name.into(), Some(value.into())));
    };
    set("CRABPOT_INSTALL_ID", install_id.to_string());
    set(
        "CRABPOT_IMAGE",
        options.image.clone().unwrap_or_else(crate::image_name),
    );
    let groups_dir = options
        .groups_dir
        .clone()
        .unwrap_or_else(|| crate::repo_root().join("groups"));
    set("CRABPOT_GROUPS_DIR", groups_dir.display().to_string());
    // Tests run in parallel: each host's web server takes a free loopback port, read back
    // from `data/web.url` ([`super::HostProcess::web_url`]). `options.env` may override it.
    set("CRABPOT_WEB_LISTEN", "127.0.0.1:0".to_string());
    // The runner's debug log, printed by a failing test, shows where a turn stopped.
    set("CRABPOT_AGENT_LOG", "info,agent_runner=debug".to_string());
    set(
        "RUST_LOG",
        options
            .rust_log
            .clone()
            .unwrap_or_else(|| "info,host=debug".to_string()),
    );
    if let Some(model) = &options.model {
        set(
            "CRABPOT_MODEL_PROVIDER",
            model.provider.as_str().to_string(),
        );
        set("CRABPOT_MODEL_BASE_URL", model.base_url.clone());
        set("CRABPOT_MODEL", model.model.clone());
        if let Some(api_key) = &model.api_key {
            set("CRABPOT_MODEL_API_KEY", api_key.clone());
        }
    }
    for (name, value) in &options.env {
        set(name, value.clone());
    }
    changes
}

pub(super) fn apply_env(command: &mut Command, changes: &[EnvChange]) {
    for (name, value) in changes {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_model::FakeModel;

    fn changes_as_strings(changes: &[EnvChange]) -> Vec<(String, Option<String>)> {
        changes
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value
                        .as_ref()
                        .map(|value| value.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn last_value<'a>(
        changes: &'a [(String, Option<String>)],
        name: &str,
    ) -> Option<&'a Option<String>> {
        changes
            .iter()
            .rev()
            .find(|(changed, _)| changed == name)
            .map(|(_, value)| value)
    }

    #[test]
    fn child_env_scrubs_inherited_model_settings() {
        let inherited = [
            "PATH",
            "HOME",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "CRABPOT_MODEL_API_KEY",
            "CRABPOT_MODEL_BASE_URL",
            "CRABPOT_SKIP_DOCKER",
            "RUST_LOG",
        ]
        .map(OsString::from);
        let changes = changes_as_strings(&child_env(&HostOptions::default(), "t-1", inherited));
        for scrubbed in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "CRABPOT_MODEL_API_KEY",
            "CRABPOT_MODEL_BASE_URL",
            "CRABPOT_SKIP_DOCKER",
        ] {
            assert_eq!(last_value(&changes, scrubbed), Some(&None), "{scrubbed}");
        }
        assert_eq!(
            last_value(&changes, "PATH"),
            None,
            "PATH is inherited untouched"
        );
        assert_eq!(last_value(&changes, "CRABPOT_MODEL_PROVIDER"), None);
        assert_eq!(
            last_value(&changes, "RUST_LOG"),
            Some(&Some("info,host=debug".to_string()))
        );
        assert_eq!(
            last_value(&changes, "CRABPOT_INSTALL_ID"),
            Some(&Some("t-1".to_string()))
        );
        let groups = crate::repo_root().join("groups").display().to_string();
        assert_eq!(
            last_value(&changes, "CRABPOT_GROUPS_DIR"),
            Some(&Some(groups))
        );
    }

    #[test]
    fn child_env_sets_the_model_and_extra_env() {
        let options = HostOptions {
            model: Some(ModelConfig {
                provider: ModelProvider::Anthropic,
                base_url: "http://127.0.0.1:9".to_string(),
                model: "claude-x".to_string(),
                api_key: Some("sk-canary".to_string()),
            }),
            image: Some("img:1".to_string()),
            rust_log: Some("debug".to_string()),
            ..HostOptions::default()
        }
        .env("CRABPOT_MAX_CONTAINERS", "3")
        .env("CRABPOT_IMAGE", "img:2");
        let changes = changes_as_strings(&child_env(
            &options,
            "t-2",
            [OsString::from("CRABPOT_MODEL_API_KEY")],
        ));
        let expect = |name: &str, value: &str| {
            assert_eq!(
                last_value(&changes, name),
                Some(&Some(value.to_string())),
                "{name}"
            );
        };
        expect("CRABPOT_MODEL_PROVIDER", "anthropic");
        expect("CRABPOT_MODEL_BASE_URL", "http://127.0.0.1:9");
        expect("CRABPOT_MODEL", "claude-x");
        expect("CRABPOT_MODEL_API_KEY", "sk-canary");
        expect("RUST_LOG", "debug");
        expect("CRABPOT_MAX_CONTAINERS", "3");
        expect("CRABPOT_IMAGE", "img:2");
    }

    #[test]
    fn model_config_points_at_the_fake() {
        let fake = FakeModel::start().unwrap();
        let openai = ModelConfig::openai(&fake).with_api_key("k").with_model("m");
        assert_eq!(openai.base_url, format!("http://{}/v1", fake.addr()));
        assert_eq!(openai.provider.as_str(), "openai");
        assert_eq!(openai.api_key.as_deref(), Some("k"));
        assert_eq!(openai.model, "m");
        let anthropic = ModelConfig::anthropic(&fake);
        assert_eq!(anthropic.base_url, format!("http://{}", fake.addr()));
        assert_eq!(anthropic.provider.as_str(), "anthropic");
        assert_eq!(anthropic.api_key, None);
    }
}
