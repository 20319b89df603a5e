//! [`DockerRuntime`]: the [`ContainerRuntime`] implementation over the Docker Engine API
//! (bollard).
//!
//! It connects the way the docker CLI does (`DOCKER_HOST`, else the local socket) and
//! negotiates the API version down to what the engine speaks, so engines as old as
//! Docker 20.10 / API 1.41 work although bollard's default client version is newer.
//! `create` is create + inspect + [`verify`] + force-remove on violation: a caller only
//! ever receives the id of a container whose applied configuration matches the policy.
//! Engine errors are classified into [`RuntimeError`] here (404 on stop/remove means
//! "already gone" and is `Ok`), and each call runs in a `container{id}` tracing span.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerConfig, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum,
    HostConfig, MountPoint,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use tracing::{Instrument, debug, info_span, warn};

use super::policy::{create_body, verify};
use super::{
    BoxFuture, ContainerId, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState,
    ContainerSummary, ObservedMount, ObservedPolicy, RuntimeError, RuntimeVersion,
};

/// A connection to a Docker engine with a negotiated API version.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connects through `DOCKER_HOST` (unix, tcp or http) or the local default socket,
    /// then negotiates the API version with the engine.
    ///
    /// Fails with [`RuntimeError::Unreachable`] when the engine does not answer.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|error| RuntimeError::Unreachable(error.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|error| classify(error, Operation::Other))?;
        debug!(api_version = %docker.client_version(), "connected to docker");
        Ok(Self { docker })
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn negotiated_api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Creates the container, inspects it and verifies the applied policy; removes it
    /// and returns [`RuntimeError::PolicyViolation`] if it differs. This is what
    /// [`ContainerRuntime::create`] does for Docker.
    pub async fn create_verified(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let body = create_body(spec)?;
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let response = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|error| classify(error, Operation::Create(spec)))?;
        let id = ContainerId::new(response.id);
        for warning in &response.warnings {
            warn!(container = %id, %warning, "engine warning on create");
        }
        let checked = match self.inspect_container(&id).await {
            Ok(info) => verify(spec, &info),
            Err(error) => Err(error),
        };
        if let Err(error) = checked {
            warn!(container = %id, %error, "refusing the container and removing it");
            if let Err(remove_error) = self.remove_container(&id).await {
                warn!(container = %id, error = %remove_error, "could not remove refused container");
            }
            return Err(error);
        }
        debug!(container = %id, "created and verified");
        Ok(id)
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let response = self
            .docker
            .inspect_container(id.as_str(), None)
            .await
            .map_err(|error| classify(error, Operation::OnContainer(id)))?;
        container_info(response)
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => match classify(error, Operation::OnContainer(id)) {
                RuntimeError::NotFound(_) => Ok(()),
                RuntimeError::Engine(message) if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }
}

impl ContainerRuntime for DockerRuntime {
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>> {
        Box::pin(async move {
            let version = self
                .docker
                .version()
                .await
                .map_err(|error| classify(error, Operation::Other))?;
            Ok(RuntimeVersion {
                engine_version: version.version.unwrap_or_default(),
                engine_api_version: version.api_version.unwrap_or_default(),
                negotiated_api_version: self.negotiated_api_version(),
            })
        })
    }

    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<ContainerId, RuntimeError>> {
        // The id is not known before the engine answers; the name identifies the span.
        Box::pin(
            self.create_verified(spec)
                .instrument(info_span!("container", id = %spec.name)),
        )
    }

    fn start<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(
            async move {
                self.docker
                    .start_container(id.as_str(), None)
                    .await
                    .map_err(|error| classify(error, Operation::OnContainer(id)))?;
                debug!("started");
                Ok(())
            }
            .instrument(info_span!("container", id = %id)),
        )
    }

    fn stop<'a>(
        &'a self,
        id: &'a ContainerId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(
            async move {
                let grace_seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                let options = StopContainerOptionsBuilder::new().t(grace_seconds).build();
                // Docker answers 304 for a container that is not running, which bollard
                // treats as success; 404 means it is already gone.
                match self.docker.stop_container(id.as_str(), Some(options)).await {
                    Ok(()) => {
                        debug!("stopped");
                        Ok(())
                    }
                    Err(error) => match classify(error, Operation::OnContainer(id)) {
                        RuntimeError::NotFound(_) => Ok(()),
                        other => Err(other),
                    },
                }
            }
            .instrument(info_span!("container", id = %id)),
        )
    }

    fn remove<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(
            self.remove_container(id)
                .instrument(info_span!("container", id = %id)),
        )
    }

    fn inspect<'a>(
        &'a self,
        id: &'a ContainerId,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(
            self.inspect_container(id)
                .instrument(info_span!("container", id = %id)),
        )
    }

    fn list_by_label<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, RuntimeError>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
            let options = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            let containers = self
                .docker
                .list_containers(Some(options))
                .await
                .map_err(|error| classify(error, Operation::Other))?;
            Ok(containers
                .into_iter()
                .filter_map(|container| {
                    let id = container.id?;
                    let name = container
                        .names
                        .and_then(|names| names.into_iter().next())
                        .map(|name| name.trim_start_matches('/').to_owned())
                        .unwrap_or_default();
                    Some(ContainerSummary {
                        id: ContainerId::new(id),
                        name,
                        state: container
                            .state
                            .map_or(ContainerState::Unknown, summary_state),
                        labels: container.labels.unwrap_or_default().into_iter().collect(),
                    })
                })
                .collect())
        })
    }
}

/// What a failed call was about, so a 404 or 409 can be named precisely.
#[derive(Debug, Clone, Copy)]
enum Operation<'a> {
    Create(&'a ContainerSpec),
    OnContainer(&'a ContainerId),
    Other,
}

fn classify(error: BollardError, operation: Operation<'_>) -> RuntimeError {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match (status_code, operation) {
            (404, Operation::Create(spec)) => RuntimeError::ImageMissing {
                image: spec.image.clone(),
            },
            (404, Operation::OnContainer(id)) => RuntimeError::NotFound(id.to_string()),
            (409, Operation::Create(spec)) => RuntimeError::NameConflict {
                name: spec.name.clone(),
            },
            (status_code, Operation::Create(_) | Operation::OnContainer(_) | Operation::Other) => {
                RuntimeError::Engine(format!("status {status_code}: {message}"))
            }
        },
        BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_)
        | BollardError::IOError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. } => RuntimeError::Unreachable(error.to_string()),
        other => RuntimeError::Engine(other.to_string()),
    }
}

fn container_info(response: ContainerInspectResponse) -> Result<ContainerInfo, RuntimeError> {
    let id = response
        .id
        .ok_or_else(|| RuntimeError::Engine("inspect returned no container id".to_owned()))?;
    let config = response.config.unwrap_or_default();
    let host_config = response.host_config.unwrap_or_default();
    let engine_state = response.state.unwrap_or_default();
    let state = engine_state
        .status
        .map_or(ContainerState::Unknown, inspect_state);
    let exit_code = match state {
        ContainerState::Exited | ContainerState::Dead => engine_state.exit_code,
        ContainerState::Created
        | ContainerState::Running
        | ContainerState::Paused
        | ContainerState::Restarting
        | ContainerState::Removing
        | ContainerState::Unknown => None,
    };
    let policy = observed_policy(&config, &host_config, response.mounts.unwrap_or_default());
    Ok(ContainerInfo {
        id: ContainerId::new(id),
        name: response
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        state,
        running: engine_state.running.unwrap_or(false),
        exit_code,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        policy,
    })
}

/// The policy view of an inspect response. Mounts come from the top-level `Mounts`,
/// which lists what is really mounted, including volumes an image declares.
fn observed_policy(
    config: &ContainerConfig,
    host_config: &HostConfig,
    mounts: Vec<MountPoint>,
) -> ObservedPolicy {
    let mut observed_mounts: Vec<ObservedMount> = mounts
        .into_iter()
        .map(|mount| ObservedMount {
            kind: mount.typ.unwrap_or_default(),
            source: mount.source.unwrap_or_default(),
            target: mount.destination.unwrap_or_default(),
            rw: mount.rw.unwrap_or(false),
        })
        .collect();
    observed_mounts.sort();

    let mut devices: Vec<String> = host_config
        .devices
        .iter()
        .flatten()
        .map(|device| {
            format!(
                "{}:{}:{}",
                device.path_on_host.as_deref().unwrap_or_default(),
                device.path_in_container.as_deref().unwrap_or_default(),
                device.cgroup_permissions.as_deref().unwrap_or_default()
            )
        })
        .collect();
    devices.extend(
        host_config
            .device_requests
            .iter()
            .flatten()
            .map(|request| format!("device request {request:?}")),
    );
    devices.extend(
        host_config
            .device_cgroup_rules
            .iter()
            .flatten()
            .map(|rule| format!("device cgroup rule {rule}")),
    );

    ObservedPolicy {
        user: config.user.clone().unwrap_or_default(),
        privileged: host_config.privileged.unwrap_or(false),
        cap_add: host_config.cap_add.clone().unwrap_or_default(),
        cap_drop: host_config.cap_drop.clone().unwrap_or_default(),
        security_opt: host_config.security_opt.clone().unwrap_or_default(),
        readonly_rootfs: host_config.readonly_rootfs.unwrap_or(false),
        tmpfs: host_config
            .tmpfs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        // The engine reports "unlimited" as null, 0 or -1.
        pids_limit: host_config.pids_limit.filter(|limit| *limit > 0),
        memory: host_config.memory.unwrap_or(0),
        memory_swap: host_config.memory_swap.unwrap_or(0),
        nano_cpus: host_config.nano_cpus.unwrap_or(0),
        init: host_config.init.unwrap_or(false),
        network_mode: host_config.network_mode.clone().unwrap_or_default(),
        pid_mode: host_config.pid_mode.clone().unwrap_or_default(),
        ipc_mode: host_config.ipc_mode.clone().unwrap_or_default(),
        mounts: observed_mounts,
        devices,
        env: config.env.clone().unwrap_or_default(),
    }
}

fn inspect_state(status: ContainerStateStatusEnum) -> ContainerState {
    match status {
        ContainerStateStatusEnum::CREATED => ContainerState::Created,
        ContainerStateStatusEnum::RUNNING => ContainerState::Running,
        // A stopping container still runs until its grace period ends.
        ContainerStateStatusEnum::STOPPING => ContainerState::Running,
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
        ContainerStateStatusEnum::EMPTY => ContainerState::Unknown,
    }
}

fn summary_state(state: ContainerSummaryStateEnum) -> ContainerState {
    match state {
        ContainerSummaryStateEnum::CREATED => ContainerState::Created,
        ContainerSummaryStateEnum::RUNNING => ContainerState::Running,
        ContainerSummaryStateEnum::STOPPING => ContainerState::Running,
        ContainerSummaryStateEnum::PAUSED => ContainerState::Paused,
        ContainerSummaryStateEnum::RESTARTING => ContainerState::Restarting,
        ContainerSummaryStateEnum::REMOVING => ContainerState::Removing,
        ContainerSummaryStateEnum::EXITED => ContainerState::Exited,
        ContainerSummaryStateEnum::DEAD => ContainerState::Dead,
        ContainerSummaryStateEnum::EMPTY => ContainerState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the inspect conversion and error mapping, then tests against the
    //! real engine. Those need Docker and are skipped only with `CRABPOT_SKIP_DOCKER=1`.

    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::{Mutex, PoisonError};
    use std::time::Instant;

    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt;
    use tempfile::TempDir;

    use super::*;
    use crate::runtime::policy::expected_policy;
    use crate::runtime::{ContainerLimits, MountSpec};

    /// An inspect document as Docker 20.10 returns it for a container created with the
    /// policy (trimmed to the fields the conversion reads).
    const INSPECT_20_10: &str = r#"{
        "Id": "4d55224f820b",
        "Name": "/crabpot-test-s1",
        "State": {"Status": "running", "Running": true, "ExitCode": 0},
        "HostConfig": {
            "Binds": null, "NetworkMode": "none", "AutoRemove": false, "CapAdd": null,
            "CapDrop": ["ALL"], "IpcMode": "private", "PidMode": "", "Privileged": false,
            "ReadonlyRootfs": true, "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=67108864"},
            "Memory": 536870912, "MemorySwap": 536870912, "NanoCpus": 1000000000,
            "PidsLimit": 256, "Init": true, "Devices": [], "DeviceRequests": null,
            "DeviceCgroupRules": null,
            "Mounts": [
                {"Type": "bind", "Source": "/data/in", "Target": "/session/in", "ReadOnly": true},
                {"Type": "bind", "Source": "/data/out", "Target": "/session/out"}
            ]
        },
        "Mounts": [
            {"Type": "bind", "Source": "/data/out", "Destination": "/session/out", "Mode": "",
             "RW": true, "Propagation": "rprivate"},
            {"Type": "bind", "Source": "/data/in", "Destination": "/session/in", "Mode": "",
             "RW": false, "Propagation": "rprivate"}
        ],
        "Config": {
            "User": "10001:10001", "Env": ["RUST_LOG=info", "PATH=/bin"],
            "Image": "crabpot-agent:latest", "Labels": {"crabpot.session": "s1"}
        }
    }"#;

    fn offline_spec() -> ContainerSpec {
        ContainerSpec {
            name: "crabpot-test-s1".to_owned(),
            image: "crabpot-agent:latest".to_owned(),
            labels: BTreeMap::from([("crabpot.session".to_owned(), "s1".to_owned())]),
            user: "10001:10001".to_owned(),
            env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
            command: Vec::new(),
            mounts: vec![
                MountSpec {
                    source: PathBuf::from("/data/in"),
                    target: "/session/in".to_owned(),
                    read_only: true,
                },
                MountSpec {
                    source: PathBuf::from("/data/out"),
                    target: "/session/out".to_owned(),
                    read_only: false,
                },
            ],
            limits: ContainerLimits::default(),
        }
    }

    #[test]
    fn inspect_from_docker_20_10_converts_and_verifies() {
        let response: ContainerInspectResponse =
            serde_json::from_str(INSPECT_20_10).expect("parse inspect");
        let info = container_info(response).expect("convert");
        assert_eq!(info.name, "crabpot-test-s1");
        assert_eq!(info.state, ContainerState::Running);
        assert!(info.running);
        assert_eq!(info.exit_code, None, "no exit code while running");
        let spec = offline_spec();
        let mut expected = expected_policy(&spec);
        expected.env.push("PATH=/bin".to_owned());
        assert_eq!(info.policy, expected);
        assert_eq!(verify(&spec, &info), Ok(()));
    }

    #[test]
    fn inspect_without_id_is_an_engine_error() {
        let response = ContainerInspectResponse::default();
        assert!(matches!(
            container_info(response),
            Err(RuntimeError::Engine(_))
        ));
    }

    fn server_error(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn engine_errors_are_classified() {
        let spec = offline_spec();
        let id = ContainerId::new("abc");
        let check = |error: BollardError, operation: Operation<'_>, expected: RuntimeError| {
            assert_eq!(classify(error, operation), expected);
        };
        check(
            server_error(404, "No such image: crabpot-agent:latest"),
            Operation::Create(&spec),
            RuntimeError::ImageMissing {
                image: "crabpot-agent:latest".to_owned(),
            },
        );
        check(
            server_error(409, "Conflict. The container name is already in use"),
            Operation::Create(&spec),
            RuntimeError::NameConflict {
                name: "crabpot-test-s1".to_owned(),
            },
        );
        check(
            server_error(404, "No such container: abc"),
            Operation::OnContainer(&id),
            RuntimeError::NotFound("abc".to_owned()),
        );
        check(
            server_error(500, "oops"),
            Operation::OnContainer(&id),
            RuntimeError::Engine("status 500: oops".to_owned()),
        );
        check(
            BollardError::RequestTimeoutError,
            Operation::Other,
            RuntimeError::Unreachable("Timeout error".to_owned()),
        );
        check(
            BollardError::SocketNotFoundError("/nope.sock".to_owned()),
            Operation::Other,
            RuntimeError::Unreachable("Socket not found: /nope.sock".to_owned()),
        );
        let missing = RuntimeError::ImageMissing {
            image: "crabpot-agent:latest".to_owned(),
        };
        assert_eq!(
            missing.to_string(),
            "image crabpot-agent:latest not found: run `make image`"
        );
        assert!(!missing.is_retryable());
        assert!(RuntimeError::Unreachable(String::new()).is_retryable());
    }

    // ---- Tests against the real engine ----

    /// A busybox-only image, imported offline once per test run.
    const TEST_IMAGE: &str = "crabpot-runtime-test:latest";
    /// The same with an image-declared volume and environment variable: the engine
    /// applies both, so a container from it must fail verification.
    const DRIFT_IMAGE: &str = "crabpot-runtime-test-drift:latest";
    const TEST_USER: &str = "10001:10001";
    const TEST_UID: u32 = 10001;
    const BUSYBOX: &str = "/bin/busybox";

    static IMAGES_READY: Mutex<bool> = Mutex::new(false);

    /// Connects to Docker, or returns `None` after saying so loudly when
    /// `CRABPOT_SKIP_DOCKER=1`. An unreachable engine fails the test.
    async fn docker_or_skip(test: &str) -> Option<DockerRuntime> {
        if std::env::var("CRABPOT_SKIP_DOCKER").as_deref() == Ok("1") {
            // Written to the real stderr so that the test harness does not capture it.
            let _ = writeln!(std::io::stderr(), "SKIPPED (CRABPOT_SKIP_DOCKER=1): {test}");
            return None;
        }
        let runtime = match DockerRuntime::connect().await {
            Ok(runtime) => runtime,
            Err(error) => panic!(
                "{test}: {error}. Start Docker (or point DOCKER_HOST at it), \
                 or set CRABPOT_SKIP_DOCKER=1 to skip the Docker tests"
            ),
        };
        ensure_test_images();
        Some(runtime)
    }

    fn ensure_test_images() {
        let mut ready = IMAGES_READY.lock().unwrap_or_else(PoisonError::into_inner);
        if *ready {
            return;
        }
        ensure_static_busybox();
        import_image(TEST_IMAGE, &[]);
        import_image(DRIFT_IMAGE, &["VOLUME [\"/data\"]", "ENV LEAK=1"]);
        *ready = true;
    }

    /// Installs Debian's busybox-static when `/bin/busybox` is missing or dynamic.
    fn ensure_static_busybox() {
        if is_static_executable(Path::new(BUSYBOX)) {
            return;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "busybox-static"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
        assert!(
            is_static_executable(Path::new(BUSYBOX)),
            "{BUSYBOX} is missing or not static: run `apt-get install -y busybox-static`"
        );
    }

    /// True for an ELF executable without a PT_INTERP program header.
    fn is_static_executable(path: &Path) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let read_u16 = |at: usize| -> Option<usize> {
            Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?).into())
        };
        let read_u64 = |at: usize| -> Option<usize> {
            usize::try_from(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)).ok()
        };
        let has_interpreter = || -> Option<bool> {
            let (table, entry_size, count) = (read_u64(0x20)?, read_u16(0x36)?, read_u16(0x38)?);
            let mut found = false;
            for index in 0..count {
                let at = table + index * entry_size;
                let kind = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
                found |= kind == 3;
            }
            Some(found)
        };
        bytes.starts_with(b"\x7fELF\x02\x01") && has_interpreter() == Some(false)
    }

    /// `tar` a rootfs holding only busybox and `docker import` it; skipped when the tag
    /// exists, so repeated runs (and parallel test processes) are harmless.
    fn import_image(tag: &str, extra_changes: &[&str]) {
        let exists = Command::new("docker")
            .args(["image", "inspect", tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if exists {
            return;
        }
        let rootfs = TempDir::new().expect("rootfs dir");
        std::fs::create_dir(rootfs.path().join("bin")).expect("mkdir bin");
        std::fs::copy(BUSYBOX, rootfs.path().join("bin/busybox")).expect("copy busybox");
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tar");
        let tar_output = tar.stdout.take().expect("tar stdout");
        let mut import = Command::new("docker");
        import.args(["import", "--change", "ENTRYPOINT [\"/bin/busybox\"]"]);
        for change in extra_changes {
            import.args(["--change", change]);
        }
        let status = import
            .args(["-", tag])
            .stdin(Stdio::from(tar_output))
            .stdout(Stdio::null())
            .status()
            .expect("run docker import");
        assert!(tar.wait().expect("tar").success(), "tar failed");
        assert!(status.success(), "docker import of {tag} failed");
    }

    /// Removes the named container with the docker CLI when dropped, so a failing test
    /// leaves nothing behind. Declared before the directories it mounts, so it drops first.
    struct ContainerGuard {
        name: String,
    }

    impl Drop for ContainerGuard {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// One test's container: a unique name and label, and its session-like folders.
    struct Fixture {
        _guard: ContainerGuard,
        spec: ContainerSpec,
        /// Unique value of the `crabpot.test` label.
        label: String,
        folders: TempDir,
    }

    impl Fixture {
        fn new(test: &str) -> Self {
            let unique = uuid::Uuid::new_v4().simple().to_string();
            let name = format!("crabpot-runtime-{test}-{}", &unique[..12]);
            let folders = TempDir::new().expect("temp dir");
            for folder in ["in", "out"] {
                let path = folders.path().join(folder);
                std::fs::create_dir(&path).expect("mkdir");
                // Writable by the container user, so only the mount mode decides
                // writability; chown needs root, a world-writable mode does not.
                if std::os::unix::fs::chown(&path, Some(TEST_UID), Some(TEST_UID)).is_err() {
                    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
                    std::fs::set_permissions(&path, mode).expect("chmod");
                }
            }
            let spec = ContainerSpec {
                name: name.clone(),
                image: TEST_IMAGE.to_owned(),
                labels: BTreeMap::from([
                    ("crabpot.test".to_owned(), unique.clone()),
                    ("crabpot.session".to_owned(), name.clone()),
                ]),
                user: TEST_USER.to_owned(),
                env: vec![("CRABPOT_TEST".to_owned(), "1".to_owned())],
                command: vec!["sleep".to_owned(), "300".to_owned()],
                mounts: vec![
                    MountSpec {
                        source: folders.path().join("in"),
                        target: "/session/in".to_owned(),
                        read_only: true,
                    },
                    MountSpec {
                        source: folders.path().join("out"),
                        target: "/session/out".to_owned(),
                        read_only: false,
                    },
                ],
                limits: ContainerLimits::default(),
            };
            Self {
                _guard: ContainerGuard { name },
                spec,
                label: unique,
                folders,
            }
        }
    }

    /// Runs `script` with busybox sh inside the container as its configured user and
    /// returns (exit code, combined output).
    async fn exec(runtime: &DockerRuntime, id: &ContainerId, script: &str) -> (i64, String) {
        let exec = runtime
            .docker
            .create_exec(
                id.as_str(),
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![BUSYBOX, "sh", "-c", script]),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        let mut output_text = String::new();
        match runtime
            .docker
            .start_exec(&exec.id, None)
            .await
            .expect("start exec")
        {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    output_text.push_str(&chunk.expect("exec output").to_string());
                }
            }
            StartExecResults::Detached => panic!("exec unexpectedly detached"),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let inspect = runtime
                .docker
                .inspect_exec(&exec.id)
                .await
                .expect("inspect exec");
            if inspect.running == Some(false) {
                let exit_code = inspect.exit_code.expect("exit code of a finished exec");
                return (exit_code, output_text);
            }
            assert!(Instant::now() < deadline, "exec {script:?} did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn listed(runtime: &DockerRuntime, label: &str) -> Vec<ContainerSummary> {
        runtime
            .list_by_label("crabpot.test", label)
            .await
            .expect("list by label")
    }

    #[tokio::test]
    async fn docker_version_is_negotiated() {
        let Some(runtime) = docker_or_skip("docker_version_is_negotiated").await else {
            return;
        };
        let version = runtime.version().await.expect("version");
        assert!(!version.engine_version.is_empty());
        let parse = |text: &str| -> (u32, u32) {
            let (major, minor) = text.split_once('.').expect("api version has a dot");
            (major.parse().expect("major"), minor.parse().expect("minor"))
        };
        let negotiated = parse(&version.negotiated_api_version);
        assert!(
            negotiated <= parse(&version.engine_api_version),
            "negotiated {version:?} is newer than the engine"
        );
        assert!(negotiated >= (1, 41), "{version:?}");
    }

    #[tokio::test]
    async fn docker_create_applies_and_verifies_the_policy() {
        let Some(runtime) = docker_or_skip("docker_create_applies_and_verifies_the_policy").await
        else {
            return;
        };
        let fixture = Fixture::new("policy");
        let spec = &fixture.spec;
        let id = runtime.create(spec).await.expect("create");

        let info = runtime.inspect(&id).await.expect("inspect");
        assert_eq!(info.name, spec.name);
        assert_eq!(info.image, TEST_IMAGE);
        assert_eq!(
            (info.state, info.running, info.exit_code),
            (ContainerState::Created, false, None)
        );
        assert_eq!(info.labels.get("crabpot.test"), Some(&fixture.label));
        let policy = &info.policy;
        assert_eq!(policy.user, TEST_USER);
        assert!(!policy.privileged);
        assert!(policy.cap_add.is_empty(), "{:?}", policy.cap_add);
        assert_eq!(policy.cap_drop, ["ALL"]);
        assert_eq!(policy.security_opt, ["no-new-privileges"]);
        assert!(policy.readonly_rootfs);
        assert_eq!(
            policy.tmpfs,
            BTreeMap::from([(
                "/tmp".to_owned(),
                "rw,noexec,nosuid,size=67108864".to_owned()
            )])
        );
        assert_eq!(policy.pids_limit, Some(256));
        assert_eq!(
            (policy.memory, policy.memory_swap),
            (536_870_912, 536_870_912)
        );
        assert_eq!(policy.nano_cpus, 1_000_000_000);
        assert!(policy.init);
        assert_eq!(policy.network_mode, "none");
        assert!(policy.devices.is_empty(), "{:?}", policy.devices);
        assert_eq!(policy.env, ["CRABPOT_TEST=1"]);
        let in_folder = fixture.folders.path().join("in");
        let out_folder = fixture.folders.path().join("out");
        assert_eq!(
            policy.mounts,
            [
                ObservedMount {
                    kind: "bind".to_owned(),
                    source: in_folder.to_string_lossy().into_owned(),
                    target: "/session/in".to_owned(),
                    rw: false,
                },
                ObservedMount {
                    kind: "bind".to_owned(),
                    source: out_folder.to_string_lossy().into_owned(),
                    target: "/session/out".to_owned(),
                    rw: true,
                },
            ]
        );
        assert_eq!(verify(spec, &info), Ok(()));

        let found = listed(&runtime, &fixture.label).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, id);
        assert_eq!(found[0].name, spec.name);
        assert_eq!(found[0].state, ContainerState::Created);
        assert_eq!(found[0].labels.get("crabpot.session"), Some(&spec.name));

        assert_eq!(
            runtime.create(spec).await,
            Err(RuntimeError::NameConflict {
                name: spec.name.clone()
            })
        );
        runtime.remove(&id).await.expect("remove");
        assert_eq!(
            runtime.inspect(&id).await,
            Err(RuntimeError::NotFound(id.to_string()))
        );
        assert!(listed(&runtime, &fixture.label).await.is_empty());
    }

    #[tokio::test]
    async fn docker_started_container_is_confined() {
        let Some(runtime) = docker_or_skip("docker_started_container_is_confined").await else {
            return;
        };
        let fixture = Fixture::new("confined");
        let id = runtime.create(&fixture.spec).await.expect("create");
        runtime.start(&id).await.expect("start");
        runtime
            .start(&id)
            .await
            .expect("starting a running container is a no-op");
        let info = runtime.inspect(&id).await.expect("inspect");
        assert_eq!((info.state, info.running), (ContainerState::Running, true));

        let (code, output) = exec(&runtime, &id, "id -u; id -g").await;
        assert_eq!((code, output.as_str()), (0, "10001\n10001\n"));

        let (code, output) = exec(&runtime, &id, "echo x > /session/in/file").await;
        assert_ne!(code, 0, "wrote to the read-only mount: {output}");
        assert!(output.contains("Read-only file system"), "{output}");
        assert!(!fixture.folders.path().join("in/file").exists());

        let (code, output) = exec(&runtime, &id, "echo out > /session/out/file").await;
        assert_eq!(code, 0, "{output}");
        let written = fixture.folders.path().join("out/file");
        assert_eq!(
            std::fs::read_to_string(&written).expect("read back"),
            "out\n"
        );
        let owner =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&written).expect("stat"));
        assert_eq!(owner, TEST_UID);

        let (code, output) = exec(&runtime, &id, "echo tmp > /tmp/file && cat /tmp/file").await;
        assert_eq!((code, output.as_str()), (0, "tmp\n"));

        let (code, output) = exec(&runtime, &id, "echo x > /rootfs-file").await;
        assert_ne!(code, 0, "wrote to the root filesystem: {output}");

        let (code, output) = exec(&runtime, &id, "cp /bin/busybox /tmp/bb && /tmp/bb true").await;
        assert_ne!(code, 0, "executed from the noexec /tmp: {output}");

        // Only the loopback interface exists with NetworkMode "none".
        let (code, output) = exec(&runtime, &id, "ls /sys/class/net").await;
        assert_eq!((code, output.trim()), (0, "lo"));

        let (code, output) = exec(&runtime, &id, "grep CapEff /proc/self/status").await;
        assert_eq!(code, 0, "{output}");
        assert!(output.trim().ends_with("0000000000000000"), "{output}");

        assert_eq!(
            listed(&runtime, &fixture.label).await[0].state,
            ContainerState::Running
        );

        runtime
            .stop(&id, Duration::from_secs(5))
            .await
            .expect("stop");
        let info = runtime.inspect(&id).await.expect("inspect");
        assert_eq!((info.state, info.running), (ContainerState::Exited, false));
        assert!(info.exit_code.is_some());
        runtime
            .stop(&id, Duration::from_secs(5))
            .await
            .expect("stop again");
        runtime.remove(&id).await.expect("remove");
        runtime.remove(&id).await.expect("remove again");
        assert!(listed(&runtime, &fixture.label).await.is_empty());
    }

    #[tokio::test]
    async fn docker_unknown_container() {
        let Some(runtime) = docker_or_skip("docker_unknown_container").await else {
            return;
        };
        let unknown = ContainerId::new(format!(
            "crabpot-runtime-unknown-{}",
            uuid::Uuid::new_v4().simple()
        ));
        assert_eq!(runtime.stop(&unknown, Duration::from_secs(1)).await, Ok(()));
        assert_eq!(runtime.remove(&unknown).await, Ok(()));
        assert_eq!(
            runtime.start(&unknown).await,
            Err(RuntimeError::NotFound(unknown.to_string()))
        );
        assert_eq!(
            runtime.inspect(&unknown).await,
            Err(RuntimeError::NotFound(unknown.to_string()))
        );
    }

    #[tokio::test]
    async fn docker_missing_image_says_run_make_image() {
        let Some(runtime) = docker_or_skip("docker_missing_image_says_run_make_image").await else {
            return;
        };
        let mut fixture = Fixture::new("noimage");
        fixture.spec.image = format!("crabpot-no-such-image-{}:latest", fixture.label);
        let error = runtime
            .create(&fixture.spec)
            .await
            .expect_err("image is missing");
        assert_eq!(
            error,
            RuntimeError::ImageMissing {
                image: fixture.spec.image.clone()
            }
        );
        assert!(error.to_string().contains("run `make image`"), "{error}");
        assert!(listed(&runtime, &fixture.label).await.is_empty());
    }

    #[tokio::test]
    async fn docker_refuses_invalid_spec_before_the_engine() {
        let Some(runtime) = docker_or_skip("docker_refuses_invalid_spec_before_the_engine").await
        else {
            return;
        };
        let mut fixture = Fixture::new("invalid");
        fixture.spec.user = "0:0".to_owned();
        assert!(matches!(
            runtime.create(&fixture.spec).await,
            Err(RuntimeError::InvalidSpec(_))
        ));
        fixture.spec.user = TEST_USER.to_owned();
        fixture.spec.mounts.push(MountSpec {
            source: PathBuf::from("/var/run/docker.sock"),
            target: "/var/run/docker.sock".to_owned(),
            read_only: true,
        });
        assert!(matches!(
            runtime.create(&fixture.spec).await,
            Err(RuntimeError::InvalidSpec(_))
        ));
        assert!(listed(&runtime, &fixture.label).await.is_empty());
    }

    #[tokio::test]
    async fn docker_removes_a_container_that_differs_from_the_policy() {
        let Some(runtime) =
            docker_or_skip("docker_removes_a_container_that_differs_from_the_policy").await
        else {
            return;
        };
        let mut fixture = Fixture::new("drift");
        fixture.spec.image = DRIFT_IMAGE.to_owned();
        match runtime.create(&fixture.spec).await {
            Err(RuntimeError::PolicyViolation(differences)) => {
                let joined = differences.join("\n");
                assert!(joined.contains("unexpected mount volume"), "{joined}");
                assert!(joined.contains("-> /data (rw)"), "{joined}");
                assert!(
                    joined.contains("unexpected environment variable LEAK"),
                    "{joined}"
                );
            }
            other => panic!("image drift not refused: {other:?}"),
        }
        assert!(
            listed(&runtime, &fixture.label).await.is_empty(),
            "the refused container was not removed"
        );
    }
}
