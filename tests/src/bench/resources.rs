//! Resource figures: resident memory of a process ([`rss_kib`]) and of the agent-runner inside
//! its container ([`runner_pid`]), the agent image's size ([`image_size_bytes`]), and the
//! host binary's start-up time until `cli.sock` accepts ([`startup_times`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;

use super::cleanup::{ChildGuard, register_install};

/// How long one start-up probe may take before it counts as failed.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// CPU time (user + system, all threads) a process has used so far, in milliseconds, from
/// `/proc/<pid>/stat` (USER_HZ is 100 on Linux, so the resolution is 10 ms).
pub fn cpu_millis(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // the 3rd field of the line, utime the 14th and stime the 15th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let field = fields
            .get(index)
            .with_context(|| format!("{path} is too short"))?;
        field
            .parse::<f64>()
            .with_context(|| format!("{path}: {field:?}"))
    };
    Ok((ticks(11)? + ticks(12)?) * 10.0)
}

/// The host-side pid of the agent-runner in a container. The container runs with `Init`,
/// so `State.Pid` is docker-init and the runner is its only child.
pub async fn runner_pid(docker: &Docker, container: &str) -> anyhow::Result<u32> {
    let inspect = docker
        .inspect_container(container, None)
        .await
        .with_context(|| format!("inspecting {container}"))?;
    let init_pid = inspect
        .state
        .and_then(|state| state.pid)
        .filter(|pid| *pid > 0)
        .context("the container has no pid (not running?)")?;
    let init_pid = u32::try_from(init_pid).context("a negative pid")?;
    let comm = std::fs::read_to_string(format!("/proc/{init_pid}/comm")).unwrap_or_default();
    if comm.trim() == "agent-runner" {
        return Ok(init_pid);
    }
    let children_path = format!("/proc/{init_pid}/task/{init_pid}/children");
    let children = std::fs::read_to_string(&children_path)
        .with_context(|| format!("reading {children_path}"))?;
    for child in children.split_whitespace() {
        let Ok(pid) = child.parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "agent-runner" {
            return Ok(pid);
        }
    }
    bail!("no agent-runner among the children of pid {init_pid} ({children:?})")
}

/// The image's size as Docker reports it (the unpacked layers), in bytes.
pub async fn image_size_bytes(docker: &Docker, image: &str) -> anyhow::Result<u64> {
    let inspect = docker
        .inspect_image(image)
        .await
        .with_context(|| format!("inspecting the image {image} (run `make image`)"))?;
    let size = inspect.size.context("the engine reported no image size")?;
    u64::try_from(size).context("a negative image size")
}

/// What a start-up probe needs.
pub struct StartupProbe<'a> {
    pub binary: &'a Path,
    pub image: &'a str,
    pub work_dir: &'a Path,
}

/// Starts `crabpot serve` `runs` times, each on a fresh data dir, and returns how long each
/// took until `cli.sock` accepted a connection (polled every 1 ms). The host is stopped with
/// SIGTERM after each probe.
pub async fn startup_times(probe: &StartupProbe<'_>, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let data_dir = probe.work_dir.join(format!("startup-{run}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let install_id = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        register_install(&install_id);
        let started = Instant::now();
        let child = host_command(probe, &data_dir, &install_id)
            .spawn()
            .with_context(|| format!("starting {}", probe.binary.display()))?;
        let mut child = ChildGuard(child);
        let socket = data_dir.join("cli.sock");
        loop {
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                times.push(started.elapsed());
                break;
            }
            if let Some(status) = child.0.try_wait().context("checking on the host")? {
                bail!("crabpot serve exited with {status} before cli.sock accepted");
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("crabpot serve did not accept on cli.sock within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.terminate().context("stopping the probed host")?;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(times)
}

/// `crabpot --data-dir DIR serve` with a hermetic environment: no inherited `CRABPOT_*`,
/// model or log settings, the repo's groups, and a log level of `warn`.
fn host_command(probe: &StartupProbe<'_>, data_dir: &Path, install_id: &str) -> Command {
    let mut command = Command::new(probe.binary);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["CRABPOT_", "OPENAI_", "ANTHROPIC_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "RUST_LOG"
        {
            command.env_remove(name.as_ref());
        }
    }
    let groups: PathBuf = crate::repo_root().join("groups");
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .env("CRABPOT_INSTALL_ID", install_id)
        .env("CRABPOT_IMAGE", probe.image)
        .env("CRABPOT_GROUPS_DIR", groups)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
