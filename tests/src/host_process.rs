//! Runs the real host binary (`crabpot serve`) as a child process for end-to-end tests.
//!
//! [`HostProcess::start`] makes a fresh data dir and a unique install id, starts the host with
//! a hermetic environment built from [`HostOptions`] (the model settings come from a
//! [`ModelConfig`], usually pointing at a
//! [`FakeModel`](crate::fake_model::FakeModel); inherited `CRABPOT_*`, `OPENAI_*`,
//! `ANTHROPIC_*` and `RUST_LOG` variables never reach it), logs its output to `host.log` in the
//! data dir, and waits until `cli.sock` accepts a connection. [`HostProcess::chat`] and
//! [`HostProcess::run_cli`] run the CLI against it and return a [`CliOutput`].
//!
//! Dropping a [`HostProcess`] stops the host (SIGTERM, then SIGKILL after 10 s), removes every
//! container labelled with its install id, and, if the test is panicking, prints the tail of
//! the host's log. The binary is found by [`crabpot_bin`]; `cargo test` does not build it, so
//! run `cargo build -p host` first.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::docker::ContainerCleanup;

mod options;

use options::{EnvChange, apply_env, child_env};
pub use options::{HostOptions, ModelConfig, ModelProvider};

/// How long the host may take to accept connections on `cli.sock`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGTERM-ed host may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much longer than its own `--timeout` a CLI run may take before the harness kills it.
const CLI_MARGIN: Duration = Duration::from_secs(30);

/// The timeout of [`HostProcess::run_cli`].
const RUN_CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How many log lines a failing test prints.
const LOG_TAIL_LINES: usize = 200;

/// The install label the host puts on its containers.
pub const INSTALL_LABEL: &str = "crabpot.install";

/// The host binary: env `CRABPOT_BIN` if set, else `crabpot` next to the test executable's
/// `deps/` folder (`target/debug/crabpot`). Panics with a clear message if it is missing.
pub fn crabpot_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CRABPOT_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CRABPOT_BIN={} does not exist",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the path of the running test executable");
    // Test executables live in target/<profile>/deps/; the binary is in target/<profile>/.
    let profile_dir = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .or_else(|| exe.parent())
        .expect("the test executable has a parent folder");
    let path = profile_dir.join("crabpot");
    assert!(
        path.is_file(),
        "the host binary {} is missing: run `cargo build -p host` first (or set CRABPOT_BIN)",
        path.display()
    );
    path
}

/// What a CLI run did.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A running `crabpot serve` with its own data dir; see the module docs.
pub struct HostProcess {
    child: Option<Child>,
    binary: PathBuf,
    install_id: String,
    env: Vec<EnvChange>,
    ready_timeout: Duration,
    /// Declared before `data_dir` so containers go before the folders they mount.
    _containers: ContainerCleanup,
    data_dir: TempDir,
}

impl HostProcess {
    /// Starts a host and waits until `cli.sock` accepts a connection.
    pub async fn start(options: HostOptions) -> anyhow::Result<HostProcess> {
        let binary = options.binary.clone().unwrap_or_else(crabpot_bin);
        let data_dir = tempfile::Builder::new()
            .prefix("crabpot-test-")
            .tempdir()
            .context("creating the host's data dir")?;
        let install_id = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let env = child_env(
            &options,
            &install_id,
            std::env::vars_os().map(|(name, _)| name),
        );
        let mut host = HostProcess {
            child: None,
            binary,
            _containers: ContainerCleanup::new(INSTALL_LABEL, &install_id),
            install_id,
            env,
            ready_timeout: options.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
            data_dir,
        };
        host.spawn_and_wait().await?;
        Ok(host)
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening host.log")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing host.log")?)
            .stderr(log);
        apply_env(&mut command, &self.env);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let ready = self.wait_until_ready().await;
        if ready.is_err()
            && let Some(child) = self.child.take()
        {
            // The error already tells what happened; stop the child quietly.
            let _ = stop_child(child);
        }
        ready
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let socket = self.cli_socket();
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "the host exited with {status} before {} accepted connections; host.log:\n{}",
                    socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the host did not accept connections on {} within {:?}; host.log:\n{}",
                    socket.display(),
                    self.ready_timeout,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => child.try_wait().context("checking on the host process"),
            None => bail!("the host is not running"),
        }
    }

    /// Stops the host gracefully (SIGTERM, SIGKILL after 10 s) and returns how it exited. The
    /// data dir and the containers stay, so [`HostProcess::restart`] can pick them up.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let child = self.child.take().context("the host is not running")?;
        stop_child(child)
    }

    /// Kills the host at once (SIGKILL), as a crash would, and returns how it exited.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the host is not running")?;
        if child.try_wait()?.is_none() {
            child.kill().context("killing the host")?;
        }
        child.wait().context("waiting for the killed host")
    }

    /// Stops the host if it runs, then starts it again on the same data dir, install id and
    /// environment, and waits until it is ready. The log goes on in the same `host.log`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn_and_wait().await
    }

    /// Whether the host process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// The host's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn install_id(&self) -> &str {
        &self.install_id
    }

    /// `<data dir>/sessions`.
    pub fn sessions_dir(&self) -> PathBuf {
        self.data_dir().join("sessions")
    }

    /// `<data dir>/cli.sock`.
    pub fn cli_socket(&self) -> PathBuf {
        self.data_dir().join("cli.sock")
    }

    /// `<data dir>/crabpot.sock`, the admin API.
    /// The web server's base URL, as the host wrote it to `data/web.url` at start.
    pub fn web_url(&self) -> anyhow::Result<String> {
        let path = self.data_dir().join("web.url");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is the web server off?)", path.display()))?;
        Ok(text.trim().to_owned())
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir().join("crabpot.sock")
    }

    /// `<data dir>/host.log`, the host's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("host.log")
    }

    /// The whole host log so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the host log.
    pub fn log_tail(&self, n: usize) -> String {
        last_lines(&self.log(), n)
    }

    /// The session folders of an agent group (`sessions/<group>/<session>/`), sorted.
    pub fn group_session_dirs(&self, group: &str) -> anyhow::Result<Vec<PathBuf>> {
        let group_dir = self.sessions_dir().join(group);
        let entries = match std::fs::read_dir(&group_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(error).with_context(|| format!("listing {}", group_dir.display()));
            }
        };
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", group_dir.display()))?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// The one session folder of an agent group; an error if there are none or several.
    pub fn session_dir(&self, group: &str) -> anyhow::Result<PathBuf> {
        let mut dirs = self.group_session_dirs(group)?;
        match dirs.len() {
            1 => Ok(dirs.remove(0)),
            0 => bail!(
                "agent group {group} has no session folder under {}",
                self.sessions_dir().display()
            ),
            n => bail!("agent group {group} has {n} session folders, expected one: {dirs:?}"),
        }
    }

    /// Waits until the agent group has exactly one session folder and returns it.
    pub async fn wait_for_session_dir(
        &self,
        group: &str,
        timeout: Duration,
    ) -> anyhow::Result<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.session_dir(group) {
                Ok(dir) => return Ok(dir),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!("still so after {timeout:?}")));
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Runs `crabpot --data-dir <dir> <args...>` with the host's environment; the harness
    /// kills it after 60 s.
    pub async fn run_cli(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        self.run_cli_with_timeout(args, RUN_CLI_TIMEOUT).await
    }

    /// [`HostProcess::run_cli`] with a timeout of your choice.
    pub async fn run_cli_with_timeout(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<CliOutput> {
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::null());
        apply_env(&mut command, &self.env);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .with_context(|| format!("`crabpot {}` ran longer than {timeout:?}", args.join(" ")))?
            .with_context(|| format!("running `crabpot {}`", args.join(" ")))?;
        Ok(CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// [`HostProcess::run_cli`] with `stdin` piped in (for `crabpot users passwd`).
    pub async fn run_cli_with_stdin(
        &self,
        args: &[&str],
        stdin: &str,
    ) -> anyhow::Result<CliOutput> {
        use tokio::io::AsyncWriteExt;
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        apply_env(&mut command, &self.env);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("running `crabpot {}`", args.join(" ")))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.as_bytes())
                .await
                .context("writing the CLI's stdin")?;
        }
        let output = tokio::time::timeout(RUN_CLI_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| {
                format!(
                    "`crabpot {}` ran longer than {RUN_CLI_TIMEOUT:?}",
                    args.join(" ")
                )
            })?
            .with_context(|| format!("running `crabpot {}`", args.join(" ")))?;
        Ok(CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `crabpot chat --message <message> --timeout <secs>`: one turn, whose replies the
    /// CLI prints on stdout. `timeout` is rounded up to whole seconds (at least 1).
    pub async fn chat(&self, message: &str, timeout: Duration) -> anyhow::Result<CliOutput> {
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let seconds = seconds.max(1).to_string();
        self.run_cli_with_timeout(
            &["chat", "--message", message, "--timeout", &seconds],
            timeout + CLI_MARGIN,
        )
        .await
    }
}

/// Unmounts the sessions' quota disks a root host mounted in `dir` (lazily, deepest first), so
/// the data dir can be removed and no loop device outlives the test.
fn unmount_under(dir: &Path) {
    let (Ok(info), Ok(dir)) = (
        std::fs::read_to_string("/proc/self/mountinfo"),
        dir.canonicalize(),
    ) else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(&dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&point)
            .status();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            // The runners' own logs say where a stuck turn stopped; read them before the
            // host or the cleanup guard removes the containers.
            print_container_logs(&self.install_id);
        }
        if let Some(mut child) = self.child.take() {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    eprintln!(
                        "warning: host {} had already exited with {status}",
                        self.install_id
                    );
                }
                Ok(_) | Err(_) => {}
            }
            if let Err(error) = stop_child(child) {
                eprintln!("warning: stopping host {}: {error:#}", self.install_id);
            }
        }
        unmount_under(self.data_dir.path());
        if panicking {
            eprintln!(
                "---- last {LOG_TAIL_LINES} lines of {} (install {}) ----\n{}\n---- end of host.log ----",
                self.log_path().display(),
                self.install_id,
                self.log_tail(LOG_TAIL_LINES)
            );
            if std::env::var_os("CRABPOT_KEEP_TEST_DATA").is_some_and(|value| value == "1") {
                self.data_dir.disable_cleanup(true);
                eprintln!("kept the data dir {}", self.data_dir().display());
            }
        }
        // The fields drop next: the container cleanup guard, then the data dir.
    }
}

/// Prints the last lines of `docker logs` of every container of an install (for failed tests).
fn print_container_logs(install_id: &str) {
    let listed = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={INSTALL_LABEL}={install_id}"),
        ])
        .output();
    let Ok(listed) = listed else { return };
    for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
        if let Ok(logs) = Command::new("docker")
            .args(["logs", "--timestamps", "--tail", "60", id])
            .output()
        {
            eprintln!(
                "---- docker logs {id} (install {install_id}) ----\n{}{}---- end of docker logs ----",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
    }
}

/// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; returns how the process exited.
fn stop_child(mut child: Child) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // std has no SIGTERM; the `kill` utility sends it without adding a libc dependency.
    let term_sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if term_sent {
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        eprintln!(
            "warning: process {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            child.id()
        );
    }
    if child.try_wait()?.is_none() {
        child.kill().context("killing the process")?;
    }
    child.wait().context("waiting for the process")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a\nb", 5), "a\nb");
        assert_eq!(last_lines("", 3), "");
    }
}
