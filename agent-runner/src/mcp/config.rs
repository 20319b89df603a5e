//! The group's `mcp.json`: which MCP servers to start and which of their tools the model may
//! call. [`load`] reads `<group>/mcp.json` (no file: no servers) and [`parse`] checks it.
//!
//! The operator writes the file but the container reads it, so it is treated as hostile-ish
//! input: bounded in size and count, unknown keys refused, and every server entry checked on
//! its own, so one bad entry is reported ([`ConfigProblem`]) and the others still start.
//!
//! ```json
//! {"servers": {
//!    "notes": {"command": "python3", "args": ["/group/mcp/notes.py"], "env": {"X": "y"},
//!              "allow_tools": ["*"]},
//!    "docs":  {"url": "http://127.0.0.1:8931/mcp", "allow_tools": ["search"], "timeout_seconds": 30}
//! }}
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The file's name inside the group folder.
pub const FILE_NAME: &str = "mcp.json";
/// Largest `mcp.json` read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most servers started; later ones (in name order) are reported and skipped.
pub const MAX_SERVERS: usize = 16;
/// Longest server name: it prefixes every tool name, which may be 64 characters in all.
pub const MAX_SERVER_NAME: usize = 24;
/// Most `args` and `env` entries of a stdio server.
const MAX_LIST: usize = 64;
/// A call's timeout when the entry names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most `timeout_seconds` may say.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// One server the group declared, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// The key in `servers`: `[A-Za-z0-9_-]`, at most [`MAX_SERVER_NAME`] characters.
    pub name: String,
    pub transport: Transport,
    pub allow: AllowList,
    /// How long one tool call may take.
    pub timeout: Duration,
}

/// How to reach a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout, started in the workspace.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Added to the runner's own environment.
        env: BTreeMap<String, String>,
    },
    /// A streamable-HTTP server, reached through the egress proxy.
    Http { url: String },
}

/// Which of a server's tools the model may call: none unless listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowList {
    All,
    Named(Vec<String>),
}

impl AllowList {
    /// Whether the server's tool `name` (as the server spells it) is allowed.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            AllowList::All => true,
            AllowList::Named(names) => names.iter().any(|allowed| allowed == name),
        }
    }
}

/// Something wrong with the file or one entry, for the log and the agent's `mcp_status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("cannot read {FILE_NAME}: {0}")]
    Unreadable(String),
    #[error("{FILE_NAME} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("{FILE_NAME} is not valid: {0}")]
    Invalid(String),
    #[error("MCP server {name:?} in {FILE_NAME}: {reason}")]
    BadServer { name: String, reason: String },
    #[error("{FILE_NAME} declares more than {MAX_SERVERS} servers; skipped: {}", skipped.join(", "))]
    TooManyServers { skipped: Vec<String> },
}

/// The checked file: the servers to start and what was wrong with the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct McpConfig {
    pub servers: Vec<ServerConfig>,
    pub problems: Vec<ConfigProblem>,
}

/// Reads `<group_dir>/mcp.json`. `None` when there is no such file.
pub fn load(group_dir: &Path) -> Option<McpConfig> {
    let path = group_dir.join(FILE_NAME);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            return Some(McpConfig::problem(ConfigProblem::Unreadable(
                error.to_string(),
            )));
        }
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Some(McpConfig::problem(ConfigProblem::TooLarge));
    }
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() as u64 > MAX_FILE_BYTES => {
            Some(McpConfig::problem(ConfigProblem::TooLarge))
        }
        Ok(bytes) => Some(parse(&bytes)),
        Err(error) => Some(McpConfig::problem(ConfigProblem::Unreadable(
            error.to_string(),
        ))),
    }
}

impl McpConfig {
    fn problem(problem: ConfigProblem) -> Self {
        Self {
            servers: Vec::new(),
            problems: vec![problem],
        }
    }
}

/// The top level: only `servers`, each entry kept raw so it is checked on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    servers: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    #[serde(default)]
    allow_tools: Vec<String>,
    timeout_seconds: Option<f64>,
}

/// Checks the file's bytes. Servers come in name order.
pub fn parse(bytes: &[u8]) -> McpConfig {
    let raw: RawFile = match serde_json::from_slice(bytes) {
        Ok(raw) => raw,
        Err(error) => return McpConfig::problem(ConfigProblem::Invalid(error.to_string())),
    };
    let mut config = McpConfig::default();
    let mut skipped = Vec::new();
    for (name, value) in raw.servers {
        if config.servers.len() == MAX_SERVERS {
            skipped.push(name);
            continue;
        }
        match server(&name, value) {
            Ok(server) => config.servers.push(server),
            Err(reason) => config
                .problems
                .push(ConfigProblem::BadServer { name, reason }),
        }
    }
    if !skipped.is_empty() {
        config
            .problems
            .push(ConfigProblem::TooManyServers { skipped });
    }
    config
}

fn server(name: &str, value: serde_json::Value) -> Result<ServerConfig, String> {
    check_server_name(name)?;
    let raw: RawServer = serde_json::from_value(value).map_err(|error| error.to_string())?;
    let transport = match (raw.command, raw.url) {
        (Some(_), Some(_)) => return Err("give either `command` or `url`, not both".into()),
        (None, None) => {
            return Err("give `command` (a stdio server) or `url` (a remote one)".into());
        }
        (Some(command), None) => {
            if command.trim().is_empty() || command.contains('\0') {
                return Err("`command` is empty or contains NUL".into());
            }
            if raw.args.len() > MAX_LIST || raw.env.len() > MAX_LIST {
                return Err(format!("at most {MAX_LIST} `args` and `env` entries"));
            }
            if raw.args.iter().any(|arg| arg.contains('\0')) {
                return Err("an argument contains NUL".into());
            }
            for (key, value) in &raw.env {
                if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                    return Err(format!("bad environment variable name or value: {key:?}"));
                }
            }
            Transport::Stdio {
                command,
                args: raw.args,
                env: raw.env,
            }
        }
        (None, Some(url)) => {
            if !raw.args.is_empty() || !raw.env.is_empty() {
                return Err("`args` and `env` are for stdio servers (`command`), not `url`".into());
            }
            check_url(&url)?;
            Transport::Http { url }
        }
    };
    let allow = if raw.allow_tools.iter().any(|tool| tool == "*") {
        AllowList::All
    } else {
        AllowList::Named(raw.allow_tools)
    };
    let timeout = match raw.timeout_seconds {
        None => DEFAULT_TIMEOUT,
        Some(seconds) if seconds.is_finite() && seconds >= 1.0 => {
            Duration::from_secs_f64(seconds.min(MAX_TIMEOUT.as_secs_f64()))
        }
        Some(seconds) => {
            return Err(format!(
                "`timeout_seconds` must be at least 1, not {seconds}"
            ));
        }
    };
    Ok(ServerConfig {
        name: name.to_owned(),
        transport,
        allow,
        timeout,
    })
}

fn check_server_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a server name is 1 to {MAX_SERVER_NAME} of [A-Za-z0-9_-] (it prefixes its tools' names)"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest_mcp::Url::parse(url).map_err(|error| format!("bad `url`: {error}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(format!("`url` must be http or https, not {other}")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("`url` has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("`url` must not carry credentials".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<ServerConfig, String> {
        let config = parse(text.as_bytes());
        match (config.servers.as_slice(), config.problems.as_slice()) {
            ([server], []) => Ok(server.clone()),
            ([], [problem]) => Err(problem.to_string()),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn entries_table() {
        let ok: &[(&str, Transport, AllowList, u64)] = &[
            (
                r#"{"servers":{"notes":{"command":"python3","args":["/group/n.py"],"env":{"X":"y"},"allow_tools":["*"]}}}"#,
                Transport::Stdio {
                    command: "python3".into(),
                    args: vec!["/group/n.py".into()],
                    env: BTreeMap::from([("X".into(), "y".into())]),
                },
                AllowList::All,
                60,
            ),
            (
                r#"{"servers":{"docs":{"url":"http://127.0.0.1:8931/mcp","allow_tools":["search","fetch_page"],"timeout_seconds":5}}}"#,
                Transport::Http {
                    url: "http://127.0.0.1:8931/mcp".into(),
                },
                AllowList::Named(vec!["search".into(), "fetch_page".into()]),
                5,
            ),
            (
                r#"{"servers":{"a-b_9":{"url":"https://mcp.example.com/","timeout_seconds":99999}}}"#,
                Transport::Http {
                    url: "https://mcp.example.com/".into(),
                },
                AllowList::Named(vec![]),
                600,
            ),
        ];
        for (text, transport, allow, timeout) in ok {
            let server = one(text).unwrap();
            assert_eq!(&server.transport, transport, "{text}");
            assert_eq!(&server.allow, allow, "{text}");
            assert_eq!(server.timeout.as_secs(), *timeout, "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("not json", "is not valid"),
            (r#"{"servers":{},"extra":1}"#, "unknown field `extra`"),
            (r#"{"servers":[]}"#, "is not valid"),
            (r#"{"servers":{"x":{}}}"#, "give `command`"),
            (
                r#"{"servers":{"x":{"command":"a","url":"http://h/"}}}"#,
                "not both",
            ),
            (r#"{"servers":{"x":{"command":" "}}}"#, "`command` is empty"),
            (
                r#"{"servers":{"x":{"command":"a","bogus":true}}}"#,
                "unknown field `bogus`",
            ),
            (
                r#"{"servers":{"x":{"command":"a","env":{"A=B":"c"}}}}"#,
                "environment variable",
            ),
            (r#"{"servers":{"x":{"url":"ftp://h/"}}}"#, "http or https"),
            (
                r#"{"servers":{"x":{"url":"http://u:p@h/"}}}"#,
                "credentials",
            ),
            (r#"{"servers":{"x":{"url":"nope"}}}"#, "bad `url`"),
            (
                r#"{"servers":{"x":{"url":"http://h/","args":["a"]}}}"#,
                "for stdio servers",
            ),
            (
                r#"{"servers":{"x":{"url":"http://h/","timeout_seconds":0}}}"#,
                "at least 1",
            ),
            (r#"{"servers":{"a.b":{"command":"a"}}}"#, "server name"),
            (r#"{"servers":{"":{"command":"a"}}}"#, "server name"),
            (
                r#"{"servers":{"abcdefghijklmnopqrstuvwxyz":{"command":"a"}}}"#,
                "server name",
            ),
            (
                r#"{"servers":{"x":{"command":"a","allow_tools":"*"}}}"#,
                "invalid type",
            ),
        ];
        for (text, fragment) in bad {
            let error = one(text).unwrap_err();
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    /// A bad entry is reported and does not stop the good ones.
    #[test]
    fn a_bad_server_does_not_stop_the_others() {
        let config = parse(
            br#"{"servers":{"bad":{"command":""},"good":{"command":"x"},"worse":{"url":1}}}"#,
        );
        let names: Vec<_> = config.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(config.problems.len(), 2, "{:?}", config.problems);
        assert!(config.problems[0].to_string().contains("\"bad\""));
        assert!(config.problems[1].to_string().contains("\"worse\""));
    }

    #[test]
    fn too_many_servers_are_skipped_by_name() {
        let entries: Vec<String> = (0..MAX_SERVERS + 2)
            .map(|i| format!(r#""s{i:02}":{{"command":"x"}}"#))
            .collect();
        let config = parse(format!(r#"{{"servers":{{{}}}}}"#, entries.join(",")).as_bytes());
        assert_eq!(config.servers.len(), MAX_SERVERS);
        assert_eq!(
            config.problems,
            [ConfigProblem::TooManyServers {
                skipped: vec!["s16".into(), "s17".into()]
            }]
        );
    }

    #[test]
    fn files_are_loaded_when_present_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        std::fs::write(
            dir.path().join(FILE_NAME),
            br#"{"servers":{"a":{"command":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().servers.len(), 1);
        std::fs::write(
            dir.path().join(FILE_NAME),
            vec![b' '; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        assert_eq!(
            load(dir.path()).unwrap().problems,
            [ConfigProblem::TooLarge]
        );
    }

    #[test]
    fn allow_lists() {
        assert!(AllowList::All.allows("anything"));
        let named = AllowList::Named(vec!["search".into()]);
        assert!(named.allows("search"));
        assert!(!named.allows("Search"));
        assert!(!named.allows("fetch"));
        assert!(!AllowList::Named(vec![]).allows("search"));
    }
}
