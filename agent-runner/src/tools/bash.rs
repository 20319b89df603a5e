//! The `bash` tool: runs a command with the image's shell (busybox `sh -c`) in the workspace,
//! with a minimal environment, a timeout the model may raise up to a cap, and combined
//! stdout and stderr cut in the middle beyond a cap ([`OutputCollector`]).
//!
//! The command runs in a process group of its own. When the timeout passes, or when the shell
//! exits and leaves background processes holding its output open, the whole group is killed:
//! nothing a call started outlives it. The registry records the declared timeout in
//! `container_state` while the command runs, so the host's sweep can tell "busy" from "stuck".

use super::{
    Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, ToolLimits, clamp_timeout,
    parse_arguments, seconds_text,
};
use serde::Deserialize;
use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

pub const NAME: &str = "bash";

/// How long output is still read after the shell exits (its group is killed at once, so
/// pipes close within milliseconds; this only bounds a process that escaped the group).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The environment commands run with: no secrets exist in the container, and of the runner's
/// own environment only [`PASSED_THROUGH`] is passed on.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
];

/// Variables the host sets on the container that the agent's commands need: the egress proxy
/// (so curl, git, pip and npm go through the host's allowlist) and the group's commit author.
const PASSED_THROUGH: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];

/// Runs shell commands in the workspace.
pub struct Bash;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    command: String,
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

impl Tool for Bash {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Run a shell command (sh: ls, cat, grep, sed, awk, find, diff, tar, \
                ...; the toolbox image adds git, python3, node, npm, curl, rg) in your \
                workspace /session/work and return its combined stdout and stderr and exit \
                code. The default timeout is 60 s; raise `timeout_seconds` (up to 600) for long \
                work. Output over 30,000 bytes is cut in the middle. Processes the command \
                leaves in the background are stopped when it ends. The network is reached only \
                through the host's egress proxy (already set in HTTP_PROXY and HTTPS_PROXY), \
                for the hosts the operator allowed; others are refused. Prefer read_file, \
                write_file, edit_file, list_files and grep for files."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "command": {
                        "type": "string",
                        "description": "The command line, run with `sh -c` in /session/work."
                    },
                    "timeout_seconds": {
                        "type": "number",
                        "description": "Seconds before the command is killed (default 60, at most 600).",
                        "minimum": 1,
                        "maximum": 600,
                        "default": 60
                    }
                },
                "required": ["command"],
                "additionalProperties": false
            }),
        }
    }

    fn declared_timeout(
        &self,
        arguments: &serde_json::Value,
        limits: &ToolLimits,
    ) -> Option<Duration> {
        let seconds = arguments
            .get("timeout_seconds")
            .and_then(serde_json::Value::as_f64);
        Some(
            clamp_timeout(
                seconds,
                limits.bash_default_timeout,
                limits.bash_max_timeout,
            )
            .0,
        )
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: Arguments = parse_arguments(NAME, arguments)?;
            if arguments.command.trim().is_empty() {
                return Err(ToolError::Refused("`command` is empty".into()));
            }
            let limits = context.tool_limits;
            let (timeout, capped) = clamp_timeout(
                arguments.timeout_seconds,
                limits.bash_default_timeout,
                limits.bash_max_timeout,
            );
            let run = run_command(
                &limits.shell,
                &arguments.command,
                context.workspace.root(),
                timeout,
                limits.bash_output_bytes,
            )
            .await?;
            let mut text = String::new();
            if capped {
                text.push_str(&format!(
                    "(timeout_seconds was capped at {} s)\n",
                    limits.bash_max_timeout.as_secs()
                ));
            }
            text.push_str(if run.output.is_empty() {
                "(no output)"
            } else {
                &run.output
            });
            let out_of_space = mentions_no_space(&run.output);
            match run.status {
                Some(status) => {
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&describe_exit(status));
                    if out_of_space
                        && let Some(note) = quota_note(context.limits.config.disk_quota_mb)
                    {
                        text.push('\n');
                        text.push_str(&note);
                    }
                    Ok(text)
                }
                None => Err(ToolError::Refused(format!(
                    "the command timed out after {} and was killed with every process it started; \
                     raise `timeout_seconds` (at most {} s) if it needs longer. Output before the timeout:\n{text}",
                    seconds_text(timeout),
                    limits.bash_max_timeout.as_secs()
                ))),
            }
        })
    }
}

/// Whether a command's output reports a full disk (ENOSPC or EDQUOT, as libc and busybox
/// word them).
fn mentions_no_space(output: &str) -> bool {
    output.contains("No space left on device") || output.contains("Disk quota exceeded")
}

/// What the agent is told when a write fails for lack of space: its quota, so it knows the
/// limit is its own and not the machine's. `None` when the session has no quota.
pub fn quota_note(quota_mb: u64) -> Option<String> {
    (quota_mb > 0).then(|| {
        format!(
            "(this session's disk quota is {quota_mb} MiB, for /session/work and /session/out \
             together: delete files you no longer need to make room)"
        )
    })
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("[exit code {code}]"),
        (None, Some(signal)) => format!("[killed by signal {signal}]"),
        (None, None) => "[exit status unknown]".to_owned(),
    }
}

/// What a command did: its (possibly cut) output, and its exit status, `None` on timeout.
#[derive(Debug)]
pub struct CommandRun {
    pub output: String,
    pub status: Option<ExitStatus>,
}

/// Runs `shell -c command` in `cwd` in a new process group; kills the group on timeout and
/// when the shell exits.
pub async fn run_command(
    shell: &Path,
    command: &str,
    cwd: &Path,
    timeout: Duration,
    output_cap: usize,
) -> Result<CommandRun, ToolError> {
    let mut process = tokio::process::Command::new(shell);
    process
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_clear()
        .envs(ENVIRONMENT.iter().copied())
        .envs(
            PASSED_THROUGH
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = process.spawn().map_err(|error| {
        ToolError::Io(format!(
            "cannot start {} in {}: {error}",
            shell.display(),
            cwd.display()
        ))
    })?;
    let group = child.id();
    // `kill_on_drop` kills only the shell; a call dropped mid-run (`/stop`) takes the whole
    // group with it.
    let mut group_guard = GroupGuard {
        leader: group,
        armed: true,
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut output = OutputCollector::new(output_cap);
    let (mut out_buffer, mut err_buffer) = ([0u8; 8192], [0u8; 8192]);
    let mut status: Option<ExitStatus> = None;
    let mut stop_at = Instant::now() + timeout;
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buffer) => match read {
                Some(n) => output.push(&out_buffer[..n]),
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buffer) => match read {
                Some(n) => output.push(&err_buffer[..n]),
                None => stderr = None,
            },
            waited = child.wait(), if status.is_none() => {
                let exit = waited.map_err(|error| ToolError::Io(format!("waiting for the command failed: {error}")))?;
                status = Some(exit);
                kill_group(group);
                stop_at = stop_at.min(Instant::now() + DRAIN_AFTER_EXIT);
            },
            () = tokio::time::sleep_until(stop_at) => {
                if status.is_none() {
                    kill_group(group);
                    // Reap the shell so no zombie is left; SIGKILL cannot be ignored.
                    let _ = child.wait().await;
                }
                break;
            }
        }
    }
    group_guard.armed = false;
    Ok(CommandRun {
        output: output.finish(),
        status,
    })
}

/// Kills the command's process group when dropped while armed: the call was cut short.
struct GroupGuard {
    leader: Option<u32>,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.leader);
        }
    }
}

/// Reads once; `None` at end of stream, on error, or (forever pending) once closed.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut Option<R>,
    buffer: &mut [u8],
) -> Option<usize> {
    match reader {
        Some(reader) => match reader.read(buffer).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Sends SIGKILL to the process group led by `leader`. "No such process" means it is
/// already gone.
fn kill_group(leader: Option<u32>) {
    let Some(pid) = leader
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(error) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
        && error != rustix::io::Errno::SRCH
    {
        tracing::warn!(%error, "cannot kill the command's process group");
    }
}

/// Keeps the first and last halves of a stream up to `cap` bytes and counts the rest.
#[derive(Debug)]
pub struct OutputCollector {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

impl OutputCollector {
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        Self {
            head_cap,
            tail_cap: cap - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let taken = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// The text: everything, or the head, a note of how much was left out, and the tail.
    pub fn finish(self) -> String {
        let kept = self.head.len() + self.tail.len();
        let head = String::from_utf8_lossy(&self.head).into_owned();
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let tail = String::from_utf8_lossy(&tail);
        if kept == self.total {
            return head + &tail;
        }
        format!(
            "{head}\n[... {} bytes of output omitted; {} bytes in all ...]\n{tail}",
            self.total - kept,
            self.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use serde_json::json;

    #[test]
    fn collector_keeps_head_and_tail() {
        let mut small = OutputCollector::new(10);
        small.push(b"abc");
        small.push(b"def");
        assert_eq!(small.finish(), "abcdef");
        let mut big = OutputCollector::new(10);
        for chunk in [&b"01234"[..], b"56789", b"abcdefghij", b"XYZ"] {
            big.push(chunk);
        }
        assert_eq!(
            big.finish(),
            "01234\n[... 13 bytes of output omitted; 23 bytes in all ...]\nijXYZ"
        );
        let mut one_chunk = OutputCollector::new(4);
        one_chunk.push(b"0123456789");
        assert_eq!(
            one_chunk.finish(),
            "01\n[... 6 bytes of output omitted; 10 bytes in all ...]\n89"
        );
    }

    #[tokio::test]
    async fn a_full_disk_names_the_sessions_quota() {
        let mut fixture = Fixture::new().await;
        let command =
            json!({"command": "echo 'dd: error writing big: No space left on device' >&2; exit 1"});
        let without = fixture.ok(Bash, command.clone()).await;
        assert!(!without.contains("quota"), "{without}");
        fixture.limits.config.disk_quota_mb = 64;
        let with = fixture.ok(Bash, command).await;
        assert!(
            with.ends_with("[exit code 1]\n(this session's disk quota is 64 MiB, for /session/work and /session/out together: delete files you no longer need to make room)"),
            "{with}"
        );
        let fine = fixture.ok(Bash, json!({"command": "echo fine"})).await;
        assert!(!fine.contains("quota"), "{fine}");
        assert_eq!(quota_note(0), None);
    }

    #[tokio::test]
    async fn runs_in_the_workspace_with_a_minimal_environment() {
        let mut fixture = Fixture::new().await;
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "cargo sets it for tests"
        );
        let text = fixture
            .ok(
                Bash,
                json!({"command": "pwd; echo out; echo err >&2; env | grep -c CARGO_; exit 3"}),
            )
            .await;
        let work = fixture.paths.work_dir().canonicalize().unwrap();
        // stdout and stderr are two pipes: under load, `err` may be read before the rest.
        let mut lines: Vec<&str> = text.lines().collect();
        let err = lines.iter().position(|line| *line == "err").unwrap();
        lines.remove(err);
        assert_eq!(
            lines.join("\n"),
            format!("{}\nout\n0\n[exit code 3]", work.display()),
            "{text}"
        );
        assert_eq!(
            fixture.container_state(),
            (None, None),
            "cleared after the run"
        );
    }

    #[tokio::test]
    async fn records_the_declared_timeout_while_running() {
        let mut fixture = Fixture::new().await;
        let go = fixture.work("go");
        let ready = fixture.work("ready");
        let paths = fixture.paths.clone();
        let state = || {
            let reader = protocol::schema::open_outbound_reader(&paths.outbound_db()).unwrap();
            reader
                .query_row(
                    "SELECT current_tool, tool_timeout_ms FROM container_state",
                    [],
                    |row| {
                        Ok((
                            row.get::<_, Option<String>>(0)?,
                            row.get::<_, Option<i64>>(1)?,
                        ))
                    },
                )
                .unwrap()
        };
        let command = "touch ready; while [ ! -f go ]; do sleep 0.01; done; echo went";
        let (text, ()) = tokio::join!(
            fixture.ok(Bash, json!({"command": command, "timeout_seconds": 42})),
            async {
                crate::tools::testing::wait_until("the command to start", || ready.exists()).await;
                assert_eq!(state(), (Some("bash".into()), Some(42_000)));
                std::fs::write(&go, "").unwrap();
            }
        );
        assert_eq!(text, "went\n[exit code 0]");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let mut fixture = Fixture::new().await;
        fixture.tool_limits.bash_default_timeout = Duration::from_millis(300);
        let error = fixture
            .error(
                Bash,
                json!({"command": "sh -c 'echo $$ > child.pid; exec sleep 30' & echo started; wait"}),
            )
            .await;
        assert!(
            error.starts_with("the command timed out after 0.3 s"),
            "{error}"
        );
        assert!(error.ends_with("started\n"), "{error}");
        let pid = std::fs::read_to_string(fixture.work("child.pid")).unwrap();
        crate::tools::testing::wait_until("the background child to die", || {
            process_is_gone(pid.trim())
        })
        .await;
    }

    /// A call dropped mid-run (the turn was stopped) kills what it started, not only the shell.
    #[tokio::test]
    async fn a_dropped_call_kills_the_whole_group() {
        let mut fixture = Fixture::new().await;
        let pid_file = fixture.work("child.pid");
        let started = pid_file.clone();
        let command = "sh -c 'echo $$ > child.tmp; mv child.tmp child.pid; exec sleep 30' & wait";
        tokio::select! {
            outcome = fixture.call(Bash, json!({"command": command})) => {
                panic!("the command ended on its own: {outcome:?}")
            }
            () = crate::tools::testing::wait_until("the command to start", || started.exists()) => {}
        }
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        crate::tools::testing::wait_until("the background child to die", || {
            process_is_gone(pid.trim())
        })
        .await;
    }

    #[tokio::test]
    async fn background_processes_do_not_hold_the_call() {
        let mut fixture = Fixture::new().await;
        let text = fixture
            .ok(
                Bash,
                json!({"command": "sleep 30 & echo $! > bg.pid; echo done"}),
            )
            .await;
        assert_eq!(text, "done\n[exit code 0]");
        let pid = std::fs::read_to_string(fixture.work("bg.pid")).unwrap();
        crate::tools::testing::wait_until("the background process to die", || {
            process_is_gone(pid.trim())
        })
        .await;
    }

    #[tokio::test]
    async fn long_output_is_cut_with_a_note_and_caps_are_named() {
        let mut fixture = Fixture::new().await;
        fixture.tool_limits.bash_output_bytes = 1000;
        let text = fixture
            .ok(
                Bash,
                json!({"command": "i=0; while [ $i -lt 500 ]; do echo line$i; i=$((i+1)); done", "timeout_seconds": 100000}),
            )
            .await;
        assert!(
            text.starts_with("(timeout_seconds was capped at 600 s)\nline0\n"),
            "{text}"
        );
        assert!(
            text.contains("bytes of output omitted; 3890 bytes in all"),
            "{text}"
        );
        assert!(text.ends_with("line499\n[exit code 0]"), "{text}");
        assert!(text.len() < 1200);
        let empty = fixture.error(Bash, json!({"command": "  "})).await;
        assert_eq!(empty, "`command` is empty");
    }

    /// True when the process no longer runs (gone, or a zombie awaiting its reaper).
    fn process_is_gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }
}
