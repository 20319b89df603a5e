//! Docker helpers for tests, over bollard with the API version negotiated (the engine here is
//! Docker 20.10, API 1.41).
//!
//! [`require_docker`] decides whether a Docker test runs: it is skipped, loudly, only when
//! `CRABPOT_SKIP_DOCKER=1`; otherwise an unreachable engine fails the test. Then
//! [`list_containers_by_label`], [`inspect_container_json`] and [`exec`] (the `docker exec`
//! equivalent, with exit code and output, e.g. to prove from inside a container that
//! `/session/in` is read-only) look at what the host did, and [`ContainerCleanup`] is the drop
//! guard that force-removes every container carrying a label. [`ensure_busybox_image`] imports a
//! tiny image from the machine's static busybox, for tests that need some container to poke at.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde_json::Value;

/// The environment variable that skips Docker tests when set to `1`.
pub const SKIP_DOCKER_ENV: &str = "CRABPOT_SKIP_DOCKER";

/// How long reaching the engine (connect, negotiate, ping) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one [`exec`] may run before it counts as hung.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// The image [`ensure_busybox_image`] makes.
pub const BUSYBOX_TEST_IMAGE: &str = "crabpot-test-busybox:latest";

/// Connects to the local engine and negotiates the API version.
pub async fn connect() -> anyhow::Result<Docker> {
    let work = async {
        let docker = Docker::connect_with_local_defaults().context("connecting to Docker")?;
        let docker = docker
            .negotiate_version()
            .await
            .context("negotiating the Docker API version")?;
        docker.ping().await.context("pinging Docker")?;
        anyhow::Ok(docker)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .with_context(|| format!("Docker did not answer within {CONNECT_TIMEOUT:?}"))?
}

/// Whether the local Docker engine answers a ping.
pub async fn docker_available() -> bool {
    connect().await.is_ok()
}

/// Whether `value` (the value of [`SKIP_DOCKER_ENV`]) asks to skip Docker tests.
fn skip_requested(value: Option<&OsStr>) -> bool {
    value.is_some_and(|value| value == "1")
}

/// Call first in every Docker test: `if !require_docker("my_test").await { return; }`.
///
/// Returns false, after printing a loud `SKIPPED` line on stderr, only when
/// `CRABPOT_SKIP_DOCKER=1`. Otherwise returns true if Docker answers and panics if it does not,
/// so a missing engine never passes for a green test.
pub async fn require_docker(test_name: &str) -> bool {
    if skip_requested(std::env::var_os(SKIP_DOCKER_ENV).as_deref()) {
        eprintln!("SKIPPED ({SKIP_DOCKER_ENV}=1): {test_name}");
        return false;
    }
    if let Err(error) = connect().await {
        panic!(
            "Docker is not reachable: {error:#}; {test_name} needs it (set {SKIP_DOCKER_ENV}=1 to skip)"
        );
    }
    true
}

/// Every container (running or not) with the label `key=value`.
pub async fn list_containers_by_label(
    docker: &Docker,
    key: &str,
    value: &str,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .with_context(|| format!("listing containers labelled {key}={value}"))
}

/// The full inspect document of a container, as the Engine API returns it (`Config`,
/// `HostConfig`, `Mounts`, `State`, ...).
pub async fn inspect_container_json(docker: &Docker, container: &str) -> anyhow::Result<Value> {
    let inspected = docker
        .inspect_container(container, None)
        .await
        .with_context(|| format!("inspecting container {container}"))?;
    serde_json::to_value(inspected).context("serializing the inspect document")
}

/// What a command run with [`exec`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Runs `cmd` inside a running container as the container's user (like `docker exec`), waits
/// for it to finish and returns its exit code and output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
    tokio::time::timeout(EXEC_TIMEOUT, exec_unbounded(docker, container, cmd))
        .await
        .with_context(|| format!("{cmd:?} in {container} ran longer than {EXEC_TIMEOUT:?}"))?
}

async fn exec_unbounded(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
) -> anyhow::Result<ExecOutput> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating exec {cmd:?} in {container}"))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("starting exec {cmd:?} in {container}"))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    match started {
        StartExecResults::Attached { mut output, .. } => {
            while let Some(item) = output.next().await {
                match item.context("reading exec output")? {
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => {
                        stdout.extend_from_slice(&message);
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message);
                    }
                    bollard::container::LogOutput::StdIn { .. } => {}
                }
            }
        }
        StartExecResults::Detached => bail!("exec started detached; expected attached output"),
    }
    // The output can end a moment before the engine records the exit code: poll briefly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .context("inspecting the exec")?;
        if inspected.running != Some(true)
            && let Some(exit_code) = inspected.exit_code
        {
            return Ok(ExecOutput {
                exit_code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("exec {cmd:?} in {container} has no exit code after its output ended");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Force-removes (with volumes) every container labelled `key=value`; returns how many.
/// A container already gone counts as removed.
pub async fn remove_containers_by_label(
    docker: &Docker,
    key: &str,
    value: &str,
) -> anyhow::Result<usize> {
    let containers = list_containers_by_label(docker, key, value).await?;
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let mut removed = 0;
    for container in containers {
        let Some(id) = container.id else { continue };
        match docker.remove_container(&id, Some(options.clone())).await {
            Ok(()) => removed += 1,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => removed += 1,
            // A second removal racing ours (e.g. a host shutting down) reports a conflict.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => removed += 1,
            Err(error) => {
                return Err(error).with_context(|| format!("removing container {id}"));
            }
        }
    }
    Ok(removed)
}

/// [`remove_containers_by_label`] from synchronous code (such as `Drop`, even inside a tokio
/// runtime): runs on a fresh thread with its own small runtime.
pub fn remove_containers_by_label_blocking(key: &str, value: &str) -> anyhow::Result<usize> {
    let key = key.to_string();
    let value = value.to_string();
    let thread = std::thread::Builder::new()
        .name("container-cleanup".to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the cleanup runtime")?;
            runtime.block_on(async {
                let docker = connect().await?;
                remove_containers_by_label(&docker, &key, &value).await
            })
        })
        .context("spawning the cleanup thread")?;
    match thread.join() {
        Ok(result) => result,
        Err(_) => bail!("the cleanup thread panicked"),
    }
}

/// Drop guard: force-removes every container labelled `label_key=label_value` when dropped.
/// Failures are printed, never panicked on (a panic in `Drop` while unwinding aborts).
#[derive(Debug)]
pub struct ContainerCleanup {
    pub label_key: String,
    pub label_value: String,
}

impl ContainerCleanup {
    pub fn new(label_key: impl Into<String>, label_value: impl Into<String>) -> Self {
        Self {
            label_key: label_key.into(),
            label_value: label_value.into(),
        }
    }
}

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        let result = remove_containers_by_label_blocking(&self.label_key, &self.label_value);
        if let Err(error) = result {
            // Without Docker there is nothing to clean, and a skipped run says so already.
            if !skip_requested(std::env::var_os(SKIP_DOCKER_ENV).as_deref()) {
                eprintln!(
                    "warning: could not remove containers labelled {}={}: {error:#}",
                    self.label_key, self.label_value
                );
            }
        }
    }
}

/// Makes sure [`BUSYBOX_TEST_IMAGE`] exists: a `FROM scratch`-like image holding the machine's
/// static busybox at `/bin/busybox` with `/bin/sh` linked to it, imported with the engine's
/// "import from archive" call (no registry). Returns the image name.
pub async fn ensure_busybox_image(docker: &Docker) -> anyhow::Result<String> {
    if docker.inspect_image(BUSYBOX_TEST_IMAGE).await.is_ok() {
        return Ok(BUSYBOX_TEST_IMAGE.to_string());
    }
    let busybox_path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .context("no busybox on this machine: install Debian's busybox-static")?;
    let busybox = std::fs::read(busybox_path)
        .with_context(|| format!("reading {}", busybox_path.display()))?;
    let archive = tar_archive(&[
        TarEntry::Directory {
            path: "bin/",
            mode: 0o755,
        },
        TarEntry::File {
            path: "bin/busybox",
            mode: 0o755,
            contents: &busybox,
        },
        TarEntry::Symlink {
            path: "bin/sh",
            target: "busybox",
        },
        TarEntry::Directory {
            path: "tmp/",
            mode: 0o1777,
        },
    ]);
    let (repo, tag) = BUSYBOX_TEST_IMAGE
        .split_once(':')
        .unwrap_or((BUSYBOX_TEST_IMAGE, "latest"));
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .build();
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_full(archive.into())),
        None,
    );
    while let Some(item) = progress.next().await {
        item.context("importing the busybox test image")?;
    }
    Ok(BUSYBOX_TEST_IMAGE.to_string())
}

/// One entry of a [`tar_archive`].
enum TarEntry<'a> {
    Directory {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        contents: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

/// A ustar archive of `entries`, owned by root, enough for the engine's image import.
fn tar_archive(entries: &[TarEntry<'_>]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // Octal digits, zero-padded, then a NUL in the last byte.
        let n_digits = field.len() - 1;
        let digits = format!("{value:0n_digits$o}");
        field[..n_digits].copy_from_slice(digits.as_bytes());
        field[n_digits] = 0;
    }
    let mut archive = Vec::new();
    for entry in entries {
        let (path, mode, type_flag, link, contents): (&str, u32, u8, &str, &[u8]) = match entry {
            TarEntry::Directory { path, mode } => (path, *mode, b'5', "", &[]),
            TarEntry::File {
                path,
                mode,
                contents,
            } => (path, *mode, b'0', "", contents),
            TarEntry::Symlink { path, target } => (path, 0o777, b'2', target, &[]),
        };
        let mut header = [0u8; 512];
        header[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], contents.len() as u64);
        octal(&mut header[136..148], 0);
        header[156] = type_flag;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].copy_from_slice(b"        ");
        let checksum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
        let digits = format!("{checksum:06o}\0 ");
        header[148..156].copy_from_slice(digits.as_bytes());
        archive.extend_from_slice(&header);
        archive.extend_from_slice(contents);
        let padding = (512 - contents.len() % 512) % 512;
        archive.extend(std::iter::repeat_n(0u8, padding));
    }
    archive.extend(std::iter::repeat_n(0u8, 1024));
    archive
}

#[cfg(test)]
mod tests;
