//! The container runtime: the one place in crabpot that knows Docker (and bollard).
//!
//! Everything else in the host talks to containers through the narrow, object-safe
//! [`ContainerRuntime`] trait (used as `Arc<dyn ContainerRuntime>`): create, start, stop,
//! remove, inspect and list by label, plus the engine version for `crabpot status`.
//! A container is described by a [`ContainerSpec`] (name, image, labels, non-root user,
//! environment, command, bind mounts, [`ContainerLimits`]). The security policy of
//! DESIGN §5 is not part of the spec: it is always applied (`policy.rs`, see
//! [`validate_spec`] and [`verify`]), and every container handed back by
//! [`ContainerRuntime::create`] has been inspected and verified against it.
//! [`DockerRuntime`] is the bollard implementation; [`RecordingRuntime`] is an in-memory
//! fake for unit tests (in this crate and in the `tests` crate). All failures are a
//! [`RuntimeError`], whose variants say whether a retry can help.

mod docker;
mod fake;
mod policy;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use docker::DockerRuntime;
pub use fake::{CallKind, RecordingRuntime, RuntimeCall};
pub use policy::{expected_policy, validate_spec, verify};

/// A boxed, sendable future borrowing from its receiver; keeps [`ContainerRuntime`]
/// object-safe without the async-trait crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The narrow interface to a container engine. Object-safe: hold it as
/// `Arc<dyn ContainerRuntime>`.
///
/// Every operation that takes a [`ContainerId`] also accepts a container name, as Docker
/// does. `stop` and `remove` are idempotent: a container that is already stopped or
/// already gone is not an error.
pub trait ContainerRuntime: Send + Sync {
    /// The engine's version and the API version negotiated with it.
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>>;

    /// Validates `spec`, creates the container with the policy of DESIGN §5 applied,
    /// inspects it and verifies that the engine applied exactly that policy.
    ///
    /// A container whose observed configuration differs is force-removed and
    /// [`RuntimeError::PolicyViolation`] is returned, so a caller never holds the id of an
    /// unverified container. The container is created, not started.
    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<ContainerId, RuntimeError>>;

    /// Starts a created (or stopped) container. Starting a running container is a no-op.
    fn start<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Sends SIGTERM, waits up to `grace`, then kills. A container that is already
    /// stopped or does not exist is `Ok`.
    fn stop<'a>(
        &'a self,
        id: &'a ContainerId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Force-removes the container (running or not) and its anonymous volumes.
    /// A container that does not exist is `Ok`.
    fn remove<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The container's state and the configuration the engine actually applied.
    fn inspect<'a>(
        &'a self,
        id: &'a ContainerId,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>>;

    /// Every container (in any state) carrying the label `key=value`.
    fn list_by_label<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, RuntimeError>>;
}

/// A container's id as the engine reports it (a name is accepted wherever an id is).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ContainerId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for ContainerId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// What `crabpot status` shows about the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The engine's own version, e.g. `20.10.24+dfsg1`.
    pub engine_version: String,
    /// The newest API version the engine supports, e.g. `1.41`.
    pub engine_api_version: String,
    /// The API version this client speaks to the engine after negotiation.
    pub negotiated_api_version: String,
}

/// Everything the host decides about one container. The security policy is not here:
/// it is fixed and applied by [`policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, `crabpot-<install>-<session>`.
    pub name: String,
    /// Image reference, e.g. `crabpot-agent:latest`.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Numeric `uid:gid`; root (uid or gid 0) is refused.
    pub user: String,
    pub env: Vec<(String, String)>,
    /// Arguments appended to the image's entrypoint; empty means none.
    pub command: Vec<String>,
    /// Bind mounts; the container gets these and no others.
    pub mounts: Vec<MountSpec>,
    pub limits: ContainerLimits,
}

/// One bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

/// Resource limits, configurable per agent group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    /// Memory limit in bytes; swap is disabled (MemorySwap = Memory).
    pub memory_bytes: i64,
    /// CPU quota in units of 1e-9 CPUs.
    pub nano_cpus: i64,
    /// Maximum number of processes and threads.
    pub pids_limit: i64,
    /// Size of the tmpfs mounted at `/tmp`.
    pub tmpfs_tmp_bytes: u64,
}

impl Default for ContainerLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids_limit: 256,
            tmpfs_tmp_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A container's lifecycle state as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// The engine reported no state or one this code does not know.
    Unknown,
}

/// The result of [`ContainerRuntime::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: ContainerId,
    /// Name without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub running: bool,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// The configuration the engine actually applied.
    pub policy: ObservedPolicy,
}

/// The security-relevant configuration of a container as the engine reports it, in a
/// shape that [`verify`] compares against [`expected_policy`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPolicy {
    pub user: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub readonly_rootfs: bool,
    /// Container path -> mount options.
    pub tmpfs: BTreeMap<String, String>,
    pub pids_limit: Option<i64>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub init: bool,
    pub network_mode: String,
    pub pid_mode: String,
    pub ipc_mode: String,
    /// Every mount the container has (binds, volumes, including ones an image declares).
    pub mounts: Vec<ObservedMount>,
    /// Host devices and device requests, one line each.
    pub devices: Vec<String>,
    /// `KEY=VALUE` lines from the container's config.
    pub env: Vec<String>,
}

/// One mount as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedMount {
    /// `bind`, `volume`, `tmpfs`, ...
    pub kind: String,
    pub source: String,
    pub target: String,
    pub rw: bool,
}

/// One row of [`ContainerRuntime::list_by_label`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: ContainerId,
    /// Name without Docker's leading `/`.
    pub name: String,
    pub state: ContainerState,
    pub labels: BTreeMap<String, String>,
}

/// Why a runtime operation failed. Each variant says whether retrying can help;
/// [`RuntimeError::is_retryable`] encodes the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be reached (socket missing, connection refused, timeout).
    /// Retryable: the engine may come back.
    #[error("docker is unreachable: {0}")]
    Unreachable(String),
    /// No such container. Not retryable.
    #[error("container {0} not found")]
    NotFound(String),
    /// The image is not present locally; crabpot never pulls. Not retryable until the
    /// image is built.
    #[error("image {image} not found: run `make image`")]
    ImageMissing { image: String },
    /// A container with this name already exists. Not retryable: adopt or remove it.
    #[error("a container named {name} already exists")]
    NameConflict { name: String },
    /// The spec was refused before anything reached the engine (root user, Docker
    /// socket mount, malformed field). Not retryable.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The engine created a container whose configuration differs from the policy; it
    /// was removed. Not retryable: the engine or its configuration must be fixed.
    #[error("container differs from the security policy: {}", .0.join("; "))]
    PolicyViolation(Vec<String>),
    /// Any other error reported by the engine (bad request, engine-side failure).
    /// Not retryable: the same request usually fails the same way.
    #[error("docker engine error: {0}")]
    Engine(String),
}

impl RuntimeError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Unreachable(_) => true,
            RuntimeError::NotFound(_)
            | RuntimeError::ImageMissing { .. }
            | RuntimeError::NameConflict { .. }
            | RuntimeError::InvalidSpec(_)
            | RuntimeError::PolicyViolation(_)
            | RuntimeError::Engine(_) => false,
        }
    }
}
